"""Flow-matching sampling (Flux): the noise schedule and the samplers, behind the scheduler interface our
denoising loop already drives (``set_timesteps``, ``timesteps``, ``scale_model_input``, ``step``, ``add_noise``).

A flow model sees ``x_t = (1 - s) * x_0 + s * noise`` at noise level ``s`` in [0, 1] and predicts the velocity
``v = noise - x_0``, so the clean image it implies is ``x_0 = x_t - s * v``. The timestep it is given is ``1000 * s``.

Schedules (A1111/Forge names) pick the levels from ``t`` in (0, 1] and shift them toward the noise:
``s = e^mu / (e^mu + 1/t - 1)`` with ``mu`` growing with the image's token count (Flux dev: 0.5 at 256 tokens,
1.15 at 4096) or ``s = k t / (1 + (k - 1) t)`` for a fixed shift ``k`` (schnell: 1, no shift).

* Simple: t = 1, 1 - 1/n, ..., 1/n (diffusers' FluxPipeline and ComfyUI's "simple" for flow models).
* Normal: t evenly from 1 down to the model's lowest level 1/1000, n points; SGM Uniform: n + 1 points, last dropped.
* Beta: the Beta(0.6, 0.6) quantiles of 1 - i/n (A1111's beta schedule), as levels of the model's 1000-step table.
* Karras / Exponential: their A1111 formulas between the lowest and highest level.

Samplers: Euler (the flow ODE's Euler step, ``x += (s_next - s) v``), Euler a (the rectified-flow ancestral step
ComfyUI and Forge use: an Euler step down to ``s_down = s_next (1 + (s_next / s - 1) eta)``, then rescaled and
renoised back to ``s_next`` with ``sqrt(s_next^2 - s_down^2 (1 - s_next)^2 / (1 - s_down)^2)`` of fresh noise
from the image's own stream; eta 1 unless A1111's eta says otherwise) and DPM++ 2M (DPM-Solver++ 2M, data
prediction, in ``lambda = log((1 - s) / s)``, first order at the first and last step as k-diffusion's) and Heun
(k-diffusion's: an Euler step to ``s_next``, the velocity there, then the step again with the two velocities'
mean; the last step, to 0, is Euler's). Heun's timesteps hold each level after the first twice, as diffusers'
second-order schedulers do (``order`` 2), so the denoising loop evaluates the model twice a step unchanged.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

FLOW_SAMPLERS = ("Euler", "Euler a", "DPM++ 2M", "Heun")
FLOW_SCHEDULES = ("Automatic", "Simple", "Normal", "SGM Uniform", "Beta", "Karras", "Exponential")
TRAIN_STEPS = 1000


class FlowSamplerError(ValueError):
    """A sampler or schedule that flow models do not have; ``field`` names the request field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def check(sampler_name: str, schedule_label: str) -> None:
    if sampler_name not in FLOW_SAMPLERS:
        raise FlowSamplerError("sampler_name", f"sampler {sampler_name!r} is not available for Flux models; "
                                               f"choose one of {', '.join(FLOW_SAMPLERS)}")
    if schedule_label not in FLOW_SCHEDULES:
        raise FlowSamplerError("scheduler", f"schedule type {schedule_label!r} is not available for Flux models; "
                                            f"choose one of {', '.join(FLOW_SCHEDULES)}")


def mu_for(image_tokens: int, config: Mapping[str, Any]) -> float:
    """diffusers' ``calculate_shift``: mu linear in the token count between (base_seq_len, base_shift) and
    (max_seq_len, max_shift)."""
    lo, hi = config["base_image_seq_len"], config["max_image_seq_len"]
    slope = (config["max_shift"] - config["base_shift"]) / (hi - lo)
    return image_tokens * slope + config["base_shift"] - slope * lo


def shifted(t: np.ndarray, config: Mapping[str, Any], mu: float) -> np.ndarray:
    t = np.asarray(t, dtype=np.float64)
    if config.get("use_dynamic_shifting"):
        with np.errstate(divide="ignore"):
            return math.exp(mu) / (math.exp(mu) + (1.0 / t - 1.0))
    k = float(config.get("shift", 1.0))
    return k * t / (1.0 + (k - 1.0) * t)


