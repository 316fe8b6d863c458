"""A1111's ``modules.scripts`` for extensions: the ``Script`` base class, ``AlwaysVisible``, ``basedir()``, and the
two ``ScriptRunner``s (``scripts_txt2img``, ``scripts_img2img``) that build the scripts' UI and call their hooks.

A script either appears in the Script dropdown (``show`` returns True; its ``run(p, *args)`` replaces the
generation) or is always on (``show`` returns ``AlwaysVisible``; its hooks run on every generation of the tab).
Each script's ``ui()`` components take the slice ``args_from:args_to`` of the tab's flat argument list, whose
entry 0 is the dropdown's index, as in A1111; the API's ``script_args`` and ``alwayson_scripts`` fill the same list.
A hook that raises is reported and skipped (A1111's behaviour); a selected script's ``run`` that raises fails the
job with its message.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

from modules.paths import INSTALL_DIR
from modules.processing.compat import PostprocessBatchListArgs, PostprocessImageArgs  # noqa: F401 - A1111 names

log = logging.getLogger(__name__)


class _AlwaysVisible:
    def __repr__(self) -> str:
        return "AlwaysVisible"


AlwaysVisible = _AlwaysVisible()

script_classes: list[tuple[str, type]] = []  # (extension, Script subclass) in load order
errors: list[str] = []  # failures of scripts' ui() and hooks, for the log and the Extensions tab


class Script:
    """The base class A1111 extension scripts subclass. Defaults are A1111's."""

    filename: str | None = None
    args_from: int | None = None
    args_to: int | None = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    group: Any = None
    create_group = True
    infotext_fields: list[Any] | None = None
    paste_field_names: list[str] | None = None
    section: str | None = None
    extension: str = ""  # the extension that defines it (ours)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        from modules import script_callbacks

        script_classes.append((script_callbacks._current["name"], cls))

    def title(self) -> str:
        raise NotImplementedError

    def show(self, is_img2img: bool) -> Any:
        return True

    def ui(self, is_img2img: bool) -> list[Any]:
        return []

    def run(self, p: Any, *args: Any) -> Any:
        return None

    @property
    def name(self) -> str:
        """A1111: the lower-cased title, which the API's ``script_name`` and ``alwayson_scripts`` match."""
        return self.title().lower()

    def elem_id(self, item_id: str) -> str:
        tab = "img2img" if self.is_img2img else "txt2img"
        title = "".join(c if c.isalnum() else "_" for c in self.title().lower())
        return f"script_{tab}_{title}_{item_id}"

    # Hooks A1111 calls; the defaults do nothing.
    def setup(self, p: Any, *args: Any) -> None: ...
    def before_process(self, p: Any, *args: Any) -> None: ...
    def process(self, p: Any, *args: Any) -> None: ...
    def before_process_batch(self, p: Any, *args: Any, **kwargs: Any) -> None: ...
    def process_batch(self, p: Any, *args: Any, **kwargs: Any) -> None: ...
    def postprocess_batch(self, p: Any, *args: Any, **kwargs: Any) -> None: ...
    def postprocess_batch_list(self, p: Any, pp: Any, *args: Any, **kwargs: Any) -> None: ...
    def postprocess_image(self, p: Any, pp: Any, *args: Any) -> None: ...
    def postprocess(self, p: Any, processed: Any, *args: Any) -> None: ...
    def before_component(self, component: Any, **kwargs: Any) -> None: ...
    def after_component(self, component: Any, **kwargs: Any) -> None: ...


def basedir() -> str:
    """The folder of the extension whose script is loading now (A1111), else the install folder."""
    from modules import script_callbacks

    script = script_callbacks._current.get("script")
    if script:
        return str(Path(script).resolve().parent.parent)
    return str(INSTALL_DIR)


def _report(script: Any, what: str) -> None:
    message = f"{getattr(script, 'extension', '') or '?'}: {what} of script {_title(script)!r} raised:\n" \
              f"{traceback.format_exc(limit=4)}"
    errors.append(message)
    log.error(message)


