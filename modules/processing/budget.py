"""The time budget: a job's estimated seconds on this server, checked before it is queued.

A UNet evaluation of one latent row at P megapixels costs about ``linear * P + quadratic * P**2`` seconds (the
convolutions grow with the pixels, self-attention with the square of its tokens). The coefficients start from a
calibrated prior per device kind and model family (scaled by the UNet's parameter count when the model is loaded,
so a tiny test model is not priced like SD1.5) and are corrected by the median step time of every finished job on
that checkpoint. Pure module: no torch, no web framework.
"""

from __future__ import annotations

import statistics
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from modules.processing.params import BUDGET_FIELD  # the request fields the estimate is made of


@dataclass(frozen=True)
class StepCost:
    """Seconds per UNet row: ``linear`` per megapixel, ``quadratic`` per megapixel squared; ``vae`` seconds per
    megapixel for a decode or encode."""

    linear: float
    quadratic: float
    vae: float

    def scaled(self, factor: float) -> StepCost:
        return StepCost(self.linear * factor, self.quadratic * factor, self.vae * factor)

    def row_seconds(self, megapixels: float) -> float:
        return self.linear * megapixels + self.quadratic * megapixels * megapixels


# Priors for the full-size models, fp32 on CPU / fp16 on a mid-range GPU. SD1.5 on an 8-core CPU: ~2 s per row at
# 512x512, a quarter of it attention at 4096 tokens; SDXL has no attention at the top level (smaller quadratic).
_PRIORS: dict[str, StepCost] = {
    "cpu": StepCost(linear=5.7, quadratic=7.3, vae=20.0),
    "mps": StepCost(linear=1.2, quadratic=1.5, vae=4.0),
    "cuda": StepCost(linear=0.2, quadratic=0.25, vae=0.6),
}
_FAMILY: dict[str, tuple[float, float]] = {  # (linear, quadratic) factors against SD1.5
    "sd1": (1.0, 1.0), "sd2": (1.0, 1.0), "sdxl": (1.5, 0.3), "sdxl_refiner": (1.2, 0.3),
}
_REFERENCE_PARAMS = {"sd1": 860e6, "sd2": 865e6, "sdxl": 2.57e9, "sdxl_refiner": 2.3e9}  # UNet parameters


def prior(device_kind: str, family: str, unet_params: float | None = None) -> StepCost:
    """The starting cost for a family on a device kind; ``unet_params`` scales it for smaller (or larger) UNets."""
    base = _PRIORS.get(device_kind, _PRIORS["cpu"])
    lin, quad = _FAMILY.get(family, (1.5, 1.0))
    cost = StepCost(base.linear * lin, base.quadratic * quad, base.vae)
    if unet_params:
        cost = cost.scaled(min(4.0, unet_params / _REFERENCE_PARAMS.get(family, 860e6)))
    return cost


@dataclass(frozen=True)
class Pass:
    """One sampling pass of a job: ``images`` images of ``megapixels`` each, ``evaluations`` UNet calls per image,
    ``rows`` UNet rows per image and call (2 with classifier-free guidance), ``vae`` decodes/encodes per image."""

    megapixels: float
    evaluations: int
    images: int
    rows: int = 2
    vae: int = 1


def passes(p: Any) -> list[Pass]:
    """The sampling passes ``p`` (a GenerationParams) asks for, counted as upper bounds: img2img its full steps,
    the hires pass its full steps plus a decode and an encode, second-order samplers two evaluations a step."""
    images = int(p.batch_size) * int(p.n_iter)
    rows = 1 if float(getattr(p, "cfg_scale", 7.0)) == 1.0 else 2
    first_vae = 2 if getattr(p, "init_images", None) else 1  # img2img encodes, then decodes
    out = [Pass(p.width * p.height / 1e6, p.steps * _order(p.sampler_name, p.scheduler), images, rows, first_vae)]
    if getattr(p, "enable_hr", False):
        scale = float(getattr(p, "hr_scale", 2.0) or 1.0)
        rx, ry = int(getattr(p, "hr_resize_x", 0) or 0), int(getattr(p, "hr_resize_y", 0) or 0)
        if rx or ry:  # one side given: the other follows the aspect ratio
            hw, hh = rx or p.width * ry / p.height, ry or p.height * rx / p.width
        else:
            hw, hh = p.width * scale, p.height * scale
        steps = int(getattr(p, "hr_second_pass_steps", 0) or 0) or p.steps
        sampler = getattr(p, "hr_sampler_name", None) or p.sampler_name
        out.append(Pass(hw * hh / 1e6, steps * _order(sampler, p.scheduler), images, rows, 2))
    return out


def _order(sampler_name: str | None, scheduler: str | None) -> int:
    try:
        from modules import samplers

        spec, _ = samplers.resolve_sampler_lenient(sampler_name, scheduler)
        return 2 if spec.second_order else 1
    except Exception:  # noqa: BLE001 - an estimate; the sampler name is validated elsewhere
        return 2


