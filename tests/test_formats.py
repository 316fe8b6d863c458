"""Safe weight-file reading: every kind of bad file gives its own clear error, and no pickle ever runs code."""

from __future__ import annotations

import json
import os
import pickle
import struct
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.models import formats
from modules.models.types import (
    CorruptFileError,
    IncompleteFileError,
    ModelFileError,
    UnsafeFileError,
)


def _tensors(n: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {f"layer.{i}.weight": torch.randn(4, 8, generator=g) for i in range(n)}


def _write_st(path: Path, tensors: dict[str, torch.Tensor] | None = None) -> Path:
    save_file(tensors if tensors is not None else _tensors(), str(path))
    return path


def _raw_st(path: Path, header: object, data: bytes = b"", *, length: int | None = None) -> Path:
    """A hand-made safetensors file: 8-byte little-endian header length, header bytes, data."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head) if length is None else length) + head + data)
    return path


def _entry(dtype: str, shape: list[int], begin: int, end: int) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


# --------------------------------------------------------------------------------------------------------------------
# Format sniffing: bytes decide, not the extension


class Evil:
    """Unpickling this would run a shell command creating ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_sniff_by_bytes_not_extension(tmp_path: Path) -> None:
    st = _write_st(tmp_path / "model.ckpt")  # safetensors bytes behind a pickle extension
    zip_ = tmp_path / "model.safetensors"
    torch.save({"a": torch.ones(2)}, zip_)
    legacy = tmp_path / "model"
    torch.save({"a": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    text = tmp_path / "notes.safetensors"
    text.write_text("hello, this is not a model")
    assert formats.sniff_format(st) == "safetensors"
    assert formats.sniff_format(zip_) == "zip-pickle"
    assert formats.sniff_format(legacy) == "legacy-pickle"
    assert formats.sniff_format(text) == "unknown"
    assert torch.equal(formats.load_state_dict(zip_)["a"], torch.ones(2))
    assert torch.equal(formats.load_state_dict(legacy)["a"], torch.ones(2))
    assert set(formats.load_state_dict(st)) == set(_tensors())


def test_valid_safetensors_roundtrip_and_header(tmp_path: Path) -> None:
    tensors = {"a": torch.arange(6, dtype=torch.float16).reshape(2, 3), "b": torch.tensor([True, False]),
               "empty": torch.zeros(0, 5)}
    path = _write_st(tmp_path / "m.safetensors", tensors)
    header = formats.read_safetensors_header(path)
    assert header["a"]["dtype"] == "F16" and header["a"]["shape"] == [2, 3]
    loaded = formats.load_state_dict(path)
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())


def test_ckpt_state_dict_wrapper_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.ones(3), "step": 5}, "epoch": 3, "global_step": 100}, path)
    assert list(formats.load_state_dict(path)) == ["w"]
    torch.save({"model": {"encoder.w": torch.ones(2)}, "optimizer": {}}, path)  # NormalBae's scannet.pt layout
    assert list(formats.load_state_dict(path)) == ["encoder.w"]
    torch.save({"model": {"x": torch.ones(2)}, "w": torch.ones(1)}, path)  # tensors beside "model": a plain dict
    assert list(formats.load_state_dict(path)) == ["w"]


def test_unknown_bytes_and_gguf(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_text("just some text, long enough")
    with pytest.raises(CorruptFileError, match="not a model file"):
        formats.load_state_dict(tmp_path / "x.bin")
    (tmp_path / "y.safetensors").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 32)
    with pytest.raises(CorruptFileError, match="GGUF"):
        formats.load_state_dict(tmp_path / "y.safetensors")


# --------------------------------------------------------------------------------------------------------------------
# safetensors: truncation -> incomplete


def _big_file(tmp_path: Path) -> Path:
    # 200 tensors: a header of several KB and about 100 KB of data
    return _write_st(tmp_path / "big.safetensors", {f"t{i:03d}": torch.ones(128) * i for i in range(200)})