def _title(script: Any) -> str:
    try:
        return str(script.title())
    except Exception:  # noqa: BLE001 - a title that raises still needs a name in the report
        return type(script).__name__


class ScriptRunner:
    """The scripts of one tab (txt2img or img2img), their UI components, and the hook calls."""

    def __init__(self, is_img2img: bool) -> None:
        self.is_img2img = is_img2img
        self.scripts: list[Script] = []
        self.alwayson_scripts: list[Script] = []
        self.selectable_scripts: list[Script] = []
        self.inputs: list[Any] = [None]  # entry 0 is the Script dropdown
        self.ui_created = False
        self._placed: set[int] = set()  # ids of scripts whose UI is built
        self._ui_lock = threading.Lock()

    # -- discovery -------------------------------------------------------------------------------------------
    def initialize_scripts(self, classes: Sequence[tuple[str, type]]) -> None:
        for extension, cls in unique_classes(classes):
            try:
                script = cls()
                script.extension = extension
                script.filename = getattr(sys.modules.get(cls.__module__), "__file__", None)
                script.is_img2img, script.is_txt2img = self.is_img2img, not self.is_img2img
                title = script.title()
                visible = script.show(self.is_img2img)
            except NotImplementedError:
                continue  # an abstract helper class (no title)
            except Exception:  # noqa: BLE001 - one broken script must not hide the others
                _report(cls, "creating it")
                continue
            if not isinstance(title, str) or not title:
                continue
            if visible is AlwaysVisible:
                script.alwayson = True
                self.alwayson_scripts.append(script)
            elif visible:
                self.selectable_scripts.append(script)
            else:
                continue
            self.scripts.append(script)

    @property
    def titles(self) -> list[str]:
        return [s.title() for s in self.selectable_scripts]

    def selectable(self, title: str | None) -> Script | None:
        """The selectable script named ``title`` (case-insensitive, as A1111's API matches it)."""
        if not title:
            return None
        lowered = title.lower()
        return next((s for s in self.selectable_scripts if s.name == lowered), None)

    def alwayson(self, name: str) -> Script | None:
        lowered = name.lower()
        return next((s for s in self.alwayson_scripts if s.name == lowered), None)

    # -- UI (called while a gradio Blocks is being built) ----------------------------------------------------
    def create_script_ui(self, script: Script) -> list[Any]:
        """Build ``script.ui()`` in the current gradio context; its components take the next slice of inputs."""
        self._placed.add(id(script))
        script.args_from = len(self.inputs)
        from modules.ui.gradio3_compat import extension_ui

        try:
            with extension_ui():
                controls = script.ui(self.is_img2img) or []
        except Exception:  # noqa: BLE001 - a script whose UI fails is left out, the tab still builds
            _report(script, "ui()")
            controls = []
        if isinstance(controls, dict):
            controls = list(controls.values())
        self.inputs.extend(controls)
        script.args_to = len(self.inputs)
        return list(controls)

    def setup_ui_for_section(self, section: str | None) -> list[Any]:
        """The always-on scripts that asked for ``section`` (None: the scripts area), each in its own group."""
        import gradio as gr

        built = []
        for script in self.alwayson_scripts:
            if id(script) in self._placed or _section(script) != section:
                continue
            if script.create_group:
                with gr.Group(elem_id=f"{'img2img' if self.is_img2img else 'txt2img'}_script_container_"
                                      f"{len(self._placed)}") as group:
                    built += self.create_script_ui(script)
                script.group = group
            else:
                built += self.create_script_ui(script)
        return built

    def setup_selectable_ui(self) -> list[Any]:
        """Each selectable script's UI in a hidden group, shown when the dropdown selects it."""
        import gradio as gr

        groups = []
        for script in self.selectable_scripts:
            if id(script) in self._placed:
                continue
            with gr.Group(visible=False, elem_id=script.elem_id("group")) as group:
                self.create_script_ui(script)
            script.group = group
            groups.append(group)
        return groups

    def finish_ui(self) -> None:
        """Always-on scripts whose section the tab does not have go to the scripts area."""
        for script in self.alwayson_scripts:
            if id(script) not in self._placed:
                self.create_script_ui(script)
        self.ui_created = True

    def ensure_ui(self) -> None:
        """Without the web UI (``--nowebui``), build the scripts' components once in a detached Blocks: their
        values are the defaults the API fills ``script_args`` with, as A1111 does."""
        if self.ui_created:
            return
        import gradio as gr

        with self._ui_lock:  # two first API requests at once build the components once
            if self.ui_created:
                return
            with gr.Blocks(analytics_enabled=False):
                for section in sorted({_section(s) or "" for s in self.alwayson_scripts}):
                    self.setup_ui_for_section(section or None)
                self.setup_selectable_ui()
                self.finish_ui()

    def default_args(self) -> list[Any]:
        """The flat argument list with every component's default value and no script selected."""
        self.ensure_ui()
        return [0] + [getattr(c, "value", None) for c in self.inputs[1:]]

    def components(self) -> list[Any]:
        return [c for c in self.inputs[1:] if c is not None]

    def script_info(self) -> list[dict[str, Any]]:
        """A1111's ``/sdapi/v1/script-info`` entries: each script with its controls' label, default, range and
        choices."""
        self.ensure_ui()
        return [{"name": script.name, "is_alwayson": script.alwayson, "is_img2img": self.is_img2img,
                 "args": [_arg_info(c) for c in self.inputs[script.args_from:script.args_to]]}
                for script in self.scripts]

    # -- hooks ----------------------------------------------------------------------------------------------
    def _each(self, what: str, p: Any, call: Callable[[Script, tuple[Any, ...]], Any]) -> None:
        for script in self.alwayson_scripts:
            args = tuple(p.script_args[script.args_from:script.args_to]) if script.args_from is not None else ()
            try:
                call(script, args)
            except Exception:  # noqa: BLE001 - A1111 reports a failing hook and goes on
                _report(script, what)

    def setup_scrips(self, p: Any, *, is_ui: bool = True) -> None:  # A1111's spelling
        self._each("setup", p, lambda s, a: s.setup(p, *a))

    setup_scripts = setup_scrips

    def before_process(self, p: Any) -> None:
        self._each("before_process", p, lambda s, a: s.before_process(p, *a))

    def process(self, p: Any) -> None:
        self._each("process", p, lambda s, a: s.process(p, *a))

    def before_process_batch(self, p: Any, **kwargs: Any) -> None:
        self._each("before_process_batch", p, lambda s, a: s.before_process_batch(p, *a, **kwargs))

    def process_batch(self, p: Any, **kwargs: Any) -> None:
        self._each("process_batch", p, lambda s, a: s.process_batch(p, *a, **kwargs))

    def postprocess_batch(self, p: Any, images: Any, **kwargs: Any) -> None:
        self._each("postprocess_batch", p, lambda s, a: s.postprocess_batch(p, *a, images=images, **kwargs))

    def postprocess_batch_list(self, p: Any, pp: Any, **kwargs: Any) -> None:
        self._each("postprocess_batch_list", p, lambda s, a: s.postprocess_batch_list(p, pp, *a, **kwargs))

    def postprocess_image(self, p: Any, pp: Any) -> None:
        self._each("postprocess_image", p, lambda s, a: s.postprocess_image(p, pp, *a))

    def postprocess(self, p: Any, processed: Any) -> None:
        self._each("postprocess", p, lambda s, a: s.postprocess(p, processed, *a))

    def before_component(self, component: Any, **kwargs: Any) -> None:
        self._each_component("before_component", component, kwargs)

    def after_component(self, component: Any, **kwargs: Any) -> None:
        self._each_component("after_component", component, kwargs)

    def _each_component(self, hook: str, component: Any, kwargs: dict[str, Any]) -> None:
        for script in self.scripts:  # every script, selectable ones too, as A1111 calls them while building the UI
            try:
                getattr(script, hook)(component, **kwargs)
            except Exception:  # noqa: BLE001 - a failing hook is reported and the UI still builds
                _report(script, hook)

    def run(self, p: Any, *args: Any) -> Any:
        """The selected script's ``run`` (entry 0 of ``args`` is its 1-based index), or None for "None"."""
        index = int(args[0] or 0) if args else 0
        if index <= 0 or index > len(self.selectable_scripts):
            return None
        script = self.selectable_scripts[index - 1]
        return script.run(p, *args[script.args_from:script.args_to])

    # -- calls --------------------------------------------------------------------------------------------------
    def call(self, args: Sequence[Any]) -> ScriptCall:
        return ScriptCall(self, list(args))

    def args_for(self, selected: str | None, selected_args: Sequence[Any] | None,
                 alwayson: dict[str, Sequence[Any]] | None) -> list[Any]:
        """The flat list from the API's ``script_name``/``script_args``/``alwayson_scripts``, defaults elsewhere
        (A1111's ``init_script_args``)."""
        from modules.errors import FieldError

        args = self.default_args()
        script = self.selectable(selected)
        if script is not None:
            args[0] = self.selectable_scripts.index(script) + 1
            _fill(args, script, selected_args or [])
        for name, values in (alwayson or {}).items():
            target = self.alwayson(name)
            if target is None:
                raise FieldError("alwayson_scripts", f"always on script {name} not found",
                                 [s.name for s in self.alwayson_scripts])
            _fill(args, target, values)
        return args


