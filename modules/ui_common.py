"""A1111's ``modules.ui_common`` for extensions: ``create_refresh_button``, ``plaintext_to_html``,
``update_generation_info``, ``save_files`` (the 💾 of a gallery), ``open_folder`` and the ``folder_symbol``/
``refresh_symbol`` icons.

gradio is imported inside the functions that build components, so importing this module (extensions do it at
load, also for the API-only server) costs nothing. A1111's ``create_output_panel`` is its tab internals; our tabs
have their own (``modules/ui/``), and reading that name raises AttributeError.
"""

from __future__ import annotations

import html
import json
import logging
import os
import platform
import subprocess
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)

folder_symbol = "\U0001f4c2"  # 📂
refresh_symbol = "\U0001f504"  # 🔄


def __getattr__(name: str) -> Any:
    if name in ("create_output_panel", "OutputPanel", "setup_dialog"):
        raise AttributeError(f"modules.ui_common.{name} is part of A1111's own tabs; this app's tabs are built by "
                             "modules/ui and extensions add theirs with script_callbacks.on_ui_tabs")
    raise AttributeError(f"module 'modules.ui_common' has no attribute {name!r}")


def plaintext_to_html(text: str, classname: str | None = None) -> str:
    """Text as a paragraph, HTML-escaped, one ``<br>`` per line break."""
    content = "<br>\n".join(html.escape(line) for line in str(text).split("\n"))
    return f"<p class='{html.escape(classname)}'>{content}</p>" if classname else f"<p>{content}</p>"


def update_generation_info(generation_info: str, html_info: str, img_index: int) -> tuple[str, Any]:
    """The infotext of gallery image ``img_index`` from a job's ``info`` JSON (the old HTML when it is not one)."""
    import gradio as gr

    try:
        infotexts = json.loads(generation_info)["infotexts"]
        if 0 <= int(img_index) < len(infotexts):
            return plaintext_to_html(infotexts[int(img_index)]), gr.update()
    except (TypeError, ValueError, KeyError):
        pass
    return html_info, gr.update()


def save_files(js_data: str, images: Sequence[Any], do_make_zip: bool, index: int) -> tuple[Any, str]:
    """A1111's 💾 of a result gallery: ``images`` (gallery items: base64 PNGs, PIL images, ``(image, caption)``
    pairs or files in the output/upload folders) saved again with ``modules.images.save_image`` into the
    ``outdir_save`` setting's folder (``log/images``), each with its infotext from ``js_data["infotexts"]`` (the
    job's ``info`` JSON), never over a file; only the image at ``index`` with ``save_selected_only`` (when it is not
    a grid); ``do_make_zip`` adds ``images.zip`` of them. Returns ``(gr.update(value=[saved files]), message
    HTML)``. Unlike A1111, no ``log.csv`` is written beside them."""
    import io
    import zipfile
    from pathlib import Path
    from types import SimpleNamespace

    import gradio as gr

    from modules import fileio, shared
    from modules import images as images_module
    from modules.infotext_utils import image_from_url_text, parse_generation_parameters

    data = json.loads(js_data) if isinstance(js_data, (str, bytes)) else dict(js_data or {})
    infotexts = list(data.get("infotexts") or [])
    first_image = int(data.get("index_of_first_image", 0) or 0)
    items, start = list(images or []), 0
    if (index is not None and 0 <= int(index) < len(items) and int(index) >= first_image
            and shared.opts.get("save_selected_only", True)):
        items, start = [items[int(index)]], int(index)
    folder = shared.opts.get("outdir_save") or "log/images"
    extension = shared.opts.get("samples_format") or "png"
    p = SimpleNamespace(**{k: v for k, v in data.items() if isinstance(k, str)})
    saved: list[str] = []
    for image_index, filedata in enumerate(items, start):
        image = image_from_url_text(filedata)
        if image is None:
            continue
        text = infotexts[image_index] if image_index < len(infotexts) else None
        params = parse_generation_parameters(text or "", [])
        written, text_file = images_module.save_image(
            image, folder, "", seed=params.get("Seed"), prompt=params.get("Prompt"), extension=extension,
            info=text, grid=image_index < first_image, p=p, save_to_dirs=False)
        saved.append(written)
        if text_file:
            saved.append(text_file)
    if not saved:
        return gr.update(), plaintext_to_html("Nothing to save")
    if do_make_zip:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            for path in saved:
                archive.write(path, arcname=os.path.basename(path))
        saved.append(str(fileio.write_new_file(Path(saved[0]).parent / "images.zip", buffer.getvalue())))
    return gr.update(value=saved, visible=True), plaintext_to_html(f"Saved: {os.path.basename(saved[0])}")


def create_refresh_button(refresh_component: Any, refresh_method: Callable[[], Any],
                          refreshed_args: dict[str, Any] | Callable[[], dict[str, Any]], elem_id: str) -> Any:
    """A 🔄 button next to ``refresh_component`` (or a list of them): on click ``refresh_method()`` runs, then
    each component is updated with ``refreshed_args`` (a dict, or a function returning one, e.g.
    ``lambda: {"choices": names()}``)."""
    import gradio as gr

    from modules.ui_components import ToolButton

    components = refresh_component if isinstance(refresh_component, list) else [refresh_component]
    label = next((getattr(c, "label", None) for c in components if getattr(c, "label", None)), None)

    def refresh() -> Any:
        refresh_method()
        args = refreshed_args() if callable(refreshed_args) else refreshed_args
        for key, value in (args or {}).items():
            for component in components:
                setattr(component, key, value)
        updates = [gr.update(**(args or {})) for _ in components]
        return updates if len(updates) > 1 else updates[0]

    button = ToolButton(value=refresh_symbol, elem_id=elem_id, tooltip=f"{label}: refresh" if label else "Refresh")
    button.click(fn=refresh, inputs=[], outputs=components, show_progress="hidden")
    return button


def open_folder(f: str, path: str | None = None) -> None:
    """Open a folder in the server machine's file manager, as A1111 does; only for an existing folder, never with
    ``--hide-ui-dir-config``, and never when the server is reachable from other machines (the file manager would
    open on the server, not for the person asking)."""
    from modules import shared

    folder = path or f
    args = shared.cmd_opts
    if args is not None and (getattr(args, "hide_ui_dir_config", False) or getattr(args, "listen", False)
                             or getattr(args, "server_name", None) not in (None, "", "127.0.0.1", "localhost")):
        log.info("not opening %s: folders are opened only for a local, unrestricted UI", folder)
        return
    if not os.path.isdir(folder):
        log.warning("open_folder: %s is not a folder", folder)
        return
    folder = os.path.normpath(folder)
    system = platform.system()
    if system == "Windows":
        os.startfile(folder)  # type: ignore[attr-defined]  # noqa: S606 - a local folder the user asked for
    elif system == "Darwin":
        subprocess.Popen(["open", folder])  # noqa: S603, S607
    else:
        subprocess.Popen(["xdg-open", folder], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
