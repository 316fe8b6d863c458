"""A1111's ``modules.scripts_postprocessing`` for extensions: Extras-tab scripts (rembg's "Remove background" is
one). A ``ScriptPostprocessing`` subclass declares its controls in ``ui()`` (a dict name -> component) and gets
each Extras image as a ``PostprocessedImage`` in ``process(pp, **values)``, after our upscaling and face
restoration; it may replace ``pp.image``, add ``pp.info`` items (written into the image's ``extras`` text) and
``pp.extra_images`` (saved and shown beside it).

Scripts run in ``order`` (then name). A script that raises is reported (Extensions tab, log) and the image goes on
without it. The controls are built only when the Extras tab is, or the first time an API request needs their
defaults (A1111 fills an API request's script arguments with them), so importing this needs no gradio.
"""

from __future__ import annotations

import logging
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Sequence

from PIL import Image

log = logging.getLogger(__name__)

script_classes: list[tuple[str, type]] = []  # (extension, ScriptPostprocessing subclass), cleared by shared.bind


class PostprocessedImageSharedInfo:
    def __init__(self, target_width: int | None = None, target_height: int | None = None) -> None:
        self.target_width = target_width
        self.target_height = target_height


class PostprocessedImage:
    def __init__(self, image: Image.Image) -> None:
        self.image = image
        self.info: dict[str, Any] = {}
        self.shared = PostprocessedImageSharedInfo()
        self.extra_images: list[Any] = []
        self.nametags: list[str] = []
        self.disable_processing = False
        self.caption: str | None = None

    def get_suffix(self, used_suffixes: set[str] | None = None) -> str:
        """The file-name suffix of this image's name tags ("-mask"), numbered when already used."""
        used = used_suffixes if used_suffixes is not None else set()
        suffix = "-".join(self.nametags)
        suffix = f"-{suffix}" if suffix else ""
        candidate, number = suffix, 1
        while candidate in used:
            number += 1
            candidate = f"{suffix}-{number}"
        used.add(candidate)
        return candidate

    def create_copy(self, new_image: Image.Image, *, nametags: list[str] | None = None,
                    disable_processing: bool = False) -> PostprocessedImage:
        copy = PostprocessedImage(new_image)
        copy.nametags = [*self.nametags, *(nametags or [])]
        copy.disable_processing = disable_processing
        copy.shared = self.shared
        copy.info = dict(self.info)
        return copy


class ScriptPostprocessing:
    filename: str | None = None
    controls: dict[str, Any] | None = None
    args_from: int | None = None
    args_to: int | None = None
    order = 1000  # A1111: scripts run, and are shown, by this value
    name: str | None = None
    group: Any = None
    extension: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        from modules import script_callbacks

        script_classes.append((script_callbacks._current["name"], cls))

    def ui(self) -> dict[str, Any]:
        return {}

    def process(self, pp: PostprocessedImage, **args: Any) -> None:
        pass

    def process_firstpass(self, pp: PostprocessedImage, **args: Any) -> None:
        pass

    def image_changed(self) -> None:
        pass


