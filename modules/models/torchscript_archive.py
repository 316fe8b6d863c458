"""The tensors of a TorchScript archive (OpenAI's ``ViT-L-14.pt`` download, which A1111's Interrogate CLIP reads),
without loading it as TorchScript: ``torch.jit.load`` compiles and keeps the archive's code, and ``torch.load``
refuses such archives with ``weights_only``. Here its ``data.pkl`` is read by a pickle reader that knows only
tensors, their storages, ordered dicts and the archive's module objects (kept as plain attribute dicts); anything
else in the pickle is refused. The module tree becomes a flat state dict (``visual.conv1.weight``...).
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from modules.models.types import CorruptFileError, UnsafeFileError

_STORAGE_DTYPES = {"FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
                   "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
                   "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
                   "BoolStorage": torch.bool}


class _ScriptObject:
    """A TorchScript module or object: its attributes, nothing callable (made by pickle's NEWOBJ, which calls no
    ``__init__``; BUILD hands it its state)."""

    attributes: dict[str, Any] = {}  # noqa: RUF012 - replaced per object in __setstate__, never mutated here

    def __setstate__(self, state: Any) -> None:
        self.attributes = dict(state) if isinstance(state, dict) else {}


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: Any, stride: Any, *_: Any) -> torch.Tensor:
    return torch.as_strided(storage, tuple(size), tuple(stride), offset).clone()


def _identity(value: Any, *_: Any) -> Any:
    return value


class _Reader(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, path: Path) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.path = archive, prefix, path

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch.jit._pickle" and name in ("restore_type_tag", "build_intlist", "build_doublelist",
                                                      "build_boollist", "build_tensorlist"):
            return _identity
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptObject
        raise UnsafeFileError(self.path, f"unsafe TorchScript archive: it references {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        kind, dtype, key, _location, numel = pid
        if kind != "storage" or not isinstance(dtype, torch.dtype):
            raise CorruptFileError(self.path, f"unexpected storage record {pid!r}")
        raw = self.archive.read(f"{self.prefix}data/{key}")
        count = int(numel)
        if len(raw) < count * dtype.itemsize:
            raise CorruptFileError(self.path, f"storage {key} is shorter than its {count} values")
        return torch.frombuffer(bytearray(raw[:count * dtype.itemsize]), dtype=dtype) if count else \
            torch.empty(0, dtype=dtype)


def is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor attribute of the archive's module tree under its dotted name."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise CorruptFileError(path, f"not a readable TorchScript archive ({err})") from None
    with archive:
        names = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if not names:
            raise CorruptFileError(path, "the TorchScript archive has no data.pkl")
        prefix = names[0][: -len("data.pkl")]
        try:
            root = _Reader(archive.read(names[0]), archive, prefix, path).load()
        except (UnsafeFileError, CorruptFileError):
            raise
        except Exception as err:  # the pickle's own errors: damaged data
            raise CorruptFileError(path, f"damaged TorchScript archive ({type(err).__name__}: {err})") from None
    out: dict[str, torch.Tensor] = {}

    def walk(node: Any, prefix: str) -> None:
        items = node.attributes.items() if isinstance(node, _ScriptObject) else ()
        for name, value in items:
            if isinstance(value, torch.Tensor):
                out[prefix + name] = value
            elif isinstance(value, _ScriptObject):
                walk(value, f"{prefix}{name}.")

    walk(root, "")
    return out
