"""The rest of A1111's ``/sdapi/v1``: png-info, memory, scripts and script-info, extensions, hypernetworks,
interrogate, and server-stop/-restart/-kill (only with ``--api-server-stop``)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from modules.api.images import decode_base64_to_image
from modules.errors import FieldError
from modules.runtime import Runtime

log = logging.getLogger(__name__)


class PngInfoRequest(BaseModel):
    image: str = Field(..., description="Base64 image (plain or data URI)")


class PngInfoResponse(BaseModel):
    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]


class InterrogateRequest(BaseModel):
    image: str = ""
    model: str = "clip"


def _upscaler_names(rt: Runtime) -> list[str]:
    from modules.processing.postprocessing import upscaler_names

    return upscaler_names(rt.upscalers)


def build_info_router(rt: Runtime) -> APIRouter:
    """Routes without a prefix or auth of their own: ``build_router`` includes them under /sdapi/v1."""
    router = APIRouter()

    @router.post("/png-info", response_model=PngInfoResponse)
    def png_info(req: PngInfoRequest) -> PngInfoResponse:
        from modules import infotext
        from modules.image_metadata import read_generation_info

        if not req.image:
            return JSONResponse(status_code=404, content={"error": "Image not found", "detail": [
                {"loc": ["body", "image"], "msg": "Image not found", "type": "value_error"}]})  # type: ignore
        image = decode_base64_to_image(req.image, "image")
        geninfo, items = read_generation_info(image)
        try:
            parameters = infotext.parse_infotext(geninfo) if geninfo else {}
        except infotext.InfotextTooLongError as err:  # no A1111 image carries one; parsing it would cost seconds
            raise FieldError("image", str(err)) from None
        return PngInfoResponse(info=geninfo or "", items=items, parameters=parameters)

    @router.get("/memory")
    def memory() -> dict[str, Any]:
        import psutil

        process = psutil.Process()
        vm = psutil.virtual_memory()
        ram = {"free": vm.available, "used": process.memory_info().rss, "total": vm.total}
        cuda: dict[str, Any] = {"error": "CUDA is not available"}
        try:
            import torch

            if torch.cuda.is_available():
                free, total = torch.cuda.mem_get_info()
                stats = torch.cuda.memory_stats()
                cuda = {"system": {"free": free, "used": total - free, "total": total},
                        "active": {"current": stats.get("active_bytes.all.current", 0),
                                   "peak": stats.get("active_bytes.all.peak", 0)},
                        "allocated": {"current": stats.get("allocated_bytes.all.current", 0),
                                      "peak": stats.get("allocated_bytes.all.peak", 0)},
                        "reserved": {"current": stats.get("reserved_bytes.all.current", 0),
                                     "peak": stats.get("reserved_bytes.all.peak", 0)},
                        "inactive": {"current": stats.get("inactive_split_bytes.all.current", 0),
                                     "peak": stats.get("inactive_split_bytes.all.peak", 0)},
                        "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)}}
        except Exception as err:  # noqa: BLE001 - memory reporting must never fail the request
            cuda = {"error": str(err)}
        return {"ram": ram, "cuda": cuda}

    @router.get("/scripts")
    def scripts() -> dict[str, list[str]]:
        return {tab.tab: tab.names() for tab in rt.scripts.tabs()}

    @router.get("/script-info")
    def script_info() -> list[dict[str, Any]]:
        names = _upscaler_names(rt)
        return [entry for tab in rt.scripts.tabs() for entry in tab.info(names)]

    @router.get("/extensions")
    def extensions() -> list[dict[str, Any]]:
        return [e.api_item() for e in rt.extensions]

    @router.get("/hypernetworks")
    def hypernetworks() -> list[dict[str, Any]]:
        return []  # hypernetworks are not supported (A1111 deprecated them); an empty list, as with none installed

    @router.post("/interrogate")
    def interrogate(req: InterrogateRequest) -> Any:
        """A1111's caption of an image: ``{"caption": ...}``; "wd14" is ours besides "clip" and "deepdanbooru".
        An unknown model is A1111's 404 (naming the field); a model without its files a 422 saying which."""
        from modules.interrogate.service import MODELS

        if req.model not in MODELS:
            return JSONResponse(status_code=404, content={"error": "Model not found", "detail": [
                {"loc": ["body", "model"], "msg": f"Model not found: {req.model}; expected one of "
                                                  f"{', '.join(MODELS)}", "type": "value_error"}]})
        image = decode_base64_to_image(req.image, "image")
        return {"caption": rt.submit_interrogate(image, req.model).wait()}

    from modules.cmd_args import admin_refusal

    if getattr(rt.args, "api_server_stop", False):
        refused = admin_refusal(rt.args)

        def later(action: Any) -> None:
            if refused:  # the route exists, so the client learns why it does nothing
                raise HTTPException(403, f"server control is {refused}")
            threading.Timer(0.3, action).start()  # after the answer has been sent

        @router.post("/server-stop")
        def server_stop() -> str:
            log.info("server-stop requested over the API")
            later(lambda: os.kill(os.getpid(), signal.SIGINT))
            return "Stopping."

        @router.post("/server-restart")
        def server_restart() -> str:
            log.info("server-restart requested over the API")
            rt.restart_requested = True
            later(lambda: os.kill(os.getpid(), signal.SIGINT))
            return "Restarting."

        @router.post("/server-kill")
        def server_kill() -> str:
            log.info("server-kill requested over the API")
            later(lambda: os._exit(0))
            return "Killing."

    return router
