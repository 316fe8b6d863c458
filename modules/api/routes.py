"""A1111's ``/sdapi/v1`` routes over the shared runtime (same job queue and processing as the UI)."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Callable

from fastapi import APIRouter, Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from modules import samplers
from modules.api import schemas
from modules.api.images import BadImage, decode_base64_to_image, encode_pil_to_base64
from modules.errors import FieldError
from modules.jobs import JobCancelled, JobFailed, QueueFull
from modules.models.manager import CheckpointNotFound, NoCheckpointError
from modules.models.types import ModelFileError
from modules.options import OptionError
from modules.runtime import Runtime

log = logging.getLogger(__name__)


def _field_error(status: int, field: str, message: str, **extra: Any) -> JSONResponse:
    """Errors in FastAPI's validation shape, so clients parse one format: ``detail[0].loc`` names the field."""
    detail = [{"loc": ["body", field], "msg": message, "type": "value_error", **extra}]
    return JSONResponse(status_code=status, content={"error": "Invalid request", "detail": detail})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(samplers.UnknownSamplerError)
    async def _unknown_sampler(_: Request, err: samplers.UnknownSamplerError) -> JSONResponse:
        return _field_error(422, err.field, str(err), choices=list(err.choices))

    @app.exception_handler(CheckpointNotFound)
    async def _unknown_checkpoint(_: Request, err: CheckpointNotFound) -> JSONResponse:
        return _field_error(422, err.field, str(err), choices=err.choices)

    @app.exception_handler(OptionError)
    async def _bad_option(_: Request, err: OptionError) -> JSONResponse:
        return _field_error(422, err.field, str(err))

    @app.exception_handler(FieldError)
    async def _bad_field(_: Request, err: FieldError) -> JSONResponse:
        extra = {"choices": err.choices} if err.choices is not None else {}
        return _field_error(422, err.field, str(err), **extra)

    @app.exception_handler(BadImage)
    async def _bad_image(_: Request, err: BadImage) -> JSONResponse:
        return _field_error(400, err.field, str(err))

    @app.exception_handler(QueueFull)
    async def _queue_full(_: Request, err: QueueFull) -> JSONResponse:
        return JSONResponse(status_code=503, content={"error": "Queue full", "detail": str(err)},
                            headers={"Retry-After": "10"})

    @app.exception_handler(NoCheckpointError)
    async def _no_checkpoint(_: Request, err: NoCheckpointError) -> JSONResponse:
        return JSONResponse(status_code=409, content={"error": "No checkpoint", "detail": str(err)})

    @app.exception_handler(JobFailed)
    async def _job_failed(_: Request, err: JobFailed) -> JSONResponse:
        if isinstance(err, JobCancelled):  # cancelled through the job API while this request waited for it
            return JSONResponse(status_code=409, content={"error": "Cancelled", "detail": str(err)})
        if isinstance(err.cause, NoCheckpointError):  # raised on the worker: answered as when raised here
            return JSONResponse(status_code=409, content={"error": "No checkpoint", "detail": str(err.cause)})
        if isinstance(err.cause, FieldError):  # found while preparing the job (e.g. an unusable image)
            return _field_error(422, err.cause.field, str(err.cause))
        if isinstance(err.cause, ModelFileError):  # the checkpoint file is bad, not the server
            field = getattr(err.cause, "field", "sd_model_checkpoint")  # a missing or unknown additional module
            return _field_error(422, field, str(err), kind=err.cause.kind)
        if type(err.cause).__name__ == "OutOfMemoryError":  # the server's memory, for now: retry smaller/later
            return JSONResponse(status_code=503, content={"error": "Out of memory", "detail": str(err)},
                                headers={"Retry-After": "5"})
        status = 422 if isinstance(err.cause, ValueError) else 500
        return JSONResponse(status_code=status, content={"error": type(err.cause or err).__name__,
                                                         "detail": str(err)})  # the message, no traceback

    @app.exception_handler(Exception)
    async def _internal(request: Request, err: Exception) -> JSONResponse:
        """A fault of ours: the client gets an id to quote, the log gets the traceback; never the client."""
        import logging
        import secrets

        error_id = secrets.token_hex(4)
        logging.getLogger("webui.api").error("internal error %s on %s %s", error_id, request.method,
                                             request.url.path, exc_info=err)
        return JSONResponse(status_code=500, content={"error": "Internal error", "detail": (
            f"the server could not handle this request (error id {error_id}; the server log has the details)")})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in err.errors()]
        return JSONResponse(status_code=422, content={"error": "Invalid request", "detail": detail})


