"""The Script dropdown's controls in the txt2img and img2img tabs, from the one script registry
(``modules.script_registry``): our built-in scripts' controls drawn from their declared arguments, and the A1111
``Script`` UIs (``modules.scripts.ScriptRunner``).

Always-on A1111 scripts are built where their ``section`` asks (the tab calls ``section(...)`` after its own
controls of that name) and otherwise in the scripts area above the Script dropdown; selectable scripts are hidden
groups shown when the dropdown selects them. Every A1111 script component joins the tab's field dictionary as
``script_arg_<n>`` (n is its index in A1111's flat argument list), so the Generate handler receives the values in
order; a built-in script's controls join it under their declared keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import gradio as gr

from modules import browser_files
from modules.processing import builtin_scripts
from modules.processing.builtin_scripts import BuiltinScript, ScriptArg
from modules.script_registry import Prepared, TabScripts

PREFIX = "script_arg_"


@dataclass(frozen=True)
class ChosenScripts:
    """The Script values of one Generate click, taken out of the tab's fields."""

    title: str | None
    builtin_fields: dict[str, Any]
    facade_args: list[Any] | None  # the A1111 scripts' flat argument list, or None when the tab has none


@dataclass
class ScriptControls:
    scripts: TabScripts
    builtin_groups: list[Any] = field(default_factory=list)  # aligned with scripts.builtin
    groups: list[Any] = field(default_factory=list)  # aligned with scripts.runner.selectable_scripts

    @property
    def outputs(self) -> list[Any]:
        return [*self.builtin_groups, *self.groups]

    def visibility(self, title: str) -> list[Any]:
        """The dropdown's change: show the chosen script's group, hide the others."""
        titles = self.scripts.selectable_titles
        return [gr.update(visible=t == title) for t in titles[:len(self.outputs)]]

    def take(self, data: dict[str, Any]) -> ChosenScripts:
        """Take the dropdown, the built-in scripts' values and the ``script_arg_*`` values out of ``data``."""
        title = data.pop("script_name", None)
        keys = {arg.key for script in self.scripts.builtin for arg in script.arguments(()) if arg.key}
        builtin_fields = {key: data.pop(key) for key in list(data) if key in keys}
        values = {int(k[len(PREFIX):]): data.pop(k) for k in [k for k in data if k.startswith(PREFIX)]}
        runner = self.scripts.runner
        facade_args = None
        if runner is not None and runner.scripts:
            facade_args = [0] + [values.get(i) for i in range(1, len(runner.inputs))]
        return ChosenScripts(title, builtin_fields, facade_args)

    def prepare(self, params: Any, chosen: ChosenScripts, upscaler_names: Sequence[str]) -> Prepared:
        return self.scripts.prepare_ui(params, chosen.title, chosen.builtin_fields, chosen.facade_args,
                                       upscaler_names)


def tab_scripts(rt: Any, tab: str) -> TabScripts:
    registry = getattr(rt, "scripts", None)
    return registry.tab(tab) if registry is not None else TabScripts(tab)


def dropdown(rt: Any, tab: str, elem_id: str) -> Any:
    """The Script dropdown: "None", then every selectable script of the tab."""
    return gr.Dropdown(["None", *tab_scripts(rt, tab).selectable_titles], value="None", label="Script",
                       elem_id=elem_id)


def _control(arg: ScriptArg, elem_id: str | None) -> Any:
    if arg.kind == "checkbox":
        return gr.Checkbox(arg.value, label=arg.label, elem_id=elem_id)
    if arg.kind == "radio":
        return gr.Radio(list(arg.choices or ()), value=arg.value, label=arg.label, elem_id=elem_id)
    if arg.kind == "textbox":
        return gr.Textbox(arg.value, label=arg.label, lines=2, elem_id=elem_id)
    if arg.kind == "slider":
        return gr.Slider(arg.minimum, arg.maximum, value=arg.value, step=arg.step, label=arg.label,
                         elem_id=elem_id)
    if arg.kind == "dropdown":
        return gr.Dropdown(list(arg.choices or ()), value=arg.value, label=arg.label, elem_id=elem_id)
    if arg.kind == "checkboxgroup":
        return gr.CheckboxGroup(list(arg.choices or ()), value=list(arg.value), label=arg.label, elem_id=elem_id)
    from modules.ui import common

    return gr.HTML(f"<p class='comments'>{common.words(arg.label)}</p>")  # a "note"


def _builtin_group(tab: str, script: BuiltinScript, f: dict[str, Any], upscaler_names: Sequence[str]) -> Any:
    group_id = f"{tab}_{script.group_elem}" if script.group_elem else None
    with gr.Group(visible=False, elem_id=group_id) as group:
        for arg in script.arguments(upscaler_names):
            component = _control(arg, f"{tab}_{arg.elem}" if arg.elem else None)
            if arg.key:
                f[arg.key] = component
        if script is builtin_scripts.PROMPTS_FROM_FILE:
            _prompt_file_upload(tab, f["pff_text"])
    return group


def _prompt_file_upload(tab: str, text: Any) -> None:
    """A1111's "Upload prompt inputs": a .txt file's text into the list of prompts."""
    upload = gr.File(label="Upload prompt inputs", file_types=[".txt"], elem_id=f"{tab}_pff_file")

    def read_upload(file: Any) -> Any:
        path = browser_files.checked_upload(file, [browser_files.upload_cache_dir()])
        if path is None:
            return gr.update()
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                return handle.read(1_000_000)
        except OSError:
            return gr.update()

    upload.change(read_upload, inputs=[upload], outputs=[text], queue=False, show_progress="hidden")


def runner_for(rt: Any, tab: str) -> Any:
    return tab_scripts(rt, tab).runner


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


def selectable(rt: Any, tab: str, f: dict[str, Any], upscaler_names: Sequence[str] = ("None",)) -> ScriptControls:
    """Every selectable script's hidden group (after the dropdown): ours, then the A1111 scripts'; their
    components into ``f``. The dropdown's change shows the chosen one."""
    scripts = tab_scripts(rt, tab)
    controls = ScriptControls(scripts, [_builtin_group(tab, s, f, upscaler_names) for s in scripts.builtin])
    runner = scripts.runner
    if runner is not None:
        _building(runner)
        controls.groups = runner.setup_selectable_ui()
        runner.finish_ui()
        for index, component in enumerate(runner.inputs[1:], start=1):
            f[f"{PREFIX}{index}"] = component
    f["script_name"].change(controls.visibility, inputs=[f["script_name"]], outputs=controls.outputs,
                            queue=False, show_progress="hidden")
    return controls


def _building(runner: Any) -> None:
    from modules import scripts

    scripts.scripts_current = runner
