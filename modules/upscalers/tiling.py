"""Tiled inference for image-to-image networks: memory bounded by the tile, not the image.

The image is cut into tiles of ``tile`` pixels that overlap by ``overlap``; each tile's output is weighted by a
window that ramps linearly across the overlap, so seams blend and, away from them, the result equals an untiled run.
The output is accumulated in float32 on the CPU (about 16 bytes per output pixel).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image

Network = Callable[[torch.Tensor], torch.Tensor]  # (1, 3, h, w) in [0, 1] -> (1, 3, h*s, w*s)


def _starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    """1 inside, rising over ``overlap`` at an inner edge (image borders stay 1)."""
    window = np.ones(length, dtype=np.float32)
    ramp = np.linspace(0.0, 1.0, overlap + 2, dtype=np.float32)[1:-1] if overlap > 0 else np.empty(0, np.float32)
    n = min(len(ramp), length)
    if not at_start and n:
        window[:n] = ramp[:n]
    if not at_end and n:
        window[length - n:] = np.minimum(window[length - n:], ramp[:n][::-1])
    return window


@torch.inference_mode()
def upscale_tiled(network: Network, image: Image.Image, scale: int, tile: int, overlap: int,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Image.Image:
    """Run ``network`` over ``image`` (RGB) tile by tile; ``tile <= 0`` runs it on the whole image at once."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    height, width = array.shape[:2]
    if tile <= 0 or (height <= tile and width <= tile):
        x = torch.from_numpy(array).permute(2, 0, 1)[None].to(device, dtype)
        out = network(x).float().clamp_(0, 1)[0].permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(np.round(out * 255.0).astype(np.uint8))
    overlap = max(0, min(overlap, tile // 2))
    stride = tile - overlap
    result = np.zeros((height * scale, width * scale, 3), dtype=np.float32)
    weight = np.zeros((height * scale, width * scale, 1), dtype=np.float32)
    ys, xs = _starts(height, tile, stride), _starts(width, tile, stride)
    for y in ys:
        for x in xs:
            h, w = min(tile, height - y), min(tile, width - x)
            patch = torch.from_numpy(np.ascontiguousarray(array[y:y + h, x:x + w])).permute(2, 0, 1)[None]
            out = network(patch.to(device, dtype)).float().clamp_(0, 1)[0].permute(1, 2, 0).cpu().numpy()
            wy = _ramp(h * scale, overlap * scale, y == 0, y + h >= height)
            wx = _ramp(w * scale, overlap * scale, x == 0, x + w >= width)
            window = (wy[:, None] * wx[None, :])[..., None]
            result[y * scale:(y + h) * scale, x * scale:(x + w) * scale] += out * window
            weight[y * scale:(y + h) * scale, x * scale:(x + w) * scale] += window
    np.maximum(weight, 1e-8, out=weight)
    result /= weight
    del weight
    result *= 255.0  # in place: the output is the largest thing in memory, never copy it as floats
    np.round(result, out=result)
    return Image.fromarray(result.astype(np.uint8))
