"""What A1111 extensions bring to the page, and the page-side API they expect.

- **Scripts and stylesheets.** The active extensions' ``javascript/*.js`` (then ``*.mjs``, as modules) and
  ``style.css``, served from ``/extension-assets/<extension>/<file>`` (only those files). They go into the page the
  way A1111 puts them there: ``<script>`` tags in the served HTML's head, after the page helpers (A1111's
  script.js and javascript/*.js; ours is ``javascript/a1111_compat.js``), so they run while the page is parsed and
  ``DOMContentLoaded`` listeners fire; stylesheets at the end of the body, after gradio's styles. (gradio 6's own
  ``head=`` adds scripts from its JavaScript once the page has loaded, too late for both.) Just before the helpers,
  ``window.__sdPage`` carries the localization (A1111's ``localization``). The settings are not in the page: gradio
  serves the same HTML as its login page, so ``opts`` comes from ``/internal/page-options``, which needs the login.
- **``/file=<path>``**, A1111's URL for an extension's own files (tag lists, images, json): ``file=extensions/
  <name>/...`` and ``file=extensions-builtin/<name>/...``, an absolute path inside an active extension's folder (the
  folder itself may be a symlink: its target is the root), and ``file=tmp/<name>`` (the top-level files extensions
  write into the install folder's ``tmp/`` for their scripts, e.g. tagcomplete's tagAutocompletePath.txt).
  Read-only, only static-asset types (images, text, csv, json, yaml, css, js, fonts, media), never a dotfile or a
  file in a dot-folder (``.git``), never ``..``, never through a symlink out of the folder (checked with
  :func:`modules.browser_files.is_allowed`, the rule for every path from the browser). Anything else is a 404.
- **``/internal/page-options``**: the settings for ``window.opts`` (behind the login, as every route of ours);
  ``?known=<version>`` answers 204 when they have not changed since.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from modules import browser_files
from modules.ui import tool_buttons, untranslated
from modules.paths import INSTALL_DIR

PREFIX = "/extension-assets"
OPTIONS_PATH = "/internal/page-options"
JS_DIR = Path(__file__).resolve().parent / "javascript"
COMPAT_JS = JS_DIR / "a1111_compat.js"
CHOICES_JS = JS_DIR / "localized_choices.js"
TMP_DIR = INSTALL_DIR / "tmp"  # A1111's <webui>/tmp: modules.paths.script_path / "tmp"
# What /file= serves: the static files an extension's page code loads. Not code (.py), settings (.ini, .toml, .cfg),
# databases, model weights or keys, even inside an extension's folder.
FILE_SUFFIXES = frozenset({
    ".png", ".jpg", ".jpeg", ".gif", ".webp", ".avif", ".bmp", ".ico", ".svg",
    ".txt", ".csv", ".tsv", ".json", ".yaml", ".yml", ".md",
    ".css", ".js", ".mjs", ".map", ".html", ".htm", ".woff", ".woff2", ".ttf", ".otf", ".eot", ".wasm",
    ".mp3", ".wav", ".ogg", ".flac", ".mp4", ".webm",
})
NOT_FOUND = {"error": "Not found"}


def _assets(rt: Any) -> dict[tuple[str, str], Path]:
    out: dict[tuple[str, str], Path] = {}
    for ext in rt.extensions:
        if not ext.enabled:
            continue
        for path in ext.javascript():
            out[(ext.name, f"javascript/{path.name}")] = path
        css = ext.stylesheet()
        if css is not None:
            out[(ext.name, "style.css")] = css
    return out


def _url(extension: str, file_path: str) -> str:
    """Relative to the page (``./extension-assets/...``), so it also works under ``--subpath`` behind a proxy."""
    return html.escape(f".{PREFIX}/{quote(extension)}/{quote(file_path)}")


def script_tags(rt: Any) -> str:
    """The extensions' scripts in A1111's order: every ``.js`` (extension by extension, each folder by name), then
    every ``.mjs`` as a module."""
    assets = _assets(rt)
    classic = [f'<script src="{_url(e, f)}"></script>' for (e, f), p in assets.items() if p.suffix == ".js"]
    modules = [f'<script type="module" src="{_url(e, f)}"></script>' for (e, f), p in assets.items()
               if p.suffix == ".mjs"]
    return "\n".join(classic + modules)


def stylesheet_tags(rt: Any) -> str:
    return "\n".join(f'<link rel="stylesheet" property="stylesheet" href="{_url(e, f)}">'
                     for (e, f), p in _assets(rt).items() if p.suffix == ".css")


def page_options(rt: Any) -> tuple[dict[str, Any], str]:
    """The settings as the page's ``opts`` has them (what ``GET /sdapi/v1/options`` answers), and their version."""
    values = rt.options.as_dict()
    manager = getattr(rt, "manager", None)
    if values.get("sd_model_checkpoint") is None and getattr(manager, "info", None) is not None:
        values["sd_model_checkpoint"] = manager.info.title
    text = json.dumps(values, sort_keys=True, default=str)
    return json.loads(text), hashlib.sha256(text.encode()).hexdigest()[:16]


