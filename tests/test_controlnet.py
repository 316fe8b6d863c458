"""ControlNet in the engine, in-process: preprocessors against independent implementations, unit parsing, the
control-map resize modes, the three file layouts through the real loader, and the per-step semantics (weights,
control modes, guidance range, hires option) on tiny checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modules import infotext
from modules.controlnet import hints, preprocessors
from modules.controlnet.annotator_files import AnnotatorSetup
from modules.controlnet.control import ControlJob, ControlPass, UnitPass, _x0, layer_scales
from modules.controlnet.models import ControlNetCache, ControlNetRegistry, layout_of
from modules.controlnet.units import ControlMode, ResizeMode, parse_infotext, parse_unit, parse_units
from modules.errors import FieldError
from modules.models.types import UnknownModelError
from modules.processing.context import CheckpointIdentity, ProcessingContext
from modules.processing.params import Txt2ImgParams
from modules.processing.txt2img import txt2img
from tests.support.engine import default_settings, load_tiny
from tests.support.tiny_checkpoints import write_tiny_checkpoint
from tests.support.tiny_controlnet import build_tiny_controlnet, tiny_controlnet_state_dict, write_tiny_controlnet


def _square(size: int = 64, box: tuple[int, int, int, int] | None = None) -> Image.Image:
    image = Image.new("RGB", (size, size), "black")
    image.paste((255, 255, 255), box or (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    return image


# ---------------------------------------------------------------------------------------------------------------------
# Preprocessors


def test_canny_agrees_with_an_independent_canny():
    """scikit-image's Canny (its own Sobel, non-maximum suppression and hysteresis) as the oracle: the edge pixels
    agree within one pixel on a picture of shapes."""
    from skimage.feature import canny as sk_canny

    image = Image.new("RGB", (128, 128), (20, 20, 20))
    image.paste((230, 230, 230), (30, 30, 90, 80))
    image.paste((120, 200, 60), (60, 70, 110, 120))
    pixels = np.asarray(image)
    ours = preprocessors.find("canny")(pixels, 128, 100, 200)[:, :, 0] > 0
    grey = pixels.astype(np.float64).mean(axis=2)
    theirs = sk_canny(grey, sigma=0.5, low_threshold=25, high_threshold=50)
    from scipy.ndimage import binary_dilation

    assert ours.sum() > 200 and theirs.sum() > 200
    assert (ours & ~binary_dilation(theirs, iterations=1)).sum() / ours.sum() < 0.05
    assert (theirs & ~binary_dilation(ours, iterations=1)).sum() / theirs.sum() < 0.05


def test_weight_free_preprocessors_by_their_formulas():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    assert np.array_equal(preprocessors.find("invert")(pixels, 512, 0, 0), 255 - pixels)
    # threshold at the map's own resolution (512 on the short side): white where every channel is above it
    out = preprocessors.find("threshold")(pixels, 64, 127, 0)
    assert np.array_equal(out[:, :, 0] == 255, pixels.min(axis=2) > 127)
    # tile_resample: the image divided by the rate, nothing below 1.1
    assert preprocessors.find("tile_resample")(pixels, 512, 1.0, 0) is not None
    assert preprocessors.find("tile_resample")(pixels, 512, 2.0, 0).shape == (32, 48, 3)
    # the colour grid: 64-pixel cells of one colour at 512 on the short side
    grid = preprocessors.find("color")(pixels, 512, 0, 0)
    assert grid.shape == (512, 768, 3) and len(np.unique(grid[:64, :64].reshape(-1, 3), axis=0)) == 1
    # recolor_intensity: HSV value = max channel, gamma 1
    value = preprocessors.find("recolor_intensity")(pixels, 512, 1.0, 0)[:, :, 0].astype(int)
    assert np.abs(value - pixels.max(axis=2)).max() <= 1
    # the aliases and the list order of the extension
    assert preprocessors.find("inpaint_global_harmonious") is preprocessors.find("inpaint")
    assert preprocessors.module_list()[0] == "none"
    nothing = AnnotatorSetup()
    assert "body_pose_model.pth" in preprocessors.find("openpose").unavailable(nothing)  # the file it needs named
    assert "dpt-hybrid-midas" in preprocessors.find("depth_midas").unavailable(nothing)  # its model folder named
    assert preprocessors.find("canny").unavailable(nothing) is None


def test_sliders_out_of_range_fall_back_to_the_preprocessors_defaults():
    unit = parse_unit({"module": "canny", "processor_res": 9000, "threshold_a": -1, "threshold_b": 150}, "u")
    assert (unit.processor_res, unit.threshold_a, unit.threshold_b) == (512, 100, 150.0)


# ---------------------------------------------------------------------------------------------------------------------
# Units


def test_unit_parsing_keeps_the_extensions_leniency():
    unit = parse_unit({"input_image": _square(), "guidance": 0.4, "lowvram": True, "resize_mode": "Envelope (Outer Fit)",
                       "control_mode": 1, "hr_option": "low res only", "module": "canny"}, "u")
    assert unit.image is not None and unit.guidance_end == 0.4 and unit.low_vram
    assert unit.resize_mode is ResizeMode.OUTER_FIT and unit.control_mode is ControlMode.PROMPT
    assert unit.enabled  # no "enabled": on (see the README)
    assert parse_unit({"resize_mode": 3}, "u").resize_mode is ResizeMode.RESIZE  # "Just Resize (Latent upscale)"
    assert parse_units([None, {"module": "none"}], "args")[0].where == "args.1"
    import webuiapi

    client_unit = webuiapi.ControlNetUnit(module="invert", weight=0.5, control_mode=2)
    parsed = parse_unit(client_unit.to_dict(), "u")
    assert (parsed.module, parsed.weight, parsed.control_mode, parsed.image) == ("invert", 0.5, ControlMode.CONTROL,
                                                                                None)


@pytest.mark.parametrize("values, field", [
    ({"guidance": 0.3, "guidance_end": 0.4}, "u.guidance"),
    ({"mask": "x", "mask_image": "y"}, "u.mask_image"),
    ({"weight": "1"}, "u.weight"),
    ({"weight": float("nan")}, "u.weight"),
    ({"enabled": "yes"}, "u.enabled"),
    ({"image": [1, 2, 3]}, "u.image"),
    ({"image": "abc"}, "u.image"),  # no decoder: base64 is refused here
    ({"advanced_weighting": ["a"]}, "u.advanced_weighting"),
    ({"hr_option": "sometimes"}, "u.hr_option"),
    ({"processor_res": 512.5}, "u.processor_res"),
])
def test_bad_unit_values_name_their_field(values, field):
    with pytest.raises(FieldError) as err:
        parse_unit(values, "u")
    assert err.value.field == field


def test_infotext_round_trip_through_the_infotext_parser():
    unit = parse_unit({"module": "canny", "model": "control_v11p_sd15_canny [d14c016b]", "weight": 0.75,
                       "resize_mode": "Just Resize", "guidance_start": 0.1, "guidance_end": 0.9,
                       "pixel_perfect": True, "control_mode": "My prompt is more important"}, "u")
    text = infotext.build_infotext("a cat", "", {"Steps": 20, "ControlNet 0": unit.infotext(), "Seed": 1})
    assert 'ControlNet 0: "Module: canny, ' in text  # quoted: the value holds commas and colons
    parsed = infotext.parse_infotext(text)
    fields = parse_infotext(parsed["ControlNet 0"])
    again = parse_unit(fields, "u")
    for name in ("module", "model", "weight", "resize_mode", "processor_res", "threshold_a", "threshold_b",
                 "guidance_start", "guidance_end", "pixel_perfect", "control_mode"):
        assert getattr(again, name) == getattr(unit, name), name


# ---------------------------------------------------------------------------------------------------------------------
# Control maps


def test_pixel_perfect_and_the_three_resize_modes():
    wide = np.zeros((100, 200, 3), np.uint8)
    wide[:, :100] = 255  # left half white
    # pixel perfect: the scale that covers (or fits, for Resize and Fill) times the short side
    assert hints.pixel_perfect_resolution(wide, 64, 64, ResizeMode.INNER_FIT) == round(max(64 / 100, 64 / 200) * 100)
    assert hints.pixel_perfect_resolution(wide, 64, 64, ResizeMode.OUTER_FIT) == round(min(64 / 100, 64 / 200) * 100)
    stretched = hints.fit(wide, ResizeMode.RESIZE, 64, 64)
    assert stretched.shape == (64, 64, 3) and stretched[:, :30].min() == 255 and stretched[:, 34:].max() == 0
    cropped = hints.fit(wide, ResizeMode.INNER_FIT, 64, 64)  # 128x64 centre-cropped: the middle is the seam
    assert cropped.shape == (64, 64, 3) and cropped[:, :30].min() == 255 and cropped[:, 34:].max() == 0
    filled = hints.fit(wide, ResizeMode.OUTER_FIT, 64, 64)  # 64x32 centred; borders' median colour around it
    assert filled.shape == (64, 64, 3) and filled[20:44, :30].min() == 255 and filled[20:44, 34:].max() == 0
    border = np.median(np.concatenate([wide[0], wide[-1], wide[:, 0], wide[:, -1]]), axis=0)
    assert (filled[0, 0] == border.astype(np.uint8)).all()  # the median, truncated to 8 bits


def test_inpainting_maps_carry_the_mask_and_the_model_sees_minus_one_there():
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    unit = parse_unit({"module": "inpaint_only", "image": _square(), "mask": mask}, "u")
    source = hints.choose_input(unit)
    assert source.image.shape == (64, 64, 4)
    fitted = hints.fit(hints.detect(unit, source, 64, 64), source.resize_mode, 64, 64)
    hint = torch.from_numpy(fitted).float().div(255).permute(2, 0, 1)[None]
    up = UnitPass(unit, None, hint)  # type: ignore[arg-type]
    seen = up.model_hint()
    assert seen.shape[1] == 3 and (seen[:, :, :, :32] == -1).all()
    assert torch.equal(seen[:, :, :, 40:], hint[:, :3, :, 40:])


# ---------------------------------------------------------------------------------------------------------------------
# Models


@pytest.mark.parametrize("layout", ["ldm", "ldm-bare", "diffusers"])
def test_every_layout_loads_to_the_same_weights(tmp_path, layout):
    ck = load_tiny(write_tiny_checkpoint("sd1", tmp_path / "ck", "tiny"))
    path = write_tiny_controlnet(tmp_path / "cn", f"cn_{layout}", "sd1", layout, fmt="pth" if layout == "ldm"
                                 else "safetensors")
    registry = ControlNetRegistry([tmp_path / "cn"])
    file = registry.resolve(f"cn_{layout}", "m")
    loaded = ControlNetCache().get(file, ck.unet, "sd1", torch.device("cpu"), torch.float32, "m")
    reference = build_tiny_controlnet("sd1")
    ours = loaded.net.state_dict()
    assert ours.keys() == reference.state_dict().keys()
    assert all(torch.equal(ours[k], v) for k, v in reference.state_dict().items())
    assert layout_of(tiny_controlnet_state_dict("sd1", layout), path) == ("diffusers" if layout == "diffusers"
                                                                         else "ldm")


def test_wrong_family_and_foreign_files_are_clear_errors(tmp_path):
    ck = load_tiny(write_tiny_checkpoint("sd1", tmp_path / "ck", "tiny"))
    write_tiny_controlnet(tmp_path / "cn", "xl_canny", "sdxl", "diffusers")
    registry = ControlNetRegistry([tmp_path / "cn"])
    with pytest.raises(FieldError, match="made for SDXL; the loaded checkpoint is SD1.x") as err:
        ControlNetCache().get(registry.resolve("xl_canny", "m"), ck.unet, "sd1", torch.device("cpu"), torch.float32,
                              "args.0.model")
    assert err.value.field == "args.0.model"
    with pytest.raises(UnknownModelError, match="Stable Diffusion checkpoint"):
        layout_of({"model.diffusion_model.input_blocks.0.0.weight": 0}, tmp_path / "x")
    assert layout_of({"body.0.block1.weight": 0, "conv_in.weight": 0}, tmp_path / "x") == "t2i-original"
    with pytest.raises(UnknownModelError, match="CoAdapter"):
        layout_of({"body.0.block1.weight": 0, "body.0.skep.weight": 0, "conv_in.weight": 0}, tmp_path / "x")
    with pytest.raises(UnknownModelError, match="style adapter"):
        layout_of({"style_embedding": 0, "ln_pre.weight": 0}, tmp_path / "x")


def test_registry_lookup_like_the_extension(tmp_path):
    for name in ("control_v11p_sd15_canny", "control_v11f1p_sd15_depth"):
        write_tiny_controlnet(tmp_path, name)
    registry = ControlNetRegistry([tmp_path])
    canny = registry.titles()[0]
    assert canny.startswith("control_v11f1p_sd15_depth [") or canny.startswith("control_v11p_sd15_canny [")
    assert registry.find("CONTROL_V11P_SD15_CANNY").name == "control_v11p_sd15_canny"  # any case, no hash
    assert registry.find("sd15_depth").name == "control_v11f1p_sd15_depth"  # the shortest name containing it
    with pytest.raises(FieldError, match="model not found"):
        registry.resolve("nothing", "u.model")


def test_cache_keeps_at_most_its_limit(tmp_path):
    ck = load_tiny(write_tiny_checkpoint("sd1", tmp_path / "ck", "tiny"))
    for i in range(3):
        write_tiny_controlnet(tmp_path / "cn", f"cn{i}", seed=i + 1)
    registry = ControlNetRegistry([tmp_path / "cn"])
    cache = ControlNetCache(limit=2)
    first = cache.get(registry.resolve("cn0", "m"), ck.unet, "sd1", torch.device("cpu"), torch.float32, "m")
    assert cache.get(registry.resolve("cn0", "m"), ck.unet, "sd1", torch.device("cpu"), torch.float32, "m") is first
    for name in ("cn1", "cn2"):
        cache.get(registry.resolve(name, "m"), ck.unet, "sd1", torch.device("cpu"), torch.float32, "m")
    assert len(cache) == 2
    again = cache.get(registry.resolve("cn0", "m"), ck.unet, "sd1", torch.device("cpu"), torch.float32, "m")
    assert again is not first  # evicted, loaded again


# ---------------------------------------------------------------------------------------------------------------------
# In the denoising loop


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cn-engine")
    model = load_tiny(write_tiny_checkpoint("sd1", root / "ck", "tiny"))
    write_tiny_controlnet(root / "cn", "control_tiny", "sd1", "ldm")
    return model, ControlNetRegistry([root / "cn"]), root


def _run(tiny, units, **params):
    model, registry, root = tiny
    control = ControlJob(units, registry, ControlNetCache(), hires=bool(params.get("enable_hr"))) if units else None
    ctx = ProcessingContext(model=model, checkpoint=CheckpointIdentity(title="t", model_name="t", shorthash="0"),
                            settings=default_settings(), data_dir=root, control=control)
    p = Txt2ImgParams(**{"prompt": "a cube", "width": 64, "height": 64, "steps": 10, "seed": 3,
                         "sampler_name": "Euler", "do_not_save_samples": True, "do_not_save_grid": True,
                         "controlnet_units": units, **params})
    return txt2img(p, ctx), control


def _unit(**values):
    return parse_unit({"module": "canny", "model": "control_tiny", "image": _square(), **values}, "u")


def _count_evaluations(monkeypatch):
    calls = []
    original = ControlPass.residuals

    def counting(self, x, t, context, added, cond_rows, fraction):
        out = original(self, x, t, context, added, cond_rows, fraction)
        calls.append((round(fraction, 3), out is not None))
        return out

    monkeypatch.setattr(ControlPass, "residuals", counting)
    return calls


def test_weight_zero_is_bit_identical_and_a_unit_changes_the_image(tiny):
    plain, _ = _run(tiny, [])
    zero, _ = _run(tiny, [_unit(weight=0)])
    assert np.array_equal(np.asarray(zero.images[0]), np.asarray(plain.images[0]))
    controlled, control = _run(tiny, [_unit()])
    assert not np.array_equal(np.asarray(controlled.images[0]), np.asarray(plain.images[0]))
    assert len(controlled.images) == 2 and controlled.infotexts[1] == ""  # + the detected map, without infotext
    assert "ControlNet 0: " in controlled.infotexts[0]


def test_guidance_range_counts_the_passs_evaluations(tiny, monkeypatch):
    calls = _count_evaluations(monkeypatch)
    _run(tiny, [_unit(guidance_start=0.2, guidance_end=0.5)])
    active = [f for f, ran in calls if ran]
    assert active == [0.2, 0.3, 0.4, 0.5]  # step / steps within [start, end]: steps 2..5 of 10


def test_hires_option_low_res_only_skips_the_second_pass(tiny, monkeypatch):
    calls = _count_evaluations(monkeypatch)
    _run(tiny, [_unit(hr_option="Low res only")], enable_hr=True, hr_scale=1.5, hr_upscaler="Latent",
         denoising_strength=0.5, hr_second_pass_steps=4)
    assert len(calls) == 10  # the first pass only (the second pass has no ControlNet at all)
    calls.clear()
    result, _ = _run(tiny, [_unit(hr_option="High res only")], enable_hr=True, hr_scale=1.5, hr_upscaler="Latent",
                     denoising_strength=0.5, hr_second_pass_steps=4)
    assert 0 < len(calls) <= 4 and len(result.images) == 2  # only the hires map is shown
    assert result.images[1].size == (96, 96)


def test_layer_scales_and_control_modes():
    balanced = layer_scales(_unit(weight=0.8), 13, soft=False)
    assert balanced == [0.8] * 13
    soft = layer_scales(_unit(weight=0.8), 13, soft=True)
    assert soft == [0.8 * 0.825 ** (12 - i) for i in range(13)]
    assert layer_scales(_unit(), 10, soft=True) == [0.825 ** (12 - i) for i in range(10)]  # SDXL: the first ten
    assert layer_scales(parse_unit({"advanced_weighting": [0.1] * 13}, "u"), 13, soft=True) == [0.1] * 13


def test_controlnet_is_more_important_leaves_the_negative_rows_without_control(tiny):
    model, registry, _ = tiny
    net = ControlNetCache().get(registry.resolve("control_tiny", "m"), model.unet, "sd1", torch.device("cpu"),
                                torch.float32, "m")
    hint = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    context = torch.randn(4, 77, model.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(2))
    t = torch.tensor(500)
    balanced = ControlPass([UnitPass(_unit(), net, hint)]).residuals(x, t, context, None, 2, 0.0)
    important = ControlPass([UnitPass(_unit(control_mode=2), net, hint, soft=True)]).residuals(x, t, context, None,
                                                                                                 2, 0.0)
    assert balanced is not None and important is not None
    down_b, mid_b = balanced["down_block_additional_residuals"], balanced["mid_block_additional_residual"]
    down_i, mid_i = important["down_block_additional_residuals"], important["mid_block_additional_residual"]
    assert torch.all(mid_i[2:] == 0) and torch.all(down_i[0][2:] == 0)  # rows 2, 3: the negative prompt's
    layers = len(down_b) + 1  # the tiny ControlNet has 10 outputs (SDXL's count); soft scales: the first ten
    # (the prompt's rows are evaluated alone then: float32 sums in another batch shape differ in the 6th digit)
    assert torch.allclose(mid_i[:2], mid_b[:2] * 0.825 ** (12 - (layers - 1)), rtol=1e-4, atol=1e-5)
    assert torch.allclose(down_i[0][:2], down_b[0][:2] * 0.825 ** 12, rtol=1e-4, atol=1e-5)
    # the residuals are diffusers' ControlNet outputs times the scale (the reference model, written out)
    reference = build_tiny_controlnet("sd1")
    down_r, mid_r = reference(x, t, encoder_hidden_states=context, controlnet_cond=hint.expand(4, -1, -1, -1),
                              return_dict=False)
    assert torch.allclose(mid_b, mid_r, atol=1e-5) and all(torch.allclose(a, b, atol=1e-5)
                                                             for a, b in zip(down_b, down_r))


def test_inpaint_only_keeps_the_unmasked_part_of_the_control_image():
    """With nothing masked and weight 1, the corrected prediction's denoised latents are the control image's
    (x0 = sqrt(1 + sigma^2) * x_t - sigma * eps, written out here)."""
    unit = parse_unit({"module": "inpaint_only", "image": _square(), "mask": Image.new("L", (64, 64), 0)}, "u")
    hint = torch.zeros(1, 4, 64, 64)
    origin = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    up = UnitPass(unit, None, hint, origin=origin)  # type: ignore[arg-type]
    x_t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(6))
    eps = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    sigma = 2.5
    out = ControlPass([up]).after_unet(x_t, eps, sigma, 0.0)
    x0 = (1 + sigma ** 2) ** 0.5 * x_t - sigma * out
    assert torch.allclose(x0, origin.expand_as(x0), atol=1e-5)
    assert torch.allclose(_x0(x_t, eps, sigma, "epsilon"), (1 + sigma ** 2) ** 0.5 * x_t - sigma * eps)


def test_union_model_is_told_the_control_type(tmp_path):
    """A Union/ProMax file loads as diffusers' ControlNetUnionModel; the unit's union_control_type (or the one its
    preprocessor implies: canny -> Hard Edge) is the type the model is given, and the type changes the image."""
    from tests.support.tiny_controlnet import UNION_TYPES

    model = load_tiny(write_tiny_checkpoint("sdxl", tmp_path / "ck", "tiny"))
    write_tiny_controlnet(tmp_path / "cn", "controlnet-union-promax-sdxl", "sdxl", "union")
    registry = ControlNetRegistry([tmp_path / "cn"])
    loaded = ControlNetCache().get(registry.resolve("controlnet-union", "m"), model.unet, "sdxl",
                                   torch.device("cpu"), torch.float32, "m")
    assert loaded.net.__class__.__name__ == "ControlNetUnionModel" and loaded.union_types == UNION_TYPES
    assert _unit(model="controlnet-union").union_type.value == "Hard Edge"
    tiny = (model, registry, tmp_path)
    seen = []
    original = loaded.net.__class__.forward

    def spy(self, *args, **kwargs):
        seen.append((kwargs["control_type_idx"], kwargs["control_type"][0].tolist()))
        return original(self, *args, **kwargs)

    loaded.net.__class__.forward = spy
    try:
        hard, _ = _run(tiny, [_unit(model="controlnet-union")], steps=2)
        depth, _ = _run(tiny, [_unit(model="controlnet-union", union_control_type="Depth")], steps=2)
        with pytest.raises(Exception, match="union_control_type"):
            _run(tiny, [_unit(model="controlnet-union", module="none")], steps=2)
    finally:
        loaded.net.__class__.forward = original
    assert seen[0] == ([3], [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])  # Hard Edge is type 3
    assert seen[-1][0] == [1]  # Depth
    assert not np.array_equal(np.asarray(hard.images[0]), np.asarray(depth.images[0]))


def test_low_vram_offloads_the_controlnet_and_changes_nothing(tiny):
    """A unit's Low VRAM (and a checkpoint in --lowvram) keeps the ControlNet's weights in CPU memory, brought in
    layer by layer (diffusers' group offloading, as the memory mode does for the UNet): the same image."""
    from diffusers.hooks import HookRegistry

    model, registry, _ = tiny
    resident, _ = _run(tiny, [_unit()], steps=3)
    offloaded, _ = _run(tiny, [_unit(low_vram=True)], steps=3)
    assert np.array_equal(np.asarray(resident.images[0]), np.asarray(offloaded.images[0]))
    net = ControlNetCache().get(registry.resolve("control_tiny", "m"), model.unet, "sd1", torch.device("cpu"),
                                torch.float32, "m", offload=True)
    leaf = net.net.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q
    hooks = getattr(leaf, "_diffusers_hook", None)
    assert net.offloaded and isinstance(hooks, HookRegistry) and any("group_offloading" in n for n in hooks.hooks)


def test_img2img_only_masked_controls_from_the_crop_that_is_sampled(tiny, tmp_path):
    """Inpainting "only masked": a unit without an image works from the prepared crop (what the sampler sees),
    with img2img's mask for inpaint units; a unit image of the init image's size is cropped to the same region."""
    from modules.processing.img2img import img2img
    from modules.processing.params import Img2ImgParams

    model, registry, root = tiny
    rng = np.random.default_rng(3)
    init = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (80, 80, 112, 112))
    unit = parse_unit({"module": "inpaint_only", "model": "control_tiny"}, "u")
    control = ControlJob([unit], registry, ControlNetCache())
    ctx = ProcessingContext(model=model, checkpoint=CheckpointIdentity(title="t", model_name="t", shorthash="0"),
                            settings=default_settings(), data_dir=root, control=control)
    p = Img2ImgParams(prompt="a patch", init_images=[init], mask=mask, inpaint_full_res=True,
                      inpaint_full_res_padding=8, width=64, height=64, steps=3, seed=1, denoising_strength=0.6,
                      mask_blur=0, do_not_save_samples=True, do_not_save_grid=True, controlnet_units=[unit])
    result = img2img(p, ctx)
    assert control.crop_box is not None and control.init_size == (128, 128)
    box = control.crop_box
    crop = np.asarray(init.crop(box).resize((64, 64), Image.Resampling.LANCZOS))
    shown = np.asarray(result.images[-1])  # the detected map: the crop, half-transparent where masked
    assert shown.shape == (64, 64, 4)
    assert np.abs(shown[..., :3].astype(int) - crop.astype(int)).mean() < 8
    assert shown[..., 3].min() < 255 and shown[..., 3].max() == 255  # the mask region shows
    # a unit image of the init image's size is cropped to the same region
    control.units = [parse_unit({"module": "none", "model": "control_tiny", "image": init}, "u")]
    assert control._cropped(control.units[0]).image.size == (box[2] - box[0], box[3] - box[1])


