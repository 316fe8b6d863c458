"""A1111's ``modules.scripts`` for extensions: the ``Script`` base class, ``AlwaysVisible`` and ``basedir()``.

Script subclasses found in an extension's scripts are collected in ``script_classes`` when it loads. Their UI and
processing hooks (``ui``, ``process``, ``postprocess``, ...) are not called yet: that arrives with the processing
facade (``StableDiffusionProcessing``), so such an extension loads, is listed, and has no effect on generation yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modules.paths import INSTALL_DIR


class _AlwaysVisible:
    def __repr__(self) -> str:
        return "AlwaysVisible"


AlwaysVisible = _AlwaysVisible()

script_classes: list[tuple[str, type]] = []  # (extension, Script subclass) in load order


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