def _arg_info(component: Any) -> dict[str, Any]:
    choices = getattr(component, "choices", None)
    if choices:  # gradio keeps (label, value) pairs
        choices = [c[1] if isinstance(c, (tuple, list)) and len(c) == 2 else c for c in choices]
    return {"label": str(getattr(component, "label", "") or ""), "value": getattr(component, "value", None),
            "minimum": getattr(component, "minimum", None), "maximum": getattr(component, "maximum", None),
            "step": getattr(component, "step", None), "choices": choices or None}


def unique_classes(classes: Sequence[tuple[str, type]]) -> Iterator[tuple[str, type]]:
    """(extension, class) pairs, each class once (a script file imported twice registers it twice)."""
    seen: set[type] = set()
    for extension, cls in classes:
        if cls not in seen:
            seen.add(cls)
            yield extension, cls


def _fill(args: list[Any], script: Script, values: Sequence[Any]) -> None:
    start, end = script.args_from or 0, script.args_to or 0
    for offset, value in enumerate(list(values)[:max(0, end - start)]):
        args[start + offset] = value


def _section(script: Script) -> str | None:
    section = script.section
    return None if section in (None, "scripts", "accordions") else section


@dataclass
class ScriptCall:
    """One generation through the facade: ``p`` built from the typed parameters, the scripts' hooks around it,
    and the selected script's ``run`` in place of ``process_images`` when one is selected. Has the interface of
    the built-in script runners (``check``, ``run``), so it wraps them and they wrap it."""

    runner: ScriptRunner
    args: list[Any]

    def check(self, params: Any) -> None:
        """Nothing to check before queueing: extension scripts validate in their own hooks."""

    def run(self, params: Any, ctx: Any, process: Callable[[Any, Any], Any], upscalers: Any = None) -> Any:
        from modules.processing import compat

        cls = compat.StableDiffusionProcessingImg2Img if self.runner.is_img2img \
            else compat.StableDiffusionProcessingTxt2Img
        from modules.processing import saving

        kind = saving.IMG2IMG if self.runner.is_img2img else saving.TXT2IMG
        p = cls.from_params(params, scripts=self.runner, script_args=list(self.args), is_api=ctx.from_api,
                            sd_model=ctx.model,
                            outpath_samples=str(saving.output_dir(ctx.settings, ctx.data_dir, kind, grid=False)),
                            outpath_grids=str(saving.output_dir(ctx.settings, ctx.data_dir, kind, grid=True)))
        with compat.running(ctx, process):
            processed = self.runner.run(p, *p.script_args)
            if processed is None:
                processed = compat.process_images(p)
        return processed


