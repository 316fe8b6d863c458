"""A seeded random-weight ``mlsd_large_512_fp32.pth`` in the real key layout (M-LSD large: MobileNetV2 trunk
``backbone.features.0-13`` and decoder ``block15``-``block23``), saved with torch.save as a plain state dict like
the original. The keys and shapes come from controlnet_aux's class (the test-only reference), not from ours."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.support.aux_reference import reference

FILE = "mlsd_large_512_fp32.pth"


def mlsd_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    layout = reference("mlsd.models.mbv2_mlsd_large").MobileV2_MLSD_Large().state_dict()
    state = {}
    for key, value in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        elif key.endswith("running_mean") or key.endswith("bias"):
            state[key] = torch.randn(value.shape, generator=g) * 0.1
        elif value.ndim == 1:  # BN scales
            state[key] = 1.0 + torch.randn(value.shape, generator=g) * 0.1
        else:
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=g) * (2.0 / fan_in) ** 0.5
    return state


def write_mlsd(folder: Path, seed: int = 0, name: str = FILE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    torch.save(mlsd_state_dict(seed), path)
    return path
