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


def script_catalogue(rt: Runtime) -> dict[str, list[dict[str, Any]]]:
    """The selectable scripts per tab with their ``script_args`` (A1111's ``script-info`` args)."""
    from modules.processing import outpainting, prompts_from_file, sd_upscale
    from modules.processing.postprocessing import upscaler_names

    def arg(label: str, value: Any, minimum: Any = None, maximum: Any = None, step: Any = None,
            choices: list[Any] | None = None) -> dict[str, Any]:
        return {"label": label, "value": value, "minimum": minimum, "maximum": maximum, "step": step,
                "choices": choices}

    prompts = (prompts_from_file.TITLE, [
        arg("Iterate seed every line", False), arg("Use same random seed for all lines", False),
        arg("Insert prompts at the", "start", choices=["start", "end"]), arg("List of prompt inputs", "")])
    outpaint = (outpainting.TITLE, [
        arg("Pixels to expand", 128, 8, 256, 8), arg("Mask blur", 4, 0, 64, 1),
        arg("Masked content", "fill", choices=list(outpainting.MASKED_CONTENT)),
        arg("Outpainting direction", list(outpainting.DIRECTIONS), choices=list(outpainting.DIRECTIONS))])
    upscale = (sd_upscale.TITLE, [
        arg("", ""), arg("Tile overlap", 64, 0, 256, 16),
        arg("Upscaler", "None", choices=upscaler_names(rt.upscalers)), arg("Scale Factor", 2.0, 1.0, 4.0, 0.05)])
    entry = lambda title, args: {"name": title.lower(), "is_alwayson": False, "args": args}  # noqa: E731
    catalogue = {"txt2img": [{**entry(*prompts), "is_img2img": False}],
                 "img2img": [{**entry(t, a), "is_img2img": True} for t, a in (outpaint, prompts, upscale)]}
    for tab, runner in rt.script_runners.items():
        runner.ensure_ui()
        for script in runner.scripts:
            components = runner.inputs[script.args_from:script.args_to]
            catalogue[tab].append({"name": script.name, "is_alwayson": script.alwayson,
                                   "is_img2img": runner.is_img2img,
                                   "args": [arg(str(getattr(c, "label", "") or ""), getattr(c, "value", None),
                                                getattr(c, "minimum", None), getattr(c, "maximum", None),
                                                getattr(c, "step", None), _choices(c)) for c in components]})
    return catalogue


def _choices(component: Any) -> list[Any] | None:
    choices = getattr(component, "choices", None)
    if not choices:
        return None
    # gradio keeps (label, value) pairs
    return [c[1] if isinstance(c, (tuple, list)) and len(c) == 2 else c for c in choices]


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
        catalogue = script_catalogue(rt)
        return {tab: [s["name"] for s in items] for tab, items in catalogue.items()}

    @router.get("/script-info")
    def script_info() -> list[dict[str, Any]]:
        catalogue = script_catalogue(rt)
        return [*catalogue["txt2img"], *catalogue["img2img"]]

    @router.get("/extensions")
    def extensions() -> list[dict[str, Any]]:
        return [e.api_item() for e in rt.extensions]

    @router.get("/hypernetworks")
    def hypernetworks() -> list[dict[str, Any]]:
        return []  # hypernetworks are not supported (A1111 deprecated them); an empty list, as with none installed

    @router.post("/interrogate")
    def interrogate(req: InterrogateRequest) -> JSONResponse:
        if req.model not in ("clip", "deepdanbooru"):
            return JSONResponse(status_code=404, content={"error": "Model not found", "detail": [
                {"loc": ["body", "model"], "msg": f"Model not found: {req.model}", "type": "value_error"}]})
        # a 4xx, not 501: the client asked for something this server cannot do; nothing on our side failed
        return JSONResponse(status_code=422, content={"error": "Not available", "detail": [
            {"loc": ["body", "model"], "msg": f"interrogate with {req.model} needs a captioning model, and none is "
                                              "installed in this version", "type": "value_error"}]})

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