@pytest.mark.parametrize("cut", ["1KB", "half", "before_last"])
def test_truncated_safetensors_is_incomplete(tmp_path: Path, cut: str) -> None:
    path = _big_file(tmp_path)
    data = path.read_bytes()
    size = {"1KB": 1024, "half": len(data) // 2, "before_last": len(data) - 1}[cut]
    path.write_bytes(data[:size])
    with pytest.raises(IncompleteFileError) as err:
        formats.load_state_dict(path)
    assert err.value.kind == "incomplete"
    if cut == "1KB":  # the header itself is cut: only its own length is known
        assert "incomplete download: expected at least" in str(err.value) and f"got {size}" in str(err.value)
    else:
        assert f"incomplete download: expected {len(data)} bytes, got {size}" in str(err.value)


def test_offsets_past_eof_are_incomplete(tmp_path: Path) -> None:
    path = _raw_st(tmp_path / "m.safetensors", {"w": _entry("F32", [250], 0, 1000)}, b"\x00" * 16)
    with pytest.raises(IncompleteFileError, match="expected .* bytes, got"):
        formats.read_safetensors_header(path)


# --------------------------------------------------------------------------------------------------------------------
# safetensors: bad headers -> corrupt, before any allocation


@pytest.mark.parametrize("length", [2**63, 10 * 1024**3, 2**64 - 1])
def test_absurd_header_length_is_corrupt(tmp_path: Path, length: int) -> None:
    path = _raw_st(tmp_path / "m.safetensors", {"w": _entry("F32", [1], 0, 4)}, b"\x00" * 4, length=length)
    with pytest.raises(CorruptFileError, match="exceeds the 100000000 byte limit"):
        formats.load_state_dict(path)


def test_header_longer_than_file_is_incomplete(tmp_path: Path) -> None:
    path = _raw_st(tmp_path / "m.safetensors", b'{"w": {', length=5000)
    with pytest.raises(IncompleteFileError, match="expected at least 5008 bytes"):
        formats.load_state_dict(path)


BAD_HEADERS = {
    "overlap": ({"a": _entry("F32", [4], 0, 16), "b": _entry("F32", [4], 8, 24)}, 24, "overlap"),
    "shape_dtype_mismatch": ({"a": _entry("F32", [4], 0, 8)}, 8, "needs 16 bytes but its offsets span 8"),
    "unknown_dtype": ({"a": _entry("F17", [2], 0, 8)}, 8, "unknown dtype 'F17'"),
    "non_dict_header": ([1, 2, 3], 0, "not an object"),
    "string_header": ("weights", 0, "not an object"),
    "entry_not_object": ({"a": [0, 4]}, 4, "is not an object"),
    "negative_dim": ({"a": _entry("F32", [-1], 0, 4)}, 4, "invalid shape"),
    "bool_dim": ({"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, 4, "invalid shape"),
    "reversed_offsets": ({"a": _entry("F32", [0], 8, 4)}, 8, "invalid data_offsets"),
    "float_offsets": ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4.0]}}, 4, "invalid data_offsets"),
    "bad_metadata": ({"__metadata__": {"x": 1}, "a": _entry("F32", [1], 0, 4)}, 4, "__metadata__"),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_bad_header_is_corrupt(tmp_path: Path, case: str) -> None:
    header, data_len, message = BAD_HEADERS[case]
    path = _raw_st(tmp_path / "m.safetensors", header, b"\x00" * data_len)
    with pytest.raises(CorruptFileError, match=message):
        formats.read_safetensors_header(path)
    with pytest.raises(CorruptFileError) as err:  # a non-object header does not even sniff as safetensors
        formats.load_state_dict(path)
    assert err.value.kind == "corrupt"


def test_invalid_utf8_and_json_are_corrupt(tmp_path: Path) -> None:
    path = _raw_st(tmp_path / "a.safetensors", b'{"\xff\xfe": 1}')
    with pytest.raises(CorruptFileError, match="not valid UTF-8"):
        formats.load_state_dict(path)
    path = _raw_st(tmp_path / "b.safetensors", b'{"a": {"dtype": "F32",')
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        formats.load_state_dict(path)
    path = _raw_st(tmp_path / "c.safetensors", b'{"a": 1, "a": 2}')
    with pytest.raises(CorruptFileError, match="duplicate key"):
        formats.load_state_dict(path)


def test_trailing_bytes_and_gaps_are_accepted(tmp_path: Path) -> None:
    """Policy: unused bytes cannot hide a tensor, so they are tolerated (the safetensors library refuses them)."""
    tensors = _tensors()
    path = _write_st(tmp_path / "m.safetensors", tensors)
    with open(path, "ab") as f:
        f.write(b"\x00" * 100)
    loaded = formats.load_state_dict(path)
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    loaded["layer.0.weight"].add_(1)  # private mapping: writable, the file is never modified
    assert torch.equal(formats.load_state_dict(path)["layer.0.weight"], tensors["layer.0.weight"])

    a, b = torch.arange(4, dtype=torch.float32), torch.arange(2, dtype=torch.float32) + 10
    data = a.numpy().tobytes() + b"\xaa" * 8 + b.numpy().tobytes()
    path = _raw_st(tmp_path / "gap.safetensors", {"a": _entry("F32", [4], 0, 16), "b": _entry("F32", [2], 24, 32)}, data)
    loaded = formats.load_state_dict(path)
    assert torch.equal(loaded["a"], a) and torch.equal(loaded["b"], b)


