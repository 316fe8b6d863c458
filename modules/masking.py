"""A1111's ``modules.masking`` for extensions: the crop region of an inpainting mask, grown to the processing size's
aspect ratio, and the "fill" masked content, over ``processing.masking`` (the code our inpainting runs)."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from modules.processing import masking

Box = tuple[int, int, int, int]


def _as_image(mask: Any) -> Image.Image:
    return mask if isinstance(mask, Image.Image) else Image.fromarray(np.asarray(mask).astype(np.uint8))


def get_crop_region_v2(mask: Any, pad: int = 0) -> Box | None:
    """The box around the mask's non-zero pixels grown by ``pad``, within the image; None for an empty mask."""
    return masking.crop_region(_as_image(mask), pad)


def get_crop_region(mask: Any, pad: int = 0) -> Box:
    """``get_crop_region_v2``, except that an empty mask gives A1111's inverted box (x1 > x2) instead of None."""
    image = _as_image(mask)
    box = masking.crop_region(image, pad)
    if box is not None:
        return box
    w, h = image.size
    return max(w - pad, 0), max(h - pad, 0), min(pad, w), min(pad, h)


def expand_crop_region(crop_region: Box, processing_width: int, processing_height: int, image_width: int,
                       image_height: int) -> Box:
    """The box grown to ``processing_width:processing_height`` and kept inside the image (A1111's rule)."""
    return masking.expand_to_ratio(tuple(crop_region), processing_width, processing_height,  # type: ignore[arg-type]
                                   image_width, image_height)


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The masked area painted with the colours around it ("Masked content: fill"); RGBA as A1111 returns it."""
    return masking.fill_masked(image, mask).convert("RGBA")
