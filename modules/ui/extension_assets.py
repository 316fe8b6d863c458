"""Extensions' JavaScript and CSS in the page: ``javascript/*.js`` (``*.mjs`` as modules) and ``style.css`` of the
active extensions, served from ``/extension-assets/<extension>/<file>`` (only those files, nothing else of the
folder) and referenced from the page head in A1111's order (alphabetical per extension, builtin first)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse

PREFIX = "/extension-assets"


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


def add_asset_route(app: FastAPI, rt: Any) -> None:
    assets = _assets(rt)

    @app.get(PREFIX + "/{extension}/{file_path:path}", include_in_schema=False)
    def asset(extension: str, file_path: str) -> Any:
        path = assets.get((extension, file_path))
        if path is None:  # only the listed files: no path from the request reaches the file system
            return JSONResponse(status_code=404, content={"error": "Not found"})
        media = "text/css" if path.suffix == ".css" else "text/javascript"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-cache"})


COMPAT_JS = Path(__file__).resolve().parent / "javascript" / "a1111_compat.js"


def page_head(rt: Any) -> str:
    """A1111's page helpers first, then every active extension's scripts and stylesheets."""
    tags = [f"<script>{COMPAT_JS.read_text(encoding='utf-8')}</script>"] if _assets(rt) else []
    for (extension, file_path), path in _assets(rt).items():
        url = html.escape(f"{PREFIX}/{quote(extension)}/{quote(file_path)}")
        if path.suffix == ".css":
            tags.append(f'<link rel="stylesheet" href="{url}">')
        elif path.suffix == ".mjs":
            tags.append(f'<script type="module" src="{url}"></script>')
        else:
            tags.append(f'<script src="{url}"></script>')
    return "\n".join(tags)
