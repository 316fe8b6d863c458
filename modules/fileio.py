"""Durable file writes: crash-safe replacement, never-overwrite creation, and quarantine of corrupt files.

Why this exists (security campaign cases 37-39): A1111 lost users' ``config.json`` when a crash cut a write short
(issue 8836), and silently reset corrupt settings to defaults. Here:

* ``atomic_write_*`` replace a file so that a reader (or the next start after ``kill -9``) sees either the old bytes or
  the new bytes, never a mix: temp file in the same directory, flush + fsync, ``os.replace``, fsync of the directory.
  The previous version is kept as ``<name>.bak``.
* ``write_new_file`` creates a file that must not clobber anything (saved images): the bytes are made durable under a
  temp name first and then hard-linked to the final name, which fails atomically if the name is taken, even against
  another process writing into the same folder. A collision gets a ``-1``, ``-2``... suffix.
* ``quarantine`` / ``read_json_or_quarantine`` move a corrupt file aside under a timestamped name that is never reused,
  so starting with defaults never destroys the user's data.

Pure module: standard library only.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_NAME_MAX_BYTES = 255
_MAX_UNIQUE_ATTEMPTS = 10_000  # bound the "-N" search: a folder with 10k collisions is a bug, not a workload
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation on os.open'ed descriptors
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_IS_WINDOWS = os.name == "nt"


# -- low-level helpers ----------------------------------------------------------------------------------------------


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write may write less than asked (signals, pipes, some network filesystems): loop until done."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # pragma: no cover - defensive: a zero-length write would spin forever
            raise OSError(errno.EIO, "write returned 0 bytes")
        view = view[written:]


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename/link in ``directory`` durable. POSIX only; Windows cannot open directories, so it is skipped."""
    if _IS_WINDOWS:
        return
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (e.g. certain FUSE/SMB mounts) refuse fsync on directories: best effort
    finally:
        os.close(fd)


_TEMP_TOKEN_BYTES = 6  # 12 hex digits in every temp name
PRIVATE_MODE = 0o600  # files that may hold secrets (settings of extensions: API keys, tokens)


def _temp_head(name: str) -> str:
    # The name part is capped so that a final name close to the 255-byte limit still leaves room for the temp name.
    return name.encode("utf-8", "surrogateescape")[:200].decode("utf-8", "ignore")


def _temp_name(path: Path) -> Path:
    # Hidden, unique, same directory (os.replace/os.link must not cross filesystems); ".tmp" so users and our own
    # directory scans recognise leftovers after a crash.
    return path.with_name(f".{_temp_head(path.name)}.{secrets.token_hex(_TEMP_TOKEN_BYTES)}.tmp")


def _write_temp(path: Path, data: bytes, mode: int | None, *, private: bool = False) -> Path:
    """Write ``data`` to a new temp file next to ``path`` and fsync it. The temp file is removed on any failure.
    ``private``: created 0600 before any byte is written, so no other user can ever read the data."""
    tmp = _temp_name(path)
    # 0o666 lets the process umask decide permissions, like a plain open() would (mkstemp would force 0600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY | _O_NOFOLLOW,
                 PRIVATE_MODE if private else 0o666)
    try:
        try:
            _write_all(fd, data)
            if mode is not None:
                try:
                    os.chmod(tmp, mode)  # keep the permissions of the file being replaced
                except OSError:
                    pass
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _replace(src: Path, dst: Path) -> None:
    """os.replace, retried briefly on Windows where antivirus/indexers hold files open (campaign case 41)."""
    attempts = 5 if _IS_WINDOWS else 1
    for attempt in range(attempts):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (2**attempt))


def _keep_backup(path: Path, private: bool = False) -> None:
    """Point ``<name>.bak`` at the current version of ``path`` (best effort; never blocks the real write);
    ``private``: the backup is made 0600 as well (it holds the same secrets)."""
    bak = path.with_name(path.name + ".bak")
    try:
        st = os.stat(path)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode):
        return
    tmp = _temp_name(bak)
    try:
        try:
            # A hard link costs nothing and keeps the exact old inode alive after os.replace swaps the name.
            os.link(path, tmp)
        except OSError:
            shutil.copy2(path, tmp)  # filesystems without hard links (FAT, some SMB): copy instead
        if private:
            os.chmod(tmp, stat.S_IMODE(st.st_mode) & PRIVATE_MODE)
        os.replace(tmp, bak)
    except OSError as err:
        _unlink_quietly(tmp)
        log.warning("could not keep a backup of %s: %s", path, err)