scripts_txt2img: ScriptRunner = ScriptRunner(is_img2img=False)
scripts_img2img: ScriptRunner = ScriptRunner(is_img2img=True)
scripts_current: ScriptRunner | None = None  # the runner whose tab is being built (component callbacks)


scripts_postproc: Any = None  # A1111's runner of the Extras tab's scripts (modules.scripts_postprocessing)


def build_runners() -> tuple[ScriptRunner, ScriptRunner]:
    """Fresh runners for the scripts loaded so far (``scripts_postproc`` too); the facade's module names point at
    them."""
    global scripts_txt2img, scripts_img2img, scripts_postproc
    from modules import scripts_postprocessing

    scripts_txt2img, scripts_img2img = ScriptRunner(is_img2img=False), ScriptRunner(is_img2img=True)
    scripts_txt2img.initialize_scripts(script_classes)
    scripts_img2img.initialize_scripts(script_classes)
    scripts_postproc = scripts_postprocessing.ScriptPostprocessingRunner(scripts_postprocessing.script_classes)
    return scripts_txt2img, scripts_img2img


class ScriptFile(NamedTuple):
    """A1111's ``ScriptFile``: the folder a script belongs to (the install folder or an extension's), its file name
    and full path."""

    basedir: str
    filename: str
    path: str