def levels(schedule: str, n: int, config: Mapping[str, Any], mu: float) -> np.ndarray:
    """The ``n`` noise levels of a schedule, descending, without the final 0."""
    if n < 1:
        raise ValueError("steps must be at least 1")
    table = shifted(np.arange(1, TRAIN_STEPS + 1) / TRAIN_STEPS, config, mu)  # the model's levels, ascending
    lo, hi = float(table[0]), float(table[-1])
    if schedule in ("Automatic", "Simple"):
        return shifted(np.linspace(1.0, 1.0 / n, n), config, mu)
    if schedule == "Normal":
        return shifted(np.linspace(1.0, 1.0 / TRAIN_STEPS, n), config, mu)
    if schedule == "SGM Uniform":
        return shifted(np.linspace(1.0, 1.0 / TRAIN_STEPS, n + 1)[:-1], config, mu)
    if schedule == "Beta":
        from scipy import stats

        quantiles = stats.beta.ppf(1.0 - np.linspace(0.0, 1.0, n, endpoint=False), 0.6, 0.6)
        index = np.clip(np.rint(quantiles * (TRAIN_STEPS - 1)).astype(int), 0, TRAIN_STEPS - 1)
        return table[index]
    if schedule == "Karras":
        ramp = np.linspace(0.0, 1.0, n)
        rho = 7.0
        return (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    if schedule == "Exponential":
        return np.exp(np.linspace(math.log(hi), math.log(lo), n))
    raise ValueError(f"unknown flow schedule {schedule!r}")


class FlowMatchSampler:
    """One pass's flow-matching sampler, stateful like a diffusers scheduler (build one per pass)."""

    order = 1
    init_noise_sigma = 1.0

    def __init__(self, sampler_name: str, schedule: str, config: Mapping[str, Any], image_tokens: int) -> None:
        check(sampler_name, schedule)
        self.sampler_name, self.schedule = sampler_name, schedule
        self.config = {**config, "algorithm_type": "flow"}
        self.mu = mu_for(image_tokens, config)
        self.sigmas = torch.zeros(1)
        self.timesteps = torch.zeros(0)
        self._begin = 0
        self._previous_x0: torch.Tensor | None = None
        self._heun_first: tuple[torch.Tensor, torch.Tensor, float, float] | None = None  # (x, v, s, s_next)
        self.order = 2 if sampler_name == "Heun" else 1
        self.a1111_eta = 1.0  # Euler a's eta (A1111's "Eta for ancestral samplers")

    def set_timesteps(self, num_inference_steps: int, device: Any = None, **_: Any) -> None:
        values = np.append(levels(self.schedule, int(num_inference_steps), self.config, self.mu), 0.0)
        self.sigmas = torch.tensor(values, dtype=torch.float64)
        timesteps = (self.sigmas[:-1] * TRAIN_STEPS).to(torch.float32)
        if self.order == 2:  # t0, t1, t1, t2, t2, ...: the second evaluation of a step is at the next level
            timesteps = torch.cat([timesteps[:1], timesteps[1:].repeat_interleave(2)])
        self.timesteps = timesteps.to(device)
        self._begin, self._previous_x0, self._heun_first = 0, None, None

    def set_begin_index(self, begin_index: int = 0) -> None:
        self._begin = int(begin_index)

    def _index(self, t: Any) -> int:
        """The level of timestep ``t`` (its index in ``sigmas``)."""
        matches = (self.sigmas[:-1] * TRAIN_STEPS - float(t)).abs()
        return int(torch.argmin(matches).item())

    def sigma_of(self, t: Any) -> float:
        return float(self.sigmas[self._index(t)])

    def scale_model_input(self, sample: torch.Tensor, timestep: Any = None) -> torch.Tensor:
        return sample

    def add_noise(self, original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The clean latents at the level of ``timesteps`` (img2img, hires fix): ``(1 - s) x_0 + s noise``."""
        s = torch.tensor([self.sigma_of(t) for t in timesteps.flatten()], dtype=original.dtype,
                         device=original.device).view(-1, *([1] * (original.ndim - 1)))
        if s.shape[0] == 0:
            return original
        return (1.0 - s) * original + s * noise

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, return_dict: bool = False,
             generator: Any = None, **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(next latents, the clean latents this step predicts); ``generator``: the images' noise streams (one, or
        one per image), for Euler a."""
        v = model_output.to(torch.float32)
        x = sample.to(torch.float32)
        if self._heun_first is not None:  # Heun's second evaluation, at s_next
            start, v_first, s, s_next = self._heun_first
            self._heun_first = None
            return start + (s_next - s) * (v_first + v) / 2, x - s_next * v
        i = self._index(timestep)
        s, s_next = float(self.sigmas[i]), float(self.sigmas[i + 1])
        x0 = x - s * v
        if self.sampler_name == "Heun" and s_next > 0.0:
            self._heun_first = (x, v, s, s_next)
            return x + (s_next - s) * v, x0
        if self.sampler_name in ("Euler", "Heun"):
            nxt = x + (s_next - s) * v
        elif self.sampler_name == "Euler a":
            nxt = self._euler_ancestral(x, x0, s, s_next, generator)
        else:
            nxt = self._dpmpp_2m(x, x0, i, s, s_next)
        self._previous_x0 = x0
        return nxt, x0

    def _euler_ancestral(self, x: torch.Tensor, x0: torch.Tensor, s: float, s_next: float,
                         generator: Any) -> torch.Tensor:
        if s_next == 0.0:
            return x0
        s_down = s_next * (1.0 + (s_next / s - 1.0) * self.a1111_eta)
        down = x + (x - x0) / s * (s_down - s)
        renoise = math.sqrt(max(s_next**2 - s_down**2 * (1.0 - s_next) ** 2 / (1.0 - s_down) ** 2, 0.0))
        return (1.0 - s_next) / (1.0 - s_down) * down + renoise * _noise_like(x, generator)

    @staticmethod
    def _lam(s: float) -> float:
        return math.log((1.0 - s) / s) if 0.0 < s < 1.0 else (-math.inf if s >= 1.0 else math.inf)

    def _dpmpp_2m(self, x: torch.Tensor, x0: torch.Tensor, i: int, s: float, s_next: float) -> torch.Tensor:
        if s_next == 0.0:
            return x0
        lam, lam_next = self._lam(s), self._lam(s_next)
        h = lam_next - lam
        denoised = x0
        previous = self._previous_x0
        if previous is not None and i > self._begin and i > 0:
            h_last = lam - self._lam(float(self.sigmas[i - 1]))
            if math.isfinite(h_last) and h > 0:
                r = h_last / h
                denoised = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * previous
        alpha_next = 1.0 - s_next
        decay = 0.0 if math.isinf(h) else math.exp(-h)
        return (s_next / s) * x - alpha_next * (decay - 1.0) * denoised


def _noise_like(x: torch.Tensor, generator: Any) -> torch.Tensor:
    """Standard normal noise of ``x``'s shape, each image's from its own generator (as diffusers draws it)."""
    generators = generator if isinstance(generator, list) else [generator] * x.shape[0]
    rows = [torch.randn(x.shape[1:], generator=g, device=g.device if g is not None else "cpu") for g in generators]
    return torch.stack(rows).to(x.device, torch.float32)