# -- atomic replacement ---------------------------------------------------------------------------------------------


def _final_mode(existing: int | None, private: bool) -> int | None:
    """The mode the new version gets: the replaced file's, and for a private file never more than 0600 (a
    stricter mode the user chose, 0400, is kept). None: a new, non-private file takes the umask's default."""
    if not private:
        return existing
    return PRIVATE_MODE if existing is None else existing & PRIVATE_MODE


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, backup: bool = True,
                       private: bool = False) -> None:
    """Replace ``path`` with ``data`` atomically and durably; keep the previous version as ``<name>.bak``.

    On any error (ENOSPC, EROFS, EACCES, a crash) the old file is left untouched and the error propagates, so the
    caller can tell the user. No temp file is left behind except after a hard kill (hidden ``.<name>.*.tmp``;
    ``remove_temp_leftovers`` clears those at the next start). ``private``: the file (and its backup) may hold
    secrets: mode 0600 from the moment the temp file exists.
    """
    path = Path(path)
    if os.path.islink(path):
        # Write through a user's symlink (config kept in a dotfiles repo...) instead of replacing the link itself.
        path = Path(os.path.realpath(path))
    try:
        existing: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        existing = None
    tmp = _write_temp(path, bytes(data), _final_mode(existing, private), private=private)
    try:
        if backup and existing is not None:
            _keep_backup(path, private)
        _replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8", *, backup: bool = True,
                      private: bool = False) -> None:
    """``atomic_write_bytes`` for text. No BOM is written; newlines are written as given (no platform translation)."""
    atomic_write_bytes(path, text.encode(encoding), backup=backup, private=private)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 4, backup: bool = True,
                      private: bool = False) -> None:
    """Serialize first (a TypeError leaves the file untouched), then replace atomically."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False)
    atomic_write_text(path, text + "\n", backup=backup, private=private)


# -- never-overwrite creation ---------------------------------------------------------------------------------------


def unique_candidates(path: Path) -> Iterator[Path]:
    """``path``, then ``stem-1.ext``, ``stem-2.ext``... (A1111's "Add number suffix" naming), bounded."""
    yield path
    # os.path.splitext, as A1111 does: only the last extension moves ("a.tar.gz" -> "a.tar-1.gz").
    stem, suffix = os.path.splitext(path.name)
    for n in range(1, _MAX_UNIQUE_ATTEMPTS):
        tail = f"-{n}{suffix}"
        # A name already at the 255-byte limit must still get its "-N": shorten the stem, not the number.
        room = _NAME_MAX_BYTES - len(tail.encode("utf-8", "surrogateescape"))
        head = stem.encode("utf-8", "surrogateescape")[: max(room, 1)].decode("utf-8", "ignore")
        yield path.with_name(head + tail)


def _link_supported_error(err: OSError) -> bool:
    """True when os.link failed because the filesystem has no hard links (not because the name exists)."""
    return err.errno in {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS} or (
        _IS_WINDOWS and isinstance(err, PermissionError)
    )


def write_new_file(path: str | os.PathLike[str], data: bytes, *, on_collision: str = "suffix") -> Path:
    """Create a new file with ``data``; never overwrite. Returns the path actually written.

    The bytes are fsynced under a temp name, then ``os.link``-ed to the final name: the link either creates the name
    with complete contents or fails with EEXIST, so a crash never leaves a truncated file at a final name and two
    processes sharing a folder cannot clobber each other. ``on_collision="suffix"`` tries ``name-1.ext``,
    ``name-2.ext``...; ``"error"`` raises FileExistsError.

    Filesystems without hard links (FAT/exFAT, some SMB mounts): the final name is reserved with
    ``O_CREAT|O_EXCL`` (an empty placeholder, never a partial image) and the complete temp file is renamed onto it.
    """
    if on_collision not in ("suffix", "error"):
        raise ValueError(f"on_collision must be 'suffix' or 'error', not {on_collision!r}")
    path = Path(path)
    tmp = _write_temp(path, bytes(data), None)
    try:
        candidates = unique_candidates(path) if on_collision == "suffix" else iter((path,))
        use_link = True
        for candidate in candidates:
            if use_link:
                try:
                    os.link(tmp, candidate)
                except FileExistsError:
                    continue
                except OSError as err:
                    if not _link_supported_error(err):
                        raise
                    use_link = False  # fall through to the O_EXCL reservation for this and later candidates
                else:
                    _unlink_quietly(tmp)
                    fsync_dir(path.parent)
                    return candidate
            try:
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY | _O_NOFOLLOW, 0o666)
            except FileExistsError:
                continue
            os.close(fd)
            try:
                _replace(tmp, candidate)
            except BaseException:
                _unlink_quietly(candidate)  # our own empty placeholder
                raise
            fsync_dir(path.parent)
            return candidate
        raise FileExistsError(errno.EEXIST, "no free file name", str(path))
    finally:
        _unlink_quietly(tmp)  # already gone on success (linked + unlinked, or renamed)


