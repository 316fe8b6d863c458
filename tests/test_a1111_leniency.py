"""What A1111's API accepts, we accept (issue 17 section 5): explicit nulls, fields of switched-off features with any
value, and seeds past 32 bits (A1111 hands them to ``torch.manual_seed``, which takes 0..2**64-1)."""

from __future__ import annotations

import json

import pytest
import torch

from modules.processing.params import Txt2ImgParams
from modules.processing.rng import ImageRNG

BODY = {"prompt": "a cat", "width": 64, "height": 64, "steps": 2}

# Every field of A1111's StableDiffusionTxt2ImgProcessingAPI that clients send (webuiapi's txt2img, SillyTavern,
# Open WebUI), written out here rather than read from our own schema.
A1111_TXT2IMG_FIELDS = (
    "prompt", "negative_prompt", "styles", "seed", "subseed", "subseed_strength", "seed_resize_from_h",
    "seed_resize_from_w", "sampler_name", "scheduler", "batch_size", "n_iter", "steps", "cfg_scale", "distilled_cfg_scale",
    "width", "height", "restore_faces", "tiling", "do_not_save_samples", "do_not_save_grid", "eta",
    "denoising_strength", "s_min_uncond", "s_churn", "s_tmax", "s_tmin", "s_noise", "override_settings",
    "override_settings_restore_afterwards", "refiner_checkpoint", "refiner_switch_at", "disable_extra_networks",
    "firstpass_image", "comments", "enable_hr", "firstphase_width", "firstphase_height", "hr_scale", "hr_upscaler",
    "hr_second_pass_steps", "hr_resize_x", "hr_resize_y", "hr_checkpoint_name", "hr_sampler_name", "hr_scheduler",
    "hr_prompt", "hr_negative_prompt", "force_task_id", "sampler_index", "script_name", "script_args",
    "send_images", "save_images", "alwayson_scripts", "infotext",
)


def test_null_in_every_a1111_field_means_its_default(tiny_api_client):
    body = {**{name: None for name in A1111_TXT2IMG_FIELDS}, **BODY}
    r = tiny_api_client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert len(r.json()["images"]) == 1  # send_images: null is its default, true
    assert info["sampler_name"] == "Euler" and info["batch_size"] == 1 and info["cfg_scale"] == 7.0  # API defaults
    assert info["restore_faces"] is False and "Tiling" not in info["infotexts"][0]


def test_nulls_in_img2img_too(tiny_api_client):
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 30, 200)).save(buf, format="PNG")
    image = base64.b64encode(buf.getvalue()).decode()
    body = {"init_images": [image], "prompt": "x", "steps": 2, "width": 64, "height": 64, "mask": None,
            "denoising_strength": None, "resize_mode": None, "mask_blur": None, "inpainting_fill": None,
            "inpaint_full_res": None, "inpaint_full_res_padding": None, "inpainting_mask_invert": None,
            "initial_noise_multiplier": None, "image_cfg_scale": None, "include_init_images": None}
    r = tiny_api_client.post("/sdapi/v1/img2img", json=body)
    assert r.status_code == 200, r.text
    assert "Denoising strength: 0.75" in json.loads(r.json()["info"])["infotexts"][0]  # the API default


def test_refiner_switch_at_takes_any_value_without_a_refiner(tiny_api_client):
    for value in (0, -3, 7.5):
        for refiner in (None, "", "None"):
            r = tiny_api_client.post("/sdapi/v1/txt2img", json={**BODY, "refiner_checkpoint": refiner,
                                                                "refiner_switch_at": value})
            assert r.status_code == 200, (value, refiner, r.text)
            assert "Refiner" not in json.loads(r.json()["info"])["infotexts"][0]
    r = tiny_api_client.post("/sdapi/v1/txt2img", json={**BODY, "refiner_checkpoint": "tiny", "refiner_switch_at": 0})
    assert r.status_code == 422 and "refiner_switch_at" in r.text  # with a refiner it still means something


def test_hires_fields_take_any_value_when_hires_is_off(tiny_api_client):
    off = {"enable_hr": False, "hr_scale": 0, "hr_second_pass_steps": -5, "denoising_strength": 3,
           "hr_resize_x": -1, "hr_resize_y": 99999, "hr_upscaler": "x" * 300}
    r = tiny_api_client.post("/sdapi/v1/txt2img", json={**BODY, **off})
    assert r.status_code == 200, r.text
    text = json.loads(r.json()["info"])["infotexts"][0]
    assert "Hires" not in text and "Denoising strength" not in text
    r = tiny_api_client.post("/sdapi/v1/txt2img", json={**BODY, "enable_hr": True, "hr_scale": 0})
    assert r.status_code == 422 and "hr_scale" in r.text  # switched on, the value is checked


def test_seeds_past_32_bits_are_used_as_torch_uses_them(tiny_api_client):
    seed = 2**40 + 5
    r = tiny_api_client.post("/sdapi/v1/txt2img", json={**BODY, "seed": seed, "batch_size": 2})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["all_seeds"] == [seed, seed + 1] and f"Seed: {seed}," in info["infotexts"][0]
    top = 2**64 - 1
    r = tiny_api_client.post("/sdapi/v1/txt2img", json={**BODY, "seed": top, "subseed": top})
    assert r.status_code == 200 and json.loads(r.json()["info"])["seed"] == top


@pytest.mark.parametrize("seed", [2**32, 2**40 + 5, 2**64 - 1])
def test_initial_noise_of_a_large_seed_is_torchs_for_that_seed(seed):
    """A1111's CPU source: torch.randn with a generator seeded with the seed (the formula, not our code)."""
    shape = (4, 8, 8)
    expected = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(ImageRNG(shape, [seed], source="CPU").first()[0], expected)


def test_a_seed_whose_images_would_overflow_names_the_seed():
    with pytest.raises(ValueError) as err:
        Txt2ImgParams(seed=2**64 - 1, n_iter=2)
    assert err.value.errors()[0]["loc"] == ("seed",)
