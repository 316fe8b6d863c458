"""img2img, inpainting and hires fix end to end on tiny real-layout checkpoints (CPU, no weights)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from modules.errors import FieldError
from modules.processing.context import CheckpointIdentity, ProcessingContext
from modules.processing.img2img import img2img
from modules.processing.params import Img2ImgParams, Txt2ImgParams
from modules.processing.progress import JobProgress
from modules.processing.txt2img import check_txt2img, txt2img
from tests.support.engine import default_settings, load_tiny
from tests.support.tiny_checkpoints import write_tiny_checkpoint


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return load_tiny(write_tiny_checkpoint("sd1", tmp_path_factory.mktemp("ckpt"), "tiny-sd1"))


@pytest.fixture(scope="module")
def inpainting(tmp_path_factory):
    return load_tiny(write_tiny_checkpoint("sd1-inpainting", tmp_path_factory.mktemp("ckpt"), "tiny-inpaint"))


def context(model, tmp_path, hooks=None, **settings):
    return ProcessingContext(model=model, checkpoint=CheckpointIdentity("tiny [0123456789]", "tiny", "0123456789"),
                             settings=default_settings(**settings), data_dir=tmp_path, progress=JobProgress(),
                             denoiser_hooks=list(hooks or []))


def picture(width=96, height=64, seed=0) -> Image.Image:
    rng = np.random.RandomState(seed)
    base = np.linspace(0, 255, width)[None, :, None] * np.ones((height, 1, 3))
    return Image.fromarray(np.clip(base + rng.randint(-40, 40, (height, width, 3)), 0, 255).astype(np.uint8))


def box_mask(size, box) -> Image.Image:
    mask = Image.new("L", size)
    mask.paste(255, box)
    return mask


def px(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def run(model, tmp_path, hooks=None, settings=None, **params):
    defaults = dict(prompt="a cat", width=64, height=64, steps=4, seed=5, sampler_name="Euler")
    defaults.update(params)
    return img2img(Img2ImgParams(**defaults), context(model, tmp_path, hooks, **(settings or {})))


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self, step, cond, uncond):
        self.calls += 1


# ----------------------------------------------------------------------------------------------- img2img


@pytest.mark.parametrize("strength,fix,expected", [(0.75, False, 16), (0.5, False, 11), (1.0, False, 20),
                                                   (0.75, True, 20), (0.3, True, 20)])
def test_steps_actually_run_follow_a1111(sd1, tmp_path, strength, fix, expected):
    counter = Counter()
    out = run(sd1, tmp_path, hooks=[counter], steps=20, denoising_strength=strength, width=64, height=64,
              init_images=[picture(64, 64)], settings={"img2img_fix_steps": fix})
    assert counter.calls == expected
    assert f"Denoising strength: {strength:g}," in out.infotexts[0] + ","


def test_strength_zero_returns_the_input_unchanged(sd1, tmp_path):
    init = picture(64, 64)
    counter = Counter()
    out = run(sd1, tmp_path, hooks=[counter], init_images=[init], denoising_strength=0.0)
    assert counter.calls == 0
    assert np.array_equal(px(out.images[0]), px(init))


def test_img2img_changes_the_image_and_is_reproducible(sd1, tmp_path):
    init = picture(64, 64)
    a = run(sd1, tmp_path, init_images=[init], denoising_strength=0.6).images[0]
    b = run(sd1, tmp_path, init_images=[init], denoising_strength=0.6).images[0]
    c = run(sd1, tmp_path, init_images=[init], denoising_strength=0.6, seed=6).images[0]
    assert np.array_equal(px(a), px(b))
    assert not np.array_equal(px(a), px(c))
    assert not np.array_equal(px(a), px(init))


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_each_resize_mode_gives_the_requested_size(sd1, tmp_path, mode):
    out = run(sd1, tmp_path, init_images=[picture(96, 48)], resize_mode=mode, width=64, height=72, steps=2)
    assert out.images[0].size == (64, 72)


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "Heun", "DPM2 a", "DPM++ SDE", "DDIM", "PLMS", "UniPC",
                                     "LMS", "DPM++ 2S a", "LCM"])
def test_every_sampler_family_runs_img2img(sd1, tmp_path, sampler):
    out = run(sd1, tmp_path, init_images=[picture(64, 64)], sampler_name=sampler, steps=4, denoising_strength=0.5)
    assert px(out.images[0]).std() > 0 and f"Sampler: {sampler}," in out.infotexts[0]


def test_several_init_images_fill_the_batch(sd1, tmp_path):
    out = run(sd1, tmp_path, init_images=[picture(64, 64, 1), picture(64, 64, 2)], batch_size=2, steps=2,
              denoising_strength=0.0)
    assert np.array_equal(px(out.images[1]), px(picture(64, 64, 1)))
    assert np.array_equal(px(out.images[2]), px(picture(64, 64, 2)))
    with pytest.raises(FieldError) as err:
        run(sd1, tmp_path, init_images=[picture(64, 64)] * 3, batch_size=2)
    assert err.value.field == "init_images"


def test_missing_init_image_names_the_field(sd1, tmp_path):
    with pytest.raises(FieldError) as err:
        run(sd1, tmp_path, init_images=[])
    assert err.value.field == "init_images"


def test_output_goes_to_img2img_folder(sd1, tmp_path):
    out = run(sd1, tmp_path, init_images=[picture(64, 64)], steps=2)
    assert out.saved_paths[0] is not None and "img2img-images" in str(out.saved_paths[0])
    assert Image.open(out.saved_paths[0]).info["parameters"] == out.infotexts[0]


# ------------------------------------------------------------------------------------------------ inpainting


def outside(mask: Image.Image) -> np.ndarray:
    return np.asarray(mask.convert("L")) == 0


@pytest.mark.parametrize("fill", [0, 1, 2, 3])
@pytest.mark.parametrize("family", ["sd1", "inpainting"])
def test_whole_picture_inpaint_keeps_pixels_outside_the_blurred_mask(request, tmp_path, fill, family):
    model = request.getfixturevalue(family)
    init = picture(64, 64)
    mask = box_mask((64, 64), (20, 16, 44, 40))
    out = run(model, tmp_path, init_images=[init], mask=mask, mask_blur=4, inpainting_fill=fill,
              denoising_strength=0.9)
    from modules.processing.masking import blur_mask

    blurred = blur_mask(mask, 4, 4)
    keep = outside(blurred)
    result = px(out.images[0])
    assert np.array_equal(result[keep], px(init)[keep])
    assert not np.array_equal(result[~keep], px(init)[~keep])
    content = ("fill", "original", "latent noise", "latent nothing")[fill]
    assert "Mask blur: 4" in out.infotexts[0] and f"Masked content: {content}," in out.infotexts[0] + ","


def test_inpaint_not_masked_inverts(sd1, tmp_path):
    init = picture(64, 64)
    mask = box_mask((64, 64), (16, 16, 48, 48))
    out = run(sd1, tmp_path, init_images=[init], mask=mask, mask_blur=0, inpainting_mask_invert=1,
              denoising_strength=0.9)
    result = px(out.images[0])
    inside = ~outside(mask)
    assert np.array_equal(result[inside], px(init)[inside])
    assert "Mask mode: Inpaint not masked" in out.infotexts[0]


@pytest.mark.parametrize("box", [(0, 10, 20, 30), (76, 10, 96, 30), (30, 0, 50, 12), (30, 52, 50, 64),
                                 (0, 0, 12, 12), (84, 52, 96, 64)])
def test_only_masked_pastes_the_crop_back_in_place_for_masks_at_each_edge(sd1, tmp_path, box):
    init = picture(96, 64)
    mask = box_mask((96, 64), box)
    out = run(sd1, tmp_path, init_images=[init], mask=mask, mask_blur=0, inpaint_full_res=True,
              inpaint_full_res_padding=4, denoising_strength=0.9, width=64, height=64)
    result = px(out.images[0])
    assert out.images[0].size == init.size  # the original's size, not the processing size
    keep = outside(mask)
    assert np.array_equal(result[keep], px(init)[keep])
    changed = np.argwhere(np.any(result != px(init), axis=2))
    assert len(changed) > 0
    x1, y1, x2, y2 = box
    assert changed[:, 1].min() >= x1 and changed[:, 1].max() < x2
    assert changed[:, 0].min() >= y1 and changed[:, 0].max() < y2
    assert "Inpaint area: Only masked, Masked area padding: 4" in out.infotexts[0]


def test_only_masked_with_blur_keeps_pixels_outside(inpainting, tmp_path):
    init = picture(96, 64)
    mask = box_mask((96, 64), (40, 20, 60, 40))
    out = run(inpainting, tmp_path, init_images=[init], mask=mask, mask_blur=6, inpaint_full_res=True,
              inpaint_full_res_padding=16)
    from modules.processing.masking import blur_mask

    keep = outside(blur_mask(mask, 6, 6))
    assert np.array_equal(px(out.images[0])[keep], px(init)[keep])
    assert "Conditional mask weight: 1.0" in out.infotexts[0]


def test_empty_mask_with_only_masked_falls_back_to_img2img_and_says_so(sd1, tmp_path):
    out = run(sd1, tmp_path, init_images=[picture(64, 64)], mask=Image.new("L", (64, 64)), inpaint_full_res=True)
    assert any("mask is blank" in c for c in out.comments)
    assert out.images[0].size == (64, 64)


def test_empty_mask_whole_picture_changes_nothing(sd1, tmp_path):
    init = picture(64, 64)
    out = run(sd1, tmp_path, init_images=[init], mask=Image.new("L", (64, 64)), denoising_strength=0.9)
    assert np.array_equal(px(out.images[0]), px(init))


def test_all_white_mask_repaints_everything(sd1, tmp_path):
    init = picture(64, 64)
    out = run(sd1, tmp_path, init_images=[init], mask=Image.new("L", (64, 64), 255), denoising_strength=0.9)
    assert np.mean(np.any(px(out.images[0]) != px(init), axis=2)) > 0.9


def test_mask_of_another_size_is_stretched_to_the_image(sd1, tmp_path):
    init = picture(64, 64)
    small = box_mask((32, 32), (0, 0, 16, 32))  # left half
    out = run(sd1, tmp_path, init_images=[init], mask=small, mask_blur=0, denoising_strength=0.9)
    result = px(out.images[0])
    assert np.array_equal(result[:, 34:], px(init)[:, 34:])
    assert not np.array_equal(result[:, :30], px(init)[:, :30])


def test_rgba_brush_layer_mask_uses_alpha(sd1, tmp_path):
    init = picture(64, 64)
    layer = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    layer.paste((255, 0, 0, 255), (0, 0, 64, 20))
    out = run(sd1, tmp_path, init_images=[init], mask=layer, mask_blur=0, denoising_strength=0.9)
    result = px(out.images[0])
    assert np.array_equal(result[24:], px(init)[24:])
    assert not np.array_equal(result[:16], px(init)[:16])


# ------------------------------------------------------------------------------------------- unusual inputs


def as_mode(image: Image.Image, mode: str) -> Image.Image:
    if mode == "I;16":
        return Image.fromarray((np.asarray(image.convert("L"), dtype=np.uint16) * 257), "I;16")
    if mode == "P":
        return image.convert("P", palette=Image.Palette.ADAPTIVE)
    return image.convert(mode)


@pytest.mark.parametrize("mode", ["RGBA", "P", "I;16", "CMYK", "L", "LA"])
def test_non_rgb_init_images_work(sd1, tmp_path, mode):
    out = run(sd1, tmp_path, init_images=[as_mode(picture(64, 64), mode)], steps=2, denoising_strength=0.0)
    image = out.images[0]
    assert image.mode == "RGB" and image.size == (64, 64)
    if mode in ("RGBA", "CMYK"):
        assert np.abs(px(image) - px(picture(64, 64))).max() <= 2


def test_exif_rotated_image_is_used_upright(sd1, tmp_path):
    upright = picture(64, 96)  # portrait
    stored = upright.rotate(-90, expand=True)  # what the camera wrote: landscape + "rotate" tag
    exif = Image.Exif()
    exif[0x0112] = 8  # Orientation: rotate 90 CW to view
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    loaded = Image.open(io.BytesIO(buf.getvalue()))
    out = run(sd1, tmp_path, init_images=[loaded], denoising_strength=0.0, width=64, height=96)
    assert np.abs(px(out.images[0]).astype(int) - px(ImageOps.exif_transpose(loaded))).mean() < 3
    assert np.abs(px(out.images[0]).astype(int) - px(upright)).mean() < 30  # JPEG noise ~14; rotated ~128


def test_image_much_larger_than_the_generation_size(sd1, tmp_path):
    big = picture(1600, 1200)
    out = run(sd1, tmp_path, init_images=[big], steps=2, width=64, height=64, denoising_strength=0.5)
    assert out.images[0].size == (64, 64)


# ------------------------------------------------------------------------------------------------ hires fix


def hires(model, tmp_path, hooks=None, **params):
    defaults = dict(prompt="a cat", width=64, height=64, steps=3, seed=9, sampler_name="Euler", enable_hr=True)
    defaults.update(params)
    p = Txt2ImgParams(**defaults)
    check_txt2img(p)
    return txt2img(p, context(model, tmp_path, hooks))


@pytest.mark.parametrize("upscaler", ["Latent", "Latent (bicubic antialiased)", "Latent (nearest-exact)", "Lanczos",
                                      "Nearest", "None"])
def test_hires_output_has_the_upscaled_size_and_runs_the_hires_steps(sd1, tmp_path, upscaler):
    counter = Counter()
    out = hires(sd1, tmp_path, hooks=[counter], hr_upscaler=upscaler, hr_scale=1.5, hr_second_pass_steps=5)
    assert out.images[0].size == (96, 96)
    assert counter.calls == 3 + 5
    text = out.infotexts[0]
    assert "Size: 64x64" in text and "Hires upscale: 1.5, Hires steps: 5, " f"Hires upscaler: {upscaler}" in text
    assert "Denoising strength: 0.7" in text


def test_hires_resize_to_crops_to_the_exact_size(sd1, tmp_path):
    out = hires(sd1, tmp_path, hr_resize_x=128, hr_resize_y=80, hr_upscaler="Lanczos")
    assert out.images[0].size == (128, 80)
    assert "Hires resize: 128x80" in out.infotexts[0]
    one_side = hires(sd1, tmp_path, hr_resize_x=96, hr_upscaler="Latent", width=64, height=96)
    assert one_side.images[0].size == (96, 144)


def test_hires_steps_zero_means_the_sampling_steps(sd1, tmp_path):
    counter = Counter()
    out = hires(sd1, tmp_path, hooks=[counter], steps=4, hr_second_pass_steps=0)
    assert counter.calls == 8 and "Hires steps" not in out.infotexts[0]


def test_hires_prompt_and_sampler_are_used_and_written(sd1, tmp_path):
    seen = []
    out = hires(sd1, tmp_path, hooks=[lambda step, c, u: seen.append(c.context.clone())], hr_prompt="a dog",
                hr_sampler_name="DPM++ 2M", hr_second_pass_steps=2)
    text = out.infotexts[0]
    assert "Hires prompt: a dog" in text and "Hires sampler: DPM++ 2M" in text
    assert not np.allclose(seen[0].numpy(), seen[-1].numpy())  # the second pass encodes another prompt


def test_hires_prompt_editing_timeline_extends_into_the_second_pass(sd1, tmp_path):
    seen = []
    hires(sd1, tmp_path, hooks=[lambda step, c, u: seen.append(c.context.clone())], steps=4,
          prompt="[a cat:a dog:1.5]", hr_second_pass_steps=4)
    first, second = seen[:4], seen[4:]
    assert all(np.allclose(first[0].numpy(), s.numpy()) for s in first)  # 1.5 is past the whole first pass
    assert np.allclose(second[0].numpy(), first[0].numpy())  # hires step 1 of 4: still "a cat"
    assert not np.allclose(second[-1].numpy(), first[0].numpy())  # the second half of hires: "a dog"


def test_hires_with_strength_zero_only_upscales(sd1, tmp_path):
    counter = Counter()
    out = hires(sd1, tmp_path, hooks=[counter], denoising_strength=0.0)
    assert counter.calls == 3 and out.images[0].size == (128, 128)


def test_hires_saves_the_first_pass_when_asked(sd1, tmp_path):
    p = Txt2ImgParams(prompt="x", width=64, height=64, steps=2, seed=3, enable_hr=True, hr_second_pass_steps=1)
    txt2img(p, context(sd1, tmp_path, save_images_before_highres_fix=True))
    names = sorted(f.name for f in (tmp_path / "outputs" / "txt2img-images").rglob("*.png"))
    assert any(n.endswith("-before-highres-fix.png") for n in names) and len(names) == 2


def test_hires_inpainting_model(inpainting, tmp_path):
    out = hires(inpainting, tmp_path, hr_scale=1.5, hr_second_pass_steps=2)
    assert out.images[0].size == (96, 96)


def test_hires_checkpoint_takes_over_the_second_pass(sd1, tmp_path):
    other = load_tiny(write_tiny_checkpoint("sd1", tmp_path / "other", "other", seed=7))
    p = Txt2ImgParams(prompt="a cat", width=64, height=64, steps=3, seed=9, sampler_name="Euler", enable_hr=True,
                      hr_scale=1.5, hr_second_pass_steps=2)
    same = txt2img(p, context(sd1, tmp_path))
    ctx = context(sd1, tmp_path)
    ctx.hires_model, ctx.hires_checkpoint = other, CheckpointIdentity("other [abcdef0123]", "other", "abcdef0123")
    switched = txt2img(p, ctx)
    assert switched.images[0].size == (96, 96)
    assert "Hires checkpoint: other [abcdef0123]" in switched.infotexts[0]
    assert not np.array_equal(px(same.images[0]), px(switched.images[0]))


@pytest.mark.parametrize("field,value", [("hr_upscaler", "ESRGAN_9x"), ("hr_sampler_name", "Nope")])
def test_hires_bad_names_are_refused_naming_the_field(field, value):
    p = Txt2ImgParams(prompt="x", enable_hr=True, **{field: value})
    with pytest.raises(ValueError) as err:
        check_txt2img(p, current_checkpoint="tiny.safetensors [0123456789]")
    assert getattr(err.value, "field") == field


def test_hires_off_ignores_hires_fields(sd1, tmp_path):
    p = Txt2ImgParams(prompt="x", width=64, height=64, steps=2, hr_upscaler="ESRGAN_9x")
    check_txt2img(p)
    out = txt2img(p, context(sd1, tmp_path))
    assert out.images[0].size == (64, 64) and "Hires" not in out.infotexts[0]
    assert "Denoising strength" not in out.infotexts[0]
