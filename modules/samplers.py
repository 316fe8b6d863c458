"""A1111 sampler and schedule-type names, mapped onto diffusers schedulers (one table).

Pure module: no torch, no diffusers. ``modules.processing.schedulers.build_scheduler`` turns a resolved
(SamplerSpec, ScheduleSpec) pair into a live diffusers scheduler.

A1111 contract (reference section 12):
* samplers are listed in A1111's order; the first one, "DPM++ 2M", is the UI default;
* ``sampler_name`` may carry a legacy schedule suffix ("DPM++ 2M Karras" = "DPM++ 2M" + Karras); the suffix wins over
  the separate ``scheduler`` field, as in A1111's ``get_sampler_and_scheduler``;
* a schedule equal to the sampler's own default is normalised to "Automatic";
* schedule types apply only to k-diffusion style samplers; DDIM, PLMS, UniPC (and here LCM) use their own timesteps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping


def _frozen(d: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class SamplerSpec:
    """One A1111 sampler and the diffusers scheduler that serves it.

    ``config`` is merged over the model's scheduler config. ``options`` is A1111's options dict, verbatim, for the
    ``/samplers`` API. ``second_order`` means the diffusers scheduler calls the model twice per step (its
    ``timesteps`` then hold 2n-1 entries); it is not A1111's flag of the same name (see ``options``).
    """

    name: str
    aliases: tuple[str, ...]
    scheduler_class: str
    config: Mapping[str, Any] = field(default_factory=_frozen, compare=False)
    default_schedule: str | None = None
    options: Mapping[str, Any] = field(default_factory=_frozen, compare=False)
    accepts_schedule: bool = True
    second_order: bool = False
    note: str = field(default="", compare=False)  # where diffusers differs from A1111's implementation


@dataclass(frozen=True)
class ScheduleSpec:
    """One A1111 schedule type ("Schedule type" in the UI and infotext).

    ``config`` holds the diffusers config flags that express it natively (documentation, and for callers that build
    schedulers themselves); ``sigmas`` names the A1111/k-diffusion sigma formula that
    ``modules.processing.schedulers`` computes and injects, so every k-diffusion style sampler gets the same sigmas
    A1111 would use. ``default_rho``/``need_inner_model`` are A1111's fields, echoed by ``/schedulers``.
    """

    name: str
    label: str
    aliases: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=_frozen, compare=False)
    sigmas: str | None = None
    default_rho: float = -1.0
    need_inner_model: bool = False
    note: str = field(default="", compare=False)


class UnknownSamplerError(ValueError):
    """An unknown sampler or schedule name. ``field`` is the request field, ``choices`` the accepted names."""

    def __init__(self, field: str, choices: list[str], value: str | None = None, reason: str = "") -> None:
        self.field = field
        self.choices = list(choices)
        self.value = value
        what = f"{field} {value!r} is not available here ({reason})" if reason else f"unknown {field} {value!r}"
        super().__init__(f"{what}; choose one of: {', '.join(self.choices)}")


# Multistep DPM-Solver in the k-diffusion spelling: DPM++ = data prediction, final step first order (as
# k-diffusion's dpmpp_2m does when sigma_next == 0).
_DPMPP = {"algorithm_type": "dpmsolver++", "solver_type": "midpoint", "lower_order_final": True}
# A1111's own timesteps for DDIM/PLMS: range(0, 1000, 1000 // steps) + 1, i.e. diffusers "leading" + offset 1.
# clip_sample must be off for latents (DDIMScheduler defaults it on).
_A1111_TIMESTEPS = {"timestep_spacing": "leading", "steps_offset": 1, "set_alpha_to_one": False}

SAMPLERS: tuple[SamplerSpec, ...] = (
    SamplerSpec(
        "DPM++ 2M", ("k_dpmpp_2m",), "DPMSolverMultistepScheduler",
        _frozen({**_DPMPP, "solver_order": 2}), "karras", _frozen({"scheduler": "karras"}),
    ),
    SamplerSpec(
        "DPM++ SDE", ("k_dpmpp_sde",), "DPMSolverSDEScheduler", _frozen(), "karras",
        _frozen({"scheduler": "karras", "second_order": True, "brownian_noise": True}), second_order=True,
        note="Brownian-tree noise seeded with the image seeds (noise_sampler_seed), like A1111.",
    ),
    SamplerSpec(
        "DPM++ 2M SDE", ("k_dpmpp_2m_sde",), "DPMSolverMultistepScheduler",
        _frozen({**_DPMPP, "algorithm_type": "sde-dpmsolver++", "solver_order": 2}), "exponential",
        _frozen({"scheduler": "exponential", "brownian_noise": True}),
        note="Gaussian step noise from the per-image generators; A1111 draws it from a Brownian tree.",
    ),
    SamplerSpec(
        "DPM++ 2M SDE Heun", ("k_dpmpp_2m_sde_heun",), "DPMSolverMultistepScheduler",
        _frozen({**_DPMPP, "algorithm_type": "sde-dpmsolver++", "solver_type": "heun", "solver_order": 2}),
        "exponential", _frozen({"scheduler": "exponential", "brownian_noise": True, "solver_type": "heun"}),
        note="Gaussian step noise from the per-image generators; A1111 draws it from a Brownian tree.",
    ),
    SamplerSpec(
        "DPM++ 2S a", ("k_dpmpp_2s_a",), "DPMSolverSinglestepScheduler",
        _frozen({**_DPMPP, "algorithm_type": "sde-dpmsolver++", "solver_order": 2}), "karras",
        _frozen({"scheduler": "karras", "uses_ensd": True, "second_order": True}),
        note="Approximation: diffusers has no 2S-ancestral; singlestep SDE-DPM-Solver++(2) pairs consecutive "
        "timesteps, so it makes one model call per step (A1111: two) and injects SDE noise, not ancestral noise.",
    ),
    SamplerSpec(
        "DPM++ 3M SDE", ("k_dpmpp_3m_sde",), "DPMSolverMultistepScheduler",
        _frozen({**_DPMPP, "algorithm_type": "sde-dpmsolver++", "solver_order": 3}), "exponential",
        _frozen({"scheduler": "exponential", "discard_next_to_last_sigma": True, "brownian_noise": True}),
        note="Gaussian step noise (A1111: Brownian tree); the penultimate sigma is not discarded.",
    ),
    SamplerSpec(
        "Euler a", ("k_euler_a", "k_euler_ancestral"), "EulerAncestralDiscreteScheduler", _frozen(), None,
        _frozen({"uses_ensd": True}),
    ),
    SamplerSpec("Euler", ("k_euler",), "EulerDiscreteScheduler", _frozen(), None, _frozen()),
    SamplerSpec("LMS", ("k_lms",), "LMSDiscreteScheduler", _frozen(), None, _frozen()),
    SamplerSpec(
        "Heun", ("k_heun",), "HeunDiscreteScheduler", _frozen(), None, _frozen({"second_order": True}),
        second_order=True,
    ),
    SamplerSpec(
        "DPM2", ("k_dpm_2",), "KDPM2DiscreteScheduler", _frozen(), "karras",
        _frozen({"scheduler": "karras", "discard_next_to_last_sigma": True, "second_order": True}),
        second_order=True, note="The penultimate sigma is not discarded.",
    ),
    SamplerSpec(
        "DPM2 a", ("k_dpm_2_a",), "KDPM2AncestralDiscreteScheduler", _frozen(), "karras",
        _frozen({"scheduler": "karras", "discard_next_to_last_sigma": True, "uses_ensd": True, "second_order": True}),
        second_order=True, note="The penultimate sigma is not discarded.",
    ),
    SamplerSpec(
        "DDIM", ("ddim",), "DDIMScheduler", _frozen({**_A1111_TIMESTEPS, "clip_sample": False}), None, _frozen(),
        accepts_schedule=False,
    ),
    SamplerSpec(
        "PLMS", ("plms",), "PNDMScheduler", _frozen({**_A1111_TIMESTEPS, "skip_prk_steps": True}), None, _frozen(),
        accepts_schedule=False,
        note="diffusers' PLMS warm-up evaluates the model once more than the step count (len(timesteps) = n+1).",
    ),
    SamplerSpec(
        # A1111 defaults: uni_pc_variant bh1, skip_type time_uniform, order 3, lower_order_final on. A1111's UniPC
        # stops at t = 1/1000 (the smallest training sigma), not at sigma 0: with bh1 a zero final sigma makes
        # diffusers' B(h) infinite and the last step NaN, so the final sigma is sigma_min as in A1111.
        "UniPC", ("unipc",), "UniPCMultistepScheduler",
        _frozen({"solver_type": "bh1", "solver_order": 3, "lower_order_final": True, "timestep_spacing": "linspace",
                 "predict_x0": True, "final_sigmas_type": "sigma_min"}),
        None, _frozen(), accepts_schedule=False,
    ),
    SamplerSpec(
        "LCM", ("k_lcm",), "LCMScheduler", _frozen({"clip_sample": False}), None, _frozen(), accepts_schedule=False,
        note="diffusers' LCMScheduler picks its own timesteps (origin schedule of 50); A1111's LCM takes schedule "
        "types like other k-diffusion samplers.",
    ),
)

# A1111 samplers diffusers cannot serve. Listed so the API/UI can say why rather than "unknown".
UNSUPPORTED: tuple[tuple[str, str], ...] = (
    ("DPM fast", "k-diffusion's fixed-order DPM-Solver with adaptive-free 'fast' step rule; no diffusers scheduler"),
    ("DPM adaptive", "adaptive step-size DPM-Solver (ignores the step count); no diffusers scheduler"),
    ("Restart", "A1111's restart sampler (re-noising loops inside one sampling run); no diffusers scheduler"),
    ("DDIM CFG++", "needs the unconditional prediction inside the update (CFG++); diffusers' DDIM step cannot"),
)

SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec("automatic", "Automatic", note="the sampler's default schedule, else Uniform"),
    ScheduleSpec(
        "uniform", "Uniform", config=_frozen({"timestep_spacing": "linspace"}), sigmas="uniform",
        need_inner_model=True, note="the model's own sigmas at t = linspace(999, 0, n)",
    ),
    ScheduleSpec(
        "karras", "Karras", config=_frozen({"use_karras_sigmas": True}), sigmas="karras", default_rho=7.0,
    ),
    ScheduleSpec(
        "exponential", "Exponential", config=_frozen({"use_exponential_sigmas": True}), sigmas="exponential",
    ),
    ScheduleSpec(
        # k-diffusion: exp(ramp**rho * (ln smax - ln smin) + ln smin); with A1111's rho = 1 the ramp is linear in
        # log sigma, which is exactly the exponential schedule.
        "polyexponential", "Polyexponential", config=_frozen({"use_exponential_sigmas": True}),
        sigmas="exponential", default_rho=1.0, note="rho = 1 equals Exponential",
    ),
    ScheduleSpec(
        "sgm_uniform", "SGM Uniform", ("SGMUniform",), config=_frozen({"timestep_spacing": "trailing"}),
        sigmas="sgm_uniform", need_inner_model=True, note="t = linspace(999, 0, n+1)[:-1]",
    ),
    ScheduleSpec(
        "kl_optimal", "KL Optimal", sigmas="kl_optimal",
        note="no diffusers flag; sigma = tan(lerp(atan smax, atan smin)) injected",
    ),
    ScheduleSpec(
        "align_your_steps", "Align Your Steps", sigmas="align_your_steps",
        note="NVIDIA's 10-step SD1.5/SDXL tables, log-linearly resampled to n steps (diffusers only has the tables)",
    ),
    ScheduleSpec(
        # A1111's simple takes every (1000/n)-th training sigma from the top: t = 999 - floor(i*1000/n). diffusers'
        # "trailing" is 999 - round(i*1000/n) + rounding: the same when n divides 1000, at most one timestep apart
        # otherwise. The injected sigmas use A1111's floor exactly.
        "simple", "Simple", config=_frozen({"timestep_spacing": "trailing"}), sigmas="simple",
        need_inner_model=True,
    ),
    ScheduleSpec(
        "normal", "Normal", config=_frozen({"timestep_spacing": "linspace"}), sigmas="normal",
        need_inner_model=True, note="t = linspace(t(smax), t(smin), n): the same as Uniform for SD models",
    ),
    ScheduleSpec(
        "ddim", "DDIM", config=_frozen({"timestep_spacing": "leading", "steps_offset": 1}), sigmas="ddim",
        need_inner_model=True,
        note="t = 1 + k*(1000//n); A1111 yields more than n steps when n does not divide 999 evenly, we keep n",
    ),
    ScheduleSpec(
        # A1111 settings beta_dist_alpha = beta_dist_beta = 0.6, the same as diffusers' defaults.
        "beta", "Beta", config=_frozen({"use_beta_sigmas": True}), sigmas="beta", need_inner_model=True,
    ),
)

# A1111 schedule types we do not serve (none today; forks add e.g. "Karras Exponential", which is not A1111's).
UNSUPPORTED_SCHEDULES: tuple[tuple[str, str], ...] = ()

DEFAULT_SAMPLER = SAMPLERS[0].name
AUTOMATIC = SCHEDULES[0]


def _sampler_index() -> dict[str, SamplerSpec]:
    index: dict[str, SamplerSpec] = {}
    for spec in SAMPLERS:
        for key in (spec.name, *spec.aliases):
            index.setdefault(key.lower(), spec)
    return index


def _schedule_index() -> dict[str, ScheduleSpec]:
    index: dict[str, ScheduleSpec] = {}
    for spec in SCHEDULES:
        for key in (spec.name, spec.label, *spec.aliases):
            index.setdefault(key.lower(), spec)
    return index


_SAMPLER_INDEX = _sampler_index()
_SCHEDULE_INDEX = _schedule_index()


def sampler_names() -> list[str]:
    """Names of the samplers we serve, in A1111's order (the UI dropdown)."""
    return [s.name for s in SAMPLERS]


