"""A1111's ``modules.script_callbacks`` for extensions: ``on_app_started(cb)``, ``on_ui_tabs(cb)``, ... Each
registration remembers which extension script made it, and a callback that raises is reported and skipped: one
broken extension never breaks a page, a job or the start.

Called: ``on_before_ui``, ``on_ui_settings``, ``on_ui_tabs``, ``on_app_started``, ``on_model_loaded`` (with our
loaded model), ``on_before_image_saved`` / ``on_image_saved`` (samples, grids and Extras results),
``on_cfg_denoiser`` / ``on_cfg_denoised`` / ``on_cfg_after_cfg`` (every model evaluation),
``on_before_component`` / ``on_after_component`` (every component the UI builds), ``on_infotext_pasted`` (PNG
Info and paste), ``on_script_unloaded`` (at shutdown), ``on_before_reload`` (before a restart re-executes the
server), ``on_image_grid`` (before a grid is drawn; it may change the layout), ``on_extra_noise`` (before img2img's
and the hires pass's extra noise, setting ``img2img_extra_noise``) and ``on_before_token_counter`` (before the
prompt's token counter counts).
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

KINDS = ("app_started", "model_loaded", "ui_tabs", "ui_settings", "before_image_saved", "image_saved",
         "cfg_denoiser", "cfg_denoised", "cfg_after_cfg", "before_component", "after_component", "infotext_pasted",
         "script_unloaded", "before_ui", "before_reload", "image_grid", "extra_noise", "before_token_counter")


@dataclass
class Registered:
    callback: Callable[..., Any]
    name: str  # the extension and script that registered it
    script: str = ""


_callbacks: dict[str, list[Registered]] = {kind: [] for kind in KINDS}
_current: dict[str, Any] = {"name": "", "script": ""}
errors: list[str] = []  # callback failures, for the Extensions tab and the log


@contextlib.contextmanager
def registering(extension: str, script: Path | str) -> Iterator[None]:
    """Attribute the registrations made while ``script`` is imported to ``extension``."""
    previous = dict(_current)
    _current.update(name=extension, script=str(script))
    try:
        yield
    finally:
        _current.update(previous)


def _add(kind: str, callback: Callable[..., Any], name: str | None = None) -> None:
    _callbacks[kind].append(Registered(callback, name or _current["name"] or getattr(callback, "__module__", ""),
                                       _current["script"]))


def callbacks(kind: str) -> list[Registered]:
    return list(_callbacks[kind])


def call(kind: str, *args: Any, **kwargs: Any) -> list[Any]:
    """Run every callback of ``kind``; results in order (a failing one is logged and left out)."""
    results = []
    for item in _callbacks[kind]:
        try:
            results.append(item.callback(*args, **kwargs))
        except Exception:  # noqa: BLE001 - an extension's failure must not stop the others
            message = f"{item.name}: on_{kind} callback {getattr(item.callback, '__name__', '?')} raised:\n" \
                      f"{traceback.format_exc(limit=4)}"
            errors.append(message)
            log.error(message)
    return results


def clear() -> None:
    """Forget every registration (tests; a UI reload re-imports the scripts)."""
    for kind in KINDS:
        _callbacks[kind].clear()
    errors.clear()


def remove_current_script_callbacks() -> None:
    script = _current["script"]
    for kind in KINDS:
        _callbacks[kind] = [r for r in _callbacks[kind] if r.script != script]


def remove_callbacks_for_function(fn: Callable[..., Any]) -> None:
    for kind in KINDS:
        _callbacks[kind] = [r for r in _callbacks[kind] if r.callback is not fn]


from modules.processing.cfg_callbacks import (  # noqa: E402, F401 - A1111 names, re-exported
    AfterCFGCallbackParams, CFGDenoisedParams, CFGDenoiserParams, CfgCallbacks, ExtraNoiseParams)
from modules.processing.saving import ImageGridLoopParams, ImageSaveParams, SaveHooks  # noqa: E402, F401


@dataclass
class BeforeTokenCounterParams:
    """A1111's: an ``on_before_token_counter`` callback may change what the prompt's token counter counts."""

    prompt: str
    steps: int
    styles: list[str]
    is_positive: bool = True


def hook(kind: str) -> Callable[[Any], None] | None:
    """A per-job caller of the ``kind`` callbacks (image_grid, extra_noise), or None when there are none; a
    failing callback is logged and the others still run."""
    if not _callbacks[kind]:
        return None
    return lambda params: call(kind, params)


def cfg_callbacks() -> CfgCallbacks | None:
    """The sampling callbacks for a job: None when no extension registered one (the denoiser's fast path).
    Unlike other callbacks, one that raises fails the job: it runs inside sampling, where going on would
    produce an image the extension did not mean."""
    def caller(kind: str) -> Any:
        if not _callbacks[kind]:
            return None

        def run(params: Any) -> None:
            for item in list(_callbacks[kind]):
                item.callback(params)
        return run

    found = CfgCallbacks(caller("cfg_denoiser"), caller("cfg_denoised"), caller("cfg_after_cfg"))
    return None if found == CfgCallbacks() else found


def save_hooks() -> SaveHooks | None:
    """The image-save hooks for a job: None when no extension registered one (saving stays on its fast path)."""
    if not _callbacks["before_image_saved"] and not _callbacks["image_saved"]:
        return None
    return SaveHooks(before=lambda params: call("before_image_saved", params),
                     after=lambda params: call("image_saved", params))


def _registrar(kind: str) -> Callable[..., None]:
    def register(callback: Callable[..., Any], *, name: str | None = None) -> None:
        _add(kind, callback, name)

    register.__name__ = f"on_{kind}"
    register.__doc__ = f"Register ``callback`` for A1111's on_{kind}."
    return register


on_app_started = _registrar("app_started")
on_model_loaded = _registrar("model_loaded")
on_ui_tabs = _registrar("ui_tabs")
on_ui_settings = _registrar("ui_settings")
on_before_image_saved = _registrar("before_image_saved")
on_image_saved = _registrar("image_saved")
on_cfg_denoiser = _registrar("cfg_denoiser")
on_cfg_denoised = _registrar("cfg_denoised")
on_cfg_after_cfg = _registrar("cfg_after_cfg")
on_infotext_pasted = _registrar("infotext_pasted")
on_script_unloaded = _registrar("script_unloaded")
on_before_ui = _registrar("before_ui")
on_before_reload = _registrar("before_reload")
on_image_grid = _registrar("image_grid")
on_extra_noise = _registrar("extra_noise")
on_before_token_counter = _registrar("before_token_counter")


def on_before_component(callback: Callable[..., Any], *, name: str | None = None, elem_id: str | None = None) -> None:
    _add("before_component", callback if elem_id is None else _for_elem(callback, elem_id), name)


def on_after_component(callback: Callable[..., Any], *, name: str | None = None, elem_id: str | None = None) -> None:
    _add("after_component", callback if elem_id is None else _for_elem(callback, elem_id), name)


def _for_elem(callback: Callable[..., Any], elem_id: str) -> Callable[..., Any]:
    def only(component: Any, **kwargs: Any) -> Any:
        if kwargs.get("elem_id") == elem_id or getattr(component, "elem_id", None) == elem_id:
            return callback(component, **kwargs)
        return None

    only.__name__ = getattr(callback, "__name__", "callback")
    return only