@pytest.mark.parametrize("layout", ["diffusers", "original"])
def test_t2i_adapter_features_go_inside_the_down_blocks(tmp_path, layout, monkeypatch):
    """A T2I-Adapter (diffusers' file or TencentARC's original .pth) loads as diffusers' T2IAdapter with the same
    weights; its features are made once a pass and reach the UNet as down_intrablock_additional_residuals,
    scaled by the extension's soft weights when the prompt is more important."""
    from modules.controlnet.control import adapter_scales
    from tests.support.tiny_controlnet import build_tiny_t2i_adapter, write_tiny_t2i_adapter

    model = load_tiny(write_tiny_checkpoint("sd1", tmp_path / "ck", "tiny"))
    write_tiny_t2i_adapter(tmp_path / "cn", "t2iadapter_canny_sd14v1", "sd1", layout)
    registry = ControlNetRegistry([tmp_path / "cn"])
    loaded = ControlNetCache().get(registry.resolve("t2iadapter_canny", "m"), model.unet, "sd1",
                                   torch.device("cpu"), torch.float32, "m")
    reference = build_tiny_t2i_adapter("sd1").state_dict()
    assert loaded.is_adapter and all(torch.equal(loaded.net.state_dict()[k], v) for k, v in reference.items())
    tiny = (model, registry, tmp_path)
    seen = []
    original = type(model.unet).forward

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("down_intrablock_additional_residuals"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model.unet), "forward", spy)
    plain, _ = _run(tiny, [], steps=3)
    seen.clear()
    adapted, _ = _run(tiny, [_unit(model="t2iadapter_canny")], steps=3)
    assert len(seen) == 3 and all(s is not None for s in seen)
    assert not np.array_equal(np.asarray(adapted.images[0]), np.asarray(plain.images[0]))
    assert adapter_scales(_unit(weight=0.5), 4, soft=True) == [0.125, 0.31, 0.4125, 0.5]
    write_tiny_t2i_adapter(tmp_path / "xl", "t2i-adapter-canny-sdxl", "sdxl")  # 16x unshuffled input
    xl_file = ControlNetRegistry([tmp_path / "xl"]).resolve("t2i-adapter-canny-sdxl", "m")
    with pytest.raises(FieldError, match="made for SDXL"):
        ControlNetCache().get(xl_file, model.unet, "sd1", torch.device("cpu"), torch.float32, "m")


