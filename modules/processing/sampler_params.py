"""A1111's sampler parameters: ``eta`` (ancestral noise; DDIM's eta), the sigma churn ``s_churn``/``s_tmin``/
``s_tmax``/``s_noise`` and ``s_min_uncond`` (NGMS), from the request or, when it leaves them unset, the settings
``eta_ancestral``/``eta_ddim``/``s_churn``/``s_tmin``/``s_tmax``/``s_noise``/``s_min_uncond``.

Which sampler takes which is A1111's (the k-diffusion functions with that argument). Where diffusers cannot do what
A1111 does with a value (eta other than 1 for the SDE samplers, churn for Heun and DPM2), the request is refused with
a message naming the field, instead of the value being silently ignored; a value A1111 itself ignores for the chosen
sampler is ignored here too. Pure processing module: no gradio, no web framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from modules.errors import FieldError

# k-diffusion functions that take ``eta`` (A1111 passes eta_ancestral to them) and DDIM (eta_ddim).
ETA_SAMPLERS = frozenset({"Euler a", "DPM2 a", "DPM++ 2S a", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun",
                          "DPM++ 3M SDE"})
DDIM_ETA_SAMPLERS = frozenset({"DDIM"})
# ... and those that take the churn arguments.
CHURN_SAMPLERS = frozenset({"Euler", "Heun", "DPM2"})
# What our schedulers can do: Euler a takes any eta (its step, schedulers._AncestralEtaMixin), DDIM's step takes
# eta, Euler's step takes the churn.
ETA_ANY = frozenset({"Euler a"}) | DDIM_ETA_SAMPLERS
CHURN_ANY = frozenset({"Euler"})
CHURN_FIELDS = ("s_churn", "s_tmin", "s_tmax", "s_noise")
CHURN_INFOTEXT = {"s_churn": "Sigma churn", "s_tmin": "Sigma tmin", "s_tmax": "Sigma tmax", "s_noise": "Sigma noise"}
CHURN_DEFAULTS = {"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": 0.0, "s_noise": 1.0}


@dataclass(frozen=True)
class SamplerParams:
    eta: float | None = None  # None: the sampler takes no eta
    step_kwargs: dict[str, float] = field(default_factory=dict)  # extra ``scheduler.step`` arguments
    s_min_uncond: float = 0.0  # NGMS: below this sigma every second evaluation skips the negative prompt
    infotext: dict[str, Any] = field(default_factory=dict)


def _value(p: Any, settings: Mapping[str, Any], name: str, setting: str, default: float) -> float:
    own = getattr(p, name, None)
    return float(own if own is not None else settings.get(setting, default))


def resolve(p: Any, settings: Mapping[str, Any], sampler_name: str) -> SamplerParams:
    """The values the job's sampler uses, with A1111's infotext keys; FieldError for what we cannot honour."""
    infotext: dict[str, Any] = {}
    eta: float | None = None
    kwargs: dict[str, float] = {}
    if sampler_name in DDIM_ETA_SAMPLERS:
        eta = _value(p, settings, "eta", "eta_ddim", 0.0)
        kwargs["eta"] = eta
        if eta != 0.0:
            infotext["Eta DDIM"] = eta
    elif sampler_name in ETA_SAMPLERS:
        eta = _value(p, settings, "eta", "eta_ancestral", 1.0)
        if eta != 1.0:
            if sampler_name not in ETA_ANY:
                raise FieldError("eta", f"eta {eta} cannot be used with {sampler_name} here (only 1; Euler a and "
                                        "DDIM take any eta)")
            infotext["Eta"] = eta
    if sampler_name in CHURN_SAMPLERS:
        values = {name: _value(p, settings, name, name, CHURN_DEFAULTS[name]) for name in CHURN_FIELDS}
        if values["s_churn"] != 0.0:
            if sampler_name not in CHURN_ANY:
                raise FieldError("s_churn", f"sigma churn cannot be used with {sampler_name} here (Euler takes it)")
            kwargs.update(values)
            kwargs["s_tmax"] = values["s_tmax"] or float("inf")  # A1111: 0 means no upper bound
        for name, value in values.items():
            if value != CHURN_DEFAULTS[name]:
                infotext[CHURN_INFOTEXT[name]] = value
    s_min_uncond = _value(p, settings, "s_min_uncond", "s_min_uncond", 0.0)
    if s_min_uncond < 0:
        raise FieldError("s_min_uncond", "must be 0 (off) or more")
    if s_min_uncond != 0.0:
        infotext["NGMS"] = s_min_uncond
    return SamplerParams(eta=eta, step_kwargs=kwargs, s_min_uncond=s_min_uncond, infotext=infotext)


def check(p: Any) -> None:
    """Before queueing: a request's own eta / churn that its sampler cannot take is a FieldError now, not a failed
    job later (an unknown sampler is reported by the sampler check)."""
    from modules import samplers

    try:
        sampler, _ = samplers.resolve_sampler(p.sampler_name, p.scheduler)
    except samplers.UnknownSamplerError:
        return
    resolve(p, {}, sampler.name)
