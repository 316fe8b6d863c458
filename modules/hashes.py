"""A1111's ``modules.hashes`` for extensions (issue 17 section 2): ``sha256(filename, title)`` (hashed once, kept in
the app's ``cache.json`` under ``title``, None with ``--no-hashing``), ``sha256_from_cache``, ``calculate_sha256``
and ``addnet_hash_safetensors`` (which A1111 gives an open file). A facade over ``modules.hashing``."""

from __future__ import annotations

import hashlib
import os
from typing import IO

from modules import hashing


def _cache() -> hashing.HashCache | None:
    from modules import shared

    return getattr(shared.runtime, "hash_cache", None)


def _section(use_addnet_hash: bool) -> str:
    return "hashes-addnet" if use_addnet_hash else "hashes"


def calculate_sha256(filename: str | os.PathLike[str]) -> str:
    return hashing.sha256_file(filename)


def sha256_from_cache(filename: str | os.PathLike[str], title: str, use_addnet_hash: bool = False) -> str | None:
    """The cached hash of ``filename`` under ``title`` while the file is unchanged, else None (nothing is read)."""
    cache = _cache()
    if cache is None:
        return None
    try:
        return cache.get(title, os.stat(filename), _section(use_addnet_hash))
    except OSError:
        return None


def sha256(filename: str | os.PathLike[str], title: str, use_addnet_hash: bool = False) -> str | None:
    """The file's sha256 (or kohya's addnet hash), from the cache or computed and cached; None with
    ``--no-hashing``, as A1111."""
    from modules import shared

    if getattr(shared.cmd_opts, "no_hashing", False):
        return None
    compute = hashing.addnet_hash_cached if use_addnet_hash else hashing.sha256_file
    return compute(filename, _cache(), title)


def addnet_hash_safetensors(b: IO[bytes]) -> str:
    """kohya's addnet hash of an open safetensors file: sha256 of everything after its header."""
    b.seek(0)
    header_len = int.from_bytes(b.read(8), "little")
    b.seek(8 + header_len)
    digest = hashlib.sha256()
    for chunk in iter(lambda: b.read(hashing.CHUNK_SIZE), b""):
        digest.update(chunk)
    return digest.hexdigest()