def _sd_model_item(info: Any) -> schemas.SDModelItem:
    return schemas.SDModelItem(title=info.title, model_name=info.model_name, hash=info.shorthash,
                               sha256=info.sha256, filename=str(info.path), config=None)


Respond = Callable[[Any], Any]


class Submissions:
    """Request -> queued job plus the function that turns the job's result into A1111's response body. The
    synchronous /sdapi/v1 routes wait and respond; the async job API returns the job at once and responds later."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @staticmethod
    def _images(req: Any, processed: Any, echo: dict[str, Any]) -> schemas.ImagesResponse:
        images = [encode_pil_to_base64(im) for im in processed.images] if req.send_images else []
        return schemas.ImagesResponse(images=images, parameters=echo, info=processed.js())

    def _prepare(self, tab: str, req: Any, params: Any) -> Any:
        """The request's scripts (``script_name``, ``script_args``, ``alwayson_scripts``) looked up in the one
        registry: ``script_registry.Prepared``. Unknown names are 422s naming the field."""
        from modules.processing.postprocessing import upscaler_names

        from modules.api import controlnet_routes
        from modules.processing.families import flux_kontext

        alwayson = {name: _alwayson_args(name, value) for name, value in req.alwayson_scripts.items()}
        control_args, key, alwayson = controlnet_routes.split_alwayson(alwayson)
        if control_args is not None and key is not None:
            params = params.model_copy(update={"controlnet_units":
                                               controlnet_routes.units_from_request(control_args, key)})
        kontext_args, key, alwayson = controlnet_routes.split_alwayson(alwayson, flux_kontext.NAME)
        if kontext_args is not None and key is not None:
            params = params.model_copy(update={"kontext": flux_kontext.parse_args(
                kontext_args, f"alwayson_scripts.{key}.args", decode_base64_to_image)})
        return self.rt.scripts.tab(tab).prepare_api(params, req.script_name, req.script_args, alwayson,
                                                     upscaler_names(self.rt.upscalers))

    def txt2img(self, req: schemas.Txt2ImgRequest) -> tuple[Any, Respond]:
        self.rt.scripts.txt2img.find(req.script_name)  # an unknown script is a 422 before anything else
        run = self._prepare("txt2img", req, apply_request_infotext(req).to_params())
        job = self.rt.submit_txt2img(run.params, from_api=True, script=run.script, job_id=req.force_task_id,
                                     scripts_call=run.scripts_call)
        echo = req.model_dump()
        return job, lambda processed: self._images(req, processed, echo)

    def img2img(self, req: schemas.Img2ImgRequest) -> tuple[Any, Respond]:
        if not req.init_images:
            raise FieldError("init_images", "Init image not found")
        self.rt.scripts.img2img.find(req.script_name)
        init_images = [decode_base64_to_image(data, f"init_images.{i}") for i, data in enumerate(req.init_images)]
        mask = decode_base64_to_image(req.mask, "mask") if req.mask else None
        run = self._prepare("img2img", req, apply_request_infotext(req).to_params(init_images, mask))
        job = self.rt.submit_img2img(run.params, from_api=True, script=run.script, job_id=req.force_task_id,
                                     scripts_call=run.scripts_call)
        echo = req.model_dump()
        if not req.include_init_images:  # A1111 leaves the (large) images out of the echo unless asked
            echo["init_images"] = None
            echo["mask"] = None
        return job, lambda processed: self._images(req, processed, echo)

    @staticmethod
    def _extras_params(req: Any) -> Any:
        from modules.processing.postprocessing import ExtrasParams

        return ExtrasParams(**req.model_dump(include=set(ExtrasParams.model_fields)))

    @staticmethod
    def _extras_html(results: list[Any]) -> str:
        import html as html_mod

        return "".join(f"<p>{html_mod.escape(r.infotext)}</p>" for r in results)

    def extras_single(self, req: schemas.ExtrasSingleImageRequest) -> tuple[Any, Respond]:
        image = decode_base64_to_image(req.image, "image")
        job = self.rt.submit_extras(self._extras_params(req), [(image, "")], save=False)

        def respond(done: Any) -> schemas.ExtrasSingleImageResponse:
            results, _ = done
            encoded = encode_pil_to_base64(results[0].image) if req.show_extras_results and results else None
            return schemas.ExtrasSingleImageResponse(html_info=self._extras_html(results), image=encoded)

        return job, respond

    def extras_batch(self, req: schemas.ExtrasBatchImagesRequest) -> tuple[Any, Respond]:
        images = [(decode_base64_to_image(item.data, f"imageList.{i}.data"), item.name)
                  for i, item in enumerate(req.imageList)]
        job = self.rt.submit_extras(self._extras_params(req), images, save=False)

        def respond(done: Any) -> schemas.ExtrasBatchImagesResponse:
            results, _ = done
            encoded = [encode_pil_to_base64(r.image) for r in results] if req.show_extras_results else []
            return schemas.ExtrasBatchImagesResponse(html_info=self._extras_html(results), images=encoded)

        return job, respond


def apply_request_infotext(req: Any) -> Any:
    """A1111's ``infotext`` request field: parameters it names fill the fields the request did not set."""
    if not req.infotext:
        return req
    from modules import infotext

    try:
        parsed = infotext.parse_infotext(req.infotext)
    except infotext.InfotextTooLongError as err:
        raise FieldError("infotext", str(err)) from None
    given = req.model_fields_set
    mapping = {"prompt": "Prompt", "negative_prompt": "Negative prompt", "steps": "Steps", "cfg_scale": "CFG scale",
               "seed": "Seed", "sampler_name": "Sampler", "scheduler": "Schedule type", "width": "Size-1",
               "height": "Size-2", "subseed": "Variation seed", "subseed_strength": "Variation seed strength",
               "denoising_strength": "Denoising strength", "distilled_cfg_scale": "Distilled CFG Scale"}
    update: dict[str, Any] = {}
    for field_name, key in mapping.items():
        if field_name in given or key not in parsed or field_name not in type(req).model_fields:
            continue
        update[field_name] = _infotext_value(parsed[key], type(req).model_fields[field_name].annotation, key)
    overrides = dict(req.override_settings)
    if "Clip skip" in parsed and "CLIP_stop_at_last_layers" not in overrides and str(parsed["Clip skip"]) != "1":
        overrides["CLIP_stop_at_last_layers"] = int(parsed["Clip skip"])
    modules = [str(parsed[k]) for k in sorted((k for k in parsed if re.fullmatch(r"Module \d+", k)),
                                              key=lambda k: int(k.split()[1]))]
    if modules and "forge_additional_modules" not in overrides:  # Forge's "Module 1: ae, Module 2: clip_l, ..."
        overrides["forge_additional_modules"] = modules
    if overrides != req.override_settings:
        update["override_settings"] = overrides
    return type(req).model_validate({**req.model_dump(), **update}) if update else req