# --------------------------------------------------------------------------------------------------------------------
# Pickles: never executed


@pytest.mark.parametrize("name", ["evil.ckpt", "evil.safetensors", "evil.bin", "evil"])
@pytest.mark.parametrize("container", ["raw-pickle", "torch-zip"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, name: str, container: str) -> None:
    marker = tmp_path / "PWNED"
    path = tmp_path / name
    if container == "raw-pickle":
        path.write_bytes(pickle.dumps({"state_dict": {"w": Evil(marker)}}, protocol=2))
    else:
        torch.save({"state_dict": {"w": torch.ones(1), "x": Evil(marker)}}, path)
    assert not marker.exists()
    with pytest.raises(UnsafeFileError) as err:
        formats.load_state_dict(path)
    assert err.value.kind == "unsafe"
    assert "unsafe pickle: refused to load, it references" in str(err.value)
    assert "system" in str(err.value)
    assert not marker.exists()


def test_old_torch_refuses_all_pickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fine.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1)}}, path)
    monkeypatch.setattr(formats, "_torch_version", lambda: (2, 5))
    with pytest.raises(UnsafeFileError, match="CVE-2025-32434"):
        formats.load_state_dict(path)
    safe = _write_st(tmp_path / "ok.safetensors")  # safetensors stay readable
    assert formats.load_state_dict(safe)


def test_damaged_pickles_are_corrupt(tmp_path: Path) -> None:
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(64)}}, good)
    data = good.read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="zip archive"):
        formats.load_state_dict(tmp_path / "cut.ckpt")
    (tmp_path / "garbage.pt").write_bytes(b"\x80\x02garbage that is no pickle")
    with pytest.raises(CorruptFileError):
        formats.load_state_dict(tmp_path / "garbage.pt")
    legacy = tmp_path / "legacy.ckpt"
    torch.save({"w": torch.ones(64)}, legacy, _use_new_zipfile_serialization=False)
    ldata = legacy.read_bytes()
    for cut in (40, len(ldata) // 2):
        (tmp_path / "legacy_cut.ckpt").write_bytes(ldata[:cut])
        with pytest.raises((CorruptFileError, UnsafeFileError)) as err:
            formats.load_state_dict(tmp_path / "legacy_cut.ckpt")
        assert err.value.kind in ("corrupt", "unsafe")


def test_pickle_that_is_not_a_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.ones(1)], path)
    with pytest.raises(CorruptFileError, match="not a dictionary of weights"):
        formats.load_state_dict(path)


# --------------------------------------------------------------------------------------------------------------------
# Not regular files: clear error, never a hang


def _no_hang(fn, seconds: float = 10.0):
    """Run ``fn`` in a daemon thread so a blocking open fails the test instead of hanging the run."""
    box: dict[str, BaseException | object] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "reading the file blocked"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("result")


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    path.touch()
    with pytest.raises(CorruptFileError, match="empty"):
        formats.load_state_dict(path)


def test_directory_named_like_a_model(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    path.mkdir()
    with pytest.raises(ModelFileError, match="is a directory") as err:
        formats.load_state_dict(path)
    assert err.value.kind == "invalid"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        formats.load_state_dict(tmp_path / "nope.safetensors")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_fifo_does_not_hang(tmp_path: Path) -> None:
    path = tmp_path / "pipe.safetensors"
    os.mkfifo(path)
    with pytest.raises(ModelFileError, match="not a regular file"):
        _no_hang(lambda: formats.load_state_dict(path))
    with pytest.raises(ModelFileError, match="not a regular file"):
        _no_hang(lambda: formats.sniff_format(path))


@pytest.mark.skipif(not os.path.exists("/dev/zero") or sys.platform == "win32", reason="needs /dev/zero")
def test_device_file_does_not_hang() -> None:
    with pytest.raises(ModelFileError, match="not a regular file"):
        _no_hang(lambda: formats.load_state_dict("/dev/zero"))
