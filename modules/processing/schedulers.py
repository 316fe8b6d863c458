"""Build the diffusers scheduler for an A1111 sampler + schedule type (tables in ``modules.samplers``).

Schedule types reach k-diffusion style samplers as *sigmas computed here with A1111's formulas* from the model's own
noise levels, not through diffusers' ``use_karras_sigmas``-style flags: those take sigma_min/sigma_max from the
already-spaced timesteps (with an SDXL "leading" config sigma_max drops from 14.6 to about 10.9 at 20 steps, and one
step degenerates to sigma_min), while A1111 always spans the model's full range. The sigmas enter through the class's
``_convert_to_karras`` hook (every k-style class but Euler a), or for Euler a by replacing the sigma table after
``set_timesteps``; both are checked at run time so a diffusers upgrade that drops the hook fails loudly.
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from modules.samplers import SamplerSpec, ScheduleSpec, effective_schedule


# diffusers builds DPM++ SDE's Brownian tree from float32 sigmas and queries it with float64 ones, so torchsde warns
# on every image that 0.0291675 < 0.029168; the difference is rounding, not a problem to report to users.
warnings.filterwarnings("ignore", message="Should have ta>=t0", module="torchsde")


class SchedulerConfigError(ValueError):
    """A sampler/schedule combination this diffusers version cannot honour."""


@dataclass(frozen=True)
class ScheduleOptions:
    """A1111's schedule settings ("Schedule min sigma/max sigma/rho", beta alpha/beta) and the model family.

    ``None`` keeps the model's own value (A1111's default); ``rho`` only affects Karras and Polyexponential."""

    sigma_min: float | None = None
    sigma_max: float | None = None
    rho: float | None = None
    beta_alpha: float = 0.6
    beta_beta: float = 0.6
    is_sdxl: bool = False  # Align Your Steps has separate SD1.5 and SDXL tables


# NVIDIA's Align Your Steps 10-step sigma tables (11 levels), as A1111 uses them.
_AYS_SD15 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
_AYS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)


# ------------------------------------------------------------------------------------ A1111 sigma formulas (numpy)


class ModelSigmas:
    """The model's discrete noise levels, sigma(t) = sqrt((1 - alphabar_t) / alphabar_t), t = 0..T-1 (ascending),
    with k-diffusion's log-linear interpolation between integer timesteps."""

    def __init__(self, alphas_cumprod: Sequence[float] | np.ndarray) -> None:
        ac = np.asarray(alphas_cumprod, dtype=np.float64)
        self.sigmas = np.sqrt((1.0 - ac) / ac)
        self.log_sigmas = np.log(self.sigmas)

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def t_to_sigma(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        lo = np.floor(t).astype(int)
        hi = np.ceil(t).astype(int)
        w = t - lo
        return np.exp((1.0 - w) * self.log_sigmas[lo] + w * self.log_sigmas[hi])

    def sigma_to_t(self, sigma: np.ndarray) -> np.ndarray:
        log_sigma = np.log(np.atleast_1d(np.asarray(sigma, dtype=np.float64)))
        idx = np.searchsorted(self.log_sigmas, log_sigma, side="right") - 1
        idx = np.clip(idx, 0, len(self.log_sigmas) - 2)
        lo, hi = self.log_sigmas[idx], self.log_sigmas[idx + 1]
        w = np.clip((lo - log_sigma) / (lo - hi), 0.0, 1.0)
        return (1.0 - w) * idx + w * (idx + 1)


def _karras(n: int, smin: float, smax: float, rho: float) -> np.ndarray:
    ramp = np.linspace(0.0, 1.0, n)
    return (smax ** (1 / rho) + ramp * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho


def _polyexponential(n: int, smin: float, smax: float, rho: float) -> np.ndarray:
    ramp = np.linspace(1.0, 0.0, n) ** rho  # rho = 1: a straight line in log sigma = Exponential
    return np.exp(ramp * (math.log(smax) - math.log(smin)) + math.log(smin))


def _loglinear_resample(levels: Sequence[float], n: int) -> np.ndarray:
    ys = np.log(np.asarray(levels, dtype=np.float64)[::-1])
    return np.exp(np.interp(np.linspace(0.0, 1.0, n), np.linspace(0.0, 1.0, len(ys)), ys))[::-1]


def schedule_sigmas(formula: str, n: int, model: ModelSigmas, options: ScheduleOptions | None = None) -> np.ndarray:
    """The first ``n`` sigmas (descending, without the final 0) A1111's schedule gives for ``n`` steps."""
    if n < 1:
        raise ValueError("steps must be at least 1")
    o = options or ScheduleOptions()
    smin = o.sigma_min if o.sigma_min else model.sigma_min
    smax = o.sigma_max if o.sigma_max else model.sigma_max
    t_max = len(model.sigmas) - 1
    if formula == "uniform":  # the model's own get_sigmas: t = linspace(T-1, 0, n)
        sig = model.t_to_sigma(np.linspace(t_max, 0, n))
    elif formula == "normal":
        t0, t1 = model.sigma_to_t(smax)[0], model.sigma_to_t(smin)[0]
        sig = model.t_to_sigma(np.linspace(t0, t1, n))
    elif formula == "sgm_uniform":
        t0, t1 = model.sigma_to_t(smax)[0], model.sigma_to_t(smin)[0]
        sig = model.t_to_sigma(np.linspace(t0, t1, n + 1)[:-1])
    elif formula == "simple":  # every (T/n)-th training sigma from the top
        step = len(model.sigmas) / n
        sig = np.array([model.sigmas[-(1 + int(i * step))] for i in range(n)])
    elif formula == "ddim":  # t = 1 + k * (T // n); A1111 may yield a few more than n, we keep n
        step = max(len(model.sigmas) // n, 1)
        ts = np.minimum(1 + step * np.arange(n), t_max)
        sig = model.sigmas[ts][::-1]
    elif formula == "karras":
        sig = _karras(n, smin, smax, o.rho or 7.0)
    elif formula == "exponential":
        sig = _polyexponential(n, smin, smax, 1.0)
    elif formula == "polyexponential":
        sig = _polyexponential(n, smin, smax, o.rho or 1.0)
    elif formula == "kl_optimal":  # n+1 levels ending at sigma_min: the first n here, the last is the final
        s = np.arange(n + 1) / n
        sig = np.tan(s * math.atan(smin) + (1.0 - s) * math.atan(smax))[:n]
    elif formula == "align_your_steps":
        table = _AYS_SDXL if o.is_sdxl else _AYS_SD15
        sig = np.asarray(table) if n == len(table) else _loglinear_resample(table, n)
    elif formula == "beta":
        from scipy import stats  # only this schedule needs scipy

        ppf = stats.beta.ppf(1.0 - np.linspace(0.0, 1.0, n), o.beta_alpha, o.beta_beta)
        sig = smin + ppf * (smax - smin)
    else:
        raise SchedulerConfigError(f"unknown sigma formula {formula!r}")
    return np.ascontiguousarray(sig, dtype=np.float64)


# ------------------------------------------------------------------------------------------- diffusers classes


@functools.cache
def _scheduler_class(name: str) -> type:
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None or not hasattr(cls, "set_timesteps"):
        raise SchedulerConfigError(f"diffusers {diffusers.__version__} has no scheduler class {name}")
    return cls


@functools.cache
def _init_params(cls: type) -> frozenset[str]:
    return frozenset(p for p in inspect.signature(cls.__init__).parameters if p != "self")


SigmaFn = Callable[[int, ModelSigmas], np.ndarray]


class _SigmaHookMixin:
    """Serves A1111 sigmas through diffusers' Karras hook: with ``use_karras_sigmas=True`` every k-style class asks
    ``_convert_to_karras`` for the sigma list and derives timesteps, second-order midpoints etc. from it."""

    _a1111_sigma_fn: SigmaFn
    _a1111_final_fn: Callable[[ModelSigmas], float]
    _a1111_hook_ran: bool

    def _convert_to_karras(self, in_sigmas: Any, num_inference_steps: int | None = None) -> np.ndarray:
        fn = getattr(self, "_a1111_sigma_fn", None)
        if fn is None:  # __init__ of some classes calls set_timesteps before we are wired in
            return _call_karras(super(), in_sigmas, num_inference_steps)
        n = num_inference_steps or self.num_inference_steps  # LMS and DPM++ SDE pass no count
        self._a1111_hook_ran = True
        model = ModelSigmas(self.alphas_cumprod.detach().cpu().numpy())
        sigmas = fn(int(n), model)
        if self._appends_final():  # sigma_min becomes a step of its own; set_timesteps drops the step to 0
            sigmas = np.concatenate([sigmas, [self._a1111_final_fn(model)]])
        return sigmas

    def _appends_final(self) -> bool:
        """A schedule ending at sigma_min (KL Optimal) on a class that appends its own 0 after the hooked sigmas
        and has no ``final_sigmas_type`` to say otherwise (Heun, DPM2, DPM++ SDE)."""
        return (getattr(self, "_a1111_final_fn", None) is not None
                and "final_sigmas_type" not in _init_params(type(self)))

    def set_timesteps(self, num_inference_steps: int | None = None, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("timesteps") is not None or kwargs.get("sigmas") is not None:
            raise SchedulerConfigError("custom timesteps/sigmas cannot be combined with an A1111 schedule type")
        self._a1111_hook_ran = False
        super().set_timesteps(num_inference_steps, *args, **kwargs)
        if getattr(self, "_a1111_sigma_fn", None) is not None and not self._a1111_hook_ran:
            raise SchedulerConfigError(f"{type(self).__name__} no longer calls _convert_to_karras")
        if self._appends_final():
            self.timesteps = self.timesteps[:-1]  # stop at sigma_min: the step to 0 after it is not taken


def _call_karras(parent: Any, in_sigmas: Any, n: int | None) -> Any:
    params = inspect.signature(parent._convert_to_karras).parameters
    return parent._convert_to_karras(in_sigmas, n) if "num_inference_steps" in params else parent._convert_to_karras(in_sigmas)


class _SigmaTableMixin:
    """For classes without the hook (Euler a): rebuild the sigma/timestep tables after diffusers' ``set_timesteps``."""

    _a1111_sigma_fn: SigmaFn

    def set_timesteps(self, num_inference_steps: int, device: Any = None, **kwargs: Any) -> None:
        import torch

        super().set_timesteps(num_inference_steps, device=device, **kwargs)
        if getattr(self, "_a1111_sigma_fn", None) is None:
            return
        model = ModelSigmas(self.alphas_cumprod.detach().cpu().numpy())
        sig = self._a1111_sigma_fn(int(num_inference_steps), model)
        final = self._a1111_final_fn(model) if getattr(self, "_a1111_final_fn", None) is not None else 0.0
        self.sigmas = torch.from_numpy(np.concatenate([sig, [final]]).astype(np.float32))
        self.timesteps = torch.from_numpy(model.sigma_to_t(sig).astype(np.float32)).to(device=device)
        self.num_inference_steps = len(sig)
        self._step_index = None
        self._begin_index = None


class _AncestralEtaMixin:
    """Euler a with A1111's ``eta`` (k-diffusion's ``get_ancestral_step``): of the way down to ``sigma_to``, the
    noise re-added is ``sigma_up = min(sigma_to, eta * sqrt(sigma_to^2 (sigma_from^2 - sigma_to^2) / sigma_from^2))``
    and the deterministic step goes to ``sigma_down = sqrt(sigma_to^2 - sigma_up^2)``. eta 1 is diffusers' own step;
    the noise is drawn from the same generators, so seeds still decide it."""

    a1111_eta: float = 1.0

    def step(self, model_output: Any, timestep: Any, sample: Any, generator: Any = None,
             return_dict: bool = True) -> Any:
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        if self.a1111_eta == 1.0:
            return super().step(model_output, timestep, sample, generator=generator, return_dict=return_dict)
        if self.step_index is None:
            self._init_step_index(timestep)
        sigma_from, sigma_to = self.sigmas[self.step_index], self.sigmas[self.step_index + 1]
        sample = sample.to(torch.float32)
        if self.config.prediction_type == "v_prediction":
            denoised = model_output * (-sigma_from / (sigma_from**2 + 1) ** 0.5) + sample / (sigma_from**2 + 1)
        else:
            denoised = sample - sigma_from * model_output
        sigma_up = torch.minimum(sigma_to, self.a1111_eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2)
                                                              / sigma_from**2) ** 0.5)
        sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
        prev = sample + (sample - denoised) / sigma_from * (sigma_down - sigma_from)
        if float(sigma_to) > 0:
            noise = randn_tensor(model_output.shape, dtype=model_output.dtype, device=model_output.device,
                                 generator=generator)
            prev = prev + noise * sigma_up
        self._step_index += 1
        prev = prev.to(model_output.dtype)
        return (prev, denoised) if not return_dict else _Output(prev, denoised)


class _Output(tuple):
    """(prev_sample, pred_original_sample), also by name, like diffusers' scheduler outputs."""

    def __new__(cls, prev_sample: Any, pred_original_sample: Any) -> _Output:
        return super().__new__(cls, (prev_sample, pred_original_sample))

    @property
    def prev_sample(self) -> Any:
        return self[0]

    @property
    def pred_original_sample(self) -> Any:
        return self[1]


class _LCMMixin:
    """diffusers' LCM refuses more steps than its origin schedule (50); A1111's LCM takes any step count."""

    def set_timesteps(self, num_inference_steps: int | None = None, device: Any = None, **kwargs: Any) -> None:
        if num_inference_steps and kwargs.get("original_inference_steps") is None:
            origin = self.config.original_inference_steps
            if num_inference_steps > origin:
                kwargs["original_inference_steps"] = min(num_inference_steps, self.config.num_train_timesteps)
        super().set_timesteps(num_inference_steps, device=device, **kwargs)


def a1111_timesteps(steps: int, train_steps: int = 1000) -> np.ndarray:
    """A1111's timesteps for DDIM and PLMS, ascending: ``range(0, T, T // steps) + 1`` clipped to T - 1. That is
    ``steps`` of them when ``steps`` divides T and a few more otherwise (30 steps run 31), as A1111 runs them."""
    return np.clip(np.arange(0, train_steps, max(train_steps // steps, 1)) + 1, 0, train_steps - 1)


class _A1111TimestepsMixin:
    """DDIM and PLMS on A1111's timesteps (``a1111_timesteps``). Their ``step`` derives the previous timestep
    from the stride ``T // num_inference_steps``, which is A1111's, so only the list is replaced."""

    def set_timesteps(self, num_inference_steps: int, device: Any = None, **kwargs: Any) -> None:
        import torch

        super().set_timesteps(num_inference_steps, device=device, **kwargs)
        ts = a1111_timesteps(int(num_inference_steps), int(self.config.num_train_timesteps))
        stride = int(self.config.num_train_timesteps) // int(num_inference_steps)
        if hasattr(self, "plms_timesteps"):  # PNDM with skip_prk_steps: its warm-up repeats the second timestep
            if len(ts) > 1 and ts[-1] != ts[-2] + stride:
                return  # the top one was clipped to T - 1: the warm-up step would leave the table; diffusers' n
            self._timesteps = ts
            self.plms_timesteps = np.concatenate([ts[:-1], ts[-2:-1], ts[-1:]])[::-1].copy()
            ts = self.plms_timesteps
            self.ets, self.counter = [], 0
        else:
            ts = ts[::-1].copy()
        self.timesteps = torch.from_numpy(ts.astype(np.int64)).to(device)


@functools.cache
def _subclass(mixin: type, base: type) -> type:
    # isinstance(sched, base) still holds, so diffusers code that checks the class keeps working.
    return type(base.__name__, (mixin, base), {"__module__": __name__, "__qualname__": base.__name__})


_A1111_TIMESTEP_CLASSES = frozenset({"DDIMScheduler", "PNDMScheduler"})
# Classes whose step() reads only ``sigmas``/``timesteps``/``_step_index``, so their tables can be replaced.
_TABLE_CLASSES = frozenset({"EulerAncestralDiscreteScheduler", "EulerDiscreteScheduler", "LMSDiscreteScheduler"})


# ---------------------------------------------------------------------------------------------------------- API


def build_scheduler(
    sampler: SamplerSpec,
    schedule: ScheduleSpec,
    base_config: Mapping[str, Any],
    options: ScheduleOptions | None = None,
) -> Any:
    """A fresh diffusers scheduler for one job (schedulers are stateful: build one per job, per pass).

    ``base_config`` is the model's scheduler config (``pipe.scheduler.config`` or its JSON); keys the class does not
    take (``_class_name``, ``skip_prk_steps`` for non-PNDM ...) are dropped, the sampler's overrides win.
    """
    cls = _scheduler_class(sampler.scheduler_class)
    accepted = _init_params(cls)
    unknown = set(sampler.config) - accepted
    if unknown:
        raise SchedulerConfigError(f"{cls.__name__} does not take {sorted(unknown)} (sampler {sampler.name})")
    config = {k: v for k, v in base_config.items() if k in accepted}
    config.update(sampler.config)

    eff = effective_schedule(sampler, schedule)
    if eff is None:  # DDIM, PLMS, UniPC, LCM: their own timesteps, as in A1111
        if cls.__name__ == "LCMScheduler":
            return _subclass(_LCMMixin, cls)(**config)
        if cls.__name__ in _A1111_TIMESTEP_CLASSES and config.get("timestep_spacing") == "leading":
            return _subclass(_A1111TimestepsMixin, cls)(**config)
        return cls(**config)
    if eff.sigmas is None:
        raise SchedulerConfigError(f"schedule type {eff.label} cannot be served for {sampler.name}")

    for flag in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas"):
        if flag in accepted:
            config[flag] = False
    if "timestep_spacing" in accepted:
        # Our sigmas decide the steps; "linspace" only makes init_noise_sigma = sigma_max (k-diffusion's x = noise *
        # sigma_max) instead of the sqrt(sigma_max**2 + 1) diffusers uses for "leading".
        config["timestep_spacing"] = "linspace"
    for key in ("sigma_min", "sigma_max"):  # Euler's own overrides would fight ours
        if key in accepted:
            config[key] = None

    formula = eff.sigmas
    ends_at_min = formula in FORMULAS_ENDING_AT_SIGMA_MIN
    # LMS appends its own 0 after hooked sigmas; its table can end at sigma_min instead (its step reads only that)
    table_for_final = ends_at_min and "final_sigmas_type" not in accepted and cls.__name__ in _TABLE_CLASSES
    if "use_karras_sigmas" in accepted and hasattr(cls, "_convert_to_karras") and not table_for_final:
        config["use_karras_sigmas"] = True
        target = _subclass(_SigmaHookMixin, cls)
    elif cls.__name__ in _TABLE_CLASSES:
        target = _subclass(_SigmaTableMixin, cls)
        if cls.__name__ == "EulerAncestralDiscreteScheduler":
            target = _subclass(_AncestralEtaMixin, target)
    else:
        raise SchedulerConfigError(f"{cls.__name__} cannot take schedule type {eff.label}")

    schedule_options = options or ScheduleOptions()
    if ends_at_min and "final_sigmas_type" in accepted:
        config["final_sigmas_type"] = "sigma_min"  # diffusers' is the model's sigma_min, A1111's default too
    scheduler = target(**config)
    scheduler._a1111_sigma_fn = lambda n, model: schedule_sigmas(formula, n, model, schedule_options)
    if ends_at_min:
        scheduler._a1111_final_fn = lambda model: schedule_options.sigma_min or model.sigma_min
    return scheduler


# A1111's KL Optimal returns n + 1 sigmas ending at sigma_min, with no 0 after it: the last step stops at sigma_min.
# Served with diffusers' ``final_sigmas_type`` (Euler, DPM-Solver, UniPC), by the table classes (Euler a, LMS), and for
# the second-order classes that append their own 0 (Heun, DPM2, DPM++ SDE) by hooking sigma_min in as one more
# sigma and dropping the step to 0 after it, so their last step takes its second evaluation as k-diffusion's does.
FORMULAS_ENDING_AT_SIGMA_MIN = frozenset({"kl_optimal"})


def sigma_at(scheduler: Any, t: Any) -> float | None:
    """The noise level (k-diffusion sigma) of timestep ``t``, from the scheduler's training schedule; timesteps of
    k-style schedules are fractional, so the sigma is interpolated in log space as k-diffusion's t_to_sigma."""
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is None:
        return None
    sigmas = np.log(((1 - alphas.detach().cpu().numpy().astype(np.float64)) / alphas.detach().cpu().numpy()) ** 0.5)
    value = float(t)
    return float(np.exp(np.interp(value, np.arange(len(sigmas)), sigmas)))


def step_kwargs(scheduler: Any, generators: list[Any] | None, seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """Keyword arguments for every ``scheduler.step`` of a job so its noise follows the image seeds.

    Call once after ``set_timesteps``. Schedulers that draw noise in ``step`` get the per-image ``generators``
    (``ImageRNG.generators``); DPM++ SDE's Brownian tree is seeded with the image ``seeds`` (A1111 seeds it with
    the batch's seeds too, so an image comes out the same alone or in a batch)."""
    if hasattr(scheduler, "noise_sampler_seed"):
        if seeds is not None:
            # Always a list, even for one image: one Brownian tree per image, as k-diffusion builds it for A1111.
            scheduler.noise_sampler_seed = [int(s) for s in seeds]
        scheduler.noise_sampler = None  # rebuilt on the first step with the seeds
    params = inspect.signature(scheduler.step).parameters
    extra = {k: v for k, v in getattr(scheduler, "a1111_step_kwargs", {}).items() if k in params}  # eta, churn
    if generators and "generator" in params:
        return {**extra, "generator": list(generators) if len(generators) > 1 else generators[0]}
    return extra


def model_calls(scheduler: Any) -> int:
    """UNet evaluations the prepared scheduler will ask for: ``len(timesteps)`` (2n-1 for second-order classes,
    n+1 for PLMS). Count progress in these, or per ``scheduler.order``."""
    return len(scheduler.timesteps)
