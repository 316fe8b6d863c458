"""One gate in front of every route (API, UI, file routes, websockets, extension routes): a pure ASGI middleware.

In order, for each HTTP request and websocket:
1. **Host allow-list** against DNS rebinding: loopback names, ``--server-name``, ``--allowed-hosts``, and on a
   network-exposed server any IP literal and this machine's own names (a rebinding attack needs a host *name*).
2. **Cross-site refusal** for every state-changing request (not GET/HEAD/OPTIONS) and every websocket: a browser's
   ``Sec-Fetch-Site: cross-site|same-site`` or an ``Origin`` (``null`` included) that is not this server or a
   ``--cors-allow-origins`` entry is refused. Clients that are not browsers send neither header and pass.
3. **Content-type gate**: API POSTs (``/sdapi/``, ``/api/``) must be JSON or have no body; a ``<form>`` can only
   send ``text/plain``, urlencoded or multipart, so an old browser without ``Origin`` still cannot drive the API.
4. **Body limit** (``--max-request-mb``): a declared ``Content-Length`` over it is a 413 before anything is read;
   a streamed body is counted, cut off at the limit, and the answer is a 413 whatever the app made of the rest.
5. **Auth**: with credentials configured (``--gradio-auth``, ``--gradio-auth-path``, ``--api-auth``; one set for
   everything), every route that gradio does not serve itself needs HTTP Basic credentials or the UI's login cookie;
   gradio's own routes (page, queue, files) keep gradio's login, fed the same credentials. Ten wrong logins
   (ours or gradio's login form) from one address within a minute lock it out for a minute (429).

Every answer (refusals included) gets ``X-Content-Type-Options: nosniff``, ``Content-Security-Policy:
frame-ancestors 'self'`` and ``Referrer-Policy: same-origin`` (a prompt or a file path in our URLs never leaves in a
``Referer``);
files of an active type (HTML, SVG, scripts) from the file routes are sent as downloads. Refusals are JSON
``{"error", "detail"}`` with 4xx codes; nothing here reads a request body it refuses.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from starlette.requests import ClientDisconnect

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
FORM_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")
API_PREFIXES = ("/sdapi/", "/api/")


def _host_of(value: str) -> str:
    """``Host`` header or URL netloc -> lower-case host without port or IPv6 brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


