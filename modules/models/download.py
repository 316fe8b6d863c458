"""Downloading model files: streamed to ``<name>.partial``, resumed when possible, sha256-checked, renamed atomically.

A file only ever appears under its final name complete and verified, so an interrupted download can never be mistaken
for a checkpoint. Failures raise ``DownloadError`` whose message says what to do by hand (many users are offline).
Standard library only (urllib), so it works before any optional dependency is installed.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The model A1111 downloads when no checkpoint is found (sd_models.py); model hash 6ce0161689.
DEFAULT_SD_MODEL: dict[str, Any] = {
    "url": "https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/v1-5-pruned-emaonly.safetensors",
    "filename": "v1-5-pruned-emaonly.safetensors",
    "sha256": "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa",
    "size": 4_265_146_304,
}

CHUNK = 1 << 20
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
USER_AGENT = "sd-webui-download/1"

Progress = Callable[[int, "int | None"], None]


class DownloadError(Exception):
    """A download failed; ``str(err)`` is a sentence a user can act on. Nothing was left under the final name."""

    def __init__(self, message: str, url: str = "", dest: Path | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.dest = dest


class HashMismatchError(DownloadError):
    """The downloaded bytes are not the expected file (corrupted, or the server changed it)."""


def _by_hand(dest: Path) -> str:
    return f"download {dest.name} yourself and put it in {display_dir(dest.parent)}"


def display_dir(folder: Path) -> str:
    # Show "models/Stable-diffusion" rather than a long absolute path when the folder is under the current directory.
    try:
        return folder.resolve().relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return str(folder)


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or url


def _hash_existing(path: Path) -> tuple["hashlib._Hash", int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h, size


def _total_from(resp: http.client.HTTPResponse, offset: int) -> int | None:
    if resp.status == 206:
        # "Content-Range: bytes 100-999/1000"
        rng = resp.headers.get("Content-Range", "")
        total = rng.rpartition("/")[2]
        if total.isdigit():
            return int(total)
    length = resp.headers.get("Content-Length")
    if length and length.isdigit():
        return int(length) + (offset if resp.status == 206 else 0)
    return None


def _resume_offset(resp: http.client.HTTPResponse, offset: int) -> int:
    """Where the response body starts: ``offset`` if the server honoured our Range, else 0 (start over)."""
    if offset and resp.status == 206 and resp.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
        return offset
    return 0


def download_file(url: str, dest: Path, sha256: str | None, progress: Progress | None = None,
                  timeout: float = 30, overwrite: bool = True) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    Streams into ``dest + ".partial"`` and resumes from an existing partial file with an HTTP Range request. When
    ``sha256`` is given, the whole file must match it, else the partial file is deleted and ``HashMismatchError``
    raised. ``progress(done_bytes, total_bytes_or_None)`` is called as bytes arrive. Network failures raise
    ``DownloadError``; the partial file is kept so the next call resumes. With ``overwrite=False`` a file already
    under ``dest`` (before or when the download ends) is kept and nothing is downloaded or replaced.
    """
    dest = Path(dest)
    if not overwrite and dest.exists():
        return dest
    partial = dest.with_suffix(dest.suffix + ".partial")
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = sha256.lower() if sha256 else None

    hasher, offset = _hash_existing(partial) if partial.exists() else (hashlib.sha256(), 0)
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    host = _host(url)

    done = offset
    total: int | None = None
    try:
        req = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            start = _resume_offset(resp, offset)
            if start != offset:  # server ignored the Range: rewrite from the beginning
                hasher, done = hashlib.sha256(), 0
            total = _total_from(resp, start)
            if progress:
                progress(done, total)
            with partial.open("ab" if start else "wb") as out:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    hasher.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
                out.flush()
                os.fsync(out.fileno())
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # our partial is already as long as the file (or longer): check it below
            total = offset
        else:
            raise DownloadError(f"{host} answered HTTP {e.code} {e.reason} for {dest.name}; {_by_hand(dest)}",
                                url, dest) from e
    except (OSError, http.client.HTTPException) as e:  # URLError, socket errors and timeouts are OSErrors
        if isinstance(e, OSError) and e.errno in _DISK_ERRNOS:
            raise DownloadError(f"could not write {partial}: {e.strerror}; free some space or fix the folder's "
                                f"permissions, then run again", url, dest) from e
        reason = getattr(e, "reason", None) or e
        if done == offset and total is None and not isinstance(e, http.client.IncompleteRead):
            # No answer at all: DNS failure, refused connection, timeout on connect, proxy or TLS failure...
            raise DownloadError(f"could not reach {host}: you appear to be offline; {_by_hand(dest)} "
                                f"(error: {reason})", url, dest) from e
        raise DownloadError(_interrupted(host, dest, done, total, str(reason)), url, dest) from e

    if total is not None and done < total:
        # http.client returns a short body without an error when the server closes early.
        raise DownloadError(_interrupted(host, dest, done, total, "connection closed"), url, dest)
    if expected and hasher.hexdigest() != expected:
        partial.unlink(missing_ok=True)
        raise HashMismatchError(
            f"{dest.name} from {host} is corrupt or not the expected file (sha256 {hasher.hexdigest()[:10]}, "
            f"expected {expected[:10]}); the partial file was deleted, try again or {_by_hand(dest)}", url, dest)
    if overwrite:
        os.replace(partial, dest)
    else:
        _place_new(partial, dest)
    return dest


def _place_new(partial: Path, dest: Path) -> None:
    """Give ``partial`` the name ``dest`` unless a file took that name meanwhile (another download, the user's own
    copy): a hard link fails instead of replacing, where ``os.replace`` would overwrite."""
    try:
        os.link(partial, dest)
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links: the check and the rename are not one step there
        if not dest.exists():
            os.replace(partial, dest)
            return
    partial.unlink(missing_ok=True)


def _interrupted(host: str, dest: Path, done: int, total: int | None, reason: str) -> str:
    of = f" of {total}" if total is not None else ""
    return (f"the download of {dest.name} from {host} stopped after {done}{of} bytes ({reason}); run again to resume, "
            f"or {_by_hand(dest)}")


def download_default_model(models_dir: Path, progress: Progress | None = None, timeout: float = 30) -> Path:
    """Fetch SD 1.5 (A1111's first-run download) into ``<models_dir>/Stable-diffusion``."""
    dest = Path(models_dir) / "Stable-diffusion" / DEFAULT_SD_MODEL["filename"]
    return download_file(DEFAULT_SD_MODEL["url"], dest, DEFAULT_SD_MODEL["sha256"], progress, timeout)


__all__ = ["DEFAULT_SD_MODEL", "DownloadError", "HashMismatchError", "display_dir", "download_default_model",
           "download_file"]
