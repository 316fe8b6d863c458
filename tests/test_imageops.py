"""Pixel geometry of img2img: resize modes, mask blur, crop regions, fill and compositing (A1111's rules)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules.processing import imageops, masking


def solid(size, colour) -> Image.Image:
    return Image.new("RGB", size, colour)


def test_just_resize_stretches():
    assert imageops.resize_image(0, solid((100, 50), "red"), 64, 64).size == (64, 64)


def test_crop_and_resize_covers_and_centres():
    image = Image.new("RGB", (200, 100), "blue")
    image.paste((255, 0, 0), (0, 0, 50, 100))  # a red band on the left quarter
    out = imageops.resize_image(1, image, 100, 100)
    assert out.size == (100, 100)
    # Scaled to 200x100 (cover), the central 100 columns are kept: the red band (0-50) is cropped away.
    assert np.asarray(out)[:, :, 0].max() < 30


def test_resize_and_fill_fits_and_stretches_the_edges_into_the_bands():
    image = Image.new("RGB", (200, 100), (0, 0, 255))
    image.paste((0, 255, 0), (0, 0, 200, 10))  # top rows green
    image.paste((255, 0, 0), (0, 90, 200, 100))  # bottom rows red
    out = np.asarray(imageops.resize_image(2, image, 100, 100))
    assert out.shape == (100, 100, 3)
    assert out[0, 50, 1] > 200 and out[99, 50, 0] > 200  # bands filled from the edge rows, no black
    assert out[50, 50, 2] > 200


def test_normalize_input_applies_exif_and_converts_modes():
    cmyk = solid((8, 8), "red").convert("CMYK")
    assert imageops.normalize_input(cmyk).mode == "RGB"
    grey16 = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16), "I;16")
    assert np.asarray(imageops.normalize_input(grey16)).min() == 255
    palette = solid((8, 8), "green").convert("P")
    assert imageops.normalize_input(palette).mode == "RGB"
    assert imageops.normalize_input(solid((8, 8), "red").convert("RGBA")).mode == "RGBA"


def test_flatten_composites_over_the_background():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert imageops.flatten(image, "#00ff00").getpixel((0, 0)) == (0, 255, 0)


def test_gaussian_kernel_size_matches_a1111():
    assert [masking.gaussian_kernel_size(s) for s in (1, 4, 10)] == [7, 21, 51]


def test_blur_mask_is_separable_gaussian_with_reflect101_borders():
    mask = Image.new("L", (41, 41))
    mask.putpixel((20, 20), 255)
    out = np.asarray(masking.blur_mask(mask, 2, 2), dtype=np.float64)
    assert out[20, 20] == out.max() and np.allclose(out, out.T, atol=1)
    edge = np.asarray(masking.blur_mask(Image.new("L", (20, 20), 255), 3, 3))
    assert edge.min() == 255  # a full mask stays full at the borders (reflection, not zero padding)
    only_x = np.asarray(masking.blur_mask(mask, 3, 0))
    assert only_x[19].max() == 0 and only_x[20].max() > 0


def test_binary_mask_thresholds_at_128_and_reads_alpha():
    grey = Image.fromarray(np.array([[128, 129]], dtype=np.uint8), "L")
    assert list(np.asarray(masking.binary_mask(grey))[0]) == [0, 255]
    layer = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    layer.putpixel((1, 0), (10, 10, 10, 255))
    assert list(np.asarray(masking.binary_mask(layer))[0]) == [0, 255]


def test_crop_region_and_ratio_expansion():
    mask = Image.new("L", (100, 80))
    mask.paste(255, (40, 30, 50, 40))
    assert masking.crop_region(mask, 5) == (35, 25, 55, 45)
    assert masking.crop_region(Image.new("L", (10, 10)), 5) is None
    box = masking.expand_to_ratio((35, 25, 55, 45), 128, 64, 100, 80)
    x1, y1, x2, y2 = box
    assert (x2 - x1) / (y2 - y1) == pytest.approx(2.0, abs=0.1) and x1 >= 0 and x2 <= 100
    # against an edge the box is shifted inside, not cut
    x1, y1, x2, y2 = masking.expand_to_ratio((0, 0, 10, 40), 64, 64, 100, 80)
    assert (x1, x2) == (0, 40) and (y1, y2) == (0, 40)


def test_fill_masked_replaces_the_masked_area_with_surrounding_colour():
    image = solid((32, 32), (0, 0, 255))
    image.paste((255, 0, 0), (12, 12, 20, 20))
    mask = Image.new("L", (32, 32))
    mask.paste(255, (10, 10, 22, 22))
    out = np.asarray(masking.fill_masked(image, mask))
    assert out[16, 16, 2] > 200 and out[16, 16, 0] < 50


def test_composite_restores_outside_and_pastes_at_the_box():
    original = solid((40, 30), (10, 20, 30))
    mask = Image.new("L", (40, 30))
    mask.paste(255, (10, 5, 30, 25))
    overlay = masking.overlay_of(original, mask)
    generated = solid((64, 64), (200, 200, 200))
    out = np.asarray(masking.composite(generated, overlay, (10, 5, 30, 25)))
    assert out.shape == (30, 40, 3)
    assert (out[0, 0] == (10, 20, 30)).all() and (out[15, 20] == (200, 200, 200)).all()


def test_outpaint_canvas_extends_and_masks_the_new_area():
    image = solid((32, 32), (0, 255, 0))
    canvas, mask = masking.outpaint_canvas(image, 16, 0, 8, 0, mask_blur=4)
    assert canvas.size == (48, 40)
    assert canvas.getpixel((30, 20)) == (0, 255, 0)
    m = np.asarray(mask)
    assert m[:, :16].min() == 255 and m[:8].min() == 255
    assert m[20, 24] == 0 and m[20, 18] == 255  # the bleed reaches mask_blur pixels into the old image
