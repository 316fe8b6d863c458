"""A1111's ``modules.infotext_utils`` (old name ``modules.generation_parameters_copypaste``) for extensions:
``parse_generation_parameters`` (our infotext parser, with A1111's settings-dependent steps), ``quote``/
``unquote``, ``image_from_url_text``, the paste registry (``paste_fields``, ``registered_param_bindings``,
``ParamBinding``, ``PasteField``, ``add_paste_fields``, ``register_paste_params_button``, ``create_buttons``,
``bind_buttons``, ``connect_paste_params_buttons``, ``connect_paste``), ``create_override_settings_dict`` and
``get_override_settings``, and ``infotext_pasted_callbacks`` (our ``on_infotext_pasted`` registrations).

Importing it costs nothing: gradio is imported inside the functions that build or wire components, so the API
path never loads it. Buttons extensions register are recorded here; they are wired to a tab's fields by
``connect_paste_params_buttons()`` for every tab whose fields were registered with ``add_paste_fields``.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Iterable

from modules import infotext
from modules.infotext import RE_IMAGESIZE as re_imagesize  # noqa: F401 - A1111's names
from modules.infotext import RE_PARAM as re_param  # noqa: F401
from modules.infotext import quote, unquote  # noqa: F401 - A1111's names, our (round-trip safe) quoting

log = logging.getLogger(__name__)

re_param_code = infotext.RE_PARAM.pattern
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]{16,}")


class ParamBinding:
    """A "send to" button: on click, the ``tabname`` tab gets the image of ``source_image_component`` and the
    parameters parsed from ``source_text_component`` (or copied from the ``source_tabname`` tab's fields)."""

    def __init__(self, paste_button: Any, tabname: str, source_text_component: Any = None,
                 source_image_component: Any = None, source_tabname: str | None = None,
                 override_settings_component: Any = None, paste_field_names: list[str] | None = None) -> None:
        self.paste_button = paste_button
        self.tabname = tabname
        self.source_text_component = source_text_component
        self.source_image_component = source_image_component
        self.source_tabname = source_tabname
        self.override_settings_component = override_settings_component
        self.paste_field_names = paste_field_names or []


class PasteField(tuple):
    """(component, infotext key or function of the parsed dict), with ``api`` the API field it corresponds to."""

    def __new__(cls, component: Any, target: Any, *, api: str | None = None) -> PasteField:
        return super().__new__(cls, (component, target))

    def __init__(self, component: Any, target: Any, *, api: str | None = None) -> None:
        super().__init__()
        self.api = api
        self.component = component
        self.label = target if isinstance(target, str) else None
        self.function = target if callable(target) else None


paste_fields: dict[str, dict[str, Any]] = {}
registered_param_bindings: list[ParamBinding] = []


def reset() -> None:
    paste_fields.clear()
    registered_param_bindings.clear()


def __getattr__(name: str) -> Any:
    if name == "infotext_pasted_callbacks":
        from modules import script_callbacks

        return [item.callback for item in script_callbacks.callbacks("infotext_pasted")]
    raise AttributeError(f"module 'modules.infotext_utils' has no attribute {name!r}")


# -- parsing ----------------------------------------------------------------------------------------------------


def _opts() -> Any:
    from modules import shared

    return shared.opts


def _uses_emphasis(text: str) -> bool:
    from modules import prompt_parser

    pieces = prompt_parser.parse_prompt_attention(text)
    return any(weight != 1.0 and piece != "BREAK" for piece, weight in pieces)


def parse_generation_parameters(x: str, skip_fields: Iterable[str] | None = None) -> dict[str, Any]:
    """A1111's parser: ``{"Prompt", "Negative prompt", "Steps": "20", "Size-1": "512", ...}`` with A1111's
    defaults for absent keys. As A1111, with the app's settings: styles found in the prompts are taken out and
    listed as ``"Styles array"`` (``infotext_styles``: "Apply if any" by default, "Apply", "Discard", "Ignore"),
    the keys in ``infotext_skip_pasting`` are dropped unless ``skip_fields`` is given, and old versions' flags are
    added (``auto_backcompat``)."""
    opts = _opts()
    get = opts.get if opts is not None else (lambda key, default=None: default)
    skip = list(get("infotext_skip_pasting", []) or []) if skip_fields is None else list(skip_fields)
    res: dict[str, Any] = infotext.parse_infotext(x, backcompat=bool(get("auto_backcompat", True)),
                                                  prompt_uses_emphasis=_uses_emphasis)
    mode = get("infotext_styles", "Apply if any")
    from modules import shared

    styles = shared.prompt_styles
    if mode != "Ignore" and styles is not None and getattr(styles, "styles", None):
        found, prompt, negative = styles.extract_styles_from_prompt(str(res["Prompt"]), str(res["Negative prompt"]))
        res["Prompt"], res["Negative prompt"] = prompt, negative
        if mode == "Apply" or (mode == "Apply if any" and found):
            res["Styles array"] = found
    for key in skip:
        res.pop(key, None)
    return res


infotext_to_setting_name_mapping: list[tuple[str, str]] = []


def _setting_mapping() -> list[tuple[str, str]]:
    opts = _opts()
    registry = getattr(opts, "registry", {}) if opts is not None else {}
    return [(info.infotext, key) for key, info in registry.items() if info.infotext] + infotext_to_setting_name_mapping


def _cast(setting: str, value: Any) -> Any:
    opts = _opts()
    info = opts.registry.get(setting) if opts is not None else None
    kind = getattr(info, "kind", "str")
    try:
        if kind == "bool":
            return str(value).strip().lower() in ("true", "1", "yes")
        if kind == "int":
            return int(float(value))
        if kind == "float":
            return float(value)
    except (TypeError, ValueError):
        return value
    return value


def create_override_settings_dict(text_pairs: Iterable[str]) -> dict[str, Any]:
    """``["Clip skip: 2", "ENSD: 31337"]`` -> ``{"CLIP_stop_at_last_layers": 2, "eta_noise_seed_delta": 31337}``
    for the settings that name an infotext key."""
    params = {}
    for pair in text_pairs:
        key, _, value = pair.partition(":")
        params[key] = value.strip()
    return {setting: _cast(setting, params[key]) for key, setting in _setting_mapping() if params.get(key) is not None}


def get_override_settings(params: dict[str, Any], *, skip_fields: Iterable[str] | None = None
                          ) -> list[tuple[str, str, Any]]:
    """(infotext key, setting, value) for each setting the parsed infotext sets to something else than now."""
    skip = set(skip_fields or ())
    opts = _opts()
    out = []
    for key, setting in _setting_mapping():
        if key in skip or params.get(key) is None:
            continue
        value = _cast(setting, params[key])
        if opts is not None and opts.get(setting) == value:
            continue
        out.append((key, setting, value))
    return out


# -- images -----------------------------------------------------------------------------------------------------


def image_from_url_text(filedata: Any) -> Any:
    """The PIL image a gallery/image component handed over: a PIL image, a base64 PNG (data URL or plain), or a
    file (a path, gradio's ``{"path"/"name": ...}``, a ``(path, caption)`` gallery item) inside this server's
    upload cache or output folders (other paths are refused: the page can name any path)."""
    from PIL import Image

    if filedata is None:
        return None
    if isinstance(filedata, Image.Image):
        return filedata
    if isinstance(filedata, (list, tuple)):
        if not filedata:
            return None
        first = filedata[0]
        return image_from_url_text(first[0] if isinstance(first, (list, tuple)) and first else first)
    if isinstance(filedata, dict):
        path = filedata.get("path") or filedata.get("name")
        if path is None and isinstance(filedata.get("image"), (dict, str)):
            return image_from_url_text(filedata["image"])
        return _allowed_image(str(path)) if path else None
    text = str(filedata)
    if text.startswith("data:") or (_BASE64.fullmatch(text[:4096]) and not os.path.exists(text[:4096])):
        from modules.api.images import decode_base64_to_image

        return decode_base64_to_image(text)
    return _allowed_image(text.rsplit("?", 1)[0])


def _allowed_image(path: str) -> Any:
    from PIL import Image

    from modules import browser_files, shared

    roots = [browser_files.upload_cache_dir()]
    if shared.runtime is not None:
        roots = browser_files.allowed_roots(shared.opts.as_dict(), shared.runtime.paths.data_dir)
    checked = browser_files.checked_upload(path, roots)
    if checked is None:
        raise ValueError("trying to open an image file outside of the allowed folders")
    with Image.open(checked) as opened:
        image = opened.copy()
        image.info = dict(opened.info)
    return image


# -- the paste registry ------------------------------------------------------------------------------------------


def add_paste_fields(tabname: str, init_img: Any, fields: list[Any] | None,
                     override_settings_component: Any = None) -> None:
    """Register a tab's fields ((component, infotext key or function) pairs) and its image component, as the
    target of send-to buttons."""
    if fields:
        fields[:] = [f if isinstance(f, PasteField) else PasteField(*f) for f in fields]
    paste_fields[tabname] = {"init_img": init_img, "fields": fields,
                             "override_settings_component": override_settings_component}


def create_buttons(tabs_list: Iterable[str]) -> dict[str, Any]:
    """One "Send to <tab>" button per tab (A1111's ids: ``<tab>_tab``), in the current gradio context."""
    import gradio as gr

    return {tab: gr.Button(f"Send to {tab}", elem_id=f"{tab}_tab") for tab in tabs_list}


def bind_buttons(buttons: dict[str, Any], send_image: Any, send_generate_info: Any) -> None:
    """A1111's old API: register each button to send ``send_image`` and the infotext (a component, or a tab name
    whose fields are copied)."""
    for tabname, button in buttons.items():
        text = send_generate_info if not isinstance(send_generate_info, str) else None
        source_tab = send_generate_info if isinstance(send_generate_info, str) else None
        register_paste_params_button(ParamBinding(paste_button=button, tabname=tabname, source_text_component=text,
                                                  source_image_component=send_image, source_tabname=source_tab))


def register_paste_params_button(binding: ParamBinding) -> None:
    registered_param_bindings.append(binding)


def paste_values(text: str | None, fields: list[Any]) -> list[Any]:
    """What pasting ``text`` puts into each field: the parsed value cast to the component's value type (A1111's
    rules: ``"False"`` is False for a checkbox, numbers through float), or None to leave a field alone. The
    ``on_infotext_pasted`` callbacks see the parsed dict first."""
    from modules import script_callbacks

    params = parse_generation_parameters(text or "")
    script_callbacks.call("infotext_pasted", text or "", params)
    values: list[Any] = []
    for component, key in fields:
        try:
            value = key(params) if callable(key) else params.get(key)
        except Exception:  # noqa: BLE001 - one field's function must not break the paste
            value = None
        if value is None:
            values.append(None)
            continue
        current = getattr(component, "value", None)
        try:
            if isinstance(current, bool):
                value = value if isinstance(value, bool) else str(value) != "False"
            elif isinstance(current, (int, float)) and not isinstance(value, (int, float)):
                number = float(value)
                value = int(number) if isinstance(current, int) and number.is_integer() else number
            elif isinstance(current, str) and not isinstance(value, str):
                value = str(value)
        except (TypeError, ValueError):
            value = None
        values.append(value)
    return values


def connect_paste(button: Any, fields: list[Any], input_comp: Any, override_settings_component: Any,
                  tabname: str) -> None:
    """On ``button`` click, parse the text of ``input_comp`` into ``fields`` (and the override-settings
    dropdown)."""
    import gradio as gr

    def paste(text: str | None) -> list[Any]:
        if not text:  # A1111 reads params.txt, the last generation's parameters
            text = _last_params()
        updates = [gr.update() if v is None else (v if _is_update(v) else gr.update(value=v))
                   for v in paste_values(text, fields)]
        if override_settings_component is not None:
            handled = {key for _, key in fields if isinstance(key, str)}
            pairs = [f"{key}: {value}" for key, _setting, value in
                     get_override_settings(parse_generation_parameters(text or ""), skip_fields=handled)]
            updates.append(gr.update(value=pairs, choices=pairs, visible=bool(pairs)))
        return updates

    outputs = [component for component, _ in fields]
    if override_settings_component is not None:
        outputs.append(override_settings_component)
    button.click(fn=paste, inputs=[input_comp], outputs=outputs, show_progress="hidden")


def _is_update(value: Any) -> bool:
    return isinstance(value, dict) and value.get("__type__") == "update"


def _last_params() -> str:
    from modules import shared

    if shared.runtime is None or getattr(shared.cmd_opts, "hide_ui_dir_config", False):
        return ""
    try:
        return shared.runtime.paths.params_file.read_text(encoding="utf-8")
    except OSError:
        return ""


def connect_paste_params_buttons(tabs: Any = None) -> None:
    """Wire every registered button to its target tab (one registered with ``add_paste_fields``); buttons whose
    tab has no registered fields are left as they are. ``tabs`` (the app's ``gr.Tabs``): switch to the target
    tab (its id is the tab name) after sending."""
    import gradio as gr

    for binding in registered_param_bindings:
        target = paste_fields.get(binding.tabname)
        if target is None:
            log.info("send-to button for tab %r: that tab registered no paste fields", binding.tabname)
            continue
        fields = target["fields"] or []
        override = binding.override_settings_component or target["override_settings_component"]
        if binding.source_image_component is not None and target["init_img"] is not None:
            binding.paste_button.click(fn=image_from_url_text, inputs=[binding.source_image_component],
                                       outputs=[target["init_img"]], show_progress="hidden")
        if binding.source_text_component is not None and fields:
            connect_paste(binding.paste_button, fields, binding.source_text_component, override, binding.tabname)
        if binding.source_tabname is not None and fields and binding.source_tabname in paste_fields:
            names = ["Prompt", "Negative prompt", "Steps", "Face restoration", *binding.paste_field_names]
            source = paste_fields[binding.source_tabname]["fields"] or []
            pairs = [(s, d) for s, s_key in source for d, d_key in fields if s_key == d_key and s_key in names]
            if pairs:
                binding.paste_button.click(fn=lambda *values: values if len(values) != 1 else values[0],
                                           inputs=[s for s, _ in pairs], outputs=[d for _, d in pairs],
                                           show_progress="hidden")
        if tabs is not None:
            binding.paste_button.click(fn=lambda tab=binding.tabname: gr.Tabs(selected=tab), inputs=[],
                                       outputs=[tabs], show_progress="hidden")


def send_image_and_dimensions(x: Any) -> tuple[Any, Any, Any]:
    """The image and, with the ``send_size`` setting (default on), its width and height."""
    import gradio as gr

    image = image_from_url_text(x)
    opts = _opts()
    if image is not None and (opts is None or opts.get("send_size", True)):
        return image, image.width, image.height
    return image, gr.update(), gr.update()


def restore_old_hires_fix_params(res: dict[str, Any]) -> None:
    """Done by ``parse_generation_parameters`` already (``First pass size`` becomes size + hires resize)."""

