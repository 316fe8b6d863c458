"""A1111's ``/sd_extra_networks/*`` routes, and the panel's own beside them.

A1111's: ``GET thumb?filename=&mtime=`` (a preview image, only from the pages' model folders and only with a
preview extension; anything else is a 404 here, where A1111 answers 500), ``GET metadata?page=&item=``
(``{"metadata": <indented JSON text>}`` or ``{}``) and ``GET get-single-card?page=&tabname=&name=``
(``{"html": <the card>}``). The panel's: ``GET pane`` (a whole page's pane), ``POST refresh``, ``GET/POST
user-metadata`` (the edit dialog, saved to ``name.json``) and ``POST replace-preview``.

Like every route of ours they sit behind the login (``modules.api.guard``), on the app itself with or without
``--api``, as A1111's are; they are left out of the OpenAPI schema, as A1111's page routes are not API.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import FileResponse, JSONResponse

from modules import extra_networks_files as files
from modules import extra_networks_pages as pages
from modules import extra_networks_html as render

PREFIX = "/sd_extra_networks"


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"error": "HTTPException", "detail": detail}, status_code=status)


def _decode_image(text: Any) -> bytes:
    if not isinstance(text, str) or not text:
        raise ValueError("image: expected a base64 image or data: URL")
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("image: not valid base64") from None


def build_extra_networks_router(rt: Any) -> APIRouter:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)

    def opts() -> dict[str, Any]:
        return rt.options.as_dict()

    def page_or_404(name: str) -> Any:
        page = pages.find_page(name)
        if page is None:
            raise LookupError(f"no extra networks page {name!r}")
        return page

    @router.get("/thumb")
    def thumb(filename: str = "", mtime: str | None = None) -> Any:
        path = files.servable_preview(filename, pages.allowed_dirs(), opts().get("samples_format"))
        if path is None:
            return _error(404, "File not found (previews are served only from the model folders)")
        return FileResponse(path, headers={"Accept-Ranges": "bytes", "Cache-Control": "max-age=3600"})

    @router.get("/metadata")
    def metadata(page: str = "", item: str = "") -> Any:
        found = pages.find_page(page)
        if found is None:
            return JSONResponse({})
        data = (getattr(found, "metadata", None) or {}).get(item)
        if data is None:
            entry = pages.find_item(found, item)
            data = (entry or {}).get("metadata") or None
        return JSONResponse({"metadata": render.metadata_json(data)} if data else {})

    @router.get("/get-single-card")
    def get_single_card(page: str = "", tabname: str = "", name: str = "") -> Any:
        try:
            card = pages.single_card(page_or_404(page), tabname or "txt2img", name, opts())
        except LookupError as err:
            return _error(404, str(err))
        if card is None:
            return _error(404, f"no item {name!r}")
        return JSONResponse({"html": card})

    @router.get("/pane")
    def pane(page: str = "", tabname: str = "txt2img") -> Any:
        try:
            return JSONResponse({"html": pages.pane(page_or_404(page), tabname, opts())})
        except LookupError as err:
            return _error(404, str(err))

    @router.post("/refresh")
    def refresh(body: dict[str, Any] = Body(default_factory=dict)) -> Any:
        try:
            found = page_or_404(str(body.get("page", "")))
        except LookupError as err:
            return _error(404, str(err))
        found.refresh()
        return JSONResponse({"html": pages.pane(found, str(body.get("tabname") or "txt2img"), opts())})

    @router.get("/user-metadata")
    def read_user_metadata(page: str = "", name: str = "") -> Any:
        try:
            data = pages.user_metadata(page_or_404(page), name)
        except LookupError as err:
            return _error(404, str(err))
        return JSONResponse(data) if data is not None else _error(404, f"no item {name!r}")

    @router.post("/user-metadata")
    def write_user_metadata(body: dict[str, Any] = Body(...)) -> Any:
        edit = body.get("user_metadata")
        if not isinstance(edit, dict):
            return _error(422, "user_metadata: expected an object")
        try:
            saved = pages.save_user_metadata(page_or_404(str(body.get("page", ""))), str(body.get("name", "")), edit)
        except files.MetadataError as err:
            return _error(422, str(err))
        except PermissionError as err:
            return _error(403, str(err))
        except LookupError as err:
            return _error(404, f"no item {err}")
        except OSError as err:
            return _error(500, f"could not write the file: {err}")
        return JSONResponse({"user_metadata": saved})

    @router.post("/replace-preview")
    def replace_preview(body: dict[str, Any] = Body(...)) -> Any:
        try:
            data = _decode_image(body.get("image"))
            path = pages.replace_preview(page_or_404(str(body.get("page", ""))), str(body.get("name", "")), data)
        except PermissionError as err:
            return _error(403, str(err))
        except LookupError as err:
            return _error(404, f"no item {err}")
        except ValueError as err:
            return _error(422, str(err))
        except OSError as err:
            return _error(500, f"could not write the file: {err}")
        return JSONResponse({"preview": files.thumb_url(path)})

    return router
