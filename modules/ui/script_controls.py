"""Extension and built-in ``Script`` UIs in the txt2img and img2img tabs (``modules.scripts.ScriptRunner``).

Always-on scripts are built where their ``section`` asks (the tab calls ``section(...)`` after its own controls of
that name) and otherwise in the scripts area above the Script dropdown; selectable scripts are hidden groups shown
when the dropdown selects them. Every script component joins the tab's field dictionary as ``script_arg_<n>`` (n is
its index in A1111's flat argument list), so the Generate handler receives the values in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr

PREFIX = "script_arg_"


@dataclass
class ScriptControls:
    runner: Any  # modules.scripts.ScriptRunner, or None when the app has none
    groups: list[Any] = field(default_factory=list)  # aligned with runner.selectable_scripts

    @property
    def titles(self) -> list[str]:
        return self.runner.titles if self.runner is not None else []

    def visibility(self, title: str) -> list[Any]:
        return [gr.update(visible=t == title) for t in self.titles]

    def call(self, data: dict[str, Any]) -> Any:
        """Take the ``script_arg_*`` values out of ``data``; the ``ScriptCall`` for the chosen title (or none
        selected), or None when the tab has no such scripts."""
        values = {int(k[len(PREFIX):]): data.pop(k) for k in [k for k in data if k.startswith(PREFIX)]}
        if self.runner is None or not self.runner.scripts:
            return None
        args = [0] + [values.get(i) for i in range(1, len(self.runner.inputs))]
        title = data.get("script_name")
        if title in self.titles:
            args[0] = self.titles.index(title) + 1
        return self.runner.call(args)


def runner_titles(rt: Any, tab: str) -> list[str]:
    runner = runner_for(rt, tab)
    return runner.titles if runner is not None else []


def runner_for(rt: Any, tab: str) -> Any:
    return (getattr(rt, "script_runners", None) or {}).get(tab)


def section(rt: Any, tab: str, name: str) -> None:
    """Always-on scripts that asked to be placed in ``name`` ("seed", "cfg", "dimensions", ...)."""
    runner = runner_for(rt, tab)
    if runner is not None:
        _building(runner)
        runner.setup_ui_for_section(name)


def scripts_area(rt: Any, tab: str) -> None:
    """The always-on scripts of the scripts area (A1111: above the Script dropdown)."""
    runner = runner_for(rt, tab)
    if runner is not None:
        _building(runner)
        runner.setup_ui_for_section(None)


def selectable(rt: Any, tab: str, f: dict[str, Any]) -> ScriptControls:
    """The selectable scripts' hidden groups (after the dropdown), then every script component into ``f``."""
    runner = runner_for(rt, tab)
    controls = ScriptControls(runner)
    if runner is None:
        return controls
    _building(runner)
    controls.groups = runner.setup_selectable_ui()
    runner.finish_ui()
    for index, component in enumerate(runner.inputs[1:], start=1):
        f[f"{PREFIX}{index}"] = component
    return controls


def _building(runner: Any) -> None:
    from modules import scripts

    scripts.scripts_current = runner
