"""A1111 sampler/schedule names and the sigmas and timesteps our diffusers schedulers actually run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modules import samplers
from modules.processing.schedulers import ModelSigmas, build_scheduler, schedule_sigmas

# The SD1.x/SD2.x training noise schedule, as the loader derives it from the bundled yaml.
SD_CONFIG = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "prediction_type": "epsilon", "timestep_spacing": "leading", "steps_offset": 1, "clip_sample": False,
             "set_alpha_to_one": False, "skip_prk_steps": True}


def model_sigmas() -> ModelSigmas:
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    return ModelSigmas(np.cumprod(1.0 - betas))


def prepared(name: str, schedule: str = "Automatic", steps: int = 10):
    sampler, sched = samplers.resolve_sampler(name, schedule)
    scheduler = build_scheduler(sampler, sched, SD_CONFIG)
    scheduler.set_timesteps(steps)
    return scheduler


def k_diffusion_karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> list[float]:
    # crowsonkb/k-diffusion get_sigmas_karras, written out independently of modules.processing.schedulers.
    ramp = [i / (n - 1) for i in range(n)]
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return [(hi + r * (lo - hi)) ** rho for r in ramp] + [0.0]


def test_model_sigma_range_is_sd15s():
    m = model_sigmas()
    assert m.sigma_max == pytest.approx(14.6146, abs=1e-4) and m.sigma_min == pytest.approx(0.029168, abs=1e-5)


def test_dpmpp_2m_automatic_runs_karras_over_the_full_model_range():
    sched = prepared("DPM++ 2M", "Automatic", 10)
    m = model_sigmas()
    expected = k_diffusion_karras(10, m.sigma_min, m.sigma_max)
    assert np.allclose(sched.sigmas.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_euler_a_automatic_is_the_models_uniform_sigmas():
    sched = prepared("Euler a", "Automatic", 10)
    m = model_sigmas()
    expected = [float(m.t_to_sigma(np.array([t]))[0]) for t in np.linspace(999, 0, 10)] + [0.0]
    assert np.allclose(sched.sigmas.numpy(), expected, rtol=1e-4)


@pytest.mark.parametrize("schedule", ["Karras", "Exponential", "Uniform", "SGM Uniform", "KL Optimal", "Beta",
                                      "Simple", "Normal", "DDIM", "Align Your Steps", "Polyexponential"])
def test_each_schedule_type_reaches_the_sampler(schedule):
    name = samplers.find_schedule(schedule).sigmas
    expected = schedule_sigmas(name, 8, model_sigmas())
    sched = prepared("Euler", schedule, 8)
    assert np.allclose(sched.sigmas.numpy()[:-1], expected, rtol=1e-4)
    # A1111's schedules end at 0, but KL Optimal's last step stops at sigma_min
    final = model_sigmas().sigma_min if schedule == "KL Optimal" else 0.0
    assert float(sched.sigmas[-1]) == pytest.approx(final, rel=1e-4)
    assert np.all(np.diff(expected) < 0)  # strictly descending noise levels


def test_schedule_formulas():
    m = model_sigmas()
    exp = schedule_sigmas("exponential", 5, m)
    assert np.allclose(np.diff(np.log(exp)), np.diff(np.log(exp))[0])  # equal steps in log sigma
    assert exp[0] == pytest.approx(m.sigma_max) and exp[-1] == pytest.approx(m.sigma_min)
    assert np.allclose(schedule_sigmas("polyexponential", 5, m), exp)  # rho 1
    ays = schedule_sigmas("align_your_steps", 11, m)
    assert ays[0] == 14.615 and ays[-1] == 0.029  # NVIDIA's SD1.5 table used as is at its own length
    simple = schedule_sigmas("simple", 4, m)
    assert np.allclose(simple, m.sigmas[[999, 749, 499, 249]])


def test_ddim_and_plms_use_a1111_integer_timesteps():
    # A1111: range(0, 1000, 1000 // steps) + 1, highest first.
    expected = list(range(901, 0, -100))
    assert [int(t) for t in prepared("DDIM", steps=10).timesteps] == expected
    plms = [int(t) for t in prepared("PLMS", steps=10).timesteps]
    assert sorted(set(plms), reverse=True) == expected


def a1111_kl_optimal(n: int, sigma_min: float, sigma_max: float) -> list[float]:
    # A1111's sd_schedulers.kl_optimal written out: n + 1 sigmas, tan of a linear blend of the arctans, no 0 after.
    return [math.tan(i / n * math.atan(sigma_min) + (1 - i / n) * math.atan(sigma_max)) for i in range(n + 1)]


@pytest.mark.parametrize("name", ["Euler", "Euler a", "DPM++ 2M", "LMS"])
def test_kl_optimal_ends_at_sigma_min_as_a1111s(name):
    m = model_sigmas()
    sched = prepared(name, "KL Optimal", 9)
    assert np.allclose(sched.sigmas.numpy(), a1111_kl_optimal(9, m.sigma_min, m.sigma_max), rtol=1e-4)


@pytest.mark.parametrize("steps", [7, 20, 30, 150])
def test_ddim_and_plms_run_as_many_timesteps_as_a1111(steps):
    # A1111: torch.asarray(list(range(0, 1000, 1000 // steps))) + 1, clipped to 999; 30 steps run 31 of them
    expected = [min(t + 1, 999) for t in range(0, 1000, 1000 // steps)][::-1]
    assert [int(t) for t in prepared("DDIM", steps=steps).timesteps] == expected
    plms = [int(t) for t in prepared("PLMS", steps=steps).timesteps]
    if expected[0] == 999 and expected[1] != 999 - 1000 // steps:  # A1111 clipped its top timestep (7 steps)
        expected = expected[1:]  # PLMS's warm-up cannot step from a clipped one: diffusers' own n
    assert sorted(set(plms), reverse=True) == expected
    if steps == 30:
        assert len(expected) == 31


def test_unipc_ends_at_the_smallest_training_sigma_not_zero():
    sched = prepared("UniPC", steps=10)
    assert float(sched.sigmas[-1]) == pytest.approx(model_sigmas().sigma_min, rel=1e-3)


def test_legacy_names_aliases_and_normalisation():
    sampler, schedule = samplers.resolve_sampler("DPM++ 2M Karras", None)
    assert (sampler.name, schedule.label) == ("DPM++ 2M", "Automatic")  # Karras is DPM++ 2M's default
    assert samplers.effective_schedule_label(sampler, schedule) == "Karras"
    sampler, schedule = samplers.resolve_sampler("k_euler_a", "karras")
    assert (sampler.name, schedule.label) == ("Euler a", "Karras")
    sampler, schedule = samplers.resolve_sampler("euler A", "SGMUniform")
    assert (sampler.name, schedule.label) == ("Euler a", "SGM Uniform")
    assert samplers.effective_schedule_label(*samplers.resolve_sampler("Euler", None)) == "Automatic"
    assert samplers.resolve_sampler(None, None)[0].name == "DPM++ 2M"


def test_unknown_names_strict_and_lenient():
    with pytest.raises(samplers.UnknownSamplerError) as err:
        samplers.resolve_sampler("Nonexistent", None)
    assert err.value.field == "sampler_name" and "Euler a" in err.value.choices
    with pytest.raises(samplers.UnknownSamplerError) as err:
        samplers.resolve_sampler("Euler", "Sideways")
    assert err.value.field == "scheduler"
    with pytest.raises(samplers.UnknownSamplerError, match="'DPM fast' is not available here"):
        samplers.resolve_sampler("DPM fast", None)
    sampler, schedule = samplers.resolve_sampler_lenient("Nonexistent", "Sideways")
    assert (sampler.name, schedule.label) == ("DPM++ 2M", "Automatic")  # A1111's silent fallback


def test_api_lists_have_a1111_shapes():
    items = samplers.sampler_list()
    assert items[0]["name"] == "DPM++ 2M" and items[0]["aliases"] == ["k_dpmpp_2m"]
    assert {"Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2S a", "DPM++ SDE", "DPM++ 2M SDE",
            "DPM++ 3M SDE", "DDIM", "PLMS", "UniPC", "LCM"} <= {s["name"] for s in items}
    for item in items:
        assert set(item) == {"name", "aliases", "options"}
    schedules = samplers.schedule_list()
    assert [s["label"] for s in schedules][:3] == ["Automatic", "Uniform", "Karras"]
    karras = next(s for s in schedules if s["name"] == "karras")
    assert karras["default_rho"] == 7.0 and set(karras) == {"name", "label", "aliases", "default_rho",
                                                              "need_inner_model"}
    assert math.isclose(next(s for s in schedules if s["name"] == "sgm_uniform")["default_rho"], -1.0)


@pytest.mark.parametrize("name, evaluations", [("LMS", 6), ("Heun", 12), ("DPM2", 12)])
def test_kl_optimal_steps_down_to_sigma_min_with_k_diffusions_evaluations(name, evaluations):
    """k-diffusion's samplers over A1111's KL Optimal sigmas (n + 1 of them, the last sigma_min, no 0): Heun and
    DPM2 take their second evaluation on every step, the last one too (it does not end at 0). With the model
    predicting the clean image x0 = 0 (eps = x / sigma), every step lands on x * sigma_next / sigma, so 6 steps
    leave x * sigma_min / sigma_max."""
    import torch

    m = model_sigmas()
    sched = prepared(name, "KL Optimal", 6)
    x = torch.ones(1, 4, 2, 2) * float(sched.init_noise_sigma)
    for t in sched.timesteps:
        index = sched.step_index if sched.step_index is not None else 0
        second = getattr(sched, "sigmas_interpol", None) is not None and not sched.state_in_first_order
        sigma = float((sched.sigmas_interpol if second else sched.sigmas)[index])  # where the model is evaluated
        eps = sched.scale_model_input(x, t) * (sigma**2 + 1) ** 0.5 / sigma  # its input is x / sqrt(sigma^2 + 1)
        x = sched.step(eps, t, x).prev_sample
    assert len(sched.timesteps) == evaluations
    assert float(x.mean()) == pytest.approx(m.sigma_min, rel=1e-3)  # started at sigma_max: ends at sigma_min


def test_dpmpp_sde_with_kl_optimal_stops_at_sigma_min():
    import torch

    sched = prepared("DPM++ SDE", "KL Optimal", 6)
    x = torch.ones(1, 4, 2, 2) * float(sched.init_noise_sigma)
    for t in sched.timesteps:
        x = sched.step(x / 10, t, x).prev_sample
    assert len(sched.timesteps) == 12  # two evaluations on each of the 6 steps, as k-diffusion's
    assert float(sched.sigmas[sched.step_index]) == pytest.approx(model_sigmas().sigma_min, rel=1e-4)
