"""The A1111 callbacks that used to be accepted and never called are called where A1111 calls them (issue 17
section 2): on_image_grid may change a grid's layout, on_extra_noise sees (and may replace) the img2img extra noise,
on_before_token_counter changes what the counter counts, on_before_reload runs before a restart."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modules import script_callbacks
from modules.processing.saving import image_grid
from modules.processing.sampling import add_noise, extra_noise
from modules.processing.schedulers import build_scheduler
from modules import samplers


@pytest.fixture(autouse=True)
def clean_callbacks():
    yield
    for kind in ("image_grid", "extra_noise", "before_token_counter", "before_reload"):
        for item in script_callbacks.callbacks(kind):
            script_callbacks.remove_callbacks_for_function(item.callback)


def test_on_image_grid_may_change_the_layout():
    tiles = [Image.new("RGB", (8, 8), (i * 50, 0, 0)) for i in range(4)]
    assert image_grid(tiles, 2).size == (16, 16)

    def one_row(params):
        params.cols, params.rows = len(params.imgs), 1

    script_callbacks.on_image_grid(one_row)
    grid = image_grid(tiles, 2, hook=script_callbacks.hook("image_grid"))
    assert grid.size == (32, 8) and grid.getpixel((25, 1)) == tiles[3].getpixel((0, 0))
    assert script_callbacks.hook("extra_noise") is None  # nothing registered: no per-job hook at all


def _scheduler(name: str, steps: int = 10):
    config = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
              "beta_schedule": "scaled_linear", "prediction_type": "epsilon", "timestep_spacing": "leading",
              "steps_offset": 1}
    sampler, schedule = samplers.resolve_sampler(name, "Automatic")
    scheduler = build_scheduler(sampler, schedule, config)
    scheduler.set_timesteps(steps)
    return scheduler


@pytest.mark.parametrize("name", ["Euler", "DDIM"])
def test_extra_noise_is_a1111s_and_on_extra_noise_may_replace_it(name):
    scheduler = _scheduler(name)
    g = torch.Generator().manual_seed(0)
    x, noise = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    xi = add_noise(scheduler, x, noise, 3)
    out = extra_noise(scheduler, x, noise, xi, 3, 0.2)
    if name == "Euler":  # k-diffusion: xi + noise * amount
        assert torch.allclose(out, xi + noise * 0.2, atol=1e-6)
    else:  # A1111's timestep samplers: xi + noise * amount * sqrt(alpha_cumprod[t])
        t = int(scheduler.timesteps[3])
        assert torch.allclose(out, xi + noise * 0.2 * scheduler.alphas_cumprod[t] ** 0.5, atol=1e-6)
    seen = []

    def replace(params):
        seen.append((params.x, params.xi))
        params.noise = torch.zeros_like(params.noise)

    script_callbacks.on_extra_noise(replace)
    same = extra_noise(scheduler, x, noise, xi, 3, 0.2, script_callbacks.hook("extra_noise"))
    assert torch.equal(same, xi) and seen[0][0] is x and seen[0][1] is xi


def test_img2img_extra_noise_reaches_a_real_job_and_its_infotext(tiny_api_client):
    import base64
    import io
    import json

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 80, 40)).save(buf, format="PNG")
    body = {"init_images": [base64.b64encode(buf.getvalue()).decode()], "prompt": "x", "steps": 4, "width": 64,
            "height": 64, "seed": 5, "denoising_strength": 0.5, "sampler_name": "Euler"}
    calls = []
    script_callbacks.on_extra_noise(lambda params: calls.append(tuple(params.noise.shape)))

    def run(extra):
        r = tiny_api_client.post("/sdapi/v1/img2img", json={**body, "override_settings": {
            "img2img_extra_noise": extra}})
        assert r.status_code == 200, r.text
        return r.json()

    plain, noisy = run(0.0), run(0.5)
    assert calls == [(1, 4, 8, 8)]  # only when extra noise is on, as in A1111
    assert "Extra noise: 0.5" in json.loads(noisy["info"])["infotexts"][0]
    assert "Extra noise" not in json.loads(plain["info"])["infotexts"][0]
    assert plain["images"][0] != noisy["images"][0]


def test_on_before_token_counter_changes_what_is_counted(tiny_api_client):
    from modules.ui.common import token_counter_html

    rt = tiny_api_client.app.state.runtime
    assert token_counter_html(rt, "a cat", 20) == "<span class='token-count'>2/75</span>"

    def longer(params):
        if params.is_positive:
            params.prompt = params.prompt + ", a dog on a mat"

    script_callbacks.on_before_token_counter(longer)
    assert token_counter_html(rt, "a cat", 20) == "<span class='token-count'>8/75</span>"
    assert token_counter_html(rt, "a cat", 20, is_positive=False) == "<span class='token-count'>2/75</span>"