def test_depth_anything_runs_the_model_folder_and_normalises_like_the_extension(tmp_path):
    """depth_anything through transformers from a hub-layout folder in models/ControlNet/annotators: the map is
    the model's depth at the padded preprocessor resolution, min-max normalised to 0..255 (written out here)."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    from modules.controlnet.annotator_files import annotator_setup
    from tests.support.tiny_controlnet import write_tiny_depth_anything

    dirs = annotator_setup([tmp_path / "ControlNet"])
    pre = preprocessors.find("depth_anything")
    assert "depth-anything-large-hf" in pre.unavailable(dirs)
    folder = write_tiny_depth_anything(dirs.dirs[0])
    assert pre.unavailable(dirs) is None
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    ours = pre(image, 64, -1, -1, annotators=dirs)
    assert ours.shape == (64, 64, 3) and ours.min() == 0 and ours.max() == 255
    model = AutoModelForDepthEstimation.from_pretrained(folder, local_files_only=True).eval()
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    with torch.inference_mode():
        predicted = model(**processor(images=Image.fromarray(image), return_tensors="pt")).predicted_depth
    depth = torch.nn.functional.interpolate(predicted[:, None], size=(64, 64), mode="bicubic")[0, 0].numpy()
    expected = ((depth - depth.min()) / (depth.max() - depth.min()) * 255.0).astype(np.uint8)
    assert np.abs(ours[:, :, 0].astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize("mode", ["blocks", "graphs"])
def test_controlnet_with_a_compiled_unet_gives_the_same_image(tmp_path, mode):
    """--compile (both modes; aot_eager traces the graphs inductor would, without a C++ build): the residuals reach
    the compiled UNet and the image is the eager one's."""
    import torch._dynamo

    from modules.models import acceleration

    torch._dynamo.reset()
    ck = write_tiny_checkpoint("sd1", tmp_path / "ck", "tiny")
    write_tiny_controlnet(tmp_path / "cn", "control_tiny", "sd1", "ldm")
    registry = ControlNetRegistry([tmp_path / "cn"])
    eager, compiled = load_tiny(ck), load_tiny(ck)
    acceleration.compile_unet(compiled.unet, mode, backend="aot_eager")
    torch._dynamo.utils.counters.clear()
    ours, _ = _run((compiled, registry, tmp_path), [_unit()], steps=3)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    theirs, _ = _run((eager, registry, tmp_path), [_unit()], steps=3)
    assert np.abs(np.asarray(ours.images[0]).astype(int) - np.asarray(theirs.images[0]).astype(int)).max() <= 1


