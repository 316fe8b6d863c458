"""The arguments of A1111's sampling callbacks (``on_cfg_denoiser``, ``on_cfg_denoised``, ``on_cfg_after_cfg``).

Kept apart from ``sampling`` so that ``modules.script_callbacks``, which every extension imports at start, does not
import torch: the server answers before any model library is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class CFGDenoiserParams:
    """A1111's ``on_cfg_denoiser`` argument: before the model runs; ``x``, ``text_cond`` and ``text_uncond`` may be
    replaced (same shapes)."""

    x: Any
    image_cond: Any
    sigma: Any  # the timestep (diffusers schedulers pass timesteps, not sigmas)
    sampling_step: int
    total_sampling_steps: int
    text_cond: Any
    text_uncond: Any
    denoiser: Any = None


@dataclass
class CFGDenoisedParams:
    """A1111's ``on_cfg_denoised`` argument: the conditional prediction before guidance combines it."""

    x: Any
    sampling_step: int
    total_sampling_steps: int
    inner_model: Any = None


@dataclass
class AfterCFGCallbackParams:
    """A1111's ``on_cfg_after_cfg`` argument: the guided prediction, which may be replaced."""

    x: Any
    sampling_step: int
    total_sampling_steps: int


@dataclass
class CfgCallbacks:
    """Extensions' sampling callbacks (each takes one params object and may edit it)."""

    denoiser: Callable[[CFGDenoiserParams], Any] | None = None
    denoised: Callable[[CFGDenoisedParams], Any] | None = None
    after_cfg: Callable[[AfterCFGCallbackParams], Any] | None = None


@dataclass
class ExtraNoiseParams:
    """A1111's ``script_callbacks.ExtraNoiseParams`` (``on_extra_noise``): the noise, which a callback may replace,
    the clean latents ``x`` and the noised ones ``xi``, before img2img's extra noise is added."""

    noise: Any
    x: Any
    xi: Any
