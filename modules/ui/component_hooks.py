"""A1111's component callbacks: while the page is built, every gradio component calls the extensions'
``on_before_component`` / ``on_after_component`` callbacks and the building tab's scripts' ``before_component`` /
``after_component`` with its constructor's keywords (``elem_id``, ``label``, ...). Components an extension creates
there land beside the one being built, which is how extensions place a button next to Generate.

Only during the build: ``Component.__init__`` is wrapped for the ``with`` block and restored after; components
that a callback creates do not call the callbacks again.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from modules import script_callbacks
from modules.ui.gradio3_compat import extension_ui


@contextlib.contextmanager
def component_callbacks() -> Iterator[None]:
    from gradio.components.base import Component

    from modules import scripts

    scripts.scripts_current = None
    original = Component.__init__
    inside = [False]

    def notify(when: str, component: Any, kwargs: dict[str, Any]) -> None:
        inside[0] = True
        try:
            with extension_ui():  # the callbacks are extension code: what they build follows gradio 3's visibility
                script_callbacks.call(f"{when}_component", component, **kwargs)
                runner = scripts.scripts_current
                if runner is not None:
                    getattr(runner, f"{when}_component")(component, **kwargs)
        finally:
            inside[0] = False

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        if inside[0]:
            original(self, *args, **kwargs)
            return
        notify("before", self, kwargs)
        original(self, *args, **kwargs)
        notify("after", self, kwargs)

    Component.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        Component.__init__ = original  # type: ignore[method-assign]
        scripts.scripts_current = None
