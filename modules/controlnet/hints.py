"""A unit's input image -> its control map at the generation size: the extension's input choice, pixel perfect,
preprocessing and its three resize modes.

Returns uint8 maps (RGB, or RGBA for inpainting where alpha is the mask); ``to_tensor`` makes the (1, C, H, W)
tensor in [0, 1] the ControlNet takes. Pure module: numpy, OpenCV and PIL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modules.controlnet import preprocessors
from modules.controlnet.annotator_files import AnnotatorSetup
from modules.controlnet.preprocessors import hwc3
from modules.controlnet.units import ControlUnit, ResizeMode
from modules.errors import FieldError


@dataclass(frozen=True)
class ControlInput:
    """What a unit works from: the image (RGB or, for inpainting, RGBA with the mask as alpha) and its resize mode."""

    image: np.ndarray
    resize_mode: ResizeMode


def _rgb(image: Any) -> np.ndarray:
    return hwc3(np.asarray(image.convert("RGBA") if image.mode in ("RGBA", "LA", "PA") else image.convert("RGB")))


def _mask_channel(mask: Any, size: tuple[int, int], where: str) -> np.ndarray:
    mask_rgb = hwc3(np.asarray(mask.convert("RGB")))
    if mask_rgb.shape[:2] != (size[1], size[0]):
        raise FieldError(f"{where}.mask", f"the mask is {mask_rgb.shape[1]}x{mask_rgb.shape[0]}, the image "
                                          f"{size[0]}x{size[1]}: they must be the same size")
    return mask_rgb[:, :, 0]


def choose_input(unit: ControlUnit, init_image: Any = None, init_mask: Any = None) -> ControlInput:
    """The extension's choice: the unit's own image (with its mask), else img2img's picture as it is sampled
    (already at the generation size, so Just Resize; for inpainting units with img2img's mask). An RGB unit with a drawn mask that is neither empty nor
    full uses the mask as the input (canvas scribble)."""
    is_inpaint = "inpaint" in unit.module
    if unit.image is not None:
        rgb = _rgb(unit.image)
        if unit.mask is None:
            alpha = np.zeros(rgb.shape[:2], np.uint8)
        else:
            alpha = _mask_channel(unit.mask, unit.image.size, unit.where)
        if is_inpaint:
            return ControlInput(np.concatenate([rgb, alpha[:, :, None]], axis=2), unit.resize_mode)
        if unit.mask is not None and not ((alpha <= 5).all() or (alpha >= 250).all()):
            return ControlInput(hwc3(alpha), unit.resize_mode)
        return ControlInput(rgb, unit.resize_mode)
    if init_image is not None:
        rgb = hwc3(np.asarray(init_image.convert("RGB")))
        mode = ResizeMode.RESIZE
        if is_inpaint:
            alpha = (np.zeros(rgb.shape[:2], np.uint8) if init_mask is None
                     else np.asarray(init_mask.convert("L").resize(init_image.size)))
            return ControlInput(np.concatenate([rgb, alpha[:, :, None]], axis=2), mode)
        return ControlInput(rgb, mode)
    raise FieldError(f"{unit.where}.image", "ControlNet is enabled but no input image is given")


def pixel_perfect_resolution(image: np.ndarray, height: int, width: int, mode: ResizeMode) -> int:
    """The preprocessor resolution at which the map lands on the generation size without rescaling (the
    extension's formula: the scale that fits, for Resize and Fill, else the one that covers)."""
    raw_h, raw_w = image.shape[:2]
    k0, k1 = float(height) / raw_h, float(width) / raw_w
    k = min(k0, k1) if mode == ResizeMode.OUTER_FIT else max(k0, k1)
    return int(np.round(k * float(min(raw_h, raw_w))))


def detect(unit: ControlUnit, source: ControlInput, height: int, width: int,
           rng: np.random.Generator | None = None, annotators: AnnotatorSetup = AnnotatorSetup()) -> np.ndarray:
    """The unit's preprocessed map (before resizing to the generation size); ``annotators``: where the
    weighted preprocessors' files are and their device."""
    pre = unit.preprocessor
    resolution = unit.processor_res
    if unit.pixel_perfect:
        resolution = pixel_perfect_resolution(source.image, height, width, source.resize_mode)
    image = source.image if pre.accepts_mask else hwc3(source.image)
    try:
        return pre(image, resolution, unit.threshold_a, unit.threshold_b, rng, annotators)
    except ValueError as err:  # e.g. an annotator file that is damaged or of another network
        raise FieldError(f"{unit.where}.module", str(err)) from None


def _unique_colors(x: np.ndarray) -> int:
    flat = x.reshape(-1, x.shape[2])
    packed = flat[:, 0].astype(np.int64) << 16 | flat[:, 1].astype(np.int64) << 8 | flat[:, 2].astype(np.int64)
    return int(np.unique(packed).size)


def _quality_resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a control map to ``size`` (w, h): nearest for maps of few colours (segmentation), area down, cubic
    up; two-colour (binary) maps are binarised again with Otsu's threshold, so edges stay edges. The extension also
    thins one-pixel edges after upscaling; that step is not done here."""
    import cv2

    mask = None
    if x.shape[2] == 4:
        mask, x = x[:, :, 3], x[:, :, :3]
    if (x.shape[1], x.shape[0]) != size:
        smaller = size[0] * size[1] < x.shape[0] * x.shape[1]
        colors = _unique_colors(x)
        binary = colors == 2 and int(np.min(x)) < 16 and int(np.max(x)) > 240
        if 2 < colors < 200:
            interpolation = cv2.INTER_NEAREST
        elif smaller:
            interpolation = cv2.INTER_AREA
        else:
            interpolation = cv2.INTER_CUBIC
        y = cv2.resize(x, size, interpolation=interpolation)
        if mask is not None:
            mask = cv2.resize(mask, size, interpolation=interpolation)
        if binary:
            grey = np.mean(y.astype(np.float32), axis=2).clip(0, 255).astype(np.uint8)
            _, grey = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
            y = np.stack([grey] * 3, axis=2)
        x = y
    if mask is not None:
        mask = ((mask > 127).astype(np.uint8) * 255)[:, :, None]
        x = np.concatenate([x, mask], axis=2)
    return np.ascontiguousarray(x)


def fit(detected: np.ndarray, mode: ResizeMode, height: int, width: int) -> np.ndarray:
    """The map at ``width`` x ``height``: stretched (Just Resize), scaled to cover and centre-cropped (Crop and
    Resize) or scaled to fit and centred on the border's median colour (Resize and Fill)."""
    detected = detected if detected.ndim == 3 else detected[:, :, None]
    if detected.shape[2] == 1:
        detected = np.concatenate([detected] * 3, axis=2)
    if mode == ResizeMode.RESIZE:
        return _quality_resize(detected, (width, height))
    old_h, old_w = detected.shape[:2]
    k0, k1 = float(height) / old_h, float(width) / old_w
    if mode == ResizeMode.OUTER_FIT:
        k = min(k0, k1)
        borders = np.concatenate([detected[0, :, :], detected[-1, :, :], detected[:, 0, :], detected[:, -1, :]])
        border = np.median(borders, axis=0).astype(detected.dtype)
        if border.shape[0] == 4:
            border[3] = 255  # inpainting: the added margin is to be painted
        canvas = np.tile(border[None, None], [height, width, 1])
        inner = _quality_resize(detected, (int(np.round(old_w * k)), int(np.round(old_h * k))))
        new_h, new_w = inner.shape[:2]
        top, left = max(0, (height - new_h) // 2), max(0, (width - new_w) // 2)
        canvas[top:top + new_h, left:left + new_w] = inner[:height, :width]
        return np.ascontiguousarray(canvas)
    k = max(k0, k1)
    inner = _quality_resize(detected, (int(np.round(old_w * k)), int(np.round(old_h * k))))
    new_h, new_w = inner.shape[:2]
    top, left = max(0, (new_h - height) // 2), max(0, (new_w - width) // 2)
    return np.ascontiguousarray(inner[top:top + height, left:left + width])


def visible_map(detected: np.ndarray) -> np.ndarray:
    """The detected map as shown and returned: inpainting maps with the masked part half transparent."""
    if detected.ndim == 3 and detected.shape[2] == 4:
        shown = detected.copy()
        shown[:, :, 3] = 255 - shown[:, :, 3] // 2
        return shown
    return detected if detected.ndim == 3 else np.stack([detected] * 3, axis=2)


__all__ = ["ControlInput", "choose_input", "detect", "fit", "pixel_perfect_resolution", "preprocessors",
           "visible_map"]
