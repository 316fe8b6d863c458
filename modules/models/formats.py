"""Safe reading of model weight files: the format is decided by the file's bytes, never by its extension.

* safetensors: the header is validated before anything is allocated (a hostile or truncated header must not make us
  allocate gigabytes or read past the end of the file), then ``safetensors.torch.load_file`` maps the file.
* PyTorch pickles (``.ckpt``/``.pt``/``.bin``, zip or legacy format): only through ``torch.load(weights_only=True)``,
  which refuses any global outside torch's allow-list, so a pickle can never run code. torch < 2.6 is refused
  outright because its weights-only unpickler can be bypassed (CVE-2025-32434).

Unused bytes policy (safetensors): tensors must lie inside the file and must not overlap, but gaps between tensors and
trailing bytes after the last tensor are accepted. They cannot hide a tensor (each tensor is read only from its own
validated range) and some tools pad files. The safetensors library itself refuses such files ("file not fully
covered", "invalid offset"), so those are read by a small memory-mapped reader over the validated ranges instead.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import pickle
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from modules.models.types import (
    CorruptFileError,
    IncompleteFileError,
    ModelFileError,
    UnsafeFileError,
)

if TYPE_CHECKING:
    import torch

Format = Literal["safetensors", "zip-pickle", "legacy-pickle", "gguf", "unknown"]

# Same cap as the safetensors library: no real header comes near it, a larger one is an attack or garbage.
MAX_HEADER_BYTES = 100_000_000

# Bits per element of every dtype the safetensors format defines and torch can hold.
SAFETENSORS_DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E4M3": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
}

MIN_SAFE_TORCH = (2, 10)  # weights_only=True: RCE fixed in torch 2.6 (CVE-2025-32434) and 2.10 (CVE-2026-24747)


def _check_regular_file(path: Path) -> os.stat_result:
    """Stat before opening: opening a FIFO would block forever and a device could be endless."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ModelFileError(path, "file not found") from None
    except OSError as e:
        raise ModelFileError(path, f"cannot read the file ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(path, "is a directory, not a model file")
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(path, "is not a regular file (a pipe, socket or device?); refusing to read it")
    if st.st_size == 0:
        raise CorruptFileError(path, "the file is empty (0 bytes)")
    return st


def _open_regular(path: Path) -> tuple[Any, int]:
    """Open for reading without blocking, and re-check on the open descriptor (the path may have been swapped)."""
    _check_regular_file(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise ModelFileError(path, f"cannot open the file ({e.strerror or e})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ModelFileError(path, "is not a regular file; refusing to read it")
    return os.fdopen(fd, "rb"), st.st_size


def sniff_format(path: str | Path) -> Format:
    """Tell the container format from the first bytes of the file."""
    path = Path(path)
    f, _size = _open_regular(path)
    with f:
        head = f.read(9)
    return _format_of(head)


def _format_of(head: bytes) -> Format:
    if head[:4] == b"PK\x03\x04":
        return "zip-pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:1] == b"\x80":  # pickle PROTO opcode: torch's legacy (pre-1.6) format starts with a pickled magic number
        return "legacy-pickle"
    return "unknown"


def _corrupt(path: Path, message: str) -> CorruptFileError:
    return CorruptFileError(path, f"damaged safetensors file: {message}")


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def read_safetensors_header(path: str | Path) -> dict[str, Any]:
    """Read and validate a safetensors header without trusting any number in it.

    Returns the parsed header (tensor name -> {dtype, shape, data_offsets}, plus ``__metadata__`` if present).
    Raises IncompleteFileError when the file is shorter than the header says, CorruptFileError for anything else wrong.
    """
    return _read_header(Path(path))[0]


def _read_header(path: Path) -> tuple[dict[str, Any], bool]:
    """(validated header, whether the tensors cover the data section exactly with no unused bytes)."""
    f, size = _open_regular(path)
    with f:
        if size < 8:
            raise IncompleteFileError(path, f"incomplete download: expected at least 8 bytes, got {size}")
        n = int.from_bytes(f.read(8), "little")
        if n > MAX_HEADER_BYTES:
            raise _corrupt(path, f"header length {n} bytes exceeds the {MAX_HEADER_BYTES} byte limit")
        if n < 2:
            raise _corrupt(path, f"header length {n} bytes is too small for a JSON object")
        if 8 + n > size:
            raise IncompleteFileError(path, f"incomplete download: expected at least {8 + n} bytes, got {size}")
        raw = f.read(n)
    header = _parse_header(path, raw)
    data_size, used = _validate_tensors(path, header)
    expected = 8 + n + data_size
    if expected > size:
        raise IncompleteFileError(path, f"incomplete download: expected {expected} bytes, got {size}")
    return header, used == data_size == size - 8 - n


def _parse_header(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _corrupt(path, "the header is not valid UTF-8") from None
    try:
        header = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except (ValueError, RecursionError) as e:
        raise _corrupt(path, f"the header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise _corrupt(path, f"the header is a JSON {type(header).__name__}, not an object")
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise _corrupt(path, "__metadata__ must map names to strings")
    return header


def _validate_tensors(path: Path, header: Mapping[str, Any]) -> tuple[int, int]:
    """Check dtype, shape and offsets of every entry; return (end of the last tensor, bytes the tensors use)."""
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise _corrupt(path, f"entry {name!r} is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPE_BITS:
            raise _corrupt(path, f"tensor {name!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise _corrupt(path, f"tensor {name!r} has an invalid shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
            raise _corrupt(path, f"tensor {name!r} has invalid data_offsets {offsets!r}")
        begin, end = offsets
        if begin < 0 or end < begin:
            raise _corrupt(path, f"tensor {name!r} has invalid data_offsets {offsets!r}")
        nbytes = math.prod(shape) * SAFETENSORS_DTYPE_BITS[dtype] // 8
        if nbytes != end - begin:
            raise _corrupt(
                path, f"tensor {name!r}: shape {shape} of {dtype} needs {nbytes} bytes but its offsets span {end - begin}"
            )
        spans.append((begin, end, name))
    spans.sort()
    previous_end, previous_name = 0, ""
    for begin, end, name in spans:
        if begin < previous_end:
            raise _corrupt(path, f"tensors {previous_name!r} and {name!r} overlap")
        if end > begin:  # empty tensors occupy no bytes and cannot overlap anything
            previous_end, previous_name = end, name
    return max((end for _, end, _ in spans), default=0), sum(end - begin for begin, end, _ in spans)


def _read_with_unused_bytes(path: Path, header: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Map validated tensor ranges of a file the safetensors library refuses only because of unused bytes."""
    import safetensors.torch
    import torch

    dtypes: dict[str, torch.dtype] = safetensors.torch._TYPES  # the library's own name -> dtype table
    f, _size = _open_regular(path)
    with f:
        n = int.from_bytes(f.read(8), "little")
        # Copy-on-write private mapping: tensors are writable without ever touching the file.
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    start = 8 + n
    out: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape = dtypes[info["dtype"]], info["shape"]
        begin, end = info["data_offsets"]
        if end == begin:
            out[name] = torch.empty(shape, dtype=dtype)
            continue
        # The format is little-endian, like every platform torch runs on; each tensor keeps the mapping alive.
        out[name] = torch.frombuffer(mm, dtype=dtype, count=math.prod(shape), offset=start + begin).reshape(shape)
    return out


def _load_safetensors(path: Path, device: str) -> dict[str, torch.Tensor]:
    import safetensors.torch

    header, exact = _read_header(path)
    if not exact:  # gaps or trailing bytes: the library refuses these, read the validated ranges ourselves
        tensors = _read_with_unused_bytes(path, header)
        return {k: v.to(device) for k, v in tensors.items()} if device != "cpu" else tensors
    try:
        return safetensors.torch.load_file(str(path), device=device)
    except Exception as e:  # the library's own checks, after ours: still the file's fault
        raise CorruptFileError(path, f"damaged safetensors file: {e}") from None


def _torch_version() -> tuple[int, int]:
    import torch

    m = re.match(r"(\d+)\.(\d+)", torch.__version__)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _refused_global(err: BaseException) -> str | None:
    """The ``module.name`` a weights-only unpickler refused, if that is why it failed."""
    for e in (err, err.__context__, err.__cause__):
        if e is None:
            continue
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        if m:
            return m.group(1)
    return None


def _global_exists(name: str) -> bool:
    """Whether a dotted torch name resolves; a missing one means a cut-off pickle, not a hostile one."""
    import importlib

    module, _, attr = name.rpartition(".")
    try:
        return hasattr(importlib.import_module(module), attr)
    except Exception:
        return False


def _load_pickle(path: Path, fmt: Format, device: str) -> Any:
    import torch

    if _torch_version() < MIN_SAFE_TORCH:
        raise UnsafeFileError(
            path,
            f"refusing to read pickle checkpoints with torch {torch.__version__}: its weights-only loader can be "
            "bypassed (CVE-2025-32434). Upgrade torch to 2.6 or newer, or use a .safetensors file.",
        )
    # mmap needs the zip format and a CPU target; it avoids reading the whole file into memory.
    use_mmap = fmt == "zip-pickle" and device == "cpu"
    try:
        if path.name.lower().endswith(".safetensors"):
            # torch.load picks safetensors by a path's extension; a file object makes it read the bytes we sniffed.
            f, _size = _open_regular(path)
            with f:
                return torch.load(f, map_location=device, weights_only=True)
        return torch.load(str(path), map_location=device, weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError as e:
        name = _refused_global(e)
        if name and not (name.startswith("torch.") and not _global_exists(name)):
            raise UnsafeFileError(path, f"unsafe pickle: refused to load, it references {name}") from None
        raise CorruptFileError(path, "damaged or incomplete checkpoint: the pickle data is not valid") from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError) as e:
        if fmt == "zip-pickle":
            msg = "damaged or incomplete checkpoint: the zip archive cannot be read (interrupted download?)"
        else:
            msg = f"damaged or incomplete checkpoint ({type(e).__name__})"
        raise CorruptFileError(path, msg) from None


def _unwrap_state_dict(path: Path, obj: Any) -> dict[str, torch.Tensor]:
    """Keep the tensors; training checkpoints nest them under "state_dict" (or, with no tensor beside it, "model",
    as NormalBae's scannet.pt) next to epoch/optimizer entries."""
    import torch

    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    elif (isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping)
          and not any(isinstance(v, torch.Tensor) for v in obj.values())):
        obj = obj["model"]
    if not isinstance(obj, Mapping):
        raise CorruptFileError(path, f"the file holds a {type(obj).__name__}, not a dictionary of weights")
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_state_dict(path: str | Path, device: str = "cpu", keep_quantized: bool = False) -> dict[str, torch.Tensor]:
    """Load every tensor of a weights file, safely, whatever its extension says.

    ``keep_quantized``: a GGUF file's quantized tensors stay raw blocks (``gguf_files.load``).
    Raises a ModelFileError subclass for anything that is not a readable, safe weights file.
    """
    path = Path(path)
    fmt = sniff_format(path)
    if fmt == "safetensors":
        return _load_safetensors(path, device)
    if fmt in ("zip-pickle", "legacy-pickle"):
        return _unwrap_state_dict(path, _load_pickle(path, fmt, device))
    if fmt == "gguf":
        from modules.models import gguf_files

        return gguf_files.load(path, keep_quantized=keep_quantized)
    raise CorruptFileError(path, f"not a model file: neither safetensors nor a PyTorch checkpoint ({_describe_head(path)})")


def load_with_extras(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A pickle checkpoint's tensors and its other plain entries (lists, strings, numbers: what
    ``torch.load(weights_only=True)`` allows; DeepDanbooru keeps its tag list beside the weights); for other
    formats the tensors and no extras."""
    path = Path(path)
    fmt = sniff_format(path)
    if fmt not in ("zip-pickle", "legacy-pickle"):
        return load_state_dict(path), {}
    obj = _load_pickle(path, fmt, "cpu")
    extras = {str(k): v for k, v in obj.items() if not hasattr(v, "shape")} if isinstance(obj, Mapping) else {}
    return _unwrap_state_dict(path, obj), extras


def _describe_head(path: Path) -> str:
    f, _size = _open_regular(path)
    with f:
        head = f.read(8)
    return f"it starts with bytes {head.hex(' ')}"