def _script_json(value: Any) -> str:
    """JSON that is safe inside an inline <script> (no ``</script>``, no HTML comment openers)."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def head_html(rt: Any, localization: dict[str, Any]) -> str:
    scripts = script_tags(rt)
    # with extension scripts, the page builds every generation tab before onUiLoaded, as A1111's page has them
    data = {"localization": localization, "mountTabs": bool(scripts), "untranslated": untranslated.page_data(),
            **tool_buttons.page_data()}
    return "\n".join([f"<script>window.__sdPage = {_script_json(data)};</script>",
                      f"<script>{CHOICES_JS.read_text(encoding='utf-8')}</script>",
                      f"<script>{COMPAT_JS.read_text(encoding='utf-8')}</script>", scripts])


def page_head(rt: Any) -> str:
    """What gradio's own ``head=`` gets: nothing. The page helpers and the extensions' scripts are written into the
    served HTML instead (:class:`PageInjection`), where they run before the page has loaded, as in A1111."""
    return ""


# -- the page HTML -----------------------------------------------------------------------------------------------


class PageInjection:
    """ASGI middleware: into the HTML of ``GET /`` (gradio's page), ``head()`` before ``</head>`` and ``body()``
    before ``</body>``. Anything else passes untouched."""

    def __init__(self, app: Any, head: Callable[[], str], body: Callable[[], str]) -> None:
        self.app = app
        self.head = head
        self.body = body

    def inject(self, page: bytes) -> bytes:
        head_end, body_end = page.rfind(b"</head>"), page.rfind(b"</body>")
        if head_end < 0 or body_end < head_end:
            return page
        head, body = self.head().encode(), self.body().encode()
        return page[:head_end] + head + page[head_end:body_end] + body + page[body_end:]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET" or scope.get("path") != "/":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] | None = None
        parts: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                if (message.get("status") == 200 and headers.get(b"content-type", b"").startswith(b"text/html")
                        and b"content-encoding" not in headers):
                    start = message
                    return
            elif message["type"] == "http.response.body" and start is not None:
                parts.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                page = self.inject(b"".join(parts))
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(page)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": page})
                return
            await send(message)

        await self.app(scope, receive, capture)


# -- /file= ------------------------------------------------------------------------------------------------------


def extension_roots(rt: Any) -> dict[tuple[bool, str], Path]:
    """(builtin, name) -> folder of each active extension."""
    return {(bool(e.is_builtin), e.name): Path(e.path) for e in rt.extensions if e.enabled}


def file_path(rt: Any, requested: str) -> Path | None:
    """The file ``/file=<requested>`` may serve, or None (see the module docstring for the rule)."""
    if not requested or "\x00" in requested or "\\" in requested or "://" in requested:
        return None
    roots = extension_roots(rt)
    if requested.startswith("/") or os.path.isabs(requested):
        target = Path(requested)
        for root in roots.values():
            for base in (root, root.resolve()):  # as the extension names itself, or the link's target
                if target.is_relative_to(base):
                    return _checked(base, target.relative_to(base).parts, root)
        if target.is_relative_to(TMP_DIR):
            return _checked(TMP_DIR, target.relative_to(TMP_DIR).parts, None)
        return None
    parts = [p for p in requested.split("/") if p]
    if len(parts) >= 3 and parts[0] in ("extensions", "extensions-builtin"):
        root = roots.get((parts[0] == "extensions-builtin", parts[1]))
        return None if root is None else _checked(root, tuple(parts[2:]), root)
    if parts and parts[0] == "tmp":
        return _checked(TMP_DIR, tuple(parts[1:]), None)
    return None


def _checked(base: Path, parts: tuple[str, ...], root: Path | None) -> Path | None:
    """``base/parts`` when it is a file ``/file=`` may serve from ``root`` (an extension folder; None: the top level
    of tmp/)."""
    if not parts or any(p in (".", "..") or p.startswith(".") for p in parts):
        return None  # no way up, no .git, no dotfiles
    if Path(parts[-1]).suffix.lower() not in FILE_SUFFIXES or (root is None and len(parts) != 1):
        return None
    try:
        real = base.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_file():
        return None
    if root is None:  # a link in tmp/ must point at a file of tmp/ itself
        return real if TMP_DIR.is_dir() and real.parent == TMP_DIR.resolve() else None
    return real if browser_files.is_allowed(real, [root.resolve()]) else None


def add_file_route(app: FastAPI, rt: Any) -> None:
    @app.api_route("/file={requested:path}", methods=["GET", "HEAD"], include_in_schema=False)
    def extension_file(requested: str) -> Any:
        path = file_path(rt, requested)
        if path is None:  # the same answer for "not there" and "not yours": nothing to probe with
            return JSONResponse(status_code=404, content=NOT_FOUND)
        return FileResponse(path, headers={"Cache-Control": "no-cache"})


# -- routes ------------------------------------------------------------------------------------------------------


def _localization(app: FastAPI) -> dict[str, Any]:
    """The map ``/internal/localization`` answers (the app's route decides which files count)."""
    for route in app.router.routes:
        if getattr(route, "path", None) == "/internal/localization":
            try:
                found = route.endpoint()
            except Exception:  # noqa: BLE001 - an unreadable file must not stop the page; the route logs it
                return {}
            return found if isinstance(found, dict) else {}
    return {}


def add_asset_route(app: FastAPI, rt: Any) -> None:
    """The asset, ``/file=`` and page-options routes, and the page injection."""
    assets = _assets(rt)

    @app.get(PREFIX + "/{extension}/{file_path:path}", include_in_schema=False)
    def asset(extension: str, file_path: str) -> Any:
        path = assets.get((extension, file_path))
        if path is None:  # only the listed files: no path from the request reaches the file system
            return JSONResponse(status_code=404, content=NOT_FOUND)
        media = "text/css" if path.suffix == ".css" else "text/javascript"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-cache"})

    @app.get(OPTIONS_PATH, include_in_schema=False)
    def options(request: Request) -> Any:
        opts, version = page_options(rt)
        if request.query_params.get("known") == version:
            return Response(status_code=204, headers={"Cache-Control": "no-store"})
        return JSONResponse({"version": version, "opts": opts}, headers={"Cache-Control": "no-store"})

    add_file_route(app, rt)
    app.add_middleware(PageInjection, head=lambda: head_html(rt, _localization(app)),
                       body=lambda: stylesheet_tags(rt))