def create_unique(directory: str | os.PathLike[str], stem: str, suffix: str) -> Path:
    """Reserve a new empty file ``<stem><suffix>`` (or ``<stem>-1<suffix>``...) in ``directory`` and return it.

    For callers that must hand a path to another writer (for example a library that only saves to paths): write the
    real content to a temp file and ``os.replace`` it onto the returned path. The reservation is atomic
    (``O_CREAT|O_EXCL``), so concurrent callers always get distinct names.
    """
    base = Path(directory) / f"{stem}{suffix}"
    for candidate in unique_candidates(base):
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY | _O_NOFOLLOW, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return candidate
    raise FileExistsError(errno.EEXIST, "no free file name", str(base))


# -- quarantine -----------------------------------------------------------------------------------------------------


def quarantine(path: str | os.PathLike[str], reason: str) -> Path:
    """Move a corrupt file aside as ``<name>.corrupt-YYYYMMDD-HHMMSS`` (``-1``, ``-2``... if taken) and return it.

    An earlier quarantined copy is never overwritten: the move is a hard link (fails on an existing name) followed by
    an unlink, or on filesystems without links a rename after an existence check (Windows rename refuses to replace).
    """
    path = Path(path)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = path.with_name(f"{path.name}.corrupt-{stamp}")
    for n in range(_MAX_UNIQUE_ATTEMPTS):
        target = base if n == 0 else base.with_name(f"{base.name}-{n}")
        try:
            os.link(path, target)
        except FileExistsError:
            continue
        except OSError as err:
            if not _link_supported_error(err):
                raise
            if os.path.lexists(target):
                continue
            os.rename(path, target)
        else:
            os.unlink(path)
        fsync_dir(path.parent)
        log.warning("%s is unusable (%s); moved it to %s", path, reason, target.name)
        return target
    raise FileExistsError(errno.EEXIST, "no free quarantine name", str(base))


_UTF8_BOM = b"\xef\xbb\xbf"