class ScriptPostprocessingRunner:
    """The Extras tab's extension scripts, their controls (a flat list, each script a slice) and the calls."""

    def __init__(self, classes: Sequence[tuple[str, type]] = ()) -> None:
        self.scripts: list[ScriptPostprocessing] = []
        self.inputs: list[Any] = []
        self.ui_created = False
        self._lock = threading.Lock()
        from modules.scripts import unique_classes

        for extension, cls in unique_classes(classes):
            try:
                script = cls()
            except Exception:  # noqa: BLE001 - one broken script must not hide the others
                self._report(cls, extension, "creating it")
                continue
            script.extension = extension
            self.scripts.append(script)
        self.scripts.sort(key=lambda s: (s.order, s.name or ""))

    def _report(self, script: Any, extension: str, what: str) -> None:
        from modules import scripts

        message = (f"{extension or '?'}: {what} of postprocessing script {getattr(script, 'name', None)!r} "
                   f"raised:\n{traceback.format_exc(limit=4)}")
        scripts.errors.append(message)  # the Extensions tab lists the facade's script errors
        log.error(message)

    def scripts_in_preferred_order(self) -> list[ScriptPostprocessing]:
        return list(self.scripts)

    # -- UI (inside a gradio Blocks) --------------------------------------------------------------------------
    def setup_ui(self) -> list[Any]:
        """Each script's controls in its own group, in order; returns the flat list of components."""
        import gradio as gr

        from modules.ui.gradio3_compat import extension_ui

        for script in self.scripts:
            with gr.Group() as group:
                script.args_from = len(self.inputs)
                try:
                    with extension_ui():
                        controls = script.ui() or {}
                except Exception:  # noqa: BLE001 - the tab still builds without this script
                    self._report(script, script.extension, "ui()")
                    controls = {}
                script.controls = dict(controls)
                self.inputs.extend(script.controls.values())
                script.args_to = len(self.inputs)
            script.group = group
        self.ui_created = True
        return list(self.inputs)

    def ensure_ui(self) -> None:
        """Without the Extras tab (the API alone): build the controls once in a detached Blocks for their defaults."""
        if self.ui_created or not self.scripts:
            return
        import gradio as gr

        with self._lock:
            if self.ui_created:
                return
            with gr.Blocks(analytics_enabled=False):
                self.setup_ui()

    def default_args(self) -> list[Any]:
        self.ensure_ui()
        return [getattr(c, "value", None) for c in self.inputs]

    def create_args_for_run(self, scripts_args: dict[str, dict[str, Any]]) -> list[Any]:
        """A1111's: the flat list with defaults, and the values given per script name (``{"Rembg": {...}}``)."""
        args = self.default_args()
        for script in self.scripts:
            given = scripts_args.get(script.name or "", {})
            for offset, key in enumerate((script.controls or {}).keys()):
                if key in given:
                    args[(script.args_from or 0) + offset] = given[key]
        return args

    # -- running (in the Extras job) ----------------------------------------------------------------------------
    def run(self, pp: PostprocessedImage, args: Sequence[Any]) -> None:
        """Every script over ``pp`` and the images the scripts add (``pp.extra_images`` ends up holding those)."""
        calls = []
        for script in self.scripts:
            values = list(args[script.args_from or 0:script.args_to or 0])
            calls.append((script, dict(zip((script.controls or {}).keys(), values))))
        for script, values in calls:
            self._call(script, "process_firstpass", pp, values)
        every = [pp]
        for script, values in calls:
            for image in list(every):
                if not image.disable_processing:
                    self._call(script, "process", image, values)
                every += [extra if isinstance(extra, PostprocessedImage) else image.create_copy(extra)
                          for extra in image.extra_images]
                image.extra_images = []
        pp.extra_images = every[1:]

    def _call(self, script: ScriptPostprocessing, hook: str, pp: PostprocessedImage, values: dict[str, Any]) -> None:
        try:
            getattr(script, hook)(pp, **values)
        except Exception:  # noqa: BLE001 - A1111 reports a failing script; the image goes on without it
            self._report(script, script.extension, hook)

    def image_changed(self) -> None:
        for script in self.scripts:
            try:
                script.image_changed()
            except Exception:  # noqa: BLE001
                self._report(script, script.extension, "image_changed")


@dataclass
class PostprocessCall:
    """One Extras job's extension scripts with their argument values."""

    runner: ScriptPostprocessingRunner
    args: list[Any]

    def apply(self, image: Image.Image, info: dict[str, Any]) -> list[tuple[Image.Image, dict[str, Any], str]]:
        """(image, info, file-name suffix) for the image after the scripts, then each image they added."""
        pp = PostprocessedImage(image)
        pp.info = dict(info)
        self.runner.run(pp, self.args)
        used: set[str] = set()
        return [(item.image, item.info, item.get_suffix(used)) for item in (pp, *pp.extra_images)]


def call_for(runner: ScriptPostprocessingRunner | None, args: Sequence[Any] | None = None) -> PostprocessCall | None:
    """The call for a job: the given values (the Extras tab), else every control's default (the API); None
    when no extension has an Extras script."""
    if runner is None or not runner.scripts:
        return None
    return PostprocessCall(runner, list(args) if args is not None else runner.default_args())
