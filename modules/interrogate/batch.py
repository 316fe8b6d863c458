"""Captioning a folder: each picture's caption in ``<stem>.txt`` beside it (the layout LoRA trainers read). An
existing caption file is left alone unless ``overwrite``; a picture that cannot be read is reported and skipped.
Every file is written atomically, so an interrupted run leaves whole captions only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from modules import fileio

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".avif")


@dataclass
class FolderReport:
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # a caption file existed
    failed: dict[str, str] = field(default_factory=dict)  # picture -> why

    def summary(self) -> str:
        parts = [f"{len(self.written)} captions written", f"{len(self.kept)} existing kept"]
        if self.failed:
            parts.append(f"{len(self.failed)} unreadable ({', '.join(sorted(self.failed)[:5])})")
        return ", ".join(parts)


def pictures(folder: Path) -> list[Path]:
    """The folder's pictures (not recursive), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def caption_folder(folder: Path, caption: Callable[[Image.Image], str], overwrite: bool = False,
                   on_picture: Callable[[int, int], None] = lambda done, total: None) -> FolderReport:
    """Caption every picture of ``folder`` with ``caption``; ``on_picture(done, total)`` after each (it may raise
    to stop: the captions written so far stay)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    report = FolderReport()
    found = pictures(folder)
    for done, path in enumerate(found, start=1):
        target = path.with_suffix(".txt")
        if target.exists() and not overwrite:
            report.kept.append(path.name)
        else:
            try:
                with Image.open(path) as image:
                    image.load()
                    text = caption(image)
            except (UnidentifiedImageError, OSError, ValueError) as err:
                report.failed[path.name] = f"{type(err).__name__}: {err}"
            else:
                fileio.atomic_write_text(target, text + "\n", backup=False)
                report.written.append(path.name)
        on_picture(done, len(found))
    return report
