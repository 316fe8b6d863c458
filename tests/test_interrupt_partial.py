"""An interrupted or skipped sampling pass returns the denoised image its last finished step predicts, as A1111
returns k-diffusion's ``denoised`` (issue 17 section 5). The oracle is the k-diffusion formula written out:
x0 = x - sigma * eps for Euler's latents, x0 = x * sqrt(sigma^2 + 1) - sigma * eps for DPM-Solver++'s."""

from __future__ import annotations

import pytest
import torch

from modules import samplers
from modules.processing.progress import Interrupted, JobProgress
from modules.processing.sampling import denoise
from modules.processing.schedulers import build_scheduler

BASE_CONFIG = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
               "prediction_type": "epsilon"}
EPS = 0.25  # the toy model's constant noise prediction


class ConstantEps:
    """A model that predicts the same noise everywhere and interrupts the job at its ``stop_at``-th call."""

    def __init__(self, progress: JobProgress, stop_at: int) -> None:
        self.progress, self.stop_at, self.calls, self.inputs = progress, stop_at, 0, []

    def __call__(self, x: torch.Tensor, t: object) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.stop_at:
            self.progress.interrupt()
            raise Interrupted()  # as an interrupt point inside the UNet raises
        return torch.full_like(x, EPS)


def _run(sampler_name: str, stop_at: int, steps: int = 6) -> tuple[torch.Tensor, bool, object, list[torch.Tensor]]:
    sampler, schedule = samplers.resolve_sampler(sampler_name, "Automatic")
    scheduler = build_scheduler(sampler, schedule, BASE_CONFIG)
    scheduler.set_timesteps(steps)
    progress = JobProgress()
    model = ConstantEps(progress, stop_at)
    seen: list[torch.Tensor] = []
    original_step = scheduler.step

    def step(pred, t, x, **kw):  # record the latents each step starts from
        seen.append(x.clone())
        return original_step(pred, t, x, **kw)

    scheduler.step = step
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * scheduler.init_noise_sigma
    out, completed = denoise(scheduler, model, latents, [], progress, steps)
    return out, completed, scheduler, seen


def test_euler_interrupted_returns_the_last_steps_x0_prediction():
    out, completed, scheduler, seen = _run("Euler", stop_at=3)
    assert not completed and len(seen) == 2  # two steps finished, the third call was interrupted
    sigma = float(scheduler.sigmas[1])  # the second step started at sigma_1
    x_before_second = seen[1]
    assert torch.allclose(out, x_before_second - sigma * EPS, atol=1e-5)


def test_dpmpp_2m_interrupted_returns_its_x0_model_output():
    out, completed, scheduler, seen = _run("DPM++ 2M", stop_at=3)
    assert not completed and len(seen) == 2
    sigma = float(scheduler.sigmas[1])
    expected = seen[1] * (sigma**2 + 1) ** 0.5 - sigma * EPS
    assert torch.allclose(out, expected, atol=1e-4)


def test_interrupted_before_any_step_has_nothing_to_return():
    with pytest.raises(Interrupted):
        _run("Euler", stop_at=1)


def test_finishing_holds_the_first_interrupt_but_not_a_second():
    progress = JobProgress()
    progress.interrupt()
    assert progress.should_stop()
    with progress.finishing():
        assert not progress.should_stop()  # decoding what the interrupted job made
        progress.interrupt()  # pressed again
        assert progress.should_stop()
    assert progress.should_stop() and progress.interrupted