def test_batches_share_one_map_and_each_image_is_controlled(tiny, monkeypatch):
    loads = []
    original = ControlNetCache.get
    monkeypatch.setattr(ControlNetCache, "get", lambda self, *a, **k: loads.append(a[0]) or original(self, *a, **k))
    result, control = _run(tiny, [_unit()], steps=2, batch_size=2, n_iter=2)
    assert len(loads) == 1  # the pass's unit (hint, ControlNet, latents) is built once for both batches
    plain, _ = _run(tiny, [], steps=2, batch_size=2, n_iter=2)
    images = [np.asarray(im) for im in result.images]
    # four images (no grid: not saved), then the one detected map (made once for the job, not once a batch)
    assert len(result.images) == 4 + 1 and len(plain.images) == 4 and result.infotexts[-1] == ""
    assert all(not np.array_equal(a, np.asarray(b)) for a, b in zip(images[:4], plain.images))


def test_the_settings_folder_and_files_added_later_are_found(tmp_path):
    write_tiny_controlnet(tmp_path / "main", "control_a")
    registry = ControlNetRegistry([tmp_path / "main"])
    write_tiny_controlnet(tmp_path / "main", "control_b")  # after the scan: found without a refresh
    assert registry.resolve("control_b", "m").name == "control_b"
    write_tiny_controlnet(tmp_path / "extra", "control_c")
    registry.refresh(str(tmp_path / "extra"))  # control_net_models_path
    assert registry.resolve("control_c", "m").name == "control_c"
    registry.refresh("")  # the setting cleared
    with pytest.raises(FieldError):
        registry.resolve("control_c", "m")


