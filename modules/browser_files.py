"""Which files a browser may name: the one rule for every file path that arrives from the page.

The page's events carry file references as JSON (gradio's ``{"path": ...}``: gallery items, uploaded images,
files). A browser can put any path there, so a path is accepted only when, with symlinks resolved, it lies inside
this server's gradio upload cache or one of the output folders; anything else (``/etc/passwd``, ``config.json``,
a URL gradio would fetch) is refused before gradio or a handler touches it. Pure module: no gradio, no web
framework.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from modules import filenames
from modules.processing import saving

log = logging.getLogger(__name__)

GRADIO_TEMP_ENV = "GRADIO_TEMP_DIR"
_PRIVATE_PREFIX = "sd-webui-uploads-"
_PRIVATE_NAME = re.compile(r"sd-webui-uploads-(\d+)-\w+")
_MAX_DEPTH = 64  # event payloads are shallow; deeper nesting is refused rather than walked


def upload_cache_dir() -> Path:
    """gradio's upload and file cache, as gradio computes it."""
    return Path(os.environ.get(GRADIO_TEMP_ENV) or Path(tempfile.gettempdir()) / "gradio")


def use_private_upload_cache() -> Path:
    """Give this server a cache of its own unless the user chose one (``GRADIO_TEMP_DIR``).

    gradio's default, ``<tmp>/gradio``, is shared by every gradio app of every user on the machine, so "inside the
    upload cache" would admit their files too. The private folder is made 0700 by ``mkdtemp`` and removed when
    the process ends; uploads older than a day are also removed while it runs (``delete_cache`` in the UI).
    """
    if os.environ.get(GRADIO_TEMP_ENV):
        return upload_cache_dir()
    remove_stale_upload_caches()
    folder = Path(tempfile.mkdtemp(prefix=f"{_PRIVATE_PREFIX}{os.getpid()}-"))
    os.environ[GRADIO_TEMP_ENV] = str(folder)
    atexit.register(shutil.rmtree, folder, True)
    return folder


def remove_stale_upload_caches(temp_root: Path | None = None) -> list[Path]:
    """Remove our private caches left by a process that is gone (``kill -9``) or that was this one before a
    restart (``os.execv`` keeps the pid and skips atexit). Only folders of this user, never through a link."""
    removed: list[Path] = []
    if os.name == "nt":  # no owner check there, and os.kill(pid, 0) would end the process
        return removed
    root = Path(temp_root or tempfile.gettempdir())
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        match = _PRIVATE_NAME.fullmatch(entry.name)
        if match is None or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or not _process_alive(pid):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's process
        return True
    return True


def allowed_roots(settings: Mapping[str, Any], data_dir: Path) -> list[Path]:
    """Where a file named by the browser may be: the output folders and this server's upload cache."""
    return [*saving.output_roots(settings, data_dir), upload_cache_dir()]


def is_allowed(path: str | os.PathLike[str], roots: Sequence[Path]) -> bool:
    """Whether ``path`` is a local file path inside ``roots`` (symlinks resolved). URLs are never allowed: gradio
    would fetch them."""
    text = os.fspath(path)
    if not text or "\x00" in text or "://" in text:
        return False
    return filenames.inside_any(text, roots)


class TooDeep(ValueError):
    """A payload nested deeper than any page event sends."""


def file_references(value: Any, depth: int = 0) -> Iterator[Any]:
    """Every ``path`` value of the dicts in a JSON payload (gradio's file objects, at any depth)."""
    if depth > _MAX_DEPTH:
        raise TooDeep("the request is nested too deeply")
    if isinstance(value, dict):
        if "path" in value and value["path"] is not None:
            yield value["path"]
        for item in value.values():
            yield from file_references(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from file_references(item, depth + 1)


def refused_references(payload: Any, roots: Sequence[Path]) -> list[str]:
    """The file references in ``payload`` that the browser may not name (non-strings count as refused)."""
    refused = []
    for ref in file_references(payload):
        if not isinstance(ref, str) or not is_allowed(ref, roots):
            refused.append(str(ref)[:200])
    return refused


def checked_upload(value: Any, roots: Sequence[Path]) -> Path | None:
    """The path of an upload handed to a handler (a path string, or an object with ``.name``/``.path``), or None
    when it is missing or not inside ``roots`` (logged; the file is not touched)."""
    if value is None:
        return None
    path = value if isinstance(value, (str, os.PathLike)) else getattr(value, "path", None) or getattr(
        value, "name", None)
    if not isinstance(path, (str, os.PathLike)):
        return None
    if not is_allowed(path, roots):
        log.warning("refused a file outside the upload cache and output folders: %s", str(path)[:200])
        return None
    return Path(path)
