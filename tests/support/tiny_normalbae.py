"""A seeded random-weight ``scannet.pt`` in the real layout: ``{"model": state_dict}`` of NormalBae (EfficientNet-B5
encoder ``encoder.original_model.*`` and decoder ``decoder.*``, full size: 72.6M parameters), keys and shapes taken
from controlnet_aux's NNET (the test-only reference), not from ours."""

from __future__ import annotations

import types
from pathlib import Path

import torch

from tests.support.aux_reference import reference
from tests.support.random_weights import random_like

FILE = "scannet.pt"


def reference_net() -> torch.nn.Module:
    args = types.SimpleNamespace(mode="client", architecture="BN", pretrained="scannet", sampling_ratio=0.4,
                                 importance_ratio=0.7)
    return reference("normalbae.nets.NNET").NNET(args).eval()


def normalbae_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    return random_like(reference_net().state_dict(), seed, gain=1.0)


def write_normalbae(folder: Path, seed: int = 0, name: str = FILE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    torch.save({"model": normalbae_state_dict(seed)}, path)
    return path
