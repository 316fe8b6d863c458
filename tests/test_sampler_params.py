"""A1111's sampler parameters take effect (issue 17 section 5): eta (Euler a, DDIM), the sigma churn (Euler) and
NGMS (s_min_uncond), from the request or the settings; the oracles are k-diffusion's rules written out (eta 0 makes
an ancestral step the plain Euler step; churn only acts where s_tmin <= sigma <= s_tmax; NGMS drops the negative
prompt from every second evaluation below its sigma)."""

from __future__ import annotations

import numpy as np
import pytest

from modules.errors import FieldError
from modules.processing import sampler_params
from modules.processing.params import Txt2ImgParams
from tests.support.engine import default_settings, load_tiny, run_txt2img
from tests.support.tiny_checkpoints import write_tiny_checkpoint


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return load_tiny(write_tiny_checkpoint("sd1", tmp_path_factory.mktemp("ckpt"), "tiny-sd1"))


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB"), dtype=np.int16)


def run(sd1, tmp_path, **params):
    base = dict(seed=31, steps=4, scheduler="Karras", do_not_save_samples=True)
    return run_txt2img(sd1, tmp_path, **{**base, **params})


def test_euler_a_with_eta_0_is_the_plain_euler_step_and_eta_1_is_the_default(sd1, tmp_path):
    euler = run(sd1, tmp_path, sampler_name="Euler")
    no_noise = run(sd1, tmp_path, sampler_name="Euler a", eta=0.0)
    assert np.abs(pixels(no_noise) - pixels(euler)).max() <= 1  # same update, float rounding aside
    default = run(sd1, tmp_path, sampler_name="Euler a")
    assert np.array_equal(pixels(run(sd1, tmp_path, sampler_name="Euler a", eta=1.0)), pixels(default))
    half = run(sd1, tmp_path, sampler_name="Euler a", eta=0.5)
    assert not np.array_equal(pixels(half), pixels(default)) and not np.array_equal(pixels(half), pixels(euler))
    assert np.array_equal(pixels(half), pixels(run(sd1, tmp_path, sampler_name="Euler a", eta=0.5)))  # seeded
    assert "Eta: 0.5" in half.infotexts[0] and "Eta" not in default.infotexts[0]
    from_setting = run(sd1, tmp_path, sampler_name="Euler a", settings=default_settings(eta_ancestral=0.5))
    assert np.array_equal(pixels(from_setting), pixels(half))


def test_ddim_eta_adds_seeded_noise_and_is_written_as_eta_ddim(sd1, tmp_path):
    plain = run(sd1, tmp_path, sampler_name="DDIM", scheduler="Automatic")
    noisy = run(sd1, tmp_path, sampler_name="DDIM", scheduler="Automatic", eta=1.0)
    assert not np.array_equal(pixels(plain), pixels(noisy))
    again = run(sd1, tmp_path, sampler_name="DDIM", scheduler="Automatic", settings=default_settings(eta_ddim=1.0))
    assert np.array_equal(pixels(noisy), pixels(again))
    assert "Eta DDIM: 1.0" in noisy.infotexts[0] and "Eta DDIM" not in plain.infotexts[0]


def test_sigma_churn_acts_only_between_s_tmin_and_s_tmax(sd1, tmp_path):
    plain = run(sd1, tmp_path, sampler_name="Euler")
    churned = run(sd1, tmp_path, sampler_name="Euler", s_churn=2.0)
    assert not np.array_equal(pixels(plain), pixels(churned))
    assert "Sigma churn: 2.0" in churned.infotexts[0]
    gated = run(sd1, tmp_path, sampler_name="Euler", s_churn=2.0, s_tmin=500.0)  # above every sigma: no churn
    assert np.array_equal(pixels(plain), pixels(gated))


def test_ngms_drops_the_negative_prompt_from_every_second_evaluation_below_its_sigma(sd1, tmp_path):
    rows: list[int] = []
    handle = sd1.unet.register_forward_pre_hook(lambda module, args: rows.append(int(args[0].shape[0])))
    try:
        run(sd1, tmp_path, sampler_name="Euler", negative_prompt="ugly")
        full = list(rows)
        rows.clear()
        skipped = run(sd1, tmp_path, sampler_name="Euler", negative_prompt="ugly", s_min_uncond=100.0)
    finally:
        handle.remove()
    assert full == [2, 2, 2, 2]
    assert rows == [2, 1, 2, 1]  # evaluations 1 and 3 (A1111's odd steps) below sigma 100: the prompt alone
    assert "NGMS: 100.0" in skipped.infotexts[0]


@pytest.mark.parametrize("fields, sampler, field", [
    ({"eta": 0.5}, "DPM++ SDE", "eta"),
    ({"eta": 0.3}, "DPM2 a", "eta"),
    ({"s_churn": 1.0}, "Heun", "s_churn"),
    ({"s_min_uncond": -1.0}, "Euler", "s_min_uncond"),
])
def test_what_a_sampler_here_cannot_take_is_refused_naming_the_field(fields, sampler, field):
    with pytest.raises(FieldError) as err:
        sampler_params.check(Txt2ImgParams(sampler_name=sampler, **fields))
    assert err.value.field == field


def test_values_a1111_ignores_for_a_sampler_are_ignored_here_too():
    params = sampler_params.resolve(Txt2ImgParams(sampler_name="LMS", s_churn=3.0, eta=0.2), {}, "LMS")
    assert params.step_kwargs == {} and params.infotext == {} and params.eta is None


def test_the_api_refuses_before_queueing(tiny_api_client):
    r = tiny_api_client.post("/sdapi/v1/txt2img", json={"prompt": "x", "width": 64, "height": 64, "steps": 2,
                                                        "sampler_name": "Heun", "s_churn": 1})
    assert r.status_code == 422 and "s_churn" in r.text
