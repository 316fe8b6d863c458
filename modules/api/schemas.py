"""Request and response models of A1111's ``/sdapi/v1``, built on the processing parameter models.

The API keeps A1111's API defaults (steps 50, sampler "Euler" through ``sampler_index``), which differ from the UI's.
Unknown request fields are ignored, as A1111 clients expect.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modules.infotext import MAX_INFOTEXT_CHARS
from modules.processing.params import GenerationParams, Img2ImgParams, Txt2ImgParams
from modules.processing.postprocessing import ExtrasParams


class _ApiFields(BaseModel):
    """What A1111's API adds to the processing fields, with its API defaults (steps 50, sampler "Euler")."""

    steps: int = Field(50, ge=1, le=500, description="Sampling steps")
    sampler_name: str | None = Field(None, max_length=100, description="Sampling method; falls back to sampler_index")
    scheduler: str | None = Field(None, max_length=100, description="Schedule type")
    sampler_index: str = Field("Euler", max_length=100, description="Legacy sampler field (A1111 API default)")
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    force_task_id: str | None = Field(None, max_length=200)
    infotext: str | None = Field(None, max_length=MAX_INFOTEXT_CHARS)

    def _params_data(self, model: type[GenerationParams], exclude: set[str] = frozenset()) -> dict[str, Any]:
        # fields the job gets from elsewhere (scripts' infotext, ControlNet units, Kontext references) are never read
        internal = {name for name, info in model.model_fields.items() if info.exclude}
        data = self.model_dump(include=set(model.model_fields) - set(exclude) - internal)
        data["sampler_name"] = self.sampler_name or self.sampler_index
        # A1111: the API writes files only when asked to.
        data["do_not_save_samples"] = self.do_not_save_samples or not self.save_images  # type: ignore[attr-defined]
        data["do_not_save_grid"] = self.do_not_save_grid or not self.save_images  # type: ignore[attr-defined]
        return data


class Txt2ImgRequest(_ApiFields, Txt2ImgParams):
    denoising_strength: float = Field(0.75, ge=0.0, le=1.0, description="Denoising strength of the hires pass")
    hr_upscaler: str | None = Field(None, max_length=200, description="Hires upscaler (default: Latent)")
    firstphase_width: int = Field(0, ge=0, le=4096, description="Legacy, ignored")
    firstphase_height: int = Field(0, ge=0, le=4096, description="Legacy, ignored")

    def to_params(self) -> Txt2ImgParams:
        return Txt2ImgParams(**self._params_data(Txt2ImgParams))


class Img2ImgRequest(_ApiFields, Img2ImgParams):
    """A1111's img2img request: images as base64 or data URIs; API defaults for the inpaint fields differ from
    the UI's (only masked, padding 0, masked content fill)."""

    init_images: list[str] | None = Field(None, max_length=64, description="Base64 images (plain or data URI)")
    mask: str | None = Field(None, description="Base64 mask image; white = repaint")
    inpainting_fill: int = Field(0, ge=0, le=3, description="Masked content: 0 fill, 1 original, 2 latent noise, "
                                                              "3 latent nothing")
    inpaint_full_res: bool = Field(True, description="Inpaint area: only masked")
    inpaint_full_res_padding: int = Field(0, ge=0, le=1024, description="Only masked padding, pixels")
    include_init_images: bool = Field(False, description="Echo init_images and mask in `parameters`")

    @model_validator(mode="before")
    @classmethod
    def _mask_invert_as_bool(cls, data: Any) -> Any:
        """``inpainting_mask_invert`` is an int in A1111's schema, but its pydantic reads ``false``/``true`` as 0/1
        and clients (A1111's own test suite among them) send a bool: the one number field that takes one."""
        if isinstance(data, dict) and isinstance(data.get("inpainting_mask_invert"), bool):
            data = {**data, "inpainting_mask_invert": int(data["inpainting_mask_invert"])}
        return data

    def to_params(self, init_images: list[Any], mask: Any) -> Img2ImgParams:
        data = self._params_data(Img2ImgParams, exclude={"init_images", "mask"})
        return Img2ImgParams(**data, init_images=init_images, mask=mask)


class ExtrasSingleImageRequest(ExtrasParams):
    """A1111's extra-single-image request (API default: upscaling_resize 2)."""

    upscaling_resize: float = Field(2.0, ge=1.0, le=8.0, description="Resize (scale by)")
    show_extras_results: bool = Field(True, description="Return the result images")
    image: str = Field("", description="Base64 image (plain or data URI)")


class ExtrasImageItem(BaseModel):
    data: str = Field(..., description="Base64 image (plain or data URI)")
    name: str = Field("", max_length=500, description="File name (used for the output name)")


class ExtrasBatchImagesRequest(ExtrasParams):
    upscaling_resize: float = Field(2.0, ge=1.0, le=8.0, description="Resize (scale by)")
    show_extras_results: bool = Field(True, description="Return the result images")
    imageList: list[ExtrasImageItem] = Field(default_factory=list, max_length=64)  # noqa: N815 - A1111's name


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: str | None = None


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]


class UpscalerItem(BaseModel):
    name: str
    model_name: str | None = None
    model_path: str | None = None
    model_url: str | None = None
    scale: float | None = None


class ImagesResponse(BaseModel):
    images: list[str] | None = Field(None, description="Base64 PNGs, each carrying its `parameters` chunk")
    parameters: dict[str, Any]
    info: str


class SDModelItem(BaseModel):
    title: str
    model_name: str
    hash: str | None = None
    sha256: str | None = None
    filename: str
    config: str | None = None


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, Any]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: list[str] | None = None
    default_rho: float = -1
    need_inner_model: bool = False


class ProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    stopping_generation: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = ""
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class ProgressResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    progress: float
    eta_relative: float
    state: ProgressState
    current_image: str | None = None
    textinfo: str | None = None


class ErrorResponse(BaseModel):
    error: str
    detail: Any = None
    errors: Any = None
