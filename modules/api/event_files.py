"""ASGI middleware in front of gradio's event and upload routes (everything under ``/gradio_api/``).

* **File references**: a JSON body (``queue/join``, ``run``, ``call``, ``component_server``, ...) that names a file
  outside this server's upload cache and output folders is refused with 403 before gradio sees it. gradio itself
  would copy such a file into its cache and hand it to the handler when it is mounted into our app (its own check
  only runs for ``launch()``ed apps), so this is the one place every tab's and every extension's events pass.
  The answer is the same whether the file exists or not.
* **Uploads** (``upload``, and the image editor's multipart ``component_server`` blobs): each client address may
  upload at most ``upload_quota`` bytes within ``UPLOAD_WINDOW`` seconds
  (429 with ``Retry-After`` past it); together with the per-request body limit and gradio's ``delete_cache`` this
  bounds what one client can leave in the cache.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from modules import browser_files
from modules.api.guard import LimitedReceive

log = logging.getLogger(__name__)

Scope = dict[str, Any]
GRADIO_PREFIX = "/gradio_api/"
UPLOAD_WINDOW = 3600.0
UPLOAD_QUOTA_BYTES = 2 * 1024**3  # per client address and window (--max-upload-mb-per-hour): a long session fits
_MAX_CLIENTS = 10_000  # bounded memory under a spray of addresses


def _content_type(scope: Scope) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-type":
            return value.decode("latin-1").split(";")[0].strip().lower()
    return ""


def _declared_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


DRAIN_LIMIT = 64 * 1024 * 1024  # at most this much of a refused body is read (the request guard caps bodies too)


async def _drain(receive: Any, limit: int = DRAIN_LIMIT) -> None:
    """Read and drop the rest of a refused request's body, so the client, still sending, gets the answer instead
    of a broken pipe (a server that answers and closes mid-upload leaves urllib and others without the 429)."""
    read = 0
    while read <= limit:
        message = await receive()
        if message.get("type") != "http.request":
            return
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _answer(send: Any, status: int, message: str, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class UploadLedger:
    """Bytes uploaded per client address within the last ``window`` seconds."""

    def __init__(self, quota: int, window: float = UPLOAD_WINDOW) -> None:
        self.quota, self.window = quota, window
        self._entries: dict[str, list[tuple[float, int]]] = {}

    def _recent(self, client: str, now: float) -> list[tuple[float, int]]:
        recent = [(t, n) for t, n in self._entries.get(client, []) if now - t < self.window]
        self._entries[client] = recent
        return recent

    def used(self, client: str) -> int:
        return sum(n for _, n in self._recent(client, time.monotonic()))

    def retry_after(self, client: str) -> int:
        recent = self._recent(client, time.monotonic())
        oldest = min((t for t, _ in recent), default=time.monotonic())
        return max(1, int(self.window - (time.monotonic() - oldest)) + 1)

    def add(self, client: str, size: int) -> None:
        if len(self._entries) > _MAX_CLIENTS:
            self._entries.clear()
        self._recent(client, time.monotonic()).append((time.monotonic(), size))


class GradioEventGuard:
    """The middleware; ``roots()`` gives the folders the browser may name (read per request: settings change)."""

    def __init__(self, app: Any, roots: Callable[[], Sequence[Path]], upload_quota: int = UPLOAD_QUOTA_BYTES) -> None:
        self.app = app
        self.roots = roots
        self.uploads = UploadLedger(upload_quota)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") != "POST" or GRADIO_PREFIX not in path:
            await self.app(scope, receive, send)
            return
        if path.rstrip("/").endswith(f"{GRADIO_PREFIX}upload") or _content_type(scope) == "multipart/form-data":
            # files and the image editor's blobs (component_server, kept in memory until the next event): bytes,
            # never paths, and counted against the client's upload quota
            await self._upload(scope, receive, send)
        else:
            await self._event(scope, receive, send)

    async def _event(self, scope: Scope, receive: Any, send: Any) -> None:
        chunks, messages = [], []
        while True:
            message = await receive()
            messages.append(message)
            if message.get("type") != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if body.strip():
            try:
                refused = browser_files.refused_references(json.loads(body), self.roots())
            except (ValueError, RecursionError, browser_files.TooDeep):
                await _answer(send, 400, "the request body is not valid JSON")
                return
            if refused:
                log.warning("refused a page event naming files outside the upload cache and output folders: %s",
                            ", ".join(refused[:5]))
                await _answer(send, 403, "files outside this server's uploads and output folders cannot be used")
                return
        replay = iter(messages)

        async def replayed() -> dict[str, Any]:
            message = next(replay, None)
            return message if message is not None else await receive()

        await self.app(scope, replayed, send)

    async def _upload(self, scope: Scope, receive: Any, send: Any) -> None:
        client = str((scope.get("client") or ("",))[0])
        limit = self.uploads.quota - self.uploads.used(client)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _drain(receive)
            await self._over_quota(client, send)
            return
        counted = LimitedReceive(receive, limit)  # past the quota, whatever gradio answers becomes our 429

        async def answer(message: dict[str, Any]) -> None:
            if not counted.over:
                await send(message)
            elif message.get("type") == "http.response.start":
                await _drain(receive)
                await self._over_quota(client, send)

        try:
            await self.app(scope, counted, answer)
        finally:
            self.uploads.add(client, counted.seen)

    async def _over_quota(self, client: str, send: Any) -> None:
        quota_mb = self.uploads.quota // (1024 * 1024)
        await _answer(send, 429, f"upload limit reached: {quota_mb} MB an hour from one address",
                      [(b"retry-after", str(self.uploads.retry_after(client)).encode())])
