"""A1111's ``modules.sd_samplers`` for extensions (issue 17 section 2): the sampler lists as ``SamplerData``
tuples (``name``, ``constructor``, ``aliases``, ``options``), ``visible_sampler_names``, ``find_sampler_config``.
A view of ``modules.samplers``, the one sampler table; ``constructor`` is None because our samplers are diffusers
schedulers built per job, not A1111's classes (calling one is an A1111 internal)."""

from __future__ import annotations

from typing import Any, NamedTuple

from modules import samplers as _table


class SamplerData(NamedTuple):
    name: str
    constructor: Any
    aliases: list[str]
    options: dict[str, Any]


all_samplers: list[SamplerData] = [SamplerData(s.name, None, list(s.aliases), dict(s.options))
                                   for s in _table.SAMPLERS]
all_samplers_map: dict[str, SamplerData] = {s.name: s for s in all_samplers}
samplers: list[SamplerData] = list(all_samplers)  # A1111 filters these by hide_samplers on reload
samplers_for_img2img: list[SamplerData] = list(all_samplers)
samplers_map: dict[str, str] = {alias.lower(): s.name for s in all_samplers for alias in [s.name, *s.aliases]}


def _hidden() -> set[str]:
    from modules import shared

    return set(shared.opts.hide_samplers or []) if shared.opts is not None else set()


def visible_sampler_names() -> list[str]:
    """The sampler names the UI offers (``hide_samplers`` left out)."""
    hidden = _hidden()
    return [s.name for s in all_samplers if s.name not in hidden]


def visible_samplers() -> list[SamplerData]:
    hidden = _hidden()
    return [s for s in all_samplers if s.name not in hidden]


def find_sampler_config(name: str | None) -> SamplerData | None:
    """The sampler with exactly this name (None: the first one), as A1111's; aliases are ``samplers_map``'s."""
    return all_samplers[0] if name is None else all_samplers_map.get(name)