def estimate_seconds(cost: StepCost, job_passes: Iterable[Pass]) -> float:
    total = 0.0
    for ps in job_passes:
        total += ps.images * (ps.evaluations * ps.rows * cost.row_seconds(ps.megapixels)
                              + ps.vae * cost.vae * ps.megapixels)
    return total


@dataclass(frozen=True)
class StepTiming:
    """One measured sampling step: ``rows`` UNet rows (all evaluations of the step) at ``megapixels``."""

    megapixels: float
    rows: int
    seconds: float


class CostModel:
    """Per-checkpoint step costs on this server: a prior until a job has run, then fitted to measurement.

    Each measured size keeps its seconds per row (halfway towards each new measurement). One size scales the
    prior; two or more fit ``linear`` and ``quadratic`` themselves (a small UNet spends relatively more of its
    time in attention than SD1.5, so the prior's shape alone can be off by a factor at 4x the pixels)."""

    MAX_SIZES = 16

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[tuple[str, str], dict[float, float]] = {}  # -> {megapixels: seconds per row}
        self._measured: dict[tuple[str, str], StepCost] = {}  # (device kind, checkpoint key) -> fitted cost

    def cost(self, device_kind: str, key: str, family: str, unet_params: float | None = None) -> StepCost:
        with self._lock:
            measured = self._measured.get((device_kind, key))
        return measured if measured is not None else prior(device_kind, family, unet_params)

    def observe(self, device_kind: str, key: str, family: str, unet_params: float | None,
                timings: Sequence[StepTiming]) -> StepCost | None:
        """Learn from a job's step timings (the first step of each size is warm-up and left out); returns the
        new cost, or None when there was nothing to learn from."""
        by_size: dict[float, list[float]] = {}
        for t in _steady(timings):
            if t.rows > 0 and t.megapixels > 0 and t.seconds > 0:
                by_size.setdefault(round(t.megapixels, 6), []).append(t.seconds / t.rows)
        if not by_size:
            return None
        base = prior(device_kind, family, unet_params)
        with self._lock:
            samples = self._samples.setdefault((device_kind, key), {})
            for size, values in by_size.items():
                value = statistics.median(values)
                samples[size] = value if size not in samples else (samples[size] + value) / 2
                samples[size] = samples.pop(size)  # most recent last
            while len(samples) > self.MAX_SIZES:
                samples.pop(next(iter(samples)))
            fitted = _fit(base, samples)
            self._measured[(device_kind, key)] = fitted
        return fitted


def _fit(base: StepCost, samples: dict[float, float]) -> StepCost:
    """Least squares in relative error over the measured sizes, coefficients kept non-negative; the VAE term
    follows the UNet's scale against the prior."""
    ratio = statistics.median(sec / base.row_seconds(mp) for mp, sec in samples.items())
    scaled = base.scaled(ratio)
    if len(samples) < 2:
        return scaled
    # weights 1/y^2: minimise sum(((a*p + b*p^2) - y) / y)^2
    saa = sab = sbb = sya = syb = 0.0
    for mp, sec in samples.items():
        w = 1.0 / (sec * sec)
        fa, fb = mp, mp * mp
        saa, sab, sbb = saa + w * fa * fa, sab + w * fa * fb, sbb + w * fb * fb
        sya, syb = sya + w * sec * fa, syb + w * sec * fb
    det = saa * sbb - sab * sab
    if det <= 0:
        return scaled
    a, b = (sya * sbb - syb * sab) / det, (syb * saa - sya * sab) / det
    if b < 0:  # one term alone, the one the data supports
        a, b = sya / saa, 0.0
    elif a < 0:
        a, b = 0.0, syb / sbb
    return StepCost(a, b, scaled.vae)


def _steady(timings: Sequence[StepTiming]) -> list[StepTiming]:
    seen: set[float] = set()
    out = []
    for t in timings:
        size = round(t.megapixels, 6)
        if size in seen:
            out.append(t)
        seen.add(size)
    return out or list(timings[-1:])


def describe_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.0f} seconds"
    if seconds < 2 * 3600:
        return f"{seconds / 60:,.0f} minutes"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:,.1f} hours"
    return f"{seconds / 86400:,.0f} days"


def check_seconds(p: Any, cost: StepCost, limit: float, multiplier: int = 1, where: str = "") -> float:
    """Refuse, before anything is queued, a job estimated above ``limit`` seconds (0: no limit); ``multiplier``
    counts the jobs a script runs (an X/Y/Z plot's cells). Returns the estimate."""
    from modules.errors import FieldError

    estimate = estimate_seconds(cost, passes(p)) * multiplier
    if limit and estimate > limit:
        raise FieldError(BUDGET_FIELD, f"this job is estimated at about {describe_seconds(estimate)}{where}, more "
                                       f"than the {describe_seconds(limit)} this server accepts (setting "
                                       f"max_job_seconds, 0 = no limit)")
    return estimate