def schedule_labels() -> list[str]:
    return [s.label for s in SCHEDULES]


def sampler_list() -> list[dict[str, Any]]:
    """``GET /sdapi/v1/samplers``: ``[{name, aliases, options}]``."""
    return [{"name": s.name, "aliases": list(s.aliases), "options": dict(s.options)} for s in SAMPLERS]


def schedule_list() -> list[dict[str, Any]]:
    """``GET /sdapi/v1/schedulers``: ``[{name, label, aliases, default_rho, need_inner_model}]``.

    ``aliases`` is null where A1111 has none, as A1111 returns it."""
    return [
        {
            "name": s.name,
            "label": s.label,
            "aliases": list(s.aliases) or None,
            "default_rho": s.default_rho,
            "need_inner_model": s.need_inner_model,
        }
        for s in SCHEDULES
    ]


def find_sampler(name: str | None) -> SamplerSpec | None:
    return _SAMPLER_INDEX.get(name.strip().lower()) if name else None


def find_schedule(name: str | None) -> ScheduleSpec | None:
    return _SCHEDULE_INDEX.get(name.strip().lower()) if name else None


def _split_legacy(name: str) -> tuple[str, ScheduleSpec | None]:
    """"DPM++ 2M Karras" -> ("DPM++ 2M", Karras); a plain sampler name is never split."""
    if find_sampler(name) is not None:
        return name, None
    lowered = name.lower()
    for spec in SCHEDULES:
        for option in (spec.label, spec.name, *spec.aliases):
            suffix = " " + option.lower()
            if lowered.endswith(suffix):
                return name[: -len(suffix)].strip(), spec
    return name, None


