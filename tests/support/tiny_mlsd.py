"""A seeded random-weight ``mlsd_large_512_fp32.pth`` in the real key layout (M-LSD large: MobileNetV2 trunk
``backbone.features.0-13`` and decoder ``block15``-``block23``), saved with torch.save as a plain state dict like
the original. The keys and shapes come from controlnet_aux's class (the test-only reference), not from ours."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.support.aux_reference import reference
from tests.support.random_weights import random_like

FILE = "mlsd_large_512_fp32.pth"


def mlsd_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    layout = reference("mlsd.models.mbv2_mlsd_large").MobileV2_MLSD_Large().state_dict()
    return random_like(layout, seed, gain=2.0)


def write_mlsd(folder: Path, seed: int = 0, name: str = FILE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    torch.save(mlsd_state_dict(seed), path)
    return path
