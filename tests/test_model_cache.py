"""A1111's "checkpoints to keep loaded" (``sd_checkpoints_limit``): switching back to a kept checkpoint makes it
current without reading it again; beyond the limit the least recently used is released; a file changed on disk
is read again."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from modules.hashing import HashCache
from modules.models import loader
from modules.models.devices import DevicePolicy
from modules.models.manager import ModelManager
from modules.models.registry import CheckpointRegistry
from modules.models.types import IncompleteFileError
from tests.support.tiny_checkpoints import write_tiny_checkpoint


def _manager(tmp_path, limit):
    root = tmp_path / "models"
    for seed, name in enumerate(("alpha", "beta", "gamma"), start=1):
        write_tiny_checkpoint("sd1", root, name, seed=seed)
    registry = CheckpointRegistry([root], HashCache(None))
    registry.refresh()
    loads = []

    def counting(path, policy):
        loads.append(path.stem)
        return loader.load_checkpoint(path, policy)

    keep = {"limit": limit}
    manager = ModelManager(registry, DevicePolicy.cpu(), hashing=False, load_fn=counting,
                           keep_loaded=lambda: keep["limit"])
    return manager, loads, keep, root


def test_switching_back_to_a_kept_checkpoint_does_not_read_it_again(tmp_path):
    manager, loads, _, _ = _manager(tmp_path, 2)
    alpha, _ = manager.ensure("alpha")
    beta, _ = manager.ensure("beta")
    again, info = manager.ensure("alpha")
    assert again is alpha and info.name.startswith("alpha") and loads == ["alpha", "beta"]
    assert manager.kept_titles()[0].startswith("beta")
    assert manager.ensure("beta")[0] is beta and loads == ["alpha", "beta"]
    # a third one pushes out the least recently used (alpha), which is really released
    alpha_ref = weakref.ref(alpha)
    del alpha, again
    manager.ensure("gamma")
    gc.collect()
    assert loads == ["alpha", "beta", "gamma"] and alpha_ref() is None
    assert [t.split(".")[0] for t in manager.kept_titles()] == ["beta"]


def test_with_the_default_limit_nothing_extra_stays_loaded(tmp_path):
    manager, loads, _, _ = _manager(tmp_path, 1)
    alpha_ref = weakref.ref(manager.ensure("alpha")[0])
    manager.ensure("beta")
    gc.collect()
    assert alpha_ref() is None and manager.kept_titles() == []
    manager.ensure("alpha")
    assert loads == ["alpha", "beta", "alpha"]


def test_a_kept_checkpoint_changed_on_disk_is_read_again(tmp_path):
    import os

    manager, loads, _, root = _manager(tmp_path, 3)
    manager.ensure("alpha")
    manager.ensure("beta")
    path = root / "alpha.safetensors"
    write_tiny_checkpoint("sd1", root, "alpha", seed=9)  # replaced by another file of the same name
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))
    manager.registry.refresh()
    manager.ensure("alpha")
    assert loads == ["alpha", "beta", "alpha"]


# --- Switching with one checkpoint kept: the new weights go into the old modules -----------------------------------


def _real_manager(tmp_path, families=("sd1", "sd1")):
    root = tmp_path / "models"
    for seed, (name, family) in enumerate(zip(("alpha", "beta"), families), start=1):
        write_tiny_checkpoint(family, root, name, seed=seed)
    registry = CheckpointRegistry([root], HashCache(None))
    registry.refresh()
    return ModelManager(registry, DevicePolicy.cpu(), hashing=False), root


def _image(model, tmp_path, seed=3):
    import numpy as np

    from tests.support.engine import run_txt2img

    return np.asarray(run_txt2img(model, tmp_path, seed=seed, steps=2).images[0], dtype=np.int16)


def test_a_switch_copies_into_the_previous_modules_and_generates_like_a_fresh_load(tmp_path):
    import numpy as np

    manager, root = _real_manager(tmp_path)
    alpha, _ = manager.ensure("alpha", reuse_previous=True)
    unet, params = alpha.unet, [p for p in alpha.unet.parameters()]
    beta, _ = manager.ensure("beta", reuse_previous=True)
    assert beta.unet is unet and beta.extra.get("reused_modules") is True
    assert all(a is b for a, b in zip(params, beta.unet.parameters()))  # the same tensors, now beta's weights
    fresh_beta = loader.load_checkpoint(root / "beta.safetensors", DevicePolicy.cpu())
    assert np.array_equal(_image(beta, tmp_path), _image(fresh_beta, tmp_path))
    for ours, theirs in zip(beta.text_encoder.state_dict().values(), fresh_beta.text_encoder.state_dict().values()):
        assert ours.equal(theirs)
    back, _ = manager.ensure("alpha", reuse_previous=True)
    fresh_alpha = loader.load_checkpoint(root / "alpha.safetensors", DevicePolicy.cpu())
    assert back.unet is unet and np.array_equal(_image(back, tmp_path), _image(fresh_alpha, tmp_path))


def test_no_reuse_across_layouts_with_a_lora_merged_or_inside_a_job(tmp_path):
    from modules.models import lora
    from tests.support.tiny_lora import kohya_lora, write_lora

    manager, root = _real_manager(tmp_path, families=("sd1", "sd1-inpainting"))
    alpha, _ = manager.ensure("alpha", reuse_previous=True)
    beta, _ = manager.ensure("beta", reuse_previous=True)  # a 9-channel UNet: built new
    assert beta.unet is not alpha.unet and "reused_modules" not in beta.extra
    assert beta.kind.inpainting and beta.unet.config.in_channels == 9
    again, _ = manager.ensure("alpha")  # reuse_previous defaults to off (a job that switches while it runs)
    assert again.unet is not beta.unet
    layer = "lora_unet_down_blocks_0_resnets_0_conv1"
    shape = tuple(again.unet.down_blocks[0].resnets[0].conv1.weight.shape)
    write_lora(tmp_path / "Lora", "one", kohya_lora({layer: shape}))
    write_tiny_checkpoint("sd1", root, "gamma", seed=5)
    manager.registry.refresh()
    with lora.applied_loras(again, ["one"], registry=lora.LoraRegistry([tmp_path / "Lora"])):
        gamma, _ = manager.ensure("gamma", reuse_previous=True)
    assert gamma.unet is not again.unet  # the patched modules were not handed over


def test_a_failed_switch_leaves_the_previous_model_untouched(tmp_path):
    import numpy as np

    manager, root = _real_manager(tmp_path)
    alpha, _ = manager.ensure("alpha", reuse_previous=True)
    before = _image(alpha, tmp_path)
    beta = root / "beta.safetensors"
    beta.write_bytes(beta.read_bytes()[: beta.stat().st_size // 2])  # a truncated download
    manager.registry.refresh()
    with pytest.raises(IncompleteFileError):
        manager.ensure("beta", reuse_previous=True)
    assert manager.model is alpha and np.array_equal(_image(alpha, tmp_path), before)


def test_a_layout_difference_found_late_converts_what_waited_for_the_donor(tmp_path):
    import numpy as np

    root = tmp_path / "models"
    alpha_path = write_tiny_checkpoint("sd1", root, "alpha", seed=1)
    # fp16 in the file: a component left unconverted would show as fp16 next to the fp32 run dtype
    beta_path = write_tiny_checkpoint("sd1", root, "beta", seed=2, dtype=torch.float16)
    sdxl_vae = loader.load_checkpoint(write_tiny_checkpoint("sdxl", root, "xl"), DevicePolicy.cpu()).vae
    fresh_beta = _image(loader.load_checkpoint(beta_path, DevicePolicy.cpu()), tmp_path)
    # The UNet matches and waits for the donor; the VAE does not (another scaling factor): both are built new.
    donor = loader.load_checkpoint(alpha_path, DevicePolicy.cpu())
    donor.vae = sdxl_vae
    donor_unet = [t.clone() for t in donor.unet.state_dict().values()]
    beta = loader.load_checkpoint(beta_path, DevicePolicy.cpu(), reuse=donor)
    assert beta.unet is not donor.unet and "reused_modules" not in beta.extra
    assert {p.dtype for m in (beta.unet, beta.vae, beta.text_encoder) for p in m.parameters()} == {torch.float32}
    assert all(a.equal(b) for a, b in zip(donor_unet, donor.unet.state_dict().values()))  # donor untouched
    assert np.array_equal(_image(beta, tmp_path), fresh_beta)
    # Everything matches but the donor has a second text encoder this checkpoint lacks.
    donor = loader.load_checkpoint(alpha_path, DevicePolicy.cpu())
    donor.text_encoder_2 = donor.text_encoder
    beta = loader.load_checkpoint(beta_path, DevicePolicy.cpu(), reuse=donor)
    assert beta.unet is not donor.unet and beta.text_encoder_2 is None
    assert next(beta.unet.parameters()).dtype == next(donor.unet.parameters()).dtype
    assert np.array_equal(_image(beta, tmp_path), fresh_beta)


def test_out_of_memory_next_to_the_previous_checkpoint_releases_it_and_loads_again(tmp_path, monkeypatch, caplog):
    manager, _root = _real_manager(tmp_path, families=("sd1", "sd1-inpainting"))
    alpha, _ = manager.ensure("alpha", reuse_previous=True)
    alpha_ref = weakref.ref(alpha)
    del alpha
    real = loader.load_checkpoint
    calls = []

    def no_room_for_two(path, policy, config_path=None, reuse=None, parts=(), storage="Automatic"):
        calls.append(reuse is not None)
        if reuse is not None:  # the previous model is still there: a GPU without room for both
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return real(path, policy, config_path)

    monkeypatch.setattr(loader, "load_checkpoint", no_room_for_two)
    with caplog.at_level("WARNING", logger="modules.models.manager"):
        beta, info = manager.ensure("beta", reuse_previous=True)
    gc.collect()
    assert calls == [True, False] and info.name.startswith("beta") and manager.model is beta
    assert alpha_ref() is None and manager.last_error is None
    assert any("releasing that one first" in r.getMessage() for r in caplog.records)
    # Any other error keeps the previous model, as before.
    monkeypatch.setattr(loader, "load_checkpoint", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk")))
    with pytest.raises(RuntimeError, match="disk"):
        manager.ensure("alpha", reuse_previous=True)
    assert manager.model is beta
