"""Model file hashes with A1111's names and values, and a persistent cache so multi-GB files are hashed once.

* ``sha256_file``: full-file SHA-256 (``Model hash`` in infotext is its first 10 hex: ``short_hash``).
* ``legacy_model_hash``: A1111's "old hash" (8 hex of the SHA-256 of 64 KiB at offset 1 MiB), still a lookup alias.
* ``addnet_hash_safetensors``: the kohya/"addnet" hash A1111 uses for Lora (tensor bytes only).
* ``HashCache``: ``cache.json`` (``{"hashes": {"checkpoint/<name>": {"sha256", "size", "mtime"}}}``), written
  atomically, rebuilt after quarantining when corrupt, safe to share between threads.

Files are opened with O_NONBLOCK and checked to be regular files before reading, so a path swapped for a FIFO or a
device after a directory scan cannot hang or flood a hash (security campaign cases 9-10).
Pure module: standard library only.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from modules import fileio

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20  # 1 MiB: large enough for throughput, small enough to stay out of memory pressure
LEGACY_HASH_OFFSET = 0x100000
LEGACY_HASH_LENGTH = 0x10000
NOFILE = "NOFILE"  # what A1111's model_hash() returns for a file it cannot read
HASH_SECTIONS = ("hashes", "hashes-addnet")  # cache.json sections we own (A1111's names); others are kept as found


def short_hash(sha256: str) -> str:
    """The 10-hex form printed as ``Model hash`` and shown in checkpoint titles."""
    return sha256[:10]


@contextmanager
def open_regular(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a regular file for reading; refuse FIFOs, devices and directories without blocking on them."""
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if os.name == "posix":
            os.set_blocking(fd, True)  # O_NONBLOCK was only a guard for the open; it is a regular file
        f = os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def _sha256_stream(f: IO[bytes]) -> str:
    h = hashlib.sha256()
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    while True:
        n = f.readinto(buf)  # type: ignore[attr-defined]
        if not n:
            break
        h.update(view[:n])
    return h.hexdigest()


def legacy_model_hash(path: str | os.PathLike[str]) -> str:
    """A1111's old 8-hex model hash: sha256 of the 64 KiB at offset 1 MiB.

    Like A1111, a file shorter than that hashes whatever is there (nothing, for files under 1 MiB: ``e3b0c442``).
    Unreadable files give ``"NOFILE"`` (A1111 only does that for a missing file and raises otherwise; never raising
    keeps a directory scan alive).
    """
    try:
        with open_regular(path) as f:
            f.seek(LEGACY_HASH_OFFSET)
            data = f.read(LEGACY_HASH_LENGTH)
    except OSError:
        return NOFILE
    return hashlib.sha256(data).hexdigest()[:8]


def addnet_hash_safetensors(path: str | os.PathLike[str]) -> str:
    """kohya-ss "addnet" hash: sha256 of everything after the 8-byte header length and the JSON header.

    A1111 prints its first 12 hex as the ``Lora hashes`` value. A header length pointing past the end of the file is
    reported as an error (A1111 would silently hash nothing and print the hash of an empty string).
    """
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: too short for a safetensors file ({size} bytes)")
        header_len = int.from_bytes(head, "little")
        if header_len > size - 8:
            raise ValueError(f"{path}: safetensors header length {header_len} exceeds the file size {size}")
        f.seek(8 + header_len)
        return _sha256_stream(f)