class ScriptClassData(NamedTuple):
    """A1111's ``ScriptClassData``, one per loaded ``Script`` subclass (``scripts_data``)."""

    script_class: type
    path: str
    basedir: str
    module: Any


def _active_extensions() -> list[Any]:
    from modules import shared

    rt = shared.runtime
    return [e for e in (getattr(rt, "extensions", None) or []) if e.enabled]


def list_scripts(scriptdirname: str, extension: str, *, include_extensions: bool = True) -> list[ScriptFile]:
    """A1111's ``list_scripts("scripts", ".py")``: the files with that suffix in the install folder's
    ``scriptdirname`` folder, then in each enabled extension's, as ``ScriptFile``s."""
    found: list[ScriptFile] = []
    folders = [(INSTALL_DIR, INSTALL_DIR / scriptdirname)]
    if include_extensions:
        folders += [(Path(e.path), Path(e.path) / scriptdirname) for e in _active_extensions()]
    for base, folder in folders:
        if not folder.is_dir():
            continue
        for name in sorted(p.name for p in folder.iterdir()):
            path = folder / name
            if path.suffix.lower() == extension.lower() and path.is_file():
                found.append(ScriptFile(str(base), name, str(path)))
    return found


# Modules A1111's ``modules/scripts.py`` imports, which extensions reach through it (``scripts.script_callbacks``).
_A1111_IMPORTS = ("script_callbacks", "shared", "paths", "scripts_postprocessing")


def __getattr__(name: str) -> Any:
    """``scripts_data``: A1111's list of the loaded Script classes with their file, folder and module, read from
    what was loaded each time; the modules A1111's scripts module imports."""
    if name in _A1111_IMPORTS:
        import importlib

        return importlib.import_module(f"modules.{name}")
    if name == "scripts_data":
        out = []
        for _extension, cls in script_classes:
            module = sys.modules.get(cls.__module__)
            path = str(getattr(module, "__file__", "") or "")
            folder = Path(path).parent
            base = str(folder.parent if folder.name == "scripts" else folder)
            out.append(ScriptClassData(cls, path, base, module))
        return out
    raise AttributeError(f"module 'modules.scripts' has no attribute {name!r}")
