"""txt2img end to end on tiny real-layout checkpoints loaded through the real loader (CPU, no weights)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from modules import infotext, samplers
from modules.processing.progress import JobProgress
from tests.support.engine import default_settings, load_tiny, run_txt2img
from tests.support.tiny_checkpoints import write_tiny_checkpoint


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ckpt")
    return load_tiny(write_tiny_checkpoint("sd1", directory, "tiny-sd1"))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("family", ["sd1", "sd2-v", "sdxl", "sd1-inpainting"])
def test_each_family_generates_an_image(tmp_path, family):
    model = load_tiny(write_tiny_checkpoint(family, tmp_path / "models", f"tiny-{family}"))
    out = run_txt2img(model, tmp_path, width=64, height=96, steps=2)
    assert len(out.images) == 1
    image = out.images[0]
    assert image.size == (64, 96) and image.mode == "RGB"
    assert pixels(image).std() > 0  # not a flat (e.g. black NaN) image


def test_same_seed_same_pixels_different_seed_different(sd1, tmp_path):
    a = run_txt2img(sd1, tmp_path, seed=42).images[0]
    b = run_txt2img(sd1, tmp_path, seed=42).images[0]
    c = run_txt2img(sd1, tmp_path, seed=43).images[0]
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(c))


def test_batch_image_i_uses_seed_plus_i(sd1, tmp_path):
    batch = run_txt2img(sd1, tmp_path, seed=100, batch_size=2, n_iter=2, sampler_name="Euler a")
    assert batch.all_seeds == [100, 101, 102, 103]
    assert batch.index_of_first_image == 1  # grid first
    singles = [run_txt2img(sd1, tmp_path, seed=s, sampler_name="Euler a").images[0] for s in (101, 103)]
    for got, want in zip((batch.images[2], batch.images[4]), singles):
        # Batched and single UNet calls may differ in the last float bits; the noise streams must be the same.
        assert np.abs(pixels(got) - pixels(want)).max() <= 2
    assert "Seed: 101," in batch.infotexts[2]


def test_variation_seed_keeps_seed_and_advances_subseeds(sd1, tmp_path):
    out = run_txt2img(sd1, tmp_path, seed=7, subseed=50, subseed_strength=0.5, batch_size=2)
    assert out.all_seeds == [7, 7] and out.all_subseeds == [50, 51]
    assert "Variation seed: 51, Variation seed strength: 0.5" in out.infotexts[2]
    base = run_txt2img(sd1, tmp_path, seed=7).images[0]
    assert not np.array_equal(pixels(out.images[1]), pixels(base))


def _combos():
    for sampler in samplers.SAMPLERS:
        schedules = samplers.SCHEDULES if sampler.accepts_schedule else samplers.SCHEDULES[:1]
        for schedule in schedules:
            yield sampler.name, schedule.label


@pytest.mark.parametrize("sampler_name, schedule", list(_combos()))
def test_every_sampler_and_schedule_type_runs(sd1, tmp_path, sampler_name, schedule):
    out = run_txt2img(sd1, tmp_path, sampler_name=sampler_name, scheduler=schedule, steps=3, width=64, height=64)
    assert pixels(out.images[0]).std() > 0
    assert f"Sampler: {sampler_name}," in out.infotexts[0]


def test_legacy_sampler_name_is_split_into_sampler_and_schedule(sd1, tmp_path):
    out = run_txt2img(sd1, tmp_path, sampler_name="DPM++ 2M Karras", scheduler="Automatic")
    assert "Sampler: DPM++ 2M, Schedule type: Karras," in out.infotexts[0]


def test_infotext_exact_format_and_round_trip(sd1, tmp_path):
    out = run_txt2img(sd1, tmp_path, prompt="a cat, sitting: on a mat", negative_prompt="blurry", seed=5, steps=3,
                      cfg_scale=7, width=64, height=64, sampler_name="DPM++ 2M", scheduler="Automatic")
    text = out.infotexts[0]
    assert text == ("a cat, sitting: on a mat\nNegative prompt: blurry\n"
                    "Steps: 3, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 5, Size: 64x64, "
                    "Model hash: 0123456789, Model: tiny, Version: v0.1.0")
    parsed = infotext.parse_infotext(text)
    assert parsed["Prompt"] == "a cat, sitting: on a mat" and parsed["Negative prompt"] == "blurry"
    assert str(parsed["Seed"]) == "5" and str(parsed["Size-1"]) == "64" and parsed["Schedule type"] == "Karras"
    api = run_txt2img(sd1, tmp_path, seed=5, steps=3, cfg_scale=7, from_api=True)
    assert "CFG scale: 7.0," in api.infotexts[0]  # A1111's API prints floats


def test_files_named_like_a1111_and_never_overwritten(sd1, tmp_path):
    first = run_txt2img(sd1, tmp_path, seed=11, batch_size=2)
    samples = [p for p in first.saved_paths if p is not None and "grids" not in str(p)]
    assert [p.name for p in samples] == ["00000-11.png", "00001-12.png"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", samples[0].parent.name)
    assert samples[0].parent.parent == tmp_path / "outputs" / "txt2img-images"
    grid = first.saved_paths[0]
    assert grid.name == "grid-0000.png" and grid.parent.parent == tmp_path / "outputs" / "txt2img-grids"
    with Image.open(samples[1]) as im:
        assert im.info["parameters"] == first.infotexts[2]
    before = samples[0].read_bytes()
    second = run_txt2img(sd1, tmp_path, seed=11)
    assert second.saved_paths[0].name == "00002-11.png"  # numbering continues
    assert samples[0].read_bytes() == before
    assert (tmp_path / "params.txt").read_text(encoding="utf-8") == second.infotexts[0]


def test_do_not_save_writes_nothing(sd1, tmp_path):
    out = run_txt2img(sd1, tmp_path, seed=1, batch_size=2, do_not_save_samples=True, do_not_save_grid=True)
    assert len(out.images) == 2 and out.index_of_first_image == 0
    assert not (tmp_path / "outputs").exists()


def test_clip_skip_changes_conditioning_and_is_recorded(sd1, tmp_path):
    settings = default_settings(CLIP_stop_at_last_layers=2)
    skip2 = run_txt2img(sd1, tmp_path, settings=settings, seed=3)
    plain = run_txt2img(sd1, tmp_path, seed=3)
    assert "Clip skip: 2" in skip2.infotexts[0] and "Clip skip" not in plain.infotexts[0]
    assert not np.array_equal(pixels(skip2.images[0]), pixels(plain.images[0]))


def test_long_prompt_is_chunked_not_truncated(sd1, tmp_path):
    words = " ".join(f"word{i}" for i in range(120))
    a = run_txt2img(sd1, tmp_path, prompt=words, seed=9)
    b = run_txt2img(sd1, tmp_path, prompt=words + " extra tail", seed=9)
    assert not np.array_equal(pixels(a.images[0]), pixels(b.images[0]))  # tokens past 77 still matter


def test_interrupt_keeps_finished_images(sd1, tmp_path):
    progress = JobProgress()
    calls = {"n": 0}
    original_step = progress.step

    def step(n, latents=None):
        calls["n"] += 1
        if calls["n"] == 4:  # during the second batch (3 steps a batch)
            progress.interrupt()
        original_step(n, latents)

    progress.step = step
    out = run_txt2img(sd1, tmp_path, n_iter=3, steps=3, progress=progress)
    # A1111: the first batch finished; the second, cut short after its first step, comes back as that step's
    # prediction; the third never starts. Grid first, as for any job of several images.
    assert out.interrupted and len(out.images) == 3 and out.index_of_first_image == 1
    assert out.all_seeds[:2] == [1234, 1235] and "Seed: 1235" in out.infotexts[2]
    full = run_txt2img(sd1, tmp_path, n_iter=2, steps=3)
    assert np.array_equal(pixels(out.images[1]), pixels(full.images[1]))  # the finished batch is the same
    assert not np.array_equal(pixels(out.images[2]), pixels(full.images[2]))  # the cut-short one is not


@pytest.mark.parametrize("sampler_name", ["DPM++ SDE", "Euler a", "DPM++ 2M SDE", "DPM2 a"])
def test_stochastic_samplers_are_reproducible_from_the_seed(sd1, tmp_path, sampler_name):
    """Step noise (ancestral, SDE, DPM++ SDE's Brownian tree) follows the image seeds, not a random source."""
    a = run_txt2img(sd1, tmp_path, sampler_name=sampler_name, seed=21, steps=4, do_not_save_samples=True)
    b = run_txt2img(sd1, tmp_path, sampler_name=sampler_name, seed=21, steps=4, do_not_save_samples=True)
    c = run_txt2img(sd1, tmp_path, sampler_name=sampler_name, seed=22, steps=4, do_not_save_samples=True)
    assert np.array_equal(pixels(a.images[0]), pixels(b.images[0]))
    assert not np.array_equal(pixels(a.images[0]), pixels(c.images[0]))


@pytest.mark.parametrize("count, n_rows, prevent, size", [
    (2, -1, False, (2, 1)), (3, -1, False, (2, 2)), (4, -1, False, (2, 2)), (6, -1, False, (3, 2)),
    (5, -1, True, (5, 1)), (3, 0, False, (1, 3)), (4, 3, False, (2, 3)), (2, 5, False, (1, 2)),
])
def test_grid_layout_follows_a1111(count, n_rows, prevent, size):
    from modules.processing.saving import grid_rows, image_grid

    tiles = [Image.new("RGB", (8, 8), (i * 40, 0, 0)) for i in range(count)]
    rows = grid_rows(count, batch_size=3 if n_rows == 0 else count, n_rows=n_rows, prevent_empty_spots=prevent)
    grid = image_grid(tiles, rows)
    assert (grid.width // 8, grid.height // 8) == size  # (columns, rows)
    assert grid.getpixel((8 * (size[0] - 1) + 1, 1)) == tiles[size[0] - 1].getpixel((0, 0))


def _overflowing_fp16_vae(tmp_path):
    """A VAE whose first decoder conv overflows in fp16 (inf -> NaN) but is finite in fp32, as some SDXL VAEs are."""
    import torch

    model = load_tiny(write_tiny_checkpoint("sd1", tmp_path / "nan", "nan-vae"))
    with torch.no_grad():
        model.vae.decoder.conv_in.weight.mul_(3e4)
    torch.nn.Module.to(model.vae, torch.float16)
    model.vae_dtype = torch.float16
    return model


def test_vae_nan_in_fp16_reverts_to_fp32_and_keeps_going(tmp_path):
    import torch

    from modules.processing.sampling import NansError, decode_latents

    model = _overflowing_fp16_vae(tmp_path)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(NansError, match="VAE"):
        decode_latents(model, latents, auto_upcast=False)  # setting off: a clear error, never a black image
    images = decode_latents(model, latents, auto_upcast=True)
    assert len(images) == 2 and all(torch.isfinite(im).all() for im in images)
    assert model.vae_dtype == torch.float32 and next(model.vae.parameters()).dtype == torch.float32


def test_unet_nan_is_a_clear_error_and_nothing_is_saved(tmp_path):
    import torch

    from modules.processing.sampling import NansError

    model = load_tiny(write_tiny_checkpoint("sd1", tmp_path / "nan", "nan-unet"))
    with torch.no_grad():
        model.unet.conv_out.bias.fill_(float("nan"))
    with pytest.raises(NansError, match="Unet.*--no-half"):
        run_txt2img(model, tmp_path, seed=1)
    assert not (tmp_path / "outputs").exists()


def test_ensd_is_written_only_for_samplers_whose_noise_it_shifts(sd1, tmp_path):
    """A1111 prints ENSD when eta_noise_seed_delta is set and the sampler draws noise per step (ancestral, SDE)."""
    settings = default_settings(eta_noise_seed_delta=31337)
    ancestral = run_txt2img(sd1, tmp_path, sampler_name="Euler a", settings=settings, do_not_save_samples=True)
    deterministic = run_txt2img(sd1, tmp_path, sampler_name="DPM++ 2M", settings=settings, do_not_save_samples=True)
    assert "ENSD: 31337" in ancestral.infotexts[0]
    assert "ENSD" not in deterministic.infotexts[0]
