"""VAE choice: the VAE list, A1111's resolution order, and swapping a tiny model's VAE in place and back."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.hashing import HashCache
from modules.models import vae as V
from modules.models.loader import load_checkpoint
from modules.models.types import ModelFileError, UnknownModelError
from modules.models.vae import VaeChoice, VaeRegistry, VaeSwitcher, resolve_vae
from modules.paths import Paths
from tests.support import tiny_files as T
from tests.support.tiny_checkpoints import write_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint("sd1", tmp_path_factory.mktemp("ckpt"), "sd1")


@pytest.fixture
def model(checkpoint: Path):
    return load_checkpoint(checkpoint)  # fresh per test: the tests change its VAE


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _flat(sd: dict[str, torch.Tensor], keys: list[str], dtype: torch.dtype) -> torch.Tensor:
    return torch.cat([sd[k].detach().reshape(-1).to(dtype) for k in keys])


def _same(module: torch.nn.Module, expected: dict[str, torch.Tensor]) -> bool:
    """Bit-identical weights (one comparison of everything flattened: much faster than one per tensor)."""
    got = module.state_dict()
    keys = sorted(got)
    if keys != sorted(expected):
        return False
    dtype = next(iter(got.values())).dtype
    return torch.equal(_flat(got, keys, dtype), _flat(expected, keys, dtype))


def _decode(model) -> torch.Tensor:
    z = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model.vae.decode(z).sample


# --------------------------------------------------------------------------------------------------------------------
# Registry


def test_registry_lists_vae_folders_and_checkpoint_vaes(tmp_path: Path) -> None:
    vae_dir, ck_dir, extra = tmp_path / "models" / "VAE", tmp_path / "models" / "Stable-diffusion", tmp_path / "extra"
    for p in [vae_dir / "vae-ft-mse-840000-ema-pruned.safetensors", vae_dir / "sub" / "kl-f8.pt", vae_dir / "old.ckpt",
              vae_dir / "Dup.safetensors", ck_dir / "m.vae.safetensors", ck_dir / "sub" / "n.vae.ckpt",
              ck_dir / "m.safetensors", extra / "vae10.safetensors", extra / "vae2.safetensors",
              extra / "Dup.safetensors"]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * 16)
    (vae_dir / "readme.txt").write_text("no")
    (vae_dir / "empty.pt").write_bytes(b"")
    if hasattr(os, "mkfifo"):
        os.mkfifo(vae_dir / "fifo.safetensors")

    paths = Paths(data_dir=tmp_path, models_dir=tmp_path / "models", extra_dirs={"vae": (extra,)})
    reg = VaeRegistry.from_paths(paths)
    assert reg.names() == ["Dup.safetensors", "kl-f8.pt", "m.vae.safetensors", "n.vae.ckpt", "old.ckpt",
                           "vae2.safetensors", "vae10.safetensors", "vae-ft-mse-840000-ema-pruned.safetensors"]
    assert reg.get("Dup.safetensors").path == extra / "Dup.safetensors"  # A1111: --vae-dir's file wins
    assert {p.name for p, _ in reg.skipped} >= {"empty.pt"}
    assert reg.choices()[:3] == ["Automatic", "None", "Dup.safetensors"]
    api = reg.api_list()
    assert all(set(item) == {"model_name", "filename"} for item in api)
    assert {"model_name": "kl-f8.pt", "filename": str(vae_dir / "sub" / "kl-f8.pt")} in api
    json.dumps(api)

    (vae_dir / "old.ckpt").unlink()
    (vae_dir / "new.pt").write_bytes(b"x")
    assert reg.get("old.ckpt") is not None  # until refreshed
    reg.refresh()
    assert reg.get("old.ckpt") is None and reg.get("new.pt").path == vae_dir / "new.pt"


# --------------------------------------------------------------------------------------------------------------------
# Resolution order (contract 13.4)


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    ck_dir, vae_dir = tmp_path / "Stable-diffusion", tmp_path / "VAE"
    files = {
        "ckpt": ck_dir / "m.safetensors",
        "a": vae_dir / "a.safetensors",
        "b": vae_dir / "b.pt",
        "folder_same_name": vae_dir / "m.safetensors",
        "prefix_only": vae_dir / "m-v2.safetensors",
        "forced": tmp_path / "elsewhere" / "forced.safetensors",
    }
    for p in files.values():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    files["beside"] = ck_dir / "m.vae.pt"
    files["vae_dir"], files["ck_dir"] = vae_dir, ck_dir
    return files


def _registry(layout: dict[str, Path]) -> VaeRegistry:
    return VaeRegistry([layout["vae_dir"]], [layout["ck_dir"]])


def _meta(layout: dict[str, Path], vae: str) -> None:
    (layout["ck_dir"] / "m.json").write_text(json.dumps({"description": "x", "vae": vae}))


def test_resolution_order(layout: dict[str, Path]) -> None:
    ck = layout["ckpt"]
    layout["beside"].write_bytes(b"x")
    _meta(layout, "b.pt")
    reg = _registry(layout)

    def r(setting: str = "Automatic", forced: Path | None = None, overrides: bool = True) -> VaeChoice:
        return resolve_vae(ck, setting, forced, overrides, reg)

    # 1. --vae-path beats everything, even outside the VAE folders
    assert tuple(r("a.safetensors", layout["forced"])) == (layout["forced"], V.SOURCE_COMMANDLINE)
    # 2. a named setting with "overrides per-model preferences" on beats metadata and the file beside the checkpoint
    assert tuple(r("a.safetensors")) == (layout["a"], V.SOURCE_SETTINGS)
    assert tuple(r("None")) == (None, V.SOURCE_CHECKPOINT)
    missing = r("gone.safetensors")
    assert missing.path is None and "gone.safetensors" in missing.warning
    # 3. user metadata, with the setting on Automatic (or overrides off)
    assert tuple(r()) == (layout["b"], V.SOURCE_USER_METADATA)
    assert tuple(r("a.safetensors", overrides=False)) == (layout["b"], V.SOURCE_USER_METADATA)
    _meta(layout, "None")
    assert tuple(r()) == (None, V.SOURCE_USER_METADATA)
    # 4. "Automatic" or an unknown name in the metadata: on to the VAE named like the checkpoint, beside it first
    for value in ("Automatic", "unknown.pt"):
        _meta(layout, value)
        assert tuple(r()) == (layout["beside"], V.SOURCE_NEAR_CHECKPOINT)
    assert tuple(r("a.safetensors", overrides=False)) == (layout["beside"], V.SOURCE_NEAR_CHECKPOINT)
    layout["beside"].unlink()
    reg.refresh()
    assert tuple(r()) == (layout["folder_same_name"], V.SOURCE_NEAR_CHECKPOINT)  # models/VAE/<stem>.<ext>
    # 5. the setting
    layout["folder_same_name"].unlink()
    reg.refresh()
    assert tuple(r("a.safetensors", overrides=False)) == (layout["a"], V.SOURCE_SETTINGS)
    assert tuple(r()) == (None, V.SOURCE_CHECKPOINT)  # Automatic; m-v2.safetensors is not "named like" m
    assert tuple(r("None", overrides=False)) == (None, V.SOURCE_CHECKPOINT)
    assert r().warning is None
    path, source = r()  # unpacks as A1111's (vae, source)
    assert (path, source) == (None, V.SOURCE_CHECKPOINT)


def test_damaged_user_metadata_is_ignored(layout: dict[str, Path]) -> None:
    (layout["ck_dir"] / "m.json").write_text("{not json")
    assert V.read_user_metadata_vae(layout["ckpt"]) is None
    (layout["ck_dir"] / "m.json").write_text(json.dumps(["a list"]))
    assert V.read_user_metadata_vae(layout["ckpt"]) is None
    assert resolve_vae(layout["ckpt"], "Automatic", None, True, _registry(layout)).path == layout["folder_same_name"]


# --------------------------------------------------------------------------------------------------------------------
# Switching


def test_switch_and_restore_bit_identical(model, tmp_path: Path) -> None:
    original = _snapshot(model.vae)
    image = _decode(model)
    a_weights, b_weights = T.perturbed(original, 1), T.perturbed(original, 2)
    a = T.save_vae_file(tmp_path / "a.safetensors", a_weights)  # original (LDM) layout
    b = T.save_vae_file(tmp_path / "b.ckpt", b_weights, layout="diffusers", fmt="ckpt")
    sw = VaeSwitcher.for_model(model)
    assert sw.path is None and sw.infotext() == {} and sw.restore() is False

    assert sw.apply(a) is True
    assert _same(model.vae, a_weights) and sw.path == a
    with_a = _decode(model)
    assert (with_a - image).abs().max() > 1e-3  # a different VAE decodes differently
    assert sw.apply(a) is False  # already in use: nothing read
    assert sw.apply(b) is True and _same(model.vae, b_weights)

    assert sw.restore() is True
    assert _same(model.vae, original)
    assert torch.equal(_decode(model), image)
    assert sw.path is None and sw.infotext() == {} and sw._base is None  # the CPU copy is freed

    assert sw.apply(a) is True and torch.equal(_decode(model), with_a)  # and back again
    assert VaeSwitcher.for_model(model) is sw


def test_restore_keeps_the_vae_dtype(model, tmp_path: Path) -> None:
    torch.nn.Module.to(model.vae, torch.float16)
    original = _snapshot(model.vae)
    a = T.save_vae_file(tmp_path / "a.safetensors", T.perturbed(original, 1))
    sw = VaeSwitcher(model)
    sw.apply(a)
    assert all(v.dtype == torch.float16 for v in model.vae.state_dict().values())
    sw.restore()
    assert _same(model.vae, original)


def test_infotext_values(model, tmp_path: Path) -> None:
    a = T.save_vae_file(tmp_path / "vae-ft-mse-840000-ema-pruned.safetensors", T.perturbed(_snapshot(model.vae), 1))
    digest = hashlib.sha256(a.read_bytes()).hexdigest()
    cache = HashCache(None)
    sw = VaeSwitcher(model, hash_cache=cache)
    sw.apply(a)
    assert sw.infotext() == {"VAE hash": digest[:10], "VAE": "vae-ft-mse-840000-ema-pruned.safetensors"}
    assert list(sw.infotext()) == ["VAE hash", "VAE"]  # A1111's key order
    assert sw.info() == {"sd_vae_name": a.name, "sd_vae_hash": digest[:10]}
    assert cache.entries()["vae/vae-ft-mse-840000-ema-pruned.safetensors"]["sha256"] == digest

    other = load_checkpoint(model.path)
    quiet = VaeSwitcher(other, hashing=False)  # --no-hashing, nothing cached: the name only
    quiet.apply(a)
    assert quiet.infotext() == {"VAE": a.name}
    assert VaeSwitcher(other, hash_cache=cache, hashing=False).short_hash() is None  # nothing applied there
    cached = VaeSwitcher(load_checkpoint(model.path), hash_cache=cache, hashing=False)
    cached.apply(a)
    assert cached.infotext()["VAE hash"] == digest[:10]


def test_bad_vae_file_keeps_the_current_vae(model, tmp_path: Path) -> None:
    original = _snapshot(model.vae)
    marker = tmp_path / "PWNED"
    good_weights = T.perturbed(original, 1)
    good = T.save_vae_file(tmp_path / "good.safetensors", good_weights)
    cut = T.save_vae_file(tmp_path / "cut.safetensors", T.perturbed(original, 2))
    cut.write_bytes(cut.read_bytes()[:-100])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"definitely not a VAE")
    wrong = tmp_path / "wrong.safetensors"
    save_file({k: torch.zeros(2, 2) for k in original}, str(wrong))
    lora = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.weight": torch.zeros(4, 4)}, str(lora))
    evil = T.save_malicious_pickle(tmp_path / "evil.ckpt", marker)
    bad = {"missing": tmp_path / "missing.safetensors", "cut": cut, "garbage": garbage, "wrong": wrong, "lora": lora,
           "evil": evil}
    expected_kind = {"missing": "invalid", "cut": "incomplete", "garbage": "corrupt", "wrong": "unknown-family",
                     "lora": "unknown-family", "evil": "unsafe"}

    sw = VaeSwitcher(model)
    for label, path in bad.items():  # from the checkpoint's own VAE
        with pytest.raises(ModelFileError) as err:
            sw.apply(path)
        assert err.value.kind == expected_kind[label], label
        assert path.name in str(err.value)
        assert _same(model.vae, original) and sw.path is None and sw._base is None
    sw.apply(good)
    for label, path in bad.items():  # from another VAE
        with pytest.raises(ModelFileError):
            sw.apply(path)
        assert _same(model.vae, good_weights) and sw.path == good, label
        assert sw.infotext()["VAE"] == "good.safetensors"
    with pytest.raises(UnknownModelError, match="does not fit"):
        sw.apply(wrong)
    assert not marker.exists()
    sw.restore()
    assert _same(model.vae, original)


def test_select_resolves_and_applies(model, tmp_path: Path) -> None:
    ck_dir, vae_dir = model.path.parent, tmp_path / "VAE"
    original = _snapshot(model.vae)
    near_weights, named_weights = T.perturbed(original, 3), T.perturbed(original, 4)
    near = T.save_vae_file(ck_dir / f"{model.path.stem}.vae.safetensors", near_weights)
    try:
        T.save_vae_file(vae_dir / "named.safetensors", named_weights)
        reg = VaeRegistry([vae_dir], [ck_dir])
        sw = VaeSwitcher.for_model(model)
        choice = sw.select(reg)  # Automatic: the VAE beside the checkpoint
        assert choice.path == near and _same(model.vae, near_weights)
        assert sw.select(reg, "named.safetensors").source == V.SOURCE_SETTINGS
        assert _same(model.vae, named_weights)
        assert sw.select(reg, "None").path is None and _same(model.vae, original)
        assert sw.select(reg, "None", forced_path=near).source == V.SOURCE_COMMANDLINE
        assert _same(model.vae, near_weights)
    finally:
        near.unlink()
