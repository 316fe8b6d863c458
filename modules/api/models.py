"""A1111's ``modules.api.models`` for extensions: the pydantic request/response model names extensions import to
type their own routes or to build requests. The request and image models are ours (``modules.api.schemas``,
``modules.api.info_routes``, built on ``modules.processing.params``) under A1111's names, so an extension's
``StableDiffusionTxt2ImgProcessingAPI(**body)`` validates exactly as ``POST /sdapi/v1/txt2img`` does; the small
list items A1111 declares are declared here with its field names.

A1111's model generator (``PydanticModelGenerator``, ``ModelDef``) builds its request models from the processing
classes at import; ours are written out, so reading those names raises AttributeError. No torch, no gradio.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modules.api import schemas
from modules.api.info_routes import InterrogateRequest, PngInfoRequest, PngInfoResponse

StableDiffusionTxt2ImgProcessingAPI = schemas.Txt2ImgRequest
StableDiffusionImg2ImgProcessingAPI = schemas.Img2ImgRequest
TextToImageResponse = schemas.ImagesResponse
ImageToImageResponse = schemas.ImagesResponse
ExtrasSingleImageRequest = schemas.ExtrasSingleImageRequest
ExtrasSingleImageResponse = schemas.ExtrasSingleImageResponse
ExtrasBatchImagesRequest = schemas.ExtrasBatchImagesRequest
ExtrasBatchImagesResponse = schemas.ExtrasBatchImagesResponse
FileData = schemas.ExtrasImageItem
PNGInfoRequest = PngInfoRequest
PNGInfoResponse = PngInfoResponse
ProgressResponse = schemas.ProgressResponse
SamplerItem = schemas.SamplerItem
SchedulerItem = schemas.SchedulerItem
UpscalerItem = schemas.UpscalerItem
SDModelItem = schemas.SDModelItem


def __getattr__(name: str) -> Any:
    if name in ("PydanticModelGenerator", "ModelDef", "API_NOT_ALLOWED"):
        raise AttributeError(f"modules.api.models.{name} is A1111's generator of request models; the models here "
                             "are declared in modules.api.schemas")
    raise AttributeError(f"module 'modules.api.models' has no attribute {name!r}")


class ExtrasBaseRequest(schemas.ExtrasParams):
    """The Extras fields shared by the single-image and batch requests."""


class ExtraBaseResponse(BaseModel):
    html_info: str = Field(title="HTML info", description="A series of HTML tags containing the process info.")


class ProgressRequest(BaseModel):
    skip_current_image: bool = Field(default=False, title="Skip current image serialization")


class InterrogateResponse(BaseModel):
    caption: str | None = Field(default=None, title="Caption")


class TrainResponse(BaseModel):
    info: str = Field(title="Train info")


class CreateResponse(BaseModel):
    info: str = Field(title="Create info")


class PreprocessResponse(BaseModel):
    info: str = Field(title="Preprocess info")


class OptionsModel(BaseModel):
    """``/sdapi/v1/options``: every setting by key (A1111 generates one field per setting)."""

    model_config = ConfigDict(extra="allow")


class FlagsModel(BaseModel):
    """``/sdapi/v1/cmd-flags``: every flag by name (A1111 generates one field per flag)."""

    model_config = ConfigDict(extra="allow")


class LatentUpscalerModeItem(BaseModel):
    name: str = Field(title="Name")


class HypernetworkItem(BaseModel):
    name: str = Field(title="Name")
    path: str | None = Field(default=None, title="Path")


class FaceRestorerItem(BaseModel):
    name: str = Field(title="Name")
    cmd_dir: str | None = Field(default=None, title="Path")


class RealesrganItem(BaseModel):
    name: str = Field(title="Name")
    path: str | None = Field(default=None, title="Path")
    scale: int | None = Field(default=None, title="Scale")


class PromptStyleItem(BaseModel):
    name: str = Field(title="Name")
    prompt: str | None = Field(default=None, title="Prompt")
    negative_prompt: str | None = Field(default=None, title="Negative Prompt")


class SDVaeItem(BaseModel):
    model_name: str = Field(title="Model Name")
    filename: str = Field(title="Filename")


class EmbeddingItem(BaseModel):
    step: int | None = Field(default=None, title="Step")
    sd_checkpoint: str | None = Field(default=None, title="SD Checkpoint")
    sd_checkpoint_name: str | None = Field(default=None, title="SD Checkpoint Name")
    shape: int = Field(title="Shape")
    vectors: int = Field(title="Vectors")


class EmbeddingsResponse(BaseModel):
    loaded: dict[str, EmbeddingItem] = Field(title="Loaded")
    skipped: dict[str, EmbeddingItem] = Field(title="Skipped")


class MemoryResponse(BaseModel):
    ram: dict[str, Any] = Field(title="RAM")
    cuda: dict[str, Any] = Field(title="CUDA")


class ScriptsList(BaseModel):
    txt2img: list[str] | None = Field(default=None, title="Txt2img")
    img2img: list[str] | None = Field(default=None, title="Img2img")


class ScriptArg(BaseModel):
    label: str | None = Field(default=None, title="Label")
    value: Any | None = Field(default=None, title="Value")
    minimum: Any | None = Field(default=None, title="Minimum")
    maximum: Any | None = Field(default=None, title="Maximum")
    step: Any | None = Field(default=None, title="Step")
    choices: list[Any] | None = Field(default=None, title="Choices")


class ScriptInfo(BaseModel):
    name: str | None = Field(default=None, title="Name")
    is_alwayson: bool | None = Field(default=None, title="IsAlwayson")
    is_img2img: bool | None = Field(default=None, title="IsImg2img")
    args: list[ScriptArg] = Field(title="Arguments")


class ExtensionItem(BaseModel):
    name: str = Field(title="Name")
    remote: str = Field(title="Remote")
    branch: str = Field(title="Branch")
    commit_hash: str = Field(title="Commit Hash")
    version: str = Field(title="Version")
    commit_date: str | int = Field(title="Commit Date")
    enabled: bool = Field(title="Enabled")
