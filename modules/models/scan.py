"""Walking a model folder: the one recursive scan the LoRA, embedding and VAE lists share.

Symlinked folders are followed (as A1111's ``os.walk(followlinks=True)``) but each real folder is read once, so a
link loop cannot hang a scan; files are only ``stat``-ed, never opened, so a FIFO named ``x.safetensors`` cannot
block it. Results come in A1111's order: by folder, then by name, both compared naturally.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

_RE_NATURAL = re.compile(r"(\d+)")


def natural_sort_key(text: str) -> list[int | str]:
    """A1111's ``natural_sort_key``: digit runs compare as numbers, the rest case-insensitively.

    ``re.split`` with a group alternates text and digit pieces, so two keys never compare an int with a str.
    """
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(_RE_NATURAL.split(text))]


@dataclass(frozen=True)
class FoundFile:
    """A file whose name was accepted. ``stat`` is None, and ``problem`` says why, when it is not usable."""

    rel: str  # path relative to the scanned root, with "/"
    path: Path
    stat: os.stat_result | None
    problem: str | None = None

    @property
    def folder(self) -> str:
        return self.rel.rpartition("/")[0]


def walk_files(root: Path, accept: Callable[[str], bool]) -> list[FoundFile]:
    """Files under ``root`` whose name ``accept(name)`` takes, in A1111's order; unreadable folders are skipped."""
    seen: set[tuple[int, int]] = set()
    pending: list[tuple[str, Path]] = [("", Path(root))]
    out: list[FoundFile] = []
    while pending:
        rel, directory = pending.pop()
        try:
            st = os.stat(directory)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as err:
            log.warning("cannot list %s: %s", directory, err)
            continue
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            try:
                is_dir = entry.is_dir()  # follows symlinks; never opens a file
            except OSError:
                is_dir = False
            if is_dir:
                pending.append((child, Path(entry.path)))
                continue
            if not accept(entry.name):
                continue
            path = Path(entry.path)
            try:
                fst = os.stat(path)
            except OSError as err:
                out.append(FoundFile(child, path, None, f"cannot read the file ({err.strerror or err})"))
                continue
            if not stat.S_ISREG(fst.st_mode):
                out.append(FoundFile(child, path, None, "not a regular file (a pipe, socket or device?)"))
                continue
            out.append(FoundFile(child, path, fst))
    out.sort(key=lambda f: (natural_sort_key(f.folder), natural_sort_key(f.rel.rpartition("/")[2])))
    return out