def _infotext_value(value: Any, annotation: Any, key: str) -> Any:
    """An infotext value (a string, as A1111's parser gives it) as the number a number field takes."""
    from modules.processing.params import numeric_kind

    kind = numeric_kind(annotation)
    if kind is None or not isinstance(value, str):
        return value
    try:
        number = float(value)
    except ValueError:
        raise FieldError("infotext", f"{key}: {value!r} is not a number") from None
    return int(number) if kind is int and number.is_integer() else number


def _alwayson_args(name: str, value: Any) -> list[Any]:
    """A1111's ``{"args": [...]}`` (a bare list is accepted too)."""
    args = value.get("args", []) if isinstance(value, dict) else value
    if not isinstance(args, list):
        raise FieldError(f"alwayson_scripts.{name}.args", "expected a list of the script's arguments")
    return args


def build_router(rt: Runtime) -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1", tags=["sdapi"])

    async def wait_job(job: Any) -> Any:
        # Waiting happens off the event loop so /progress keeps answering while the job runs.
        return await asyncio.to_thread(job.wait)

    submit = Submissions(rt)

    @router.post("/txt2img", response_model=schemas.ImagesResponse)
    async def txt2img(req: schemas.Txt2ImgRequest) -> schemas.ImagesResponse:
        job, respond = submit.txt2img(req)
        return respond(await wait_job(job))

    @router.post("/img2img", response_model=schemas.ImagesResponse)
    async def img2img(req: schemas.Img2ImgRequest) -> schemas.ImagesResponse:
        if not req.init_images:
            return _field_error(404, "init_images", "Init image not found")  # A1111's status for this case
        job, respond = submit.img2img(req)
        return respond(await wait_job(job))

    @router.post("/extra-single-image", response_model=schemas.ExtrasSingleImageResponse)
    async def extra_single_image(req: schemas.ExtrasSingleImageRequest) -> schemas.ExtrasSingleImageResponse:
        job, respond = submit.extras_single(req)
        return respond(await wait_job(job))

    @router.post("/extra-batch-images", response_model=schemas.ExtrasBatchImagesResponse)
    async def extra_batch_images(req: schemas.ExtrasBatchImagesRequest) -> schemas.ExtrasBatchImagesResponse:
        job, respond = submit.extras_batch(req)
        return respond(await wait_job(job))

    @router.get("/upscalers", response_model=list[schemas.UpscalerItem])
    def upscalers() -> list[schemas.UpscalerItem]:
        items = [schemas.UpscalerItem(name=n, scale=4) for n in ("None", "Lanczos", "Nearest")]
        for info in rt.upscalers.list():
            items.append(schemas.UpscalerItem(name=info.name, model_name=info.model_name,
                                              model_path=str(info.path) if info.path else None, scale=info.scale))
        return items

    @router.get("/realesrgan-models")
    def realesrgan_models() -> list[dict[str, Any]]:
        return [{"name": i.name, "path": str(i.path) if i.path else None, "scale": i.scale}
                for i in rt.upscalers.list() if i.model_name == "RealESRGAN"]

    @router.get("/latent-upscale-modes")
    def latent_upscale_modes() -> list[dict[str, str]]:
        from modules.processing.upscale import LATENT_MODES

        return [{"name": name} for name in LATENT_MODES]

    @router.get("/face-restorers")
    def face_restorers() -> list[dict[str, str]]:
        return rt.face_restorers.api_list()

    from modules.api.info_routes import build_info_router

    router.include_router(build_info_router(rt))

    @router.get("/sd-models", response_model=list[schemas.SDModelItem])
    async def sd_models() -> list[schemas.SDModelItem]:
        return [_sd_model_item(info) for info in rt.registry.list()]

    @router.post("/refresh-checkpoints")
    async def refresh_checkpoints() -> None:
        await asyncio.to_thread(rt.registry.refresh)

    @router.get("/options")
    async def get_options() -> dict[str, Any]:
        values = rt.options.as_dict()
        if values.get("sd_model_checkpoint") is None and rt.manager.info is not None:
            values["sd_model_checkpoint"] = rt.manager.info.title
        return values

    @router.post("/options")
    async def set_options(req: dict[str, Any] = Body(...)) -> None:
        from modules.options import same_value

        current = rt.options.as_dict()
        # Clients often post back what GET returned: unchanged values (restricted or not) are no-ops.
        changes = {k: v for k, v in req.items() if not (k in current and same_value(current[k], v))}
        checkpoint = changes.pop("sd_model_checkpoint", None)
        rt.options.validate(changes, from_api=True)
        if checkpoint is not None:
            info = rt.manager.resolve(str(checkpoint))
            try:
                await wait_job(rt.submit_load(info.title))
            except JobFailed as err:
                raise OptionError("sd_model_checkpoint", f"could not load {info.title}: {err}") from err
            changes["sd_model_checkpoint"] = info.title
        if changes:
            rt.options.apply(changes, from_api=True)

    @router.get("/progress", response_model=schemas.ProgressResponse)
    def progress(skip_current_image: bool = False) -> schemas.ProgressResponse:
        job = rt.jobs.current
        if job is None:
            return schemas.ProgressResponse(progress=0, eta_relative=0, state=schemas.ProgressState(),
                                            current_image=None, textinfo=None)
        snap = job.progress.snapshot()
        image = None
        if not skip_current_image:
            preview = job.progress.preview_image()
            if preview is not None:
                image = encode_pil_to_base64(preview)
        state = schemas.ProgressState(skipped=snap.skipped, interrupted=snap.interrupted, job=snap.job or job.kind,
                                      job_count=snap.job_count, job_timestamp=snap.job_timestamp,
                                      job_no=snap.job_no, sampling_step=snap.sampling_step,
                                      sampling_steps=snap.sampling_steps)
        return schemas.ProgressResponse(progress=snap.progress, eta_relative=snap.eta_relative, state=state,
                                        current_image=image, textinfo=snap.textinfo or None)

    @router.post("/interrupt")
    def interrupt() -> dict[str, Any]:
        rt.jobs.interrupt_current()
        return {}

    @router.post("/skip")
    def skip() -> None:
        rt.jobs.skip_current()

    @router.get("/samplers", response_model=list[schemas.SamplerItem])
    def list_samplers() -> list[dict[str, Any]]:
        return samplers.sampler_list()

    @router.get("/schedulers", response_model=list[schemas.SchedulerItem])
    def list_schedulers() -> list[dict[str, Any]]:
        return samplers.schedule_list()

    @router.get("/cmd-flags")
    def cmd_flags() -> dict[str, Any]:
        from modules.cmd_args import secret_free_flags

        return secret_free_flags(rt.args)

    @router.get("/sd-vae")
    async def sd_vae() -> list[dict[str, str]]:
        return rt.vaes.api_list()

    @router.post("/refresh-vae")
    async def refresh_vae() -> None:
        await asyncio.to_thread(rt.vaes.refresh)

    @router.get("/embeddings")
    async def embeddings() -> dict[str, Any]:
        return rt.embeddings.api_dict()

    @router.post("/refresh-embeddings")
    async def refresh_embeddings() -> None:
        await asyncio.to_thread(rt.embeddings.refresh, rt.manager.model)

    @router.get("/prompt-styles")
    async def prompt_styles() -> list[dict[str, Any]]:
        return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt}
                for s in rt.styles.styles.values()]

    @router.post("/unload-checkpoint")
    async def unload_checkpoint() -> dict[str, Any]:
        await wait_job(rt.jobs.submit("unload-checkpoint", lambda job: rt.manager.unload()))
        return {}

    @router.post("/reload-checkpoint")
    async def reload_checkpoint() -> dict[str, Any]:
        await wait_job(rt.submit_load(rt.options.get("sd_model_checkpoint")))
        return {}

    return router


def build_lora_router(rt: Runtime) -> APIRouter:
    """A1111 serves these from its Lora extension even without --api. Unlike A1111 they keep --api-auth: a
    configured login should not have holes."""
    router = APIRouter(prefix="/sdapi/v1", tags=["sdapi"])

    @router.get("/loras")
    async def loras() -> list[dict[str, Any]]:
        return rt.loras.api_list()

    @router.post("/refresh-loras")
    async def refresh_loras() -> None:
        await asyncio.to_thread(rt.loras.refresh)

    return router