def _normalise(sampler: SamplerSpec, schedule: ScheduleSpec) -> tuple[SamplerSpec, ScheduleSpec]:
    # A1111: a schedule equal to the sampler's default becomes "Automatic" (so infotexts round-trip).
    if sampler.default_schedule is not None and schedule.name == sampler.default_schedule:
        return sampler, AUTOMATIC
    return sampler, schedule


def resolve_sampler(
    sampler_name: str | None, scheduler: str | None, default: str = DEFAULT_SAMPLER
) -> tuple[SamplerSpec, ScheduleSpec]:
    """Strict resolution for the API: unknown names raise ``UnknownSamplerError`` (answered with 422).

    Names are matched case-insensitively against names, labels and aliases; empty/None means the default sampler and
    "Automatic". A legacy suffix in ``sampler_name`` overrides ``scheduler``.
    """
    name = (sampler_name or "").strip() or default
    name, suffix_schedule = _split_legacy(name)
    sampler = find_sampler(name)
    if sampler is None:
        # A1111 itself silently swaps an unknown name for its default; we answer 422 so a typo is not hidden, and
        # say why for A1111 samplers that diffusers cannot serve.
        reason = next((why for known, why in UNSUPPORTED if known.lower() == name.lower()), "")
        raise UnknownSamplerError("sampler_name", sampler_names(), sampler_name, reason)
    schedule = suffix_schedule
    if schedule is None:
        if scheduler is None or not scheduler.strip():
            schedule = AUTOMATIC
        else:
            schedule = find_schedule(scheduler)
            if schedule is None:
                raise UnknownSamplerError("scheduler", schedule_labels(), scheduler)
    return _normalise(sampler, schedule)


