"""Seeded random weights shaped like a reference network's state dict, scaled so activations stay spread out
(BatchNorm statistics near identity, convolutions He-scaled by ``gain``)."""

from __future__ import annotations

from typing import Mapping

import torch


def random_like(layout: Mapping[str, torch.Tensor], seed: int, gain: float) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1)
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        elif key.endswith("running_mean") or key.endswith("bias"):
            state[key] = torch.randn(value.shape, generator=g) * 0.1
        elif value.ndim == 1:  # BatchNorm scales
            state[key] = 1.0 + torch.randn(value.shape, generator=g) * 0.1
        else:
            state[key] = torch.randn(value.shape, generator=g) * (gain / value[0].numel()) ** 0.5
    return state
