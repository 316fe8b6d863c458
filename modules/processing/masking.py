"""Inpainting masks in pixel space: binarise, blur, find the region to work on, pre-fill it, composite the result.

The compositing rule is the one users rely on: where the (blurred) mask is 0, the output pixel *is* the input pixel.
White (255) means "repaint". Pure PIL/numpy/scipy: no model, no torch.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from modules.processing import imageops

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 (x2/y2 exclusive)

# A1111's choices, in its order (the UI's radios; the parameters take their indices)
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")
MASK_MODES = ("Inpaint masked", "Inpaint not masked")
INPAINT_AREAS = ("Whole picture", "Only masked")


def binary_mask(mask: Image.Image, round_mask: bool = True) -> Image.Image:
    """An 8-bit mask from an upload or a brush layer: a transparent RGBA layer's alpha is the mask, otherwise its
    luminance. With ``round_mask`` values above 128 become 255 and the rest 0 (A1111 ``create_binary_mask``)."""
    if mask.mode == "RGBA" and mask.getextrema()[-1] != (255, 255):
        grey = mask.split()[-1]
    else:
        grey = imageops.normalize_input(mask).convert("L")
    return grey.point(lambda v: 255 if v > 128 else 0) if round_mask else grey


def sketch_mask(original: Image.Image, sketched: Image.Image, threshold: int = 0) -> Image.Image:
    """Inpaint sketch: the pixels the user painted over, i.e. where the sketch differs from the original."""
    a = np.asarray(imageops.flatten(original).resize(sketched.size), dtype=np.int16)
    b = np.asarray(imageops.flatten(sketched), dtype=np.int16)
    changed = np.abs(a - b).max(axis=2) > threshold
    return Image.fromarray(np.where(changed, 255, 0).astype(np.uint8), "L")


def inpaint_sketch(original: Image.Image, sketched: Image.Image, mask_transparency: float, blur: float
                   ) -> tuple[Image.Image, Image.Image]:
    """Inpaint sketch (A1111): the mask is what the user painted; the init image is the sketch blended softly over
    the original, and "Mask transparency" (0-100) weakens the mask."""
    from PIL import ImageEnhance

    original = imageops.flatten(original).resize(sketched.size)
    sketched = imageops.flatten(sketched)
    mask = sketch_mask(original, sketched)
    mask = ImageEnhance.Brightness(mask).enhance(1 - mask_transparency / 100)
    soften = ImageFilter.GaussianBlur(blur)
    init = Image.composite(sketched.filter(soften), original, mask.filter(soften))
    return init, mask


def gaussian_kernel_size(sigma: float) -> int:
    """The kernel width A1111 hands to OpenCV for a blur radius: 2 * int(2.5 * sigma + 0.5) + 1."""
    return 2 * int(2.5 * sigma + 0.5) + 1


def _gaussian_weights(sigma: float) -> np.ndarray:
    size = gaussian_kernel_size(sigma)
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    weights = np.exp(-(x * x) / (2 * sigma * sigma))
    return weights / weights.sum()


def blur_mask(mask: Image.Image, blur_x: float, blur_y: float) -> Image.Image:
    """Separable Gaussian blur in X then Y with OpenCV's kernel size and border rule (reflect-101), as A1111's
    ``cv2.GaussianBlur`` calls do. 0 in a direction leaves it sharp."""
    from scipy import ndimage

    array = np.asarray(mask.convert("L"), dtype=np.float64)
    if blur_x > 0:
        array = ndimage.correlate1d(array, _gaussian_weights(blur_x), axis=1, mode="mirror")
    if blur_y > 0:
        array = ndimage.correlate1d(array, _gaussian_weights(blur_y), axis=0, mode="mirror")
    return Image.fromarray(np.clip(np.round(array), 0, 255).astype(np.uint8), "L")


def crop_region(mask: Image.Image, padding: int) -> Optional[Box]:
    """The bounding box of the mask's non-zero pixels grown by ``padding`` and clipped to the image; None for an
    empty mask."""
    box = mask.getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, mask.width), min(y2 + padding, mask.height)


def expand_to_ratio(box: Box, width: int, height: int, image_width: int, image_height: int) -> Box:
    """Grow ``box`` to the processing size's aspect ratio, shifted to stay inside the image where it fits
    (A1111 ``expand_crop_region``), so the crop is not distorted when scaled to ``width`` x ``height``."""
    x1, y1, x2, y2 = box
    if (x2 - x1) / (y2 - y1) > width / height:
        y1, y2 = _grow(y1, y2, int((x2 - x1) * height / width - (y2 - y1)), image_height)
    else:
        x1, x2 = _grow(x1, x2, int((y2 - y1) * width / height - (x2 - x1)), image_width)
    return x1, y1, x2, y2


def _grow(lo: int, hi: int, diff: int, limit: int) -> tuple[int, int]:
    lo -= diff // 2
    hi += diff - diff // 2
    if hi > limit:
        lo -= hi - limit
        hi = limit
    if lo < 0:
        hi -= lo
        lo = 0
    return lo, min(hi, limit)


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """"Masked content: fill": the masked area painted with the surrounding colours, blurred in from coarse to fine
    (A1111 ``masking.fill``), so the sampler starts from plausible colours instead of what was there."""
    keep = ImageOps.invert(mask.convert("L"))
    premultiplied = Image.new("RGBa", image.size)
    premultiplied.paste(image.convert("RGBA").convert("RGBa"), mask=keep)
    result = Image.new("RGBA", image.size)
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = premultiplied.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            result.alpha_composite(blurred)
    return result.convert("RGB")


def overlay_of(original: Image.Image, mask_for_overlay: Image.Image) -> Image.Image:
    """The original as an RGBA layer that is opaque where the mask is 0: composited over a result it restores every
    pixel outside the mask exactly, and blends across the blurred edge."""
    layer = original.convert("RGBA")
    layer.putalpha(ImageOps.invert(mask_for_overlay.convert("L")))
    return layer


def composite(generated: Image.Image, overlay: Image.Image, paste_box: Optional[Box] = None) -> Image.Image:
    """Put a generated image back: for "Only masked" it is scaled into ``paste_box`` of a canvas the overlay's size;
    then the overlay goes on top."""
    if paste_box is not None:
        x1, y1, x2, y2 = paste_box
        canvas = Image.new("RGBA", overlay.size)
        canvas.paste(imageops.resize_image(imageops.CROP_AND_RESIZE, generated, x2 - x1, y2 - y1), (x1, y1))
        base = canvas
    else:
        base = generated.convert("RGBA")
        if base.size != overlay.size:
            base = base.resize(overlay.size, Image.Resampling.LANCZOS)
    base.alpha_composite(overlay)
    return base.convert("RGB")


def outpaint_canvas(image: Image.Image, left: int, right: int, up: int, down: int, mask_blur: int
                    ) -> tuple[Image.Image, Image.Image]:
    """Extend ``image`` by the given pixels per side: the new canvas (old pixels in place, new bands stretched from
    the edges as a starting colour) and the mask of the new area, reaching ``mask_blur`` pixels into the old image
    so the seam is repainted too (A1111 "Poor man's outpainting")."""
    w, h = image.width + left + right, image.height + up + down
    canvas = Image.new("RGB", (w, h))
    rgb = imageops.flatten(image)
    canvas.paste(rgb.resize((w, h), Image.Resampling.BILINEAR))  # edge colours as a start for the new bands
    canvas.paste(rgb, (left, up))
    mask = Image.new("L", (w, h), 255)
    bleed = max(0, mask_blur)
    inner = (left + (bleed if left else 0), up + (bleed if up else 0),
             left + image.width - (bleed if right else 0), up + image.height - (bleed if down else 0))
    if inner[2] > inner[0] and inner[3] > inner[1]:
        mask.paste(0, inner)
    return canvas, mask


def latent_mask_array(mask: Image.Image, latent_width: int, latent_height: int, round_mask: bool = True
                      ) -> np.ndarray:
    """The mask at latent resolution in [0, 1] (1 = repaint), as A1111 shrinks it for latent blending."""
    small = mask.convert("L").resize((latent_width, latent_height), Image.Resampling.BICUBIC)
    array = np.asarray(small, dtype=np.float32) / 255.0
    return np.around(array) if round_mask else array

