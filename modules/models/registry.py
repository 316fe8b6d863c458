"""Checkpoint registry: what is in ``models/Stable-diffusion`` (and ``--ckpt-dir``/``--ckpt``), named like A1111.

Names (contract 4.4, A1111's ``CheckpointInfo``):

* ``name``: path relative to its scan root, extension included, ``/`` separators (A1111 uses the OS separator; on
  Windows it prints ``sub\\x.safetensors``, which we accept as an alias), e.g. ``sub/v1-5.safetensors``;
* ``model_name``: ``name`` without extension, separators replaced by ``_`` (``sub_v1-5``);
* ``name_for_extra``: the file stem (``v1-5``), which infotext prints as ``Model``;
* ``title``: ``name [shorthash]``, or ``name`` until the sha256 is known; API clients post titles back.

Scanning never opens a file it has not checked to be a regular file (``os.stat`` + ``S_ISREG``), so FIFOs, devices,
directories named ``x.safetensors``, broken symlinks and zero-byte files are skipped with a warning instead of hanging
the scan (security campaign case 9); symlinked folders are followed once (loops are detected).
Pure module: no torch.
"""

from __future__ import annotations

import builtins
import logging
import os
import re
import stat
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from modules import hashing
from modules.hashing import HashCache
from modules.models.scan import natural_sort_key
from modules.paths import Paths

log = logging.getLogger(__name__)

CHECKPOINT_EXTENSIONS = (".safetensors", ".ckpt", ".gguf")  # .gguf: quantized Flux transformers
_RE_STRIP_CHECKSUM = re.compile(r"\s*\[[^]]+]\s*$")


@dataclass(eq=False)
class CheckpointInfo:
    """One checkpoint file. ``sha256`` is None until computed (``CheckpointRegistry.ensure_hash``) or cached."""

    path: Path  # absolute
    name: str
    size: int
    mtime: float
    legacy_hash: str  # A1111's 8-hex "old hash", always computed (it reads only 64 KiB)
    sha256: str | None = None
    root: Path | None = None  # the scan folder it was found in; None for an explicit --ckpt outside every folder

    @property
    def filename(self) -> str:
        """Absolute path as a string (the API's ``filename``)."""
        return str(self.path)

    @property
    def is_safetensors(self) -> bool:
        return self.path.suffix.lower() == ".safetensors"

    @property
    def name_for_extra(self) -> str:
        return os.path.splitext(self.path.name)[0]

    @property
    def stem(self) -> str:
        return self.name_for_extra

    @property
    def model_name(self) -> str:
        return os.path.splitext(self.name.replace("/", "_").replace("\\", "_"))[0]

    @property
    def shorthash(self) -> str | None:
        return hashing.short_hash(self.sha256) if self.sha256 else None

    @property
    def title(self) -> str:
        return self.name if self.shorthash is None else f"{self.name} [{self.shorthash}]"

    @property
    def short_title(self) -> str:
        return self.name_for_extra if self.shorthash is None else f"{self.name_for_extra} [{self.shorthash}]"

    @property
    def hash_key(self) -> str:
        """Hash-cache key, A1111's ``checkpoint/<name>``."""
        return f"checkpoint/{self.name}"

    @property
    def aliases(self) -> list[str]:
        """A1111's ``ids``, in its order: old hash, model_name, title, name, stem, ``name [oldhash]``, and once the
        sha256 is known: shorthash, sha256, ``name [shorthash]``, ``stem [shorthash]``. Backslash spellings of
        names in sub-folders are added so Windows-made settings and infotexts resolve here too.
        """
        ids = [self.legacy_hash, self.model_name, self.title, self.name, self.name_for_extra,
               f"{self.name} [{self.legacy_hash}]"]
        if self.sha256:
            ids += [self.shorthash or "", self.sha256, f"{self.name} [{self.shorthash}]",
                    f"{self.name_for_extra} [{self.shorthash}]"]
        if "/" in self.name:
            ids += [i.replace("/", "\\") for i in ids if "/" in i]
        return [i for i in ids if i]


def _is_checkpoint_name(filename: str) -> bool:
    lower = filename.lower()
    if not lower.endswith(CHECKPOINT_EXTENSIONS):
        return False
    # A1111 excludes *.vae.ckpt / *.vae.safetensors (case-sensitively); any case here.
    return not any(lower.endswith(".vae" + ext) for ext in CHECKPOINT_EXTENSIONS)


@dataclass
class _Found:
    path: Path
    name: str
    root: Path | None
    st: os.stat_result


