"""A1111's extension index (the Extensions tab's "Available" list): read, filtered and ordered as A1111 shows it.

The index is a JSON file, ``{"tags": {tag: description}, "extensions": [{"name", "url", "description", "tags",
"added", "created_at", "pushed_at", "stars"}, ...]}``; A1111's default is ``DEFAULT_INDEX_URL``. It is read over
https (plain http only from this machine, for local mirrors), at most ``MAX_INDEX_BYTES``, with a timeout, so a
wrong or hostile address cannot hang or flood the server; every failure is one readable ``IndexError_``.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import urlsplit

DEFAULT_INDEX_URL = ("https://raw.githubusercontent.com/AUTOMATIC1111/stable-diffusion-webui-extensions/master/"
                     "index.json")
MAX_INDEX_BYTES = 32 * 1024 * 1024
TIMEOUT_S = 20.0
HIDDEN_BY_DEFAULT = ("ads", "localization", "installed")  # A1111's "Hide extensions with tags" default
ORDERS = ("newest first", "oldest first", "a-z", "z-a", "internal order", "update time", "create time", "stars")


class IndexError_(Exception):  # noqa: N801 - "IndexError" is a builtin
    """The index could not be read; the message says why, for the page."""


@dataclass(frozen=True)
class Entry:
    name: str
    url: str
    description: str = ""
    tags: tuple[str, ...] = ()
    added: str = ""
    created_at: str = ""
    pushed_at: str = ""
    stars: int = 0
    position: int = 0  # its place in the file ("internal order")


@dataclass
class Index:
    url: str
    entries: list[Entry] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


def check_index_url(url: str) -> str:
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return url
    raise IndexError_("the extension index must be an https:// address (http:// only on this machine)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fetch_index(url: str, timeout: float = TIMEOUT_S) -> Index:
    """Download and parse the index at ``url``."""
    url = check_index_url(url)
    request = urllib.request.Request(url, headers={"User-Agent": "sdwebui-py extension index"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            data = response.read(MAX_INDEX_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise IndexError_(f"could not load the extension index from {url}: {reason}. Without a connection, "
                          f"install an extension from its git URL, or put its folder into extensions/.") from err
    if len(data) > MAX_INDEX_BYTES:
        raise IndexError_(f"the extension index at {url} is larger than {MAX_INDEX_BYTES // 2**20} MiB")
    return parse_index(url, data)


def parse_index(url: str, data: bytes | str) -> Index:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise IndexError_(f"the extension index at {url} is not JSON: {err}") from err
    if not isinstance(document, dict) or not isinstance(document.get("extensions"), list):
        raise IndexError_(f"the extension index at {url} has no \"extensions\" list")
    tags = {str(k): str(v) for k, v in (document.get("tags") or {}).items()} \
        if isinstance(document.get("tags"), dict) else {}
    entries = []
    for position, item in enumerate(document["extensions"]):
        if not isinstance(item, dict) or not item.get("url") or not item.get("name"):
            continue  # a broken entry is skipped, not the whole list
        entries.append(Entry(name=str(item["name"]), url=str(item["url"]), description=str(item.get("description")
                                                                                              or ""),
                             tags=tuple(str(t) for t in item.get("tags") or () if isinstance(t, (str, int))),
                             added=str(item.get("added") or ""), created_at=str(item.get("created_at") or ""),
                             pushed_at=str(item.get("pushed_at") or ""), stars=_int(item.get("stars")),
                             position=position))
    return Index(url, entries, tags)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def normalized(url: str) -> str:
    """A git URL compared as A1111 compares them: no scheme case, no trailing slash or ``.git``."""
    text = (url or "").strip().rstrip("/").lower()
    return text[:-4] if text.endswith(".git") else text


def shown(index: Index, hidden_tags: Iterable[str], order: str, search: str,
          installed_urls: Iterable[str]) -> tuple[list[tuple[Entry, bool]], int]:
    """(entry, installed) rows to show, and how many were hidden by the tags: A1111's filter, search and order."""
    hidden = set(hidden_tags or ())
    installed = {normalized(u) for u in installed_urls if u}
    query = (search or "").strip().lower()
    rows, hidden_count = [], 0
    for entry in index.entries:
        is_installed = normalized(entry.url) in installed
        tags = set(entry.tags) | ({"installed"} if is_installed else set())
        if tags & hidden:
            hidden_count += 1
            continue
        if query and query not in f"{entry.name} {entry.description} {' '.join(entry.tags)}".lower():
            continue
        rows.append((entry, is_installed))
    key = {"newest first": lambda r: r[0].added, "oldest first": lambda r: r[0].added,
           "a-z": lambda r: r[0].name.lower(), "z-a": lambda r: r[0].name.lower(),
           "internal order": lambda r: r[0].position, "update time": lambda r: r[0].pushed_at,
           "create time": lambda r: r[0].created_at, "stars": lambda r: r[0].stars}.get(order, lambda r: r[0].added)
    reverse = order in ("newest first", "z-a", "update time", "create time", "stars") or order not in ORDERS
    rows.sort(key=key, reverse=reverse)
    return rows, hidden_count
