"""``ui-config.json``: A1111's file of UI defaults. Keys are ``"<tab>/<label>/<property>"`` (``txt2img/Sampling
steps/value``, ``.../minimum``, ``.../maximum``, ``.../step``, ``.../visible``); a user edits a value and the control
starts with it after a restart or Reload UI.

At build time every control of the generation tabs is looked up; a stored value that fits the control (a number in
its range, a choice it offers) is applied, anything else is ignored with a warning; keys missing from the file are
added with the current defaults and the file is written atomically. An unreadable file is kept aside under a
timestamped name and the defaults are used, as for ``config.json``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping

import gradio as gr

from modules import fileio

log = logging.getLogger(__name__)

NUMERIC_PROPERTIES = ("minimum", "maximum", "step")


class UiConfig:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.ignored: list[str] = []  # keys whose stored value did not fit, for the log and tests
        self._dirty = False
        # quarantined: where a corrupt file went; unreadable: why the file could not be read at all (a folder...)
        data, self.quarantined, self.unreadable = fileio.read_settings_at_start(path)
        self.data: dict[str, Any] = dict(data or {})
        note = self.startup_note()
        if note:
            log.warning("%s", note)

    def startup_note(self) -> str | None:
        """What the page must tell the user about this file, or None when it loaded normally."""
        name = self.path.name
        if self.quarantined is not None:
            return f"{name} could not be read and was kept as {self.quarantined.name}; UI defaults are in use."
        if self.unreadable is not None:
            return f"{name} could not be read ({self.unreadable}): {self.path}; UI defaults are in use."
        return None

    def apply_tab(self, tab: str, components: Mapping[str, Any]) -> None:
        """Apply stored defaults to ``components`` (field name -> component) of ``tab`` and record missing keys."""
        seen: set[str] = set()
        for component in components.values():
            label = getattr(component, "label", None)
            if not isinstance(label, str) or not label or isinstance(component, (gr.State, gr.Image)):
                continue  # an image (ControlNet's inputs) is never a UI default
            base = f"{tab}/{label}"
            if base in seen:  # A1111 keys by label: a repeated label in one tab keeps the first control
                continue
            seen.add(base)
            self._apply(base, component)

    def _apply(self, base: str, component: Any) -> None:
        is_slider = isinstance(component, gr.Slider)
        if is_slider:
            for prop in NUMERIC_PROPERTIES:
                self._number_property(f"{base}/{prop}", component, prop)
        self._visible(f"{base}/visible", component)
        key = f"{base}/value"
        own = component.value
        if own is None and isinstance(component, gr.Textbox):
            own = ""  # an empty textbox is "" in A1111's file (gradio may hold None)
        if key not in self.data:
            self._remember(key, own)
            return
        value = self.data[key]
        if value is None and own in (None, ""):  # "nothing", as an earlier version of this file wrote it
            return
        if self._fits(component, value):
            component.value = value
        else:
            self.ignored.append(key)
            log.warning("ui-config.json: %s = %r does not fit the control; the built-in default is used.", key, value)

    def _number_property(self, key: str, component: Any, prop: str) -> None:
        if key not in self.data:
            self._remember(key, getattr(component, prop))
            return
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.ignored.append(key)
            return
        if prop == "step" and value <= 0:
            self.ignored.append(key)
            return
        setattr(component, prop, value)

    def _visible(self, key: str, component: Any) -> None:
        if key not in self.data:
            self._remember(key, bool(getattr(component, "visible", True)))
        elif isinstance(self.data[key], bool):
            component.visible = self.data[key]
        else:
            self.ignored.append(key)

    def _remember(self, key: str, value: Any) -> None:
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            return  # images and other non-JSON values are not UI defaults
        self.data[key] = value
        self._dirty = True

    @staticmethod
    def _fits(component: Any, value: Any) -> bool:
        if isinstance(component, gr.Slider) or isinstance(component, gr.Number):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return False
            low, high = getattr(component, "minimum", None), getattr(component, "maximum", None)
            return (low is None or value >= low) and (high is None or value <= high)
        if isinstance(component, gr.Checkbox):
            return isinstance(value, bool)
        if isinstance(component, (gr.Dropdown, gr.Radio, gr.CheckboxGroup)):
            choices = [c[1] if isinstance(c, (tuple, list)) else c for c in component.choices or []]
            values = value if isinstance(value, list) else [value]
            if isinstance(component, gr.CheckboxGroup) or getattr(component, "multiselect", False):
                return isinstance(value, list) and all(v in choices for v in values)
            return value in choices
        if isinstance(component, gr.Textbox):
            return isinstance(value, str)
        return False

    def save(self) -> None:
        """Write the file when keys were added (after a quarantine the user's copy is aside, and a fresh file of
        defaults takes the name)."""
        if not self._dirty or self.unreadable is not None:  # never write over (or into) what we could not read
            return
        try:
            fileio.atomic_write_text(self.path, json.dumps(self.data, indent=4, ensure_ascii=False) + "\n",
                                     private=True)
            self._dirty = False
        except OSError as err:
            log.warning("could not write %s: %s", self.path, err)
