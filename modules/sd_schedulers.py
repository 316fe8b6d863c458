"""A1111's ``modules.sd_schedulers`` for extensions (issue 17 section 2): ``schedulers`` as ``Scheduler`` tuples
(``name``, ``label``, ``function``, ``default_rho``, ``need_inner_model``, ``aliases``) and ``schedulers_map`` by
name and label. A view of ``modules.samplers``' schedule table; ``function`` is None (our sigmas are computed in
``processing/schedulers.py`` per job)."""

from __future__ import annotations

from typing import Any, NamedTuple

from modules import samplers as _table


class Scheduler(NamedTuple):
    name: str
    label: str
    function: Any
    default_rho: float = -1
    need_inner_model: bool = False
    aliases: list[str] | None = None


schedulers: list[Scheduler] = [Scheduler(s.name, s.label, None, s.default_rho, s.need_inner_model,
                                         list(s.aliases) or None) for s in _table.SCHEDULES]
schedulers_map: dict[str, Scheduler] = {**{s.name: s for s in schedulers}, **{s.label: s for s in schedulers}}