def _decode_json_object(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """Returns (object, "") or (None, why it is unusable)."""
    # A UTF-8 BOM is tolerated: Windows Notepad adds one to a hand-edited, otherwise valid config. Quarantining it
    # would throw away every setting for a cosmetic byte; we drop it and the next save writes the file without it.
    raw = raw.removeprefix(_UTF8_BOM)
    if not raw.strip():
        return None, "empty file"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return None, f"not UTF-8 ({err.reason} at byte {err.start})"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        return None, f"invalid JSON ({err.msg} at line {err.lineno} column {err.colno})"
    except RecursionError:
        return None, "invalid JSON (nested too deeply)"
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, found {type(obj).__name__}"
    return obj, ""


def read_json_or_quarantine(path: str | os.PathLike[str]) -> tuple[dict[str, Any] | None, Path | None]:
    """Read a JSON object file.

    * missing file -> ``(None, None)``;
    * valid object (a leading UTF-8 BOM is tolerated) -> ``(obj, None)``;
    * empty, truncated, invalid JSON, non-UTF-8, or not an object -> the file is quarantined and
      ``(None, quarantine_path)`` is returned, so the caller starts with defaults *and* can tell the user where the
      old file went.

    Other OS errors (permission denied, a directory at that path) propagate: moving the file would not fix them.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    obj, why = _decode_json_object(raw)
    if obj is not None:
        return obj, None
    return None, quarantine(path, why)


def read_settings_at_start(path: str | os.PathLike[str]) -> tuple[dict[str, Any] | None, Path | None, str | None]:
    """A settings file as the app reads it at start: the temp files of a write killed midway removed, then
    ``read_json_or_quarantine``; a file that cannot be read at all (a folder, no permission) is left alone.
    Returns (data, where a corrupt file went, why the file was unreadable)."""
    remove_temp_leftovers(path)
    try:
        data, quarantined = read_json_or_quarantine(path)
    except OSError as err:
        return None, None, err.strerror or type(err).__name__
    return data, quarantined, None


def read_json_quietly(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing or unusable; nothing is moved (a look before the
    real start, which quarantines and reports). Other OS errors propagate, as in ``read_json_or_quarantine``."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    return _decode_json_object(raw)[0]


@dataclass(frozen=True)
class JsonLoad:
    """What ``load_json_with_recovery`` found: data to use, and what happened on the way (for a UI banner)."""

    data: dict[str, Any] | None
    quarantined: Path | None = None  # where the corrupt main file went
    from_backup: bool = False  # data came from ``<name>.bak``


def load_json_with_recovery(path: str | os.PathLike[str]) -> JsonLoad:
    """``read_json_or_quarantine``, then fall back to ``<name>.bak`` when the main file was corrupt.

    The backup is only read, never moved or modified, so it is still there if the recovered data is wrong.
    """
    path = Path(path)
    data, quarantined = read_json_or_quarantine(path)
    if data is not None or quarantined is None:
        return JsonLoad(data, quarantined)
    try:
        raw = path.with_name(path.name + ".bak").read_bytes()
    except OSError:
        return JsonLoad(None, quarantined)
    backup, _ = _decode_json_object(raw)
    if backup is None:
        return JsonLoad(None, quarantined)
    log.warning("restored %s from its backup %s.bak", path.name, path.name)
    return JsonLoad(backup, quarantined, from_backup=True)


def is_temp_leftover(name: str) -> bool:
    """True for the hidden temp files this module creates (``.<name>.<hex>.tmp``), e.g. to clean up after a crash."""
    return name.startswith(".") and name.endswith(".tmp")


def _leftover_pattern(path: Path) -> re.Pattern[str]:
    """Exactly the temp names ``atomic_write_bytes`` makes for ``path`` and for its ``.bak``."""
    heads = "|".join(re.escape(_temp_head(name)) for name in (path.name, path.name + ".bak"))
    return re.compile(rf"\.(?:{heads})\.[0-9a-f]{{{2 * _TEMP_TOKEN_BYTES}}}\.tmp")


def remove_temp_leftovers(path: str | os.PathLike[str]) -> list[Path]:
    """At start: delete the temp files a hard kill (``kill -9``, power loss) left behind while ``path`` was being
    replaced. Only names of our own pattern for this file are touched, and only plain files; returns them."""
    path = Path(path)
    pattern = _leftover_pattern(path)
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    removed = []
    for entry in entries:
        if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            _unlink_quietly(Path(entry.path))
            removed.append(Path(entry.path))
    if removed:
        log.info("removed %d unfinished temporary file(s) of %s", len(removed), path.name)
    return removed


__all__ = [
    "JsonLoad",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "create_unique",
    "fsync_dir",
    "is_temp_leftover",
    "load_json_with_recovery",
    "quarantine",
    "read_json_or_quarantine",
    "read_json_quietly",
    "read_settings_at_start",
    "remove_temp_leftovers",
    "unique_candidates",
    "write_new_file",
]
