"""The gradio 3 idioms A1111 extensions still write, mapped onto gradio 6 (as Forge maps them onto gradio 4).

``install()`` runs before the extensions' scripts are imported (``modules.extensions.load_scripts``), so their UI
code, which runs while the page is built, finds:

- ``_js=`` on every event listener (``.click(fn, _js="...")``, ``.then(..., _js=...)``, ``gr.on``): gradio 6's
  ``js=``. Also ``show_api=False`` (an undocumented endpoint), and ``every=`` / ``status_tracker=``, which gradio 6
  no longer takes, dropped with a warning in the log.
- ``.style(...)`` on every component and layout: returns the component; ``full_width`` becomes ``scale`` (1 fills
  the row, 0 keeps the button narrow), ``grid`` the gallery's ``columns``, ``height="auto"`` no fixed height, and
  ``height``/``width``/``size``/``container``/``equal_height``/``columns``/``rows``/``object_fit``/``preview``/...
  set the attribute of that name where the component has one; purely cosmetic ones (``rounded``, ``margin``,
  ``border``, ``mobile_collapse``) are ignored.
- Constructor keywords of gradio 3: ``source="upload"`` -> ``sources=["upload"]``, ``default=`` -> ``value=``,
  ``show_copy_button=True`` -> a copy button, ``gr.File(type="file")`` -> ``"filepath"`` (``"bytes"`` ->
  ``"binary"``), ``gr.Button(variant="tool")`` -> a secondary button with the ``tool`` class (A1111's small tool
  buttons); ``tooltip=`` is kept as ``webui_tooltip``; any other keyword gradio 6 does not know (``tool=``,
  ``shape=``, ``brush_radius=``, ...) is dropped with a warning in the log instead of failing the extension.
- ``gr.Box`` (-> ``gr.Group``), ``gr.Variable`` (-> ``gr.State``), ``gr.components.IOComponent`` (-> ``Component``),
  ``gr.inputs.*`` / ``gr.outputs.*`` (Textbox, Number, Slider, Checkbox, CheckboxGroup, Radio, Dropdown, Image,
  Audio, Video, File, Dataframe, State, ColorPicker / Textbox, Image, Audio, Video, File, Dataframe, HTML, JSON,
  Label, HighlightedText, Chatbot, Carousel), also importable as ``gradio.inputs`` / ``gradio.outputs``.
- ``gr.Textbox.update(...)``, ``gr.Dropdown.update(...)``, ... : gradio 6's ``gr.update(...)``, which a handler
  returns to change a component's properties (``gr.update`` itself is still in gradio 6).

- ``visible=False`` in an extension's UI (built inside ``extension_ui()``: scripts' ``ui()``, ``on_ui_tabs``) and
  in what its handlers return (``gr.update(visible=False)``, a component built with it): gradio 3 rendered such a
  component hidden, gradio 6 leaves it out of the page, so the extension's page script, which looks it up by
  ``elem_id`` (images-browser's ``#image_browser_swipe``, dynamic-prompts' wildcards tree), found nothing. It becomes
  gradio 6's ``visible="hidden"``: in the page, not shown. Our own UI keeps gradio 6's behaviour (a smaller page).
- Components placed directly in a ``gr.Tabs`` beside its tabs (images-browser's hidden textbox): gradio 3 showed
  them above the tab bar; gradio 6 takes them for tabs (the bar shows one tab twice and loses others). They are
  moved just before the ``gr.Tabs``.

``gr.Dropdown(type="index")``, ``gr.Radio(type="index")`` and ``elem_id=`` are gradio 6 as they were.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
import sys
import types
from typing import Any, Callable, Iterator

import gradio as gr
from gradio.blocks import Block, BlockContext, Blocks
from gradio.components.base import Component

log = logging.getLogger(__name__)

_installed = False
_building_extension_ui: contextvars.ContextVar[bool] = contextvars.ContextVar("building_extension_ui", default=False)
_warned: set[tuple[str, str]] = set()
_signatures: dict[Any, tuple[set[str], bool]] = {}

BUTTON_VARIANTS = ("primary", "secondary", "stop", "huggingface")
FILE_TYPES = {"file": "filepath", "bytes": "binary"}
DROPPED_EVENT_KEYWORDS = ("every", "status_tracker")
COSMETIC_STYLE = ("rounded", "margin", "border", "mobile_collapse", "color_map")
STYLE_ATTRIBUTES = ("height", "width", "size", "container", "equal_height", "columns", "rows", "object_fit",
                    "preview", "show_label", "min_width", "scale", "allow_preview", "text_align")


def _warn_once(owner: str, what: str, message: str) -> None:
    if (owner, what) not in _warned:
        _warned.add((owner, what))
        log.warning("%s: %s", owner, message)


def _parameters(func: Callable[..., Any]) -> tuple[set[str], bool]:
    """(keyword names, takes **kwargs) of ``func``."""
    found = _signatures.get(func)
    if found is None:
        try:
            params = inspect.signature(func).parameters.values()
        except (TypeError, ValueError):
            found = (set(), True)
        else:
            found = ({p.name for p in params}, any(p.kind is p.VAR_KEYWORD for p in params))
        _signatures[func] = found
    return found


def constructor_keywords(cls: type, init: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` of a gradio 3 constructor call, as gradio 6's ``init`` of ``cls`` takes them."""
    names, open_ended = _parameters(init)
    out = dict(kwargs)
    source = out.pop("source", None)
    if source is not None and "sources" in names and "sources" not in out:
        if source in ("upload", "webcam", "microphone", "clipboard"):
            out["sources"] = [source]
        else:  # "canvas" (a blank sketch) has no gradio 6 equivalent
            _warn_once(cls.__name__, "source", f"source={source!r} has no gradio 6 equivalent; ignored")
    elif source is not None:
        out["source"] = source  # unknown to this class too: dropped (and said) below
    if "default" in out and "value" in names and "value" not in out:
        out["value"] = out.pop("default")
    if "show_copy_button" in out and "buttons" in names:
        if out.pop("show_copy_button") and "buttons" not in out:
            out["buttons"] = ["copy"]
    if issubclass(cls, gr.Button) and out.get("variant") not in (None, *BUTTON_VARIANTS):
        variant = out.pop("variant")
        out["variant"] = "secondary"
        if variant == "tool":
            classes = out.get("elem_classes") or []
            classes = [classes] if isinstance(classes, str) else list(classes)
            out["elem_classes"] = [*classes, "tool"]
    if issubclass(cls, (gr.File, gr.UploadButton)) and out.get("type") in FILE_TYPES:
        out["type"] = FILE_TYPES[out["type"]]
    if open_ended:
        return out
    for key in [k for k in out if k not in names]:
        value = out.pop(key)
        if key.startswith(("show_", "tooltip")):
            continue  # cosmetic buttons and hints: nothing to say
        _warn_once(cls.__name__, key, f"{key}={value!r} is not a gradio 6 parameter; ignored")
    return out


