"""A tiny DeepDanbooru ``model-resnet_custom_v3.pt``: the released file's tensor names (``n_Conv_0`` ...
``n_Conv_178``, the last without a bias) and its ``tags`` list, every width divided by ``divisor``."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from modules.interrogate.deepbooru import plan

# (bottleneck width, output width) of the released model's blocks, stage by stage; the stem is 64 wide.
_WIDTHS = ((64, 256), (128, 512), (256, 1024), (512, 2048), (1024, 4096))
_STAGE_OF_BLOCK = [0] * 3 + [1] * 8 + [2] * 40 + [3] * 3 + [4] * 3


def shapes(tags: int, divisor: int = 32) -> dict[int, tuple[int, int, int]]:
    """conv index -> (out, in, kernel)."""
    out: dict[int, tuple[int, int, int]] = {0: (64 // divisor, 3, 7)}
    width = 64 // divisor
    for block, stage in zip(plan(), _STAGE_OF_BLOCK):
        mid, wide = (w // divisor for w in _WIDTHS[stage])
        first, middle, last = block.convs
        out[first] = (mid, width, 1)
        out[middle] = (mid, mid, 3)
        out[last] = (wide, mid, 1)
        if block.shortcut is not None:
            out[block.shortcut] = (wide, width, 1)
        width = wide
    out[178] = (tags, width, 1)
    return out


def write(path: Path, tags: Sequence[str], divisor: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, object] = {}
    for i, (o, n, k) in sorted(shapes(len(tags), divisor).items()):
        state[f"n_Conv_{i}.weight"] = torch.randn(o, n, k, k, generator=gen) * (1.6 / (n * k * k)) ** 0.5
        if i != 178:
            state[f"n_Conv_{i}.bias"] = torch.randn(o, generator=gen) * 0.05
    state["tags"] = list(tags)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, str(path))
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
