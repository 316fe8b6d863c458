"""Malicious and mangled model files (campaign A1-A3): pickles behind any extension, zip-differential torch files,
and a malicious checkpoint dropped into models/Stable-diffusion of a running app. The marker file a successful
attack would create must never appear; errors are ours (unsafe / corrupt / incomplete) and the server goes on."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from modules.models import formats
from modules.models.types import ModelFileError, UnsafeFileError


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["evil.SAFETENSORS", "evil.Safetensors", "evil.pth", "evil.p", "evil.pt",
                                  "evil.vae.pt", "evil.safetensors.ckpt"])
def test_the_bytes_decide_the_loader_not_the_name(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "PWNED"
    torch.save({"state_dict": {"w": torch.ones(1), "x": Evil(marker)}}, tmp_path / name)
    with pytest.raises(UnsafeFileError):
        formats.load_state_dict(tmp_path / name)
    assert not marker.exists()


def _torch_zip(tmp_path: Path, marker: Path) -> tuple[bytes, bytes]:
    """(a benign torch zip, the pickle of a malicious state dict) to splice into it."""
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buffer)
    evil = pickle.dumps({"w": Evil(marker)}, protocol=2)
    return buffer.getvalue(), evil


def _rewrite(original: bytes, change) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(original))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        change(source, target)
    return out.getvalue()


def _copy_all(source, target, skip=()):
    for info in source.infolist():
        if info.filename not in skip:
            target.writestr(info, source.read(info.filename))


def _pkl_name(source) -> str:
    return next(i.filename for i in source.infolist() if i.filename.endswith("data.pkl"))


def _variants(original: bytes, evil: bytes) -> dict[str, bytes]:
    def duplicate(source, target):  # a second data.pkl after the first: parsers disagree on which wins
        _copy_all(source, target)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            target.writestr(_pkl_name(source), evil)

    def upper_case(source, target):
        _copy_all(source, target)
        target.writestr(_pkl_name(source).replace("data.pkl", "DATA.PKL"), evil)

    def replaced(source, target):
        _copy_all(source, target, skip={_pkl_name(source)})
        target.writestr(_pkl_name(source), evil)

    def extra_member(source, target):
        _copy_all(source, target)
        target.writestr(_pkl_name(source).replace("data.pkl", "payload.py"), b"import os; os.system('x')")

    variants = {name: _rewrite(original, fn) for name, fn in
                (("duplicate data.pkl", duplicate), ("DATA.PKL", upper_case), ("evil data.pkl", replaced),
                 ("extra member", extra_member))}
    data = bytearray(original)
    at = data.find(b"PK\x01\x02")  # central directory: flip general-purpose flag bits of the first entry
    data[at + 8] ^= 0x41
    variants["flag bits"] = bytes(data)
    crc = bytearray(original)
    at = crc.find(b"PK\x03\x04")
    crc[at + 14] ^= 0xFF  # a member's CRC no longer matches
    variants["bad crc"] = bytes(crc)
    return variants


@pytest.mark.parametrize("variant", ["duplicate data.pkl", "DATA.PKL", "evil data.pkl", "extra member",
                                     "flag bits", "bad crc"])
def test_zip_differential_torch_files_never_run_code(tmp_path: Path, variant: str) -> None:
    marker = tmp_path / "PWNED"
    original, evil = _torch_zip(tmp_path, marker)
    path = tmp_path / "model.pt"
    path.write_bytes(_variants(original, evil)[variant])
    try:
        loaded = formats.load_state_dict(path)
    except ModelFileError as err:
        assert err.kind in ("unsafe", "corrupt", "incomplete")
    else:  # one parser both validated and loaded: whatever it read is plain tensors
        assert all(isinstance(v, torch.Tensor) for v in loaded.values())
    assert not marker.exists()


def test_a_malicious_checkpoint_in_the_models_folder(tiny_api_client, tmp_path: Path) -> None:
    client = tiny_api_client
    rt = client.app.state.runtime
    marker = tmp_path / "PWNED"
    folder = rt.paths.model_dir("checkpoints")
    torch.save({"state_dict": {"model.diffusion_model.x": torch.ones(1), "y": Evil(marker)}}, folder / "evil.ckpt")
    try:
        assert client.post("/sdapi/v1/refresh-checkpoints").status_code == 200
        titles = [m["title"] for m in client.get("/sdapi/v1/sd-models").json()]
        assert any(t.startswith("evil.ckpt") for t in titles)  # listing still works
        client.post("/sdapi/v1/txt2img", json={"prompt": "x", "width": 64, "height": 64, "steps": 1})
        before = rt.manager.info.title
        r = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "width": 64, "height": 64, "steps": 1,
                                                   "override_settings": {"sd_model_checkpoint": "evil.ckpt"}})
        assert r.status_code == 422 and "unsafe" in r.text
        assert not marker.exists()
        assert rt.manager.info.title == before  # the loaded model stays loaded
        ok = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "width": 64, "height": 64, "steps": 1})
        assert ok.status_code == 200
    finally:
        (folder / "evil.ckpt").unlink()
        client.post("/sdapi/v1/refresh-checkpoints")
