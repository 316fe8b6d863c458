"""The buttons under a result gallery: 📂 open the output folder, 💾 save, 🗃️ zip, and send-to (image + parameters
to another tab). Plain functions over the gallery's value so they are tested without a browser.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from modules import browser_files, fileio
from modules.processing import saving

log = logging.getLogger(__name__)


def readable_roots(settings: dict[str, Any], data_dir: Path) -> list[Path]:
    """Where a gallery's files may come from: the output folders and this server's upload cache."""
    return browser_files.allowed_roots(settings, data_dir)


def gallery_paths(gallery: Sequence[Any] | None, roots: Sequence[Path]) -> list[Path]:
    """File paths of a gallery value (gradio gives ``(path, caption)`` pairs, or paths). The value comes from the
    browser: a path outside ``roots`` (``config.json``, ``/etc/passwd``) is left out, whether it exists or not."""
    out = []
    for item in gallery or []:
        value = item[0] if isinstance(item, (tuple, list)) else item
        if isinstance(value, dict):
            value = value.get("path") or value.get("name")
        if isinstance(value, (str, os.PathLike)) and (path := browser_files.checked_upload(value, roots)):
            out.append(path)
    return out


def chosen(gallery: Sequence[Any] | None, selected: int | None, info: dict[str, Any] | None,
           roots: Sequence[Path]) -> int | None:
    """The index the user selected, else the first image that is not the grid."""
    paths = gallery_paths(gallery, roots)
    if not paths:
        return None
    if selected is not None and 0 <= selected < len(paths):
        return selected
    first = int((info or {}).get("index_of_first_image", 0))
    return first if first < len(paths) else 0


def image_and_infotext(gallery: Sequence[Any] | None, selected: int | None, info: dict[str, Any] | None,
                       roots: Sequence[Path]) -> tuple[Image.Image | None, str]:
    """The chosen image (loaded) and its infotext, for send-to."""
    index = chosen(gallery, selected, info, roots)
    if index is None:
        return None, ""
    path = gallery_paths(gallery, roots)[index]
    with Image.open(path) as opened:
        image = opened.copy()
    texts = (info or {}).get("infotexts") or []
    text = texts[index] if index < len(texts) else str(image.info.get("parameters", ""))
    return image, text


def save_images(gallery: Sequence[Any] | None, selected: int | None, info: dict[str, Any] | None,
                settings: dict[str, Any], data_dir: Path) -> list[str]:
    """💾: copy the selected image (or all, A1111's ``save_selected_only`` off) to ``outdir_save`` (log/images),
    infotext kept, never overwriting; returns the copies for download."""
    roots = readable_roots(settings, data_dir)
    paths = gallery_paths(gallery, roots)
    index = chosen(gallery, selected, info, roots)
    if index is None:
        return []
    wanted = [paths[index]] if settings.get("save_selected_only", True) else paths
    folder = Path(settings.get("outdir_save") or "log/images")
    folder = folder if folder.is_absolute() else data_dir / folder
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in wanted:
        copies.append(str(fileio.write_new_file(folder / path.name, path.read_bytes())))
    return copies


def zip_images(gallery: Sequence[Any] | None, roots: Sequence[Path]) -> str | None:
    """🗃️: every image of the gallery in one zip (in a temp folder gradio may serve), PNG chunks intact."""
    paths = gallery_paths(gallery, roots)
    if not paths:
        return None
    target = Path(tempfile.mkdtemp(prefix="zip-", dir=_zip_folder())) / "images.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        used: set[str] = set()
        for path in paths:
            name = path.name
            while name in used:
                name = f"{Path(name).stem}-1{path.suffix}"
            used.add(name)
            archive.write(path, arcname=name)
    return str(target)


ZIP_MAX_AGE = 3600.0  # seconds a 🗃️ archive stays for its download


def _zip_folder() -> Path:
    """Archives go in the upload cache (private to this server, removed at exit), and old ones are removed."""
    folder = browser_files.upload_cache_dir() / "zips"
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in folder.iterdir():
        try:
            if now - old.stat().st_mtime > ZIP_MAX_AGE:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue
    return folder


def output_folder(settings: dict[str, Any], data_dir: Path, kind: saving.OutputKind) -> Path:
    return saving.output_dir(settings, data_dir, kind, grid=False)


def open_folder(path: Path) -> str:
    """📂: open ``path`` in the file manager of the machine the server runs on (as A1111 does); a message when
    that is impossible (a server without a desktop)."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        if sys.platform == "win32":
            os.startfile(str(path))  # type: ignore[attr-defined]  # noqa: S606
        elif sys.platform == "darwin":
            subprocess.Popen(["open", str(path)])  # noqa: S603, S607
        else:
            subprocess.Popen(["xdg-open", str(path)], stdout=subprocess.DEVNULL,  # noqa: S603, S607
                             stderr=subprocess.DEVNULL)
    except OSError as err:
        log.info("could not open %s: %s", path, err)
        return f"Could not open the folder on this machine; the images are in {path}"
    return f"Opened {path}"