@contextlib.contextmanager
def extension_ui() -> Iterator[None]:
    """Extension code runs inside: its hidden components stay in the page (see the module's docstring)."""
    token = _building_extension_ui.set(True)
    try:
        yield
    finally:
        _building_extension_ui.reset(token)


def hidden_in_page(value: Any) -> Any:
    """What a handler returned, with every ``visible=False`` update as ``visible="hidden"``."""
    if isinstance(value, dict):
        if value.get("__type__") == "update":
            return {**value, "visible": "hidden"} if value.get("visible") is False else value
        return {key: hidden_in_page(item) for key, item in value.items()}  # {component: update}
    if isinstance(value, (list, tuple)) and any(isinstance(item, dict) for item in value):
        return type(value)(hidden_in_page(item) for item in value)
    return value


def _keeps_hidden_in_page(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (an extension's event handler) run as extension code, its updates through ``hidden_in_page``.
    The wrapper is of fn's kind (plain, generator, async), which gradio inspects."""
    if getattr(fn, "_gradio3_compat", False):
        return fn
    # A generator's steps may each run in another copy of the context (gradio steps it from worker threads): the
    # flag is set around each step, never held across a yield.
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            steps = fn(*args, **kwargs)
            while True:
                with extension_ui():
                    try:
                        item = await steps.__anext__()
                    except StopAsyncIteration:
                        return
                yield hidden_in_page(item)
    elif inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            with extension_ui():
                return hidden_in_page(await fn(*args, **kwargs))
    elif inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            steps = fn(*args, **kwargs)
            while True:
                with extension_ui():
                    try:
                        item = next(steps)
                    except StopIteration:
                        return
                yield hidden_in_page(item)
    else:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with extension_ui():
                return hidden_in_page(fn(*args, **kwargs))
    wrapped._gradio3_compat = True  # type: ignore[attr-defined]
    return wrapped


def _repair_init(cls: type) -> None:
    original = cls.__dict__["__init__"]
    if getattr(original, "_gradio3_compat", False):
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        tooltip = kwargs.pop("tooltip", None)
        if kwargs.get("visible") is False and _building_extension_ui.get():
            kwargs["visible"] = "hidden"
        original(self, *args, **constructor_keywords(cls, original, kwargs))
        if tooltip is not None:
            self.webui_tooltip = tooltip

    __init__._gradio3_compat = True  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[method-assign]


def event_keywords(kwargs: dict[str, Any], owner: str = "event listener") -> dict[str, Any]:
    """``kwargs`` of a gradio 3 event listener call as gradio 6 takes them."""
    if "_js" in kwargs:
        js = kwargs.pop("_js")
        if js is not None and kwargs.get("js") is None:
            kwargs["js"] = js
    if "show_api" in kwargs:
        if not kwargs.pop("show_api") and "api_visibility" not in kwargs:
            kwargs["api_visibility"] = "undocumented"
    for key in DROPPED_EVENT_KEYWORDS:
        if key in kwargs:
            value = kwargs.pop(key)
            if value is not None:
                _warn_once(owner, key, f"{key}={value!r} is not taken by gradio 6 event listeners; ignored")
    return kwargs


def _wrap_listener(listener: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(listener, "_gradio3_compat", False):
        return listener

    @functools.wraps(listener)  # keeps event_name, has_trigger, ... that gradio reads off the listener
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        kwargs = event_keywords(kwargs, getattr(listener, "event_name", "event listener"))
        if _building_extension_ui.get():
            args, kwargs = _handler_kept_hidden_in_page(listener, args, kwargs)
        return listener(*args, **kwargs)

    wrapped._gradio3_compat = True  # type: ignore[attr-defined]
    return wrapped


def _handler_kept_hidden_in_page(listener: Callable[..., Any], args: tuple[Any, ...],
                                 kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The listener call's ``fn`` (by keyword or by position) wrapped by ``_keeps_hidden_in_page``."""
    if callable(kwargs.get("fn")):
        kwargs["fn"] = _keeps_hidden_in_page(kwargs["fn"])
        return args, kwargs
    try:  # the unbound class attribute takes the block first, as gr.on takes its triggers
        names = list(inspect.signature(listener).parameters)
    except (TypeError, ValueError):
        return args, kwargs
    position = names.index("fn") if "fn" in names else -1
    if 0 <= position < len(args) and callable(args[position]) and not isinstance(args[position], Block):
        args = (*args[:position], _keeps_hidden_in_page(args[position]), *args[position + 1:])
    return args, kwargs


def _subclasses(cls: type) -> list[type]:
    out, todo = [], [cls]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in out:
                out.append(sub)
                todo.append(sub)
    return out


def _style(self: Any, *args: Any, **kwargs: Any) -> Any:
    """gradio 3's ``component.style(...)``: the settings gradio 6 still has are applied, the rest ignored."""
    name = type(self).__name__
    for key, value in kwargs.items():
        if key == "full_width":
            if hasattr(self, "scale"):
                self.scale = 1 if value else 0
        elif key == "grid":
            columns = value[-1] if isinstance(value, (list, tuple)) and value else value
            if hasattr(self, "columns") and isinstance(columns, int):
                self.columns = columns
        elif key in ("height", "width") and value == "auto":
            if hasattr(self, key):
                setattr(self, key, None)
        elif key in STYLE_ATTRIBUTES and hasattr(self, key):
            setattr(self, key, value)
        elif key not in COSMETIC_STYLE:
            _warn_once(name, f"style:{key}", f".style({key}=...) has no gradio 6 equivalent; ignored")
    return self


def _repair_tabs_exit() -> None:
    original = gr.Tabs.__exit__
    if getattr(original, "_gradio3_compat", False):
        return

    @functools.wraps(original)
    def __exit__(self: Any, *args: Any) -> Any:
        result = original(self, *args)
        strays = [child for child in self.children if not isinstance(child, gr.Tab)]
        parent = self.parent
        if strays and parent is not None and self in parent.children:
            self.children = [child for child in self.children if isinstance(child, gr.Tab)]
            at = parent.children.index(self)
            parent.children[at:at] = strays
            for child in strays:
                child.parent = parent
        return result

    __exit__._gradio3_compat = True  # type: ignore[attr-defined]
    gr.Tabs.__exit__ = __exit__  # type: ignore[method-assign]


def _repair_dependency() -> None:
    from gradio.events import Dependency

    original = Dependency.__init__
    if getattr(original, "_gradio3_compat", False):
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        for name in ("then", "success", "failure"):
            chained = getattr(self, name, None)
            if chained is not None:
                setattr(self, name, _wrap_listener(chained))

    __init__._gradio3_compat = True  # type: ignore[attr-defined]
    Dependency.__init__ = __init__  # type: ignore[method-assign]


# -- gr.inputs / gr.outputs ---------------------------------------------------------------------------------------


def _factory(component: type, *positional: str, **renamed: str) -> Callable[..., Any]:
    """A gradio 2/3 ``gr.inputs.X`` / ``gr.outputs.X``: its positional parameters in the old order, its old keyword
    names (``default`` -> ``value``), building the gradio 6 component."""

    def make(*args: Any, **kwargs: Any) -> Any:
        if len(args) > len(positional):
            raise TypeError(f"{component.__name__}() takes at most {len(positional)} positional arguments")
        kwargs.update(zip(positional, args))
        kwargs.pop("optional", None)  # every gradio 6 input may be empty
        for old, new in renamed.items():
            if old in kwargs:
                value = kwargs.pop(old)
                if new:
                    kwargs.setdefault(new, value)
        return component(**kwargs)

    make.__name__ = make.__qualname__ = component.__name__
    make.__doc__ = f"gradio 3's {component.__name__}: builds gr.{component.__name__}."
    return make


def _output_image(type: str = "auto", plot: bool = False, label: str | None = None, **kwargs: Any) -> Any:
    if type in ("pil", "numpy", "filepath"):
        kwargs["type"] = type
    return gr.Image(label=label, interactive=False, **kwargs)


def _namespaces() -> tuple[types.ModuleType, types.ModuleType]:
    inputs = types.ModuleType("gradio.inputs", "gradio 3's input components, built as gradio 6 components.")
    for name, made in {
        "Textbox": _factory(gr.Textbox, "lines", "placeholder", "default", "numeric", "type", "label",
                            default="value", numeric=""),
        "Number": _factory(gr.Number, "default", "label", default="value"),
        "Slider": _factory(gr.Slider, "minimum", "maximum", "step", "default", "label", default="value"),
        "Checkbox": _factory(gr.Checkbox, "default", "label", default="value"),
        "CheckboxGroup": _factory(gr.CheckboxGroup, "choices", "default", "type", "label", default="value"),
        "Radio": _factory(gr.Radio, "choices", "type", "default", "label", default="value"),
        "Dropdown": _factory(gr.Dropdown, "choices", "type", "default", "label", default="value"),
        "Image": _factory(gr.Image, "shape", "image_mode", "invert_colors", "source", "tool", "type", "label",
                          shape="", invert_colors="", tool=""),
        "Audio": _factory(gr.Audio, "source", "type", "label"),
        "Video": _factory(gr.Video, "type", "source", "label", type=""),
        "File": _factory(gr.File, "file_count", "type", "label", "keep_filename", keep_filename=""),
        "Dataframe": _factory(gr.Dataframe, "headers", "row_count", "col_count", "datatype", "col_width",
                              "default", "type", "label", default="value", col_width="column_widths"),
        "State": _factory(gr.State, "default", default="value"),
        "ColorPicker": _factory(gr.ColorPicker, "default", "label", default="value"),
    }.items():
        setattr(inputs, name, made)
    outputs = types.ModuleType("gradio.outputs", "gradio 3's output components, built as gradio 6 components.")
    for name, made in {
        "Textbox": _factory(gr.Textbox, "type", "label", type=""),
        "Image": _output_image,
        "Audio": _factory(gr.Audio, "type", "label", type=""),
        "Video": _factory(gr.Video, "type", "label", type=""),
        "File": _factory(gr.File, "label"),
        "Dataframe": _factory(gr.Dataframe, "headers", "max_rows", "max_cols", "overflow_row_behaviour", "type",
                              "label", max_rows="", max_cols="", overflow_row_behaviour=""),
        "HTML": _factory(gr.HTML, "label"),
        "JSON": _factory(gr.JSON, "label"),
        "Label": _factory(gr.Label, "num_top_classes", "type", "label", type=""),
        "HighlightedText": _factory(gr.HighlightedText, "color_map", "label", "show_legend"),
        "Chatbot": _factory(gr.Chatbot, "label"),
        "Carousel": _factory(gr.Gallery, "components", "label", components=""),
    }.items():
        setattr(outputs, name, made)
    return inputs, outputs


def install() -> None:
    """Apply the mappings (once per process; idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    blocks = set(_subclasses(Blocks)) | {Blocks}
    for cls in [Block, *_subclasses(Block)]:
        if "__init__" in cls.__dict__ and cls not in blocks and issubclass(cls, (Component, BlockContext)):
            _repair_init(cls)
        for name, value in list(vars(cls).items()):
            if callable(value) and hasattr(value, "event_name") and hasattr(value, "has_trigger"):
                setattr(cls, name, _wrap_listener(value))
        if issubclass(cls, (Component, BlockContext)) and cls not in blocks and "update" not in dir(cls):
            cls.update = staticmethod(gr.update)  # type: ignore[attr-defined]  # gradio 3's gr.Textbox.update(...)
    if not hasattr(Block, "style"):
        Block.style = _style  # type: ignore[attr-defined]
    _repair_dependency()
    _repair_tabs_exit()
    gr.on = _wrap_listener(gr.on)
    for alias, target in (("Box", gr.Group), ("Variable", gr.State)):
        if not hasattr(gr, alias):
            setattr(gr, alias, target)
    if not hasattr(gr.components, "IOComponent"):
        gr.components.IOComponent = Component  # type: ignore[attr-defined]
    inputs, outputs = _namespaces()
    for attr, module in (("inputs", inputs), ("outputs", outputs)):
        if not hasattr(gr, attr):
            setattr(gr, attr, module)
            sys.modules[f"gradio.{attr}"] = module
