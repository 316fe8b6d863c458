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
