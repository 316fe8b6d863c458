"""Pixel-space operations img2img needs, with A1111's exact geometry: input normalisation, the three resize modes,
and flattening transparency onto the background colour.

Pure PIL/numpy: no model, no torch.
"""

from __future__ import annotations

from PIL import Image, ImageOps

# A1111 ``resize_mode`` indices (img2img "Resize mode" radio, API ``resize_mode``).
JUST_RESIZE, CROP_AND_RESIZE, RESIZE_AND_FILL, LATENT_UPSCALE = 0, 1, 2, 3
RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")


def normalize_input(image: Image.Image) -> Image.Image:
    """An uploaded image as RGB or RGBA pixels the way the user sees it: EXIF rotation applied, palette and
    greyscale expanded, 16-bit and CMYK converted. Transparency is kept (RGBA) for masks and flattening."""
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("RGB", "RGBA"):
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit greyscale: scale to 8 bits rather than clipping at 255 as a plain convert("L") would.
        import numpy as np

        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        grey = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode == "F":
        return image.convert("L").convert("RGB")
    has_alpha = image.mode in ("LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info)
    return image.convert("RGBA" if has_alpha else "RGB")


def flatten(image: Image.Image, background: str = "#ffffff") -> Image.Image:
    """RGB with any transparency composited over ``background`` (A1111 ``img2img_background_color``)."""
    if image.mode != "RGBA":
        return image.convert("RGB")
    base = Image.new("RGBA", image.size, background)
    base.alpha_composite(image)
    return base.convert("RGB")


def resize_image(mode: int, image: Image.Image, width: int, height: int) -> Image.Image:
    """A1111 ``images.resize_image`` for modes 0-2 with Lanczos resampling; the result is ``width`` x ``height``.

    0: stretch to the size; 1: scale to cover, centre-crop the overflow; 2: scale to fit, centred, and fill the
    empty bands by stretching the image's edge rows/columns into them. Mode 3 (latent upscale) resizes pixels like
    mode 0 here; the latent is resized later."""
    if mode in (JUST_RESIZE, LATENT_UPSCALE):
        return _resize(image, width, height)
    ratio = width / height
    src_ratio = image.width / image.height
    if mode == CROP_AND_RESIZE:
        src_w = width if ratio > src_ratio else image.width * height // image.height
        src_h = height if ratio <= src_ratio else image.height * width // image.width
    elif mode == RESIZE_AND_FILL:
        src_w = width if ratio < src_ratio else image.width * height // image.height
        src_h = height if ratio >= src_ratio else image.height * width // image.width
    else:
        raise ValueError(f"resize_mode must be 0-3, got {mode}")
    resized = _resize(image, src_w, src_h)
    result = Image.new(image.mode if image.mode in ("RGB", "RGBA", "L") else "RGB", (width, height))
    left, top = width // 2 - src_w // 2, height // 2 - src_h // 2
    result.paste(resized, box=(left, top))
    if mode == RESIZE_AND_FILL:
        if ratio < src_ratio and top > 0:  # bands above and below
            result.paste(resized.resize((width, top), box=(0, 0, width, 0)), box=(0, 0))
            result.paste(resized.resize((width, height - top - src_h), box=(0, resized.height, width, resized.height)),
                         box=(0, top + src_h))
        elif ratio > src_ratio and left > 0:  # bands left and right
            result.paste(resized.resize((left, height), box=(0, 0, 0, height)), box=(0, 0))
            result.paste(resized.resize((width - left - src_w, height), box=(resized.width, 0, resized.width, height)),
                         box=(left + src_w, 0))
    return result


def _resize(image: Image.Image, width: int, height: int) -> Image.Image:
    if image.size == (width, height):
        return image.copy()
    return image.resize((max(1, width), max(1, height)), resample=Image.Resampling.LANCZOS)


def snap_size(value: float) -> int:
    """A requested size rounded down to a multiple of 8 (the latent grid), at least 64."""
    return max(64, int(value) // 8 * 8)
