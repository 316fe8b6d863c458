"""The Settings tab: one component per registered option, grouped by section, with search, Apply and Reload UI.

Wiring for modules/ui/app.py (the lead adds these lines; this module does not edit app.py):

    from modules.ui.settings_tab import build_settings_tab
    ...
            with gr.Tab("Settings", id="settings", elem_id="tab_settings"):
                settings = build_settings_tab(rt)
    ...
        # optional: fresh values and choices (checkpoints, VAEs...) each time the page opens
        demo.load(settings.refresh_fn, outputs=settings.refresh_outputs, queue=False)

Keys shown in the quick-settings bar (``QUICKSETTINGS``) are not repeated here, so no elem_id appears twice.
The conversion, diff and apply logic are plain functions (no gradio) so they unit test fast.

Sections follow A1111's Settings page (``modules.a1111_settings.display_order``); sections A1111 lacks (ours,
extensions') follow. A1111 settings this server stores but does not act on (``OptionInfo.used`` False) are marked
"stored only" on each setting, and on the section title when none of its settings is used.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modules.a1111_settings import display_order
from modules.options import OptionError, OptionInfo, Options

# Live in the quick-settings bar (app.py) with the same elem_ids; never built twice.
QUICKSETTINGS = ("sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers")

# An int range wider than this is a Number box, not a slider (A1111 uses a Number for e.g. eta_noise_seed_delta).
MAX_SLIDER_SPAN = 100_000

RELOAD_JS = "() => { location.reload(); }"

# Sections kept off this tab: set on the Extensions tab, or A1111's hidden options.
HIDDEN_SECTIONS = ("extensions", "hidden")

STORED_ONLY = "stored only"
STORED_ONLY_INFO = "stored only: kept for A1111 tools, not used by this server"  # the legend says more
STORED_ONLY_CLASS = "setting-stored-only"
LEGEND_HTML = ("<div class='settings-legend'>Settings marked <i>stored only</i> are A1111 settings this server keeps "
               "in config.json and returns over the API for tools made for A1111, but does not act on.</div>")


# -- pure logic (no gradio) ------------------------------------------------------------------------------------
def elem_id_for(key: str) -> str:
    return f"setting_{key}"


_A1111_RANK = {section.key: i for i, section in enumerate(display_order())}


def visible_keys(options: Options, *, hide_dir_config: bool = False) -> list[str]:
    """Registry keys the tab shows, in the order it shows them: A1111's sections in A1111's order, then other
    sections in the order they first appear in the registry; registry order inside a section."""
    keys = [k for k, info in options.registry.items()
            if k not in QUICKSETTINGS and info.section[0] not in HIDDEN_SECTIONS
            and not (hide_dir_config and info.restricted)]
    first_seen: dict[tuple[str, str], int] = {}
    for key in keys:
        first_seen.setdefault(tuple(options.registry[key].section), len(first_seen))

    def rank(key: str) -> tuple[int, int]:
        section = tuple(options.registry[key].section)
        a1111 = _A1111_RANK.get(section)
        return (0, a1111) if a1111 is not None else (1, first_seen[section])

    return sorted(keys, key=rank)  # stable: registry order inside a section


def sections(options: Options, keys: Iterable[str]) -> list[tuple[tuple[str, str], list[str]]]:
    """Group keys by section, sections in the order they first appear in ``keys``."""
    out: dict[tuple[str, str], list[str]] = {}
    for key in keys:
        out.setdefault(tuple(options.registry[key].section), []).append(key)
    return list(out.items())


def section_ids(grouped: Sequence[tuple[tuple[str, str], list[str]]]) -> list[str]:
    """A unique id per section for elem_ids: the section id, or id_title where sections share an id (A1111's "User
    interface" and "Live previews" are both "ui")."""
    counts: dict[str, int] = {}
    for (sid, _title), _keys in grouped:
        counts[sid] = counts.get(sid, 0) + 1
    out = []
    for (sid, title), _keys in grouped:
        slug = "".join(ch if ch.isalnum() else "_" for ch in title.lower()).strip("_")
        out.append(sid if counts[sid] == 1 else f"{sid}_{slug}")
    return out


def section_stored_only(options: Options, keys: Sequence[str]) -> bool:
    """Whether a section's accordion is marked stored only: none of its settings is used."""
    return bool(keys) and not any(options.registry[k].used for k in keys)


def _ui_value(info: OptionInfo, value: Any) -> Any:
    """A stored value as its component shows it."""
    if info.kind == "list":
        value = list(value or [])
        return value if info.choices is not None else ", ".join(map(str, value))
    if info.kind == "str" and value is None:
        return None if info.choices is not None else ""
    return value


def component_spec(key: str, info: OptionInfo, value: Any = None) -> dict[str, Any]:
    """Which component shows one option, and its keyword arguments. ``value`` defaults to the option's default.

    Returns ``{"type": "checkbox"|"slider"|"number"|"dropdown"|"textbox", "kwargs": {...}}``; callable choices are
    called now.
    """
    if value is None:
        value = info.default
    kwargs: dict[str, Any] = {"label": info.label or key, "elem_id": elem_id_for(key),
                              "value": _ui_value(info, value)}
    # A1111's own label and comment, so that any A1111 localization translates them; the "stored only" badge
    # comes from the class (CSS, its text translated by localization.js), an info line only where A1111 has none
    comment = info.comment
    if not info.used:
        comment = comment or STORED_ONLY_INFO
        kwargs["elem_classes"] = [STORED_ONLY_CLASS]
    if comment:
        kwargs["info"] = comment
    kind = info.kind
    if not info.used and not _fits(info, value):  # A1111 stores any type; show what is stored, as text
        kwargs["value"] = value if isinstance(value, str) else _json_text(value)
        return {"type": "textbox", "kwargs": kwargs}
    choices = info.current_choices()
    if kind == "bool":
        kind_name = "checkbox"
        kwargs["value"] = bool(value)
    elif kind in ("int", "float"):
        bounded = info.minimum is not None and info.maximum is not None
        step = info.step if info.step is not None else (1 if kind == "int" else None)
        if bounded and not (kind == "int" and info.maximum - info.minimum > MAX_SLIDER_SPAN):
            kind_name = "slider"
            kwargs.update(minimum=info.minimum, maximum=info.maximum)
            kwargs["step"] = step if step is not None else (info.maximum - info.minimum) / 100
        else:
            kind_name = "number"
            if info.minimum is not None:
                kwargs["minimum"] = info.minimum
            if info.maximum is not None:
                kwargs["maximum"] = info.maximum
            if kind == "int":
                kwargs["precision"] = 0
            if step is not None:
                kwargs["step"] = step
    elif kind == "list":
        if choices is not None:
            kind_name = "dropdown"
            shown = list(choices) + [v for v in kwargs["value"] if v not in choices]
            kwargs.update(choices=shown, multiselect=True)
        else:
            kind_name = "textbox"
            kwargs["placeholder"] = "comma-separated values"
    elif choices is not None:
        kind_name = "dropdown"
        shown = list(choices)
        if kwargs["value"] is not None and kwargs["value"] not in shown:
            shown.append(kwargs["value"])  # a stale value stays visible; Apply then names the problem
        kwargs.update(choices=shown, multiselect=False)
    else:
        kind_name = "textbox"
    return {"type": kind_name, "kwargs": kwargs}


def _fits(info: OptionInfo, value: Any) -> bool:
    """Whether a stored value has the type its component shows."""
    if value is None:
        return True
    kind = info.kind
    if kind == "bool":
        return isinstance(value, bool)
    if kind in ("int", "float"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "list":
        return isinstance(value, (list, tuple))
    return isinstance(value, str)


def _json_text(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=str)


def from_ui(info: OptionInfo, value: Any) -> Any:
    """A component's value back in the option's type. Values that cannot convert are passed on, so that
    ``Options.validate`` names the problem."""
    kind = info.kind
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == "list":
        if value is None:
            return []
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return list(value)
    if kind == "str" and value == "" and info.default is None:
        return None
    return value


def changed_values(options: Options, keys: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    """The options among ``keys`` whose UI ``values`` differ from the current ones, converted to option types."""
    if len(keys) != len(values):
        raise ValueError(f"{len(keys)} keys but {len(values)} values")
    out: dict[str, Any] = {}
    for key, raw in zip(keys, values):
        info = options.registry.get(key)
        if info is None:
            continue
        value = from_ui(info, raw)
        current = options.get(key)
        if value == current:
            continue
        # a stored-only value of another type (shown as text) is unchanged when its component is untouched
        if not info.used and value == from_ui(info, component_spec(key, info, current)["kwargs"]["value"]):
            continue
        out[key] = value
    return out


def apply_settings(options: Options, keys: Sequence[str], values: Sequence[Any], *, frozen: bool = False,
                   hide_dir_config: bool = False) -> tuple[bool, str]:
    """Apply what changed. Returns (ok, plain-text message). Nothing is written on any error or when frozen."""
    if frozen:
        return False, FROZEN
    try:
        changes = changed_values(options, keys, values)
        if hide_dir_config:
            for key in changes:
                if options.registry[key].restricted:
                    raise OptionError(key, "folder and filename settings are hidden (--hide-ui-dir-config)")
        changed = options.apply(changes)
    except OptionError as err:
        return False, f"{err.field}: {str(err).removeprefix(err.field + ': ')}"
    message = f"{len(changed)} settings changed" + (f": {', '.join(changed)}." if changed else ".")
    reload = [k for k in changed if options.registry[k].needs_reload_ui]
    if reload:
        message += f" Reload the UI for these to take effect: {', '.join(reload)}."
    return True, message


FROZEN = "Settings are frozen (--freeze-settings); nothing was changed."
FROZEN_NOTE = "Settings are frozen (--freeze-settings)."
# the fixed words of apply_settings' messages: each its own element in the page, so that it translates (the
# counts and setting names between them are data)
MESSAGE_PHRASES = ("settings changed", "Reload the UI for these to take effect:", FROZEN, FROZEN_NOTE,
                   "folder and filename settings are hidden (--hide-ui-dir-config)")


def result_html(ok: bool, message: str) -> str:
    css = "settings-ok" if ok else "error"
    text = html.escape(message)
    for phrase in MESSAGE_PHRASES:
        escaped = html.escape(phrase)
        text = text.replace(escaped, f"<span class='ui-text'>{escaped}</span>")
    return f"<div class='{css}'>{text}</div>"


def section_nav_html(titles: Iterable[tuple[str, str]]) -> str:
    """The side list: one link per (section id, title); the page script opens the section a link names."""
    items = "".join(f"<li><a href='#settings_{html.escape(sid)}' data-settings-section='settings_{html.escape(sid)}'>"
                    f"{html.escape(title)}</a></li>" for sid, title in titles)
    return f"<ul class='settings-nav'>{items}</ul>"


def search_visibility(labels: Mapping[str, str], query: str) -> dict[str, bool]:
    """Which keys stay visible for a search: the label (or key) contains the text, case-insensitive."""
    q = (query or "").strip().lower()
    return {k: (not q) or q in label.lower() or q in k.lower() for k, label in labels.items()}


# -- gradio ----------------------------------------------------------------------------------------------------
@dataclass
class SettingsControls:
    components: dict[str, Any]  # key -> component, in the order shown (``visible_keys``)
    sections: dict[str, Any]  # unique section id (``section_ids``) -> accordion
    search: Any
    submit: Any
    reload: Any
    result: Any
    refresh: Any
    refresh_fn: Callable[[], list[Any]] = field(repr=False, default=list)
    refresh_outputs: list[Any] = field(default_factory=list)


_COMPONENTS = {"checkbox": "Checkbox", "slider": "Slider", "number": "Number", "dropdown": "Dropdown",
               "textbox": "Textbox"}


def build_settings_tab(rt: Any) -> SettingsControls:
    import gradio as gr

    options: Options = rt.options
    frozen = bool(getattr(rt.args, "freeze_settings", False))
    from modules.cmd_args import admin_refusal

    # folder and filename settings are admin actions: hidden on a network-exposed server without a login
    hide_dirs = bool(getattr(rt.args, "hide_ui_dir_config", False)) or admin_refusal(rt.args) is not None
    keys = visible_keys(options, hide_dir_config=hide_dirs)
    grouped = sections(options, keys)
    components: dict[str, Any] = {}
    built: dict[str, str] = {}  # key -> component type it was built as
    accordions: dict[str, Any] = {}

    with gr.Column(elem_id="settings"):
        with gr.Row(elem_id="settings_toprow"):
            submit = gr.Button("Apply settings", variant="primary", elem_id="settings_submit", interactive=True)
            reload = gr.Button("Reload UI", elem_id="settings_restart_gradio")
            refresh = gr.Button("🔄", elem_id="settings_refresh", min_width=40, scale=0)
        search = gr.Textbox(label="Search", placeholder="Search settings…", elem_id="settings_search",
                            show_label=False, max_lines=1)
        result = gr.HTML(result_html(False, FROZEN_NOTE) if frozen else "",
                         elem_id="settings_result")
        if not all(options.registry[k].used for k in keys):
            gr.HTML(LEGEND_HTML, elem_id="settings_legend")
        ids = section_ids(grouped)
        titles = [(section_id, title) for ((_sid, title), _keys), section_id in zip(grouped, ids)]
        with gr.Row(elem_id="settings_body"):
            # A1111's list of sections at the side: a click opens that section and brings it into view
            nav = gr.HTML(section_nav_html(titles), elem_id="settings_nav")
            with gr.Column(scale=5, elem_id="settings_sections"):
                for index, (((_sid, title), section_keys), section_id) in enumerate(zip(grouped, ids)):
                    marked = [STORED_ONLY_CLASS] if section_stored_only(options, section_keys) else None
                    with gr.Accordion(title, open=index == 0, elem_id=f"settings_{section_id}",
                                      elem_classes=marked) as acc:
                        accordions[section_id] = acc
                        for key in section_keys:
                            spec = component_spec(key, options.registry[key], options.get(key))
                            cls = getattr(gr, _COMPONENTS[spec["type"]])
                            kwargs = dict(spec["kwargs"])
                            if frozen:
                                kwargs["interactive"] = False
                            components[key] = cls(**kwargs)
                            built[key] = spec["type"]

    comp_list = [components[k] for k in keys]
    acc_list = list(accordions.values())
    # what search matches: the label, and "stored only" for those settings
    labels = {k: (options.registry[k].label or k) + ("" if options.registry[k].used else f" ({STORED_ONLY})")
              for k in keys}

    def on_apply(*values: Any) -> str:
        ok, message = apply_settings(options, keys, values, frozen=frozen, hide_dir_config=hide_dirs)
        return result_html(ok, message)

    def on_search(query: str) -> list[Any]:
        shown = search_visibility(labels, query)
        updates = [gr.update(visible=True if shown[k] else "hidden") for k in keys]
        listed = []
        for ((_sid, _title), section_keys), title in zip(grouped, titles):
            any_shown = any(shown[k] for k in section_keys)
            if (query or "").strip():
                updates.append(gr.update(visible=True if any_shown else "hidden", open=any_shown))
            else:
                updates.append(gr.update(visible=True))
            if any_shown or not (query or "").strip():
                listed.append(title)
        return [*updates, section_nav_html(listed)]

    def on_refresh() -> list[Any]:
        """Current values, and choices again (callable choices such as VAEs may have changed on disk)."""
        out = []
        for key in keys:
            spec = component_spec(key, options.registry[key], options.get(key))
            if spec["type"] != built[key]:  # a stored-only value of another type now: shown after Reload UI
                out.append(gr.update())
                continue
            kw = spec["kwargs"]
            upd = {"value": kw["value"]}
            if "choices" in kw:
                upd["choices"] = kw["choices"]
            out.append(gr.update(**upd))
        return out

    submit.click(on_apply, inputs=comp_list, outputs=[result], queue=False)
    reload.click(None, js=RELOAD_JS)
    search.change(on_search, inputs=[search], outputs=comp_list + acc_list + [nav], queue=False,
                  show_progress="hidden")
    refresh.click(on_refresh, outputs=comp_list, queue=False)
    return SettingsControls(components=components, sections=accordions, search=search, submit=submit,
                            reload=reload, result=result, refresh=refresh, refresh_fn=on_refresh,
                            refresh_outputs=comp_list)