def resolve_sampler_lenient(
    sampler_name: str | None, scheduler: str | None, default: str = DEFAULT_SAMPLER
) -> tuple[SamplerSpec, ScheduleSpec]:
    """A1111's behaviour for UI paths and infotext: unknown sampler -> ``default``, unknown schedule -> Automatic."""
    name, suffix_schedule = _split_legacy((sampler_name or "").strip() or default)
    sampler = find_sampler(name) or find_sampler(default) or SAMPLERS[0]
    schedule = suffix_schedule or find_schedule(scheduler) or AUTOMATIC
    return _normalise(sampler, schedule)


def effective_schedule(sampler: SamplerSpec, schedule: ScheduleSpec) -> ScheduleSpec | None:
    """The schedule that actually shapes the sigmas: Automatic -> the sampler's default, else Uniform (the model's
    own sigmas). None for samplers with their own timesteps (DDIM, PLMS, UniPC, LCM)."""
    if not sampler.accepts_schedule:
        return None
    if schedule.name == AUTOMATIC.name:
        return find_schedule(sampler.default_schedule or "uniform")
    return schedule


def effective_schedule_label(sampler: SamplerSpec, schedule: ScheduleSpec) -> str:
    """Infotext "Schedule type": Automatic becomes the sampler's default label (DPM++ 2M -> "Karras"); samplers with no
    default print "Automatic"; samplers that ignore schedules echo what was asked, as A1111 prints ``p.scheduler``."""
    if schedule.name == AUTOMATIC.name and sampler.accepts_schedule and sampler.default_schedule:
        default = find_schedule(sampler.default_schedule)
        return default.label if default else AUTOMATIC.label
    return schedule.label


def uses_ensd(sampler: SamplerSpec, eta: float | None = None) -> bool:
    """Whether A1111 prints "ENSD" in infotext: samplers flagged ``uses_ensd``, unless eta is 0 (None = default 1)."""
    if eta is not None and eta == 0:
        return False
    return bool(sampler.options.get("uses_ensd", False))