def test_tile_colorfix_keeps_the_control_images_low_frequencies():
    """tile_colorfix: x0 - blur(x0) + blur(origin) (box blur of radius "Variation"), written out; +sharp blurs
    the negative prompt's rows by its sharpness."""
    from modules.controlnet.control import _blur

    origin = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    x_t = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    eps = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    sigma = 1.5
    s = (1 + sigma ** 2) ** 0.5
    x0 = s * x_t - sigma * eps
    kernel = torch.ones(4, 1, 7, 7) / 49  # radius 3: a 7x7 mean with the border replicated
    box = lambda t: torch.nn.functional.conv2d(torch.nn.functional.pad(t, (3, 3, 3, 3), mode="replicate"),  # noqa
                                               kernel, groups=4)
    assert torch.allclose(_blur(x0, 3), box(x0), atol=1e-5)
    unit = parse_unit({"module": "tile_colorfix", "threshold_a": 3}, "u")
    out = ControlPass([UnitPass(unit, None, torch.zeros(1, 3, 128, 128), origin=origin)]).after_unet(  # type: ignore
        x_t, eps, sigma, 0.0, 1)
    expected = x0 - box(x0) + box(origin.expand_as(x0))
    assert torch.allclose(s * x_t - sigma * out, expected, atol=1e-4)
    sharp = parse_unit({"module": "tile_colorfix+sharp", "threshold_a": 3, "threshold_b": 1.0}, "u")
    out = ControlPass([UnitPass(sharp, None, torch.zeros(1, 3, 128, 128), origin=origin)]).after_unet(  # type: ignore
        x_t, eps, sigma, 0.0, 1)
    got = s * x_t - sigma * out
    assert torch.allclose(got[:1], expected[:1], atol=1e-4)  # the prompt's row: as without +sharp
    assert torch.allclose(got[1:], 0.01 * box(expected[1:]) + 0.99 * expected[1:], atol=1e-4)


