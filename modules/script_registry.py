"""One registry of the scripts each tab offers: ours (``processing.builtin_scripts``, run natively) and the A1111
``Script`` classes (ours in ``scripts/`` and the extensions', run through the facade's ``ScriptRunner``). The UI's
Script dropdown, ``/sdapi/v1/scripts``, ``/sdapi/v1/script-info`` and both tabs' Generate paths (UI and API) all
consult it, so a script is found by one lookup and never by comparing titles elsewhere.

The facade (A1111's ``p`` built from the typed parameters, scripts' hooks around the job) runs only when a job needs
it: an A1111 script is selected, or the tab has always-on scripts. Otherwise the typed parameters go straight to
processing. Imports no gradio: A1111 scripts' controls are built only when their values are needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from modules.errors import FieldError
from modules.processing import builtin_scripts
from modules.processing.builtin_scripts import BuiltinScript


@dataclass(frozen=True)
class Prepared:
    """What a generation request runs: its parameters (a built-in script may rewrite them), the built-in
    script's job runner (or None), and the facade's ``ScriptCall`` (or None: no A1111 script takes part)."""

    params: Any
    script: Any = None
    scripts_call: Any = None


@dataclass
class TabScripts:
    """The scripts of one tab ("txt2img" or "img2img")."""

    tab: str
    runner: Any = None  # modules.scripts.ScriptRunner, or None before scripts are loaded
    builtin: tuple[BuiltinScript, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.builtin:
            self.builtin = builtin_scripts.for_tab(self.tab)

    @property
    def selectable_titles(self) -> list[str]:
        """The Script dropdown after "None": ours, then the A1111 scripts (A1111's order)."""
        return [s.title for s in self.builtin] + (self.runner.titles if self.runner is not None else [])

    @property
    def uses_facade(self) -> bool:
        """Every job of the tab runs through the facade (always-on A1111 scripts hook each one)."""
        return self.runner is not None and bool(self.runner.alwayson_scripts)

    def find(self, name: str | None) -> BuiltinScript | Any | None:
        """The selectable script ``name`` names (its title, case-insensitive as A1111's API), or None for
        none/"None"; an unknown name is a 422 naming ``script_name``."""
        if not name or name == "None":
            return None
        lowered = name.lower()
        for script in self.builtin:
            if script.name == lowered:
                return script
        found = self.runner.selectable(name) if self.runner is not None else None
        if found is None:
            raise FieldError("script_name", f"unknown script {name!r}", self.selectable_titles)
        return found

    # -- requests --------------------------------------------------------------------------------------------
    def prepare_api(self, params: Any, name: str | None, script_args: Sequence[Any] | None,
                    alwayson: Mapping[str, Sequence[Any]] | None, upscaler_names: Sequence[str]) -> Prepared:
        """An API request's ``script_name``/``script_args``/``alwayson_scripts`` (A1111's ``init_script_args``:
        defaults for every argument not given)."""
        chosen = self.find(name)
        if isinstance(chosen, BuiltinScript):
            params, script = chosen.prepare(params, list(script_args or []), upscaler_names)
            chosen = None
        else:
            script = None
        if alwayson and (self.runner is None or not self.runner.alwayson_scripts):
            raise FieldError("alwayson_scripts", f"always on script {next(iter(alwayson))} not found", [])
        if chosen is None and not self.uses_facade:
            return Prepared(params, script)
        args = self.runner.args_for(chosen.title() if chosen is not None else None,
                                    script_args if chosen is not None else None, alwayson or {})
        return Prepared(params, script, self.runner.call(args))

    def prepare_ui(self, params: Any, title: str | None, fields: Mapping[str, Any],
                   facade_args: Sequence[Any] | None, upscaler_names: Sequence[str]) -> Prepared:
        """The tab's Generate: the dropdown's ``title``, the built-in scripts' field values and the facade's flat
        argument list (``script_arg_<n>`` values, entry 0 replaced here by the dropdown's choice)."""
        chosen = self.find(title)
        script = None
        if isinstance(chosen, BuiltinScript):
            params, script = chosen.prepare(params, chosen.values(dict(fields), upscaler_names), upscaler_names)
            chosen = None
        if chosen is None and not self.uses_facade:
            return Prepared(params, script)
        return Prepared(params, script, self._facade_call(facade_args, chosen))

    def always_on_call(self) -> Any:
        """The facade's call for a job submitted without a prepared request (``Runtime.submit_*`` called
        directly): the always-on scripts with their defaults; None when none hooks the tab."""
        return self._facade_call(None, None) if self.uses_facade else None

    def _facade_call(self, facade_args: Sequence[Any] | None, chosen: Any) -> Any:
        """The ``ScriptCall`` of the flat argument list (defaults when None) with ``chosen`` selected (or none)."""
        args = list(facade_args) if facade_args is not None else self.runner.default_args()
        args[0] = self.runner.selectable_scripts.index(chosen) + 1 if chosen is not None else 0
        return self.runner.call(args)

    # -- catalogue --------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """``/sdapi/v1/scripts``: every script's name, always-on ones included (A1111's list)."""
        from modules.controlnet.units import SCRIPT_TITLE
        from modules.processing.families import flux_kontext

        return ([s.name for s in self.builtin] + ([s.name for s in self.runner.scripts] if self.runner else [])
                + [SCRIPT_TITLE, flux_kontext.NAME])  # the built-in ControlNet and Kontext, always on

    def info(self, upscaler_names: Sequence[str]) -> list[dict[str, Any]]:
        """``/sdapi/v1/script-info``: every script with its arguments (A1111 scripts' from their controls)."""
        is_img2img = self.tab == builtin_scripts.IMG2IMG
        entries = [{"name": s.name, "is_alwayson": False, "is_img2img": is_img2img,
                    "args": [a.info() for a in s.arguments(upscaler_names)]} for s in self.builtin]
        if self.runner is not None:
            entries += self.runner.script_info()
        from modules.controlnet.units import script_info
        from modules.processing.families import flux_kontext

        return entries + [script_info(is_img2img), flux_kontext.script_info(is_img2img)]


@dataclass
class ScriptRegistry:
    """Both tabs' scripts; rebuilt whenever scripts are (re)loaded."""

    txt2img: TabScripts = field(default_factory=lambda: TabScripts(builtin_scripts.TXT2IMG))
    img2img: TabScripts = field(default_factory=lambda: TabScripts(builtin_scripts.IMG2IMG))
    extras: Any = None  # modules.scripts_postprocessing.ScriptPostprocessingRunner: the Extras tab's scripts

    @classmethod
    def of(cls, runners: Mapping[str, Any]) -> ScriptRegistry:
        return cls(TabScripts(builtin_scripts.TXT2IMG, runners.get("txt2img")),
                   TabScripts(builtin_scripts.IMG2IMG, runners.get("img2img")), runners.get("extras"))

    def tab(self, name: str) -> TabScripts:
        if name == builtin_scripts.TXT2IMG:
            return self.txt2img
        if name == builtin_scripts.IMG2IMG:
            return self.img2img
        raise KeyError(name)

    def tabs(self) -> tuple[TabScripts, TabScripts]:
        return self.txt2img, self.img2img
