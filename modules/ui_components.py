"""A1111's ``modules.ui_components`` for extensions, as gradio 6 components: ``ToolButton`` (a small icon button),
``FormRow``, ``FormColumn``, ``FormGroup``, ``FormHTML``, ``FormColorPicker``, ``DropdownMulti`` (always
multiselect), ``DropdownEditable`` (custom values allowed), ``ResizeHandleRow`` and ``InputAccordion`` (an
accordion usable as an input: its value is True while it is open; ``.accordion``, ``.extra()``, and ``with``
enters the accordion).

This is a UI module: importing it imports gradio. The subclasses render with their gradio base's frontend
(``get_block_name``). gradio writes a ``.pyi`` stub next to the module of every component class it sees defined;
that is skipped for the classes of this module (the install tree is not written to).
"""

from __future__ import annotations

import contextlib
import itertools
from functools import wraps
from typing import Any, Iterator

import gradio as gr
import gradio.component_meta as _component_meta


@contextlib.contextmanager
def _no_pyi_stubs() -> Iterator[None]:
    original = _component_meta.create_or_modify_pyi

    def skip_ours(component_class: type, class_name: str, events: Any) -> None:
        if component_class.__module__ != __name__:
            original(component_class, class_name, events)

    _component_meta.create_or_modify_pyi = skip_ours
    try:
        yield
    finally:
        _component_meta.create_or_modify_pyi = original


class FormComponent:
    """A1111's marker for components that fit inside a form row."""

    webui_do_not_create_gradio_pyi_thank_you = True

    def get_expected_parent(self) -> Any:
        return None


with _no_pyi_stubs():

    class ToolButton(gr.Button, FormComponent):
        """A small button with a single emoji as text. ``tooltip`` (A1111's gradio had it) is accepted and
        dropped: gradio 6 buttons have none."""

        @wraps(gr.Button.__init__)
        def __init__(self, value: Any = "", *args: Any, elem_classes: Any = None, tooltip: str | None = None,
                     **kwargs: Any) -> None:
            classes = [elem_classes] if isinstance(elem_classes, str) else list(elem_classes or [])
            kwargs.setdefault("min_width", 40)
            kwargs.setdefault("scale", 0)
            super().__init__(value, *args, elem_classes=["tool", *classes], **kwargs)

        def get_block_name(self) -> str:
            return "button"

    class ResizeHandleRow(gr.Row):
        """A row with A1111's resize-handle class (the handle itself is A1111's page script)."""

        webui_do_not_create_gradio_pyi_thank_you = True

        @wraps(gr.Row.__init__)
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.elem_classes = [*(self.elem_classes or []), "resize-handle-row"]

        def get_block_name(self) -> str:
            return "row"

    class FormRow(gr.Row, FormComponent):
        def get_block_name(self) -> str:
            return "row"

    class FormColumn(gr.Column, FormComponent):
        def get_block_name(self) -> str:
            return "column"

    class FormGroup(gr.Group, FormComponent):
        def get_block_name(self) -> str:
            return "group"

    class FormHTML(gr.HTML, FormComponent):
        def get_block_name(self) -> str:
            return "html"

    class FormColorPicker(gr.ColorPicker, FormComponent):
        def get_block_name(self) -> str:
            return "colorpicker"

    class DropdownMulti(gr.Dropdown, FormComponent):
        """A dropdown that is always multiselect."""

        @wraps(gr.Dropdown.__init__)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["multiselect"] = True
            super().__init__(*args, **kwargs)

        def get_block_name(self) -> str:
            return "dropdown"

    class DropdownEditable(gr.Dropdown, FormComponent):
        """A dropdown whose value may be typed in (not one of the choices)."""

        @wraps(gr.Dropdown.__init__)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["allow_custom_value"] = True
            super().__init__(*args, **kwargs)

        def get_block_name(self) -> str:
            return "dropdown"

    class InputAccordionImpl(gr.Checkbox):
        """A1111's ``InputAccordion``: a hidden checkbox (the input, True while open) and the accordion
        ``.accordion`` whose open state it follows both ways: opening or closing the accordion sets the value,
        and setting the value (a paste, an API default) opens or closes the accordion."""

        webui_do_not_create_gradio_pyi_thank_you = True
        _ids = itertools.count()

        @wraps(gr.Checkbox.__init__)
        def __init__(self, value: Any = None, setup: bool = False, **kwargs: Any) -> None:
            if not setup:
                super().__init__(value=bool(value), **kwargs)
                return
            self.accordion_id = kwargs.get("elem_id") or f"input-accordion-{next(InputAccordionImpl._ids)}"
            label = kwargs.get("label") or "Accordion"
            checkbox = {k: v for k, v in kwargs.items() if k not in ("elem_id", "visible", "open", "elem_classes")}
            super().__init__(value=bool(value), elem_id=f"{self.accordion_id}-checkbox", visible=False, **checkbox)
            self.accordion = gr.Accordion(label, open=bool(value), elem_id=self.accordion_id,
                                          elem_classes=["input-accordion"], visible=kwargs.get("visible", True))
            self.accordion.expand(fn=None, js="() => true", inputs=None, outputs=[self], queue=False)
            self.accordion.collapse(fn=None, js="() => false", inputs=None, outputs=[self], queue=False)
            self.change(fn=lambda checked: gr.Accordion(open=bool(checked)), inputs=[self], outputs=[self.accordion],
                        queue=False, show_progress="hidden")

        def extra(self) -> Any:
            """A column at the top of the accordion for extra controls (A1111 shows them in its label)::

                with InputAccordion(False, label="Feature") as acc:
                    with acc.extra():
                        FormHTML("hello", min_width=0)
            """
            return gr.Column(elem_id=f"{self.accordion_id}-extra", elem_classes=["input-accordion-extra"],
                             min_width=0)

        def __enter__(self) -> InputAccordionImpl:
            self.accordion.__enter__()
            return self

        def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
            self.accordion.__exit__(exc_type, exc_val, exc_tb)

        def get_block_name(self) -> str:
            return "checkbox"


def InputAccordion(value: bool | None = None, **kwargs: Any) -> InputAccordionImpl:  # noqa: N802 - A1111's name
    """An accordion that is an input: ``with InputAccordion(False, label="Enable") as enabled: ...``; return
    ``enabled`` from ``ui()`` and the script receives True when the user opened it."""
    return InputAccordionImpl(value=value, setup=True, **kwargs)


__all__ = ["DropdownEditable", "DropdownMulti", "FormColorPicker", "FormColumn", "FormComponent", "FormGroup",
           "FormHTML", "FormRow", "InputAccordion", "InputAccordionImpl", "ResizeHandleRow", "ToolButton"]