class HashCache:
    """Persistent ``{key: sha256}`` keyed like A1111 (``checkpoint/<name>``, ``lora/<name>``...).

    An entry is valid while the file's size and mtime match what was recorded (A1111 only checks mtime; a size check
    also catches a file replaced within the same second). The file lives at ``Paths.cache_file`` and has A1111's
    historical ``cache.json`` shape plus ``size``. Sections: ``"hashes"`` (full-file sha256) and ``"hashes-addnet"``.

    Thread-safe: one lock guards the table; a per-key lock makes concurrent requests for the same file hash it once.
    Every write merges with the file on disk first, so two processes sharing the cache do not drop each other's entries.
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path is not None else None  # None: memory only (tests, --no-hashing dry runs)
        self._lock = threading.RLock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self._data: dict[str, dict[str, dict[str, Any]]] = {}
        self._dirty: set[tuple[str, str]] = set()
        self.quarantined: Path | None = None
        self._load()

    # -- persistence ----------------------------------------------------------------------------------------------

    def _read_raw(self) -> dict[str, Any]:
        """The whole file as found (other programs' sections included), {} when missing, unreadable or corrupt."""
        if self.path is None:
            return {}
        try:
            raw, quarantined = fileio.read_json_or_quarantine(self.path)
        except OSError as err:
            log.warning("hash cache %s unreadable (%s); hashes will be recomputed", self.path, err)
            return {}
        if quarantined is not None:
            self.quarantined = quarantined
        return raw or {}

    def _load(self) -> None:
        with self._lock:
            self._data = _clean_cache(self._read_raw())

    def _save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            # Re-read first: another process may have added entries; ours win for the keys we touched, and
            # sections we do not own (A1111's "safetensors-metadata"...) are written back untouched.
            raw = self._read_raw()
            for section, key in self._dirty:
                if not isinstance(raw.get(section), dict):
                    raw[section] = {}
                entry = self._data.get(section, {}).get(key)
                if entry is None:
                    raw[section].pop(key, None)
                else:
                    raw[section][key] = entry
            for section, entries in _clean_cache(raw, quiet=True).items():
                mine = self._data.setdefault(section, {})
                for key, entry in entries.items():
                    if (section, key) not in self._dirty:
                        mine[key] = entry
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # No .bak: a cache is rebuilt from the files it describes, not worth a second copy.
                fileio.atomic_write_json(self.path, raw, indent=4, backup=False)
                self._dirty.clear()
            except OSError as err:
                log.warning("could not write hash cache %s: %s", self.path, err)

    # -- table ----------------------------------------------------------------------------------------------------

    def get(self, key: str, st: os.stat_result, section: str = "hashes") -> str | None:
        """Cached sha256 for ``key`` if it was recorded for a file of this size and mtime, else None."""
        with self._lock:
            entry = self._data.get(section, {}).get(key)
        if entry is None:
            return None
        if entry.get("size") is not None and entry["size"] != st.st_size:
            return None
        if entry.get("mtime") != st.st_mtime:
            return None
        return str(entry["sha256"])

    def lookup(self, key: str, path: str | os.PathLike[str], section: str = "hashes") -> str | None:
        """Cached value for the file as it is now (no hashing). None if unknown, stale or the file is gone."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        return self.get(key, st, section)

    def put(self, key: str, sha256: str, st: os.stat_result, section: str = "hashes") -> None:
        with self._lock:
            self._data.setdefault(section, {})[key] = {"mtime": st.st_mtime, "size": st.st_size, "sha256": sha256}
            self._dirty.add((section, key))
            self._save()

    def forget(self, key: str, section: str = "hashes") -> None:
        with self._lock:
            if self._data.get(section, {}).pop(key, None) is not None:
                self._dirty.add((section, key))
                self._save()

    def key_lock(self, key: str, section: str = "hashes") -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault((section, key), threading.Lock())

    def entries(self, section: str = "hashes") -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self._data.get(section, {}).items()}


def _clean_cache(raw: dict[str, Any], quiet: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """Well-formed entries of our sections only: a hand-edited or foreign cache must not crash hashing."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    dropped = 0
    for section in HASH_SECTIONS:
        entries = raw.get(section, {})
        if not isinstance(entries, dict):
            dropped += 1
            continue
        good: dict[str, dict[str, Any]] = {}
        for key, entry in entries.items():
            if (
                isinstance(entry, dict)
                and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("mtime"), (int, float))
                and isinstance(entry.get("size", 0), int)
            ):
                good[key] = {"mtime": entry["mtime"], "size": entry.get("size"), "sha256": entry["sha256"]}
            else:
                dropped += 1
        out[section] = good
    if dropped and not quiet:
        log.warning("hash cache: ignored %d malformed entries", dropped)
    return out


def _hash_with_cache(
    path: Path, cache: HashCache | None, key: str | None, section: str, compute: Callable[[Path], str]
) -> str:
    if cache is None or key is None:
        return compute(path)
    with cache.key_lock(key, section):
        before = os.stat(path)
        cached = cache.get(key, before, section)
        if cached is not None:
            return cached
        value = compute(path)
        after = os.stat(path)
        if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
            cache.put(key, value, after, section)
        else:
            # Changed while we read it (download still running, file replaced): the value describes no stable file.
            log.warning("%s changed while it was hashed; not caching its hash", path)
        return value


def _sha256_path(path: Path) -> str:
    with open_regular(path) as f:
        return _sha256_stream(f)


def sha256_file(path: str | os.PathLike[str], cache: HashCache | None = None, key: str | None = None) -> str:
    """Full-file SHA-256 (64 hex), read in 1 MiB chunks; cached under ``key`` when a cache is given.

    Raises OSError when the file cannot be read (missing, a FIFO, a device...).
    """
    return _hash_with_cache(Path(path), cache, key, "hashes", _sha256_path)


def addnet_hash_cached(path: str | os.PathLike[str], cache: HashCache | None = None, key: str | None = None) -> str:
    """``addnet_hash_safetensors`` through the cache's ``hashes-addnet`` section (A1111's section name)."""
    return _hash_with_cache(Path(path), cache, key, "hashes-addnet", addnet_hash_safetensors)


__all__ = [
    "CHUNK_SIZE",
    "HASH_SECTIONS",
    "NOFILE",
    "HashCache",
    "addnet_hash_cached",
    "addnet_hash_safetensors",
    "legacy_model_hash",
    "open_regular",
    "sha256_file",
    "short_hash",
]
