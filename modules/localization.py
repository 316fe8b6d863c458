"""A1111 localization files: discovery, merging and the mapping the page applies.

A file is ``<name>.json`` holding one flat object from the exact English UI text to its translation (``"rtl": true``
marks a right-to-left language). Files come from the core ``localizations/`` folder (plus ``--localizations-dir``) and
then from each extension's ``localizations/`` folder; files with the same name are merged with ``dict.update`` in that
order, as A1111 merges them. Community A1111 files work as they are. Pure module: no torch, no gradio.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable

log = logging.getLogger(__name__)

NONE = "None"
MAX_FILE_BYTES = 16 * 1024 * 1024  # real files are well under 1 MB; a larger one is not a translation


def discover(dirs: Iterable[Path]) -> dict[str, list[Path]]:
    """Localization name -> its files in merge order (``dirs`` in order, each folder's files by name)."""
    found: dict[str, list[Path]] = {}
    for folder in dirs:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json"), key=lambda p: p.name.lower()):
            if path.is_file():
                found.setdefault(path.stem, []).append(path)
    return found


def _read(path: Path) -> dict[str, object]:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ValueError(f"larger than {MAX_FILE_BYTES // 2**20} MiB")
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as err:
        log.warning("Ignoring localization file %s: %s", path, err)
        return {}
    if not isinstance(data, dict):
        log.warning("Ignoring localization file %s: not a JSON object", path)
        return {}
    # Only text -> text pairs (and the rtl flag) reach the page.
    return {k: v for k, v in data.items() if isinstance(k, str) and (isinstance(v, str) or k == "rtl")}


def load(name: str | None, dirs: Iterable[Path]) -> dict[str, object]:
    """The merged mapping for ``name``; empty for "None", an unknown name or unreadable files."""
    if not name or name == NONE:
        return {}
    merged: dict[str, object] = {}
    for path in discover(dirs).get(name, []):
        merged.update(_read(path))
    return merged


def names(dirs: Iterable[Path]) -> list[str]:
    """Choices for the ``localization`` setting: "None", then every file name found."""
    return [NONE, *sorted(discover(dirs), key=str.lower)]