@dataclass
class GuardPolicy:
    allowed_hosts: set[str] = field(default_factory=lambda: set(LOOPBACK_NAMES))
    any_host: bool = False  # --allowed-hosts "*"
    ip_hosts: bool = False  # exposed server: reached by LAN/WAN address
    trusted_origins: set[str] = field(default_factory=set)
    origin_regex: re.Pattern[str] | None = None
    max_body: int = 100 * 1024 * 1024
    credentials: dict[bytes, bytes] = field(default_factory=dict)
    # Set once the UI is mounted: whether gradio serves a path (it checks its own login there), and the user of a
    # UI login cookie. Without the UI every route needs credentials.
    served_by_gradio: Callable[[Scope], bool] = lambda scope: False
    session_user: Callable[[dict[str, str]], str | None] = lambda cookies: None
    # Routes that answer "who are you" themselves, as gradio's would (A1111's /login_check).
    self_checking_paths: frozenset[str] = frozenset({"/login_check", "/login_check/"})

    @classmethod
    def from_args(cls, args: Any, credentials: dict[str, str]) -> GuardPolicy:
        from modules.cmd_args import network_exposed, server_name

        hosts = set(LOOPBACK_NAMES)
        extra = [h.strip() for h in (getattr(args, "allowed_hosts", None) or "").split(",") if h.strip()]
        any_host = "*" in extra
        hosts |= {_host_of(h) for h in extra if h != "*"}
        name = server_name(args)
        exposed = network_exposed(args)
        if name not in ("0.0.0.0", "::"):
            hosts.add(_host_of(name))
        if exposed:
            for own in {socket.gethostname(), socket.getfqdn()}:
                if own:
                    hosts.add(own.lower())
        origins = {o.strip().rstrip("/").lower() for o in (getattr(args, "cors_allow_origins", None) or "").split(",")
                   if o.strip()}
        regex = getattr(args, "cors_allow_origins_regex", None)
        mb = getattr(args, "max_request_mb", None)
        return cls(allowed_hosts=hosts, any_host=any_host, ip_hosts=exposed, trusted_origins=origins,
                   origin_regex=re.compile(regex) if regex else None,
                   max_body=int(float(mb if mb is not None else 100) * 1024 * 1024),
                   credentials={u.encode(): p.encode() for u, p in credentials.items()})

    def host_allowed(self, host: str) -> bool:
        if self.any_host:
            return True
        host = _host_of(host)
        return host in self.allowed_hosts or (self.ip_hosts and _is_ip(host))

    def origin_allowed(self, origin: str, host_header: str) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if origin == "null" or not origin:
            return False
        if origin in self.trusted_origins or (self.origin_regex is not None and self.origin_regex.fullmatch(origin)):
            return True
        return urlsplit(origin).netloc == host_header.strip().lower()

    def authenticated(self, headers: dict[str, str]) -> bool:
        """HTTP Basic credentials or the UI's login cookie; True when no login is set at all."""
        if not self.credentials:
            return True
        return (self.basic_ok(headers.get("authorization", ""))
                or self.session_user(_cookies(headers.get("cookie", ""))) is not None)

    def basic_ok(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        ok = False
        for known_user, known_password in self.credentials.items():
            # every entry is compared, so timing does not reveal which user exists
            ok |= secrets.compare_digest(user, known_user) & secrets.compare_digest(password, known_password)
        return ok


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _cookies(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            out[name] = value
    return out


LOCKOUT_FAILURES = 10  # wrong logins from one address within LOCKOUT_WINDOW seconds...
LOCKOUT_WINDOW = 60.0
LOCKOUT_SECONDS = 60.0  # ...lock it out (429) for this long


class LimitedReceive:
    """An ASGI ``receive`` that stops reading a body past ``limit`` bytes: the app then sees the body end, and
    ``over`` tells the middleware to answer with its refusal instead of whatever the app says. ``seen`` counts the
    bytes read."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self.receive, self.limit = receive, limit
        self.seen, self.over = 0, False

    async def __call__(self) -> dict[str, Any]:
        if self.over:
            return {"type": "http.request", "body": b"", "more_body": False}
        message = await self.receive()
        if message.get("type") == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                self.over = True
                return {"type": "http.request", "body": b"", "more_body": False}
        return message


class RequestGuard:
    """The ASGI middleware over ``policy``."""

    def __init__(self, app: Any, policy: GuardPolicy) -> None:
        self.app = app
        self.policy = policy
        self._failures: dict[str, list[float]] = {}  # client address -> times of wrong logins
        self._locked_until: dict[str, float] = {}

    def _client(self, scope: Scope) -> str:
        client = scope.get("client")
        return str(client[0]) if client else ""

    def _failed_login(self, client: str) -> None:
        now = time.monotonic()
        recent = [t for t in self._failures.get(client, []) if now - t < LOCKOUT_WINDOW] + [now]
        self._failures[client] = recent
        if len(recent) >= LOCKOUT_FAILURES:
            self._locked_until[client] = now + LOCKOUT_SECONDS
            self._failures.pop(client, None)
        if len(self._failures) > 10_000:  # bounded memory under a spray of addresses
            self._failures.clear()

    def _locked(self, client: str) -> float:
        until = self._locked_until.get(client)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            self._locked_until.pop(client, None)
            return 0.0
        return left

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = self._client(scope)
        if self.policy.credentials and (left := self._locked(client)):
            await self._refuse(scope, receive, send, 429, "too many wrong logins from this address; wait and "
                                                          "try again", {"retry-after": str(int(left) + 1)})
            return
        problem = self._check(scope)
        if problem is not None:
            status, message, extra = problem
            if status == 401 and any(k == b"authorization" for k, _ in scope.get("headers", [])):
                self._failed_login(client)  # a wrong password, not a client that has not logged in yet
            await self._refuse(scope, receive, send, status, message, extra)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.policy.max_body
        counted = LimitedReceive(receive, limit)  # past the limit, whatever the app answers becomes our 413
        path = scope.get("path", "")

        login_attempt = path.rstrip("/") == "/login" and scope.get("method") == "POST"

        async def answer(message: dict[str, Any]) -> None:
            if not counted.over:
                if message.get("type") == "http.response.start":
                    if login_attempt and message.get("status", 200) >= 400:  # gradio's login form said no
                        self._failed_login(client)
                    message = {**message, "headers": _hardened(list(message.get("headers", [])), path)}
                await send(message)
            elif message.get("type") == "http.response.start":
                await self._refuse(scope, receive, send, 413,
                                   f"request body larger than {limit // (1024 * 1024)} MB", {})

        try:
            await self.app(scope, counted, answer)
        except ClientDisconnect:
            # The client went away mid-request (a cancelled upload): nobody to answer and nothing broken here, so
            # no ERROR with a traceback (gradio's upload route lets it escape).
            log.debug("client disconnected during %s %s", scope.get("method"), path)

    def _check(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        policy, headers = self.policy, _headers(scope)
        host = headers.get("host", "")
        if not policy.host_allowed(host):
            return 421 if scope["type"] == "http" else 403, (
                f"host {host!r} is not served here; add it to --allowed-hosts if this is really this server"), {}
        method = scope.get("method", "GET") if scope["type"] == "http" else "WEBSOCKET"
        if method not in SAFE_METHODS:
            site = headers.get("sec-fetch-site", "")
            origin = headers.get("origin")
            if origin is not None and not policy.origin_allowed(origin, host):
                return 403, "cross-site requests are refused (Origin)", {}
            if origin is None and site in ("cross-site", "same-site"):
                return 403, "cross-site requests are refused (Sec-Fetch-Site)", {}
            path = scope.get("path", "")
            if scope["type"] == "http" and path.startswith(API_PREFIXES):
                content_type = headers.get("content-type", "").split(";")[0].strip().lower()
                if content_type in FORM_TYPES:
                    return 415, "API requests take JSON (Content-Type: application/json)", {}
        if scope["type"] == "http":
            declared = headers.get("content-length")
            if declared is not None:
                try:
                    too_big = int(declared) > policy.max_body
                except ValueError:
                    return 400, "invalid Content-Length", {}
                if too_big:
                    return 413, f"request body larger than {policy.max_body // (1024 * 1024)} MB", {}
        if (policy.credentials and not policy.served_by_gradio(scope)
                and scope.get("path", "") not in policy.self_checking_paths):
            if not policy.authenticated(headers):
                return 401, "Incorrect username or password", {"www-authenticate": "Basic"}
        return None

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, message: str,
                      extra: dict[str, str]) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        body = json.dumps({"error": _reason(status), "detail": message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.encode(), v.encode()) for k, v in extra.items()]
        headers = _hardened(headers, scope.get("path", ""))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


ACTIVE_TYPES = ("text/html", "image/svg+xml", "application/xhtml+xml", "text/xml", "application/xml",
                "text/javascript", "application/javascript", "application/x-javascript")


def _hardened(headers: list[tuple[bytes, bytes]], path: str) -> list[tuple[bytes, bytes]]:
    """Headers on every answer: no MIME sniffing, no framing by other sites, no Referer to other sites; and a file
    served from a file route whose type a browser would run (HTML, SVG, scripts: an uploaded ``x.png`` that is
    really HTML) is a download, never a page of this origin."""
    names = {k.lower() for k, _ in headers}
    out = list(headers)
    if b"x-content-type-options" not in names:
        out.append((b"x-content-type-options", b"nosniff"))
    if b"content-security-policy" not in names:
        out.append((b"content-security-policy", b"frame-ancestors 'self'"))
    if b"referrer-policy" not in names:
        out.append((b"referrer-policy", b"same-origin"))
    if "/file=" in path or path.startswith(("/gradio_api/file", "/file")):
        content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"").decode("latin-1").lower()
        if content_type.split(";")[0].strip() in ACTIVE_TYPES or not content_type:
            out = [(k, v) for k, v in out if k.lower() != b"content-disposition"]
            out.append((b"content-disposition", b"attachment"))
    return out


def _reason(status: int) -> str:
    return {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 413: "Payload Too Large",
            415: "Unsupported Media Type", 421: "Misdirected Request", 429: "Too Many Requests"}.get(status, "Refused")


def bind_to_ui(policy: GuardPolicy, app: Any) -> None:
    """After gradio is mounted on ``app``: paths no route of ours matches are gradio's, and gradio's login cookie
    counts as credentials on our routes too (the page's own calls, extensions' fetches)."""
    from starlette.routing import Match, Mount

    mounts = [r for r in app.router.routes if isinstance(r, Mount)]
    if not mounts:
        return
    ui = mounts[-1].app

    def served_by_gradio(scope: Scope) -> bool:
        for route in app.router.routes:
            if isinstance(route, Mount):
                continue
            if route.matches(scope)[0] != Match.NONE:
                return False
        return True

    def session_user(cookies: dict[str, str]) -> str | None:
        cookie_id = getattr(ui, "cookie_id", None)
        tokens = getattr(ui, "tokens", None) or {}
        token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
        return tokens.get(token) if token else None

    policy.served_by_gradio = served_by_gradio
    policy.session_user = session_user