def test_a_gpu_without_room_gets_the_controlnet_offloaded(tiny, monkeypatch):
    """The memory modes count the ControlNet: on a device whose free memory cannot hold its weights plus a job's
    working memory it is offloaded; with room, or on the CPU, it stays resident."""
    from types import SimpleNamespace

    from modules.controlnet import control
    from modules.models import memory

    model, registry, _ = tiny
    path = registry.resolve("control_tiny", "m").path
    gpu = SimpleNamespace(device=torch.device("cuda"), dtype=torch.float16, extra={})
    monkeypatch.setattr(memory, "free_bytes", lambda device: control.WORKING_MARGIN + 1024)
    assert control.needs_offload(_unit(), gpu, path)  # the ~2.5 MB file does not fit in 1 KiB beside the margin
    monkeypatch.setattr(memory, "free_bytes", lambda device: control.WORKING_MARGIN + path.stat().st_size)
    assert not control.needs_offload(_unit(), gpu, path)
    assert control.needs_offload(_unit(low_vram=True), gpu, path)
    monkeypatch.setattr(memory, "free_bytes", lambda device: None)
    assert not control.needs_offload(_unit(), model, path)  # the CPU
    lowvram = SimpleNamespace(device=torch.device("cpu"), dtype=torch.float32,
                              extra={"memory": memory.MemoryPlan(memory.LOWVRAM, "test")})
    assert control.needs_offload(_unit(), lowvram, path)
