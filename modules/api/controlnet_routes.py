"""sd-webui-controlnet's HTTP API, served by the built-in ControlNet: ``/controlnet/version``, ``model_list``,
``module_list``, ``control_types``, ``settings`` and ``detect``, with the extension's shapes; and the reading of
``alwayson_scripts: {"ControlNet": {"args": [unit, ...]}}`` for the generation routes.

Like the extension's, these routes are on the app itself (not under ``/sdapi/v1``) and exist without ``--api``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping

import numpy as np
from fastapi import APIRouter, Body
from PIL import Image

from modules.api.images import decode_base64_to_image, encode_pil_to_base64
from modules.controlnet import hints, preprocessors
from modules.controlnet.annotator_files import AnnotatorSetup
from modules.controlnet.units import SCRIPT_TITLE, ControlUnit, parse_units
from modules.errors import FieldError

API_VERSION = 3  # the extension's get_api_version()


def split_alwayson(alwayson: Mapping[str, Any], name: str = SCRIPT_TITLE
                   ) -> tuple[list[Any] | None, str | None, dict[str, Any]]:
    """(the args of the built-in always-on script ``name`` (ControlNet's by default, Flux Kontext's too), the key
    they came under, the other always-on scripts); the title is matched case-insensitively as A1111 matches script
    titles."""
    rest = dict(alwayson)
    for key in list(rest):
        if key.lower() == name:
            return rest.pop(key), key, rest
    return None, None, rest


def units_from_request(args: list[Any], key: str) -> list[ControlUnit]:
    return parse_units(args, f"alwayson_scripts.{key}.args", decode_base64_to_image)


def _np_image(data: str, field: str) -> np.ndarray:
    return np.asarray(decode_base64_to_image(data, field).convert("RGB"))


def detect_images(module: str, images: list[str], masks: list[str], processor_res: float, threshold_a: float,
                  threshold_b: float, annotators: AnnotatorSetup = AnnotatorSetup()
                  ) -> dict[str, Any]:
    """Run a preprocessor on base64 images: the extension's ``/controlnet/detect`` answer (base64 PNG maps; with
    a pose preprocessor also each image's OpenPose JSON under ``poses``)."""
    pre = preprocessors.find(module)
    if pre is None:
        raise FieldError("controlnet_module", "Module not available", preprocessors.module_list())
    unavailable = pre.unavailable(annotators)
    if unavailable:
        raise FieldError("controlnet_module", unavailable)
    if not images:
        raise FieldError("controlnet_input_images", "No image selected")
    if pre.requires_mask and len(masks) != len(images):
        raise FieldError("controlnet_masks", f"Preprocessor {module} requires `controlnet_masks` param.")
    res, s1, s2 = pre.sliders
    out: list[str] = []
    poses: list[dict[str, Any]] = []
    is_pose = "openpose" in pre.name  # the extension's test, on the module's name
    for i, data in enumerate(images):
        image = _np_image(data, f"controlnet_input_images.{i}")
        if pre.accepts_mask and i < len(masks):
            mask = _np_image(masks[i], f"controlnet_masks.{i}")[:, :, :1]
            if mask.shape[:2] != image.shape[:2]:
                raise FieldError(f"controlnet_masks.{i}", "the mask and the image differ in size")
            image = np.concatenate([image, mask], axis=2)
        try:
            detected = pre(image, res.resolve(processor_res), s1.resolve(threshold_a), s2.resolve(threshold_b),
                           annotators=annotators, pose_sink=poses.append if is_pose else None)
        except ValueError as err:  # e.g. an annotator file that is damaged or of another network
            raise FieldError("controlnet_module", str(err)) from None
        out.append(encode_pil_to_base64(Image.fromarray(hints.visible_map(detected))))
    answer: dict[str, Any] = {"info": "Success"}
    if poses:
        answer["poses"] = poses
    answer["images"] = out
    return answer


def render_poses(pose_data: list[Any]) -> dict[str, Any]:
    """The extension's ``/controlnet/render_openpose_json``: each pose JSON drawn (bodies, hands and faces)."""
    from modules.controlnet.nets import pose_drawing

    if not pose_data:
        return {"info": "No pose data detected."}
    images = []
    for i, pose in enumerate(pose_data):
        try:
            result = pose_drawing.decode_json(pose)
        except ValueError as err:
            raise FieldError(f"pose_data.{i}", str(err)) from None
        images.append(encode_pil_to_base64(Image.fromarray(pose_drawing.draw_poses(result))))
    return {"images": images, "info": "Success"}


def build_controlnet_router(rt: Any) -> APIRouter:
    router = APIRouter(prefix="/controlnet", tags=["controlnet"])

    def titles(update: bool) -> list[str]:
        return rt.controlnet_models(rescan=update).titles()

    @router.get("/version")
    def version() -> dict[str, int]:
        return {"version": API_VERSION}

    @router.get("/model_list")
    async def model_list(update: bool = True) -> dict[str, list[str]]:
        return {"model_list": await asyncio.to_thread(titles, update)}

    @router.get("/module_list")
    def module_list(alias_names: bool = False) -> dict[str, Any]:
        return {"module_list": preprocessors.module_list(alias_names),
                "module_detail": preprocessors.module_detail(alias_names)}

    @router.get("/control_types")
    def control_types() -> dict[str, Any]:
        models = rt.controlnet_models(rescan=False).titles()
        return {"control_types": {name: preprocessors.control_type(name, models).api_json()
                                  for name in preprocessors.control_type_names()}}

    @router.get("/settings")
    def settings() -> dict[str, int]:
        return {"control_net_unit_count": int(rt.options.get("control_net_unit_count", 3) or 3)}

    @router.post("/detect")
    async def detect(
        controlnet_module: str = Body("none"),
        controlnet_input_images: list[str] = Body([]),
        controlnet_images: list[str] = Body([]),  # webuiapi's name for the same list
        controlnet_processor_res: float = Body(-1),
        controlnet_threshold_a: float = Body(-1),
        controlnet_threshold_b: float = Body(-1),
        controlnet_masks: list[str] = Body([]),
        low_vram: bool = Body(False),
    ) -> Any:
        images = controlnet_input_images or controlnet_images
        return await asyncio.to_thread(detect_images, controlnet_module, images, controlnet_masks,
                                       controlnet_processor_res, controlnet_threshold_a, controlnet_threshold_b,
                                       rt.annotator_setup())

    @router.post("/render_openpose_json")
    def render_openpose_json(pose_data: list[dict[str, Any]] = Body([])) -> dict[str, Any]:
        """OpenPose JSON (as /controlnet/detect's ``poses`` and pose editors write it) drawn as pose maps."""
        return render_poses(pose_data)

    return router