class CheckpointRegistry:
    """Thread-safe list of checkpoints with A1111's aliases and closest-match lookup.

    ``dirs``: scan folders in priority order (``Paths.model_dirs("checkpoints")``); ``extra_files``: files given
    on the command line (``--ckpt``), listed first like A1111 registers them first. When two files get the same
    ``name`` (same relative path under two folders) the first one wins and a warning is logged (A1111 keeps the
    last silently); aliases shared by several files also go to the first in list order.
    """

    def __init__(
        self,
        dirs: Sequence[Path],
        hash_cache: HashCache,
        extra_files: Sequence[Path] = (),
        *,
        include_hidden_dirs: bool = True,  # A1111's list_hidden_files (default on)
    ) -> None:
        self.dirs = [Path(d) for d in dirs]
        self.extra_files = [Path(f) for f in extra_files]
        self.hash_cache = hash_cache
        self.include_hidden_dirs = include_hidden_dirs
        self._lock = threading.RLock()
        self._refresh_lock = threading.Lock()
        self._items: list[CheckpointInfo] = []
        self._aliases: dict[str, CheckpointInfo] = {}
        self._legacy_cache: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> old hash
        self.skipped: list[tuple[Path, str]] = []  # (path, reason) from the last refresh, for a UI/log summary

    @classmethod
    def from_paths(cls, paths: Paths, hash_cache: HashCache, **kwargs: bool) -> CheckpointRegistry:
        """The registry for the app's folders: ``models/Stable-diffusion``, ``--ckpt-dir``, and ``--ckpt``."""
        extra = [paths.explicit_ckpt] if paths.explicit_ckpt is not None else []
        return cls(paths.model_dirs("checkpoints"), hash_cache, extra, **kwargs)

    # -- scanning -------------------------------------------------------------------------------------------------

    def _walk(self, root: Path) -> Iterator[tuple[str, str, Path]]:
        """(relative dir, file name, full path) for checkpoint-named entries, in A1111's walk order."""
        seen_dirs: set[tuple[int, int]] = set()
        pending: list[tuple[str, Path]] = [("", root)]
        collected: list[tuple[str, str, Path]] = []
        while pending:
            rel, directory = pending.pop()
            try:
                st = os.stat(directory)
            except OSError:
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in seen_dirs:
                log.warning("skipping %s: symlinked folder loop", directory)
                continue
            seen_dirs.add(ident)
            try:
                with os.scandir(directory) as it:
                    entries = list(it)
            except OSError as err:
                log.warning("cannot list %s: %s", directory, err)
                continue
            for entry in entries:
                try:
                    # is_dir() follows symlinks (A1111 walks with followlinks=True) and never opens the target.
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                if is_dir and (self.include_hidden_dirs or not entry.name.startswith(".")):
                    pending.append((f"{rel}/{entry.name}" if rel else entry.name, Path(entry.path)))
                if _is_checkpoint_name(entry.name):
                    # Vetted later by _check_file (os.stat only): a folder named "x.safetensors" is reported and
                    # skipped as a model there, while its contents are still scanned above, as A1111's walk does.
                    collected.append((rel, entry.name, Path(entry.path)))
        collected.sort(key=lambda t: (natural_sort_key(t[0]), natural_sort_key(t[1])))
        return iter(collected)

    @staticmethod
    def _check_file(path: Path, skipped: list[tuple[Path, str]]) -> os.stat_result | None:
        try:
            st = os.stat(path)  # follows symlinks; never opens the file (a FIFO would block on open)
        except FileNotFoundError:
            reason = "broken symlink" if os.path.islink(path) else "not found"
            skipped.append((path, reason))
            return None
        except OSError as err:
            skipped.append((path, f"cannot stat: {err.strerror or err}"))
            return None
        if stat.S_ISDIR(st.st_mode):
            skipped.append((path, "is a directory"))
            return None
        if not stat.S_ISREG(st.st_mode):
            skipped.append((path, "not a regular file (FIFO, socket or device)"))
            return None
        if st.st_size == 0:
            skipped.append((path, "empty file (0 bytes)"))
            return None
        return st

    def _scan(self) -> tuple[list[_Found], list[tuple[Path, str]]]:
        found: list[_Found] = []
        skipped: list[tuple[Path, str]] = []
        roots = [Path(os.path.abspath(d)) for d in self.dirs]

        def relative_name(path: Path) -> tuple[str, Path | None]:
            for root in roots:
                try:
                    return path.relative_to(root).as_posix(), root
                except ValueError:
                    continue
            return path.name, None

        for f in self.extra_files:
            path = Path(os.path.abspath(f))
            st = self._check_file(path, skipped)
            if st is not None:
                name, root = relative_name(path)
                found.append(_Found(path, name, root, st))
        for root in roots:
            if not root.is_dir():
                continue
            for rel, filename, path in self._walk(root):
                st = self._check_file(path, skipped)
                if st is not None:
                    found.append(_Found(path, f"{rel}/{filename}" if rel else filename, root, st))
        return found, skipped

    def _legacy_hash(self, found: _Found) -> str:
        key = (str(found.path), found.st.st_size, found.st.st_mtime_ns)
        value = self._legacy_cache.get(key)
        if value is None:
            value = hashing.legacy_model_hash(found.path)
            self._legacy_cache[key] = value
        return value

    def refresh(self) -> list[CheckpointInfo]:
        """Rescan the folders. Concurrent callers are serialized; readers keep the old list until the swap."""
        with self._refresh_lock:
            found, skipped = self._scan()
            items: list[CheckpointInfo] = []
            by_name: dict[str, CheckpointInfo] = {}
            seen_real: set[str] = set()
            for f in found:
                real = os.path.realpath(f.path)
                if real in seen_real:
                    continue  # same file reached twice (--ckpt-dir inside models/, a symlink): list it once
                seen_real.add(real)
                if f.name in by_name:
                    skipped.append((f.path, f"same name as {by_name[f.name].path}"))
                    continue
                info = CheckpointInfo(
                    path=f.path,
                    name=f.name,
                    size=f.st.st_size,
                    mtime=f.st.st_mtime,
                    legacy_hash=self._legacy_hash(f),
                    sha256=self.hash_cache.get(f"checkpoint/{f.name}", f.st),
                    root=f.root,
                )
                by_name[f.name] = info
                items.append(info)
            for path, reason in skipped:
                log.warning("skipping checkpoint %s: %s", path, reason)
            with self._lock:
                self._items = items
                self._aliases = self._build_aliases(items)
                self.skipped = skipped
            return list(items)

    @staticmethod
    def _build_aliases(items: Sequence[CheckpointInfo]) -> dict[str, CheckpointInfo]:
        aliases: dict[str, CheckpointInfo] = {}
        for info in items:
            for alias in info.aliases:
                aliases.setdefault(alias, info)
        return aliases

    # -- queries --------------------------------------------------------------------------------------------------

    def list(self) -> list[CheckpointInfo]:
        """Checkpoints in A1111's order: ``--ckpt`` first, then each folder in turn, files of a folder before its
        sub-folders' files, names compared naturally and case-insensitively."""
        with self._lock:
            return list(self._items)

    def titles(self) -> builtins.list[str]:
        return [info.title for info in self.list()]

    def get(self, name_or_alias: str | None) -> CheckpointInfo | None:
        """A1111's ``get_closet_checkpoint_match``: an exact alias; else the shortest title containing the text;
        else the same with a trailing ``[hash]`` removed from the text. Backslashes are read as ``/``."""
        if not name_or_alias:
            return None
        with self._lock:
            items, aliases = self._items, self._aliases
        found = aliases.get(name_or_alias)
        if found is not None:
            return found
        text = name_or_alias.replace("\\", "/")
        found = aliases.get(text)
        if found is not None:
            return found
        for needle in (text, _RE_STRIP_CHECKSUM.sub("", text)):
            if not needle:
                continue
            matches = [info for info in items if needle in info.title]
            if matches:
                return min(matches, key=lambda info: len(info.title))  # min() keeps list order among equals
        return None

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    # -- hashing --------------------------------------------------------------------------------------------------

    def ensure_hash(self, info: CheckpointInfo) -> str:
        """The file's sha256, from the cache or computed now (a multi-GB read); updates title and aliases.

        Thread-safe: concurrent calls for one file hash it once. If the file vanished, it is dropped from the list
        and the OSError propagates (the caller reports it; the next listing is already correct).
        """
        try:
            digest = hashing.sha256_file(info.path, self.hash_cache, info.hash_key)
            st = os.stat(info.path)
        except FileNotFoundError:
            with self._lock:
                if info in self._items:
                    self._items = [i for i in self._items if i is not info]
                    self._aliases = self._build_aliases(self._items)
            raise
        with self._lock:
            info.sha256 = digest
            info.size, info.mtime = st.st_size, st.st_mtime
            self._aliases = self._build_aliases(self._items)
        return digest

    def cached_hash(self, info: CheckpointInfo) -> str | None:
        """The sha256 if the cache knows it for the file as it is now (used with ``--no-hashing``)."""
        return self.hash_cache.lookup(info.hash_key, info.path)


__all__ = ["CHECKPOINT_EXTENSIONS", "CheckpointInfo", "CheckpointRegistry", "natural_sort_key"]
