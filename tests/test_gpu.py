"""CUDA fp16 path on tiny checkpoints. Opt-in (``pytest -m gpu``) on a machine with a CUDA GPU; never in CI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.models.devices import DevicePolicy
from modules.models.loader import load_checkpoint
from tests.support.engine import run_txt2img
from tests.support.tiny_checkpoints import write_tiny_checkpoint

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_policy() -> DevicePolicy:
    if not torch.cuda.is_available():
        pytest.fail("-m gpu was selected but torch sees no CUDA device")
    return DevicePolicy.from_flags()


@pytest.mark.parametrize("family", ["sd1", "sd2-v", "sdxl", "sd1-inpainting"])
def test_fp16_on_cuda_generates(tmp_path, cuda_policy, family):
    assert cuda_policy.device.type == "cuda" and cuda_policy.dtype == torch.float16
    model = load_checkpoint(write_tiny_checkpoint(family, tmp_path, f"gpu-{family}"), cuda_policy)
    assert next(model.unet.parameters()).dtype == torch.float16 and next(model.unet.parameters()).is_cuda
    a = run_txt2img(model, tmp_path, seed=5, steps=3)
    b = run_txt2img(model, tmp_path, seed=5, steps=3)
    pixels = np.asarray(a.images[0], dtype=np.int16)
    assert pixels.std() > 0
    assert np.array_equal(pixels, np.asarray(b.images[0], dtype=np.int16))


def test_no_half_flags(cuda_policy):
    assert DevicePolicy.from_flags(no_half=True).dtype == torch.float32
    policy = DevicePolicy.from_flags(no_half_vae=True)
    assert policy.dtype == torch.float16 and policy.vae_dtype == torch.float32
    assert DevicePolicy.from_flags(use_cpu=["all"]).device.type == "cpu"


@pytest.mark.parametrize("mode", ["medvram", "lowvram"])
def test_memory_modes_keep_weights_off_the_gpu(tmp_path, cuda_policy, mode):
    import dataclasses

    path = write_tiny_checkpoint("sd1", tmp_path, f"gpu-{mode}")
    resident = load_checkpoint(path, cuda_policy)
    expected = np.asarray(run_txt2img(resident, tmp_path, seed=7, steps=3).images[0], dtype=np.int16)
    del resident
    torch.cuda.empty_cache()
    model = load_checkpoint(path, dataclasses.replace(cuda_policy, memory_mode=mode))
    assert model.extra["memory"].mode == mode
    assert not next(model.unet.parameters()).is_cuda and not next(model.text_encoder.parameters()).is_cuda
    seen = []
    hook = model.unet.register_forward_hook(
        lambda *_: seen.append(next(model.text_encoder.parameters()).is_cuda))
    image = np.asarray(run_txt2img(model, tmp_path, seed=7, steps=3).images[0], dtype=np.int16)
    hook.remove()
    assert seen and not any(seen)  # the text encoder was off the GPU while the UNet ran
    assert np.abs(image - expected).max() <= 2


def test_compile_blocks_on_cuda(tmp_path, cuda_policy):
    import dataclasses

    path = write_tiny_checkpoint("sd1", tmp_path, "gpu-compile")
    eager = np.asarray(run_txt2img(load_checkpoint(path, cuda_policy), tmp_path, seed=8, steps=3).images[0],
                       dtype=np.int16)
    model = load_checkpoint(path, dataclasses.replace(cuda_policy, compile_mode="blocks", channels_last=True))
    compiled = np.asarray(run_txt2img(model, tmp_path, seed=8, steps=3).images[0], dtype=np.int16)
    assert model.extra["compiled_modules"] > 0
    assert np.abs(compiled - eager).max() <= 4


def test_lora_merges_on_the_gpu_under_medvram(tmp_path, cuda_policy):
    import dataclasses

    from modules.models import lora
    from tests.support.tiny_lora import kohya_lora, write_lora

    path = write_tiny_checkpoint("sd1", tmp_path, "gpu-lora")
    resident = load_checkpoint(path, cuda_policy)
    layer = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    weight = resident.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight
    write_lora(tmp_path / "Lora", "one", kohya_lora({layer: tuple(weight.shape)}))
    registry = lora.LoraRegistry([tmp_path / "Lora"])
    with lora.applied_loras(resident, ["one"], registry=registry):
        expected = np.asarray(run_txt2img(resident, tmp_path, seed=2, steps=3).images[0], dtype=np.int16)
    model = load_checkpoint(path, dataclasses.replace(cuda_policy, memory_mode="medvram"))
    offloaded = model.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight
    model.extra["memory"].park()
    before = offloaded.detach().clone()
    with lora.applied_loras(model, ["one"], registry=registry):
        assert not offloaded.is_cuda and not torch.equal(offloaded.cpu(), before.cpu())
        image = np.asarray(run_txt2img(model, tmp_path, seed=2, steps=3).images[0], dtype=np.int16)
    assert torch.equal(offloaded.cpu(), before.cpu())
    assert np.abs(image - expected).max() <= 2
