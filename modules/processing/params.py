"""Typed, bounded parameters for each operation: the one declaration that feeds the UI, the API schemas and validation.

Defaults here are the UI's (A1111 ``ui.py``). The API keeps A1111's own, different defaults by subclassing
(see ``modules/api/schemas.py``). Pure module: pydantic only.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, ValidationInfo, field_validator, \
    model_validator

from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

SEED_MAX = 2**64 - 1  # what torch.manual_seed takes, so what A1111 accepts; its random seeds stay below 2**32
MAX_SIDE = 4096  # pixels; larger requests are refused before they reach the queue
MAX_PROMPT_CHARS = 100_000
MAX_STYLES = 100  # styles one request may apply; A1111's dropdown lists every style, users pick a few


def numeric_kind(annotation: Any) -> type | None:
    """int or float for a field declared ``int``, ``float`` or either ``| None``; else None."""
    if annotation in (int, float):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(kinds) == 1 and kinds[0] in (int, float):
            return kinds[0]
    return None


class NumbersAreNumbers(BaseModel):
    """Number fields take JSON numbers only: ``true`` and ``"20"`` are refused (422 naming the field) instead of
    pydantic's lax reading as 1 and 20. A float with no fraction still fills an int field (``20.0``)."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_bools_or_strings(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and isinstance(value, (bool, str)):
            kind = numeric_kind(field.annotation)
            if kind is not None:
                raise ValueError(f"must be a number ({kind.__name__}), not {type(value).__name__} {value!r:.40}")
        return value


def annotation_accepts_none(annotation: Any) -> bool:
    if annotation is Any or annotation is None or annotation is type(None):
        return True
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation)


class NullMeansDefault(BaseModel):
    """A1111 declares every request field optional: an explicit ``null`` is the field's default here (instead of
    a 422 for a field whose type has no None)."""

    @model_validator(mode="before")
    @classmethod
    def _null_is_the_default(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {k: v for k, v in data.items()
                if not (v is None and k in fields and not annotation_accepts_none(fields[k].annotation))}


_FIELD_ADAPTERS: dict[tuple[type, str], TypeAdapter[Any]] = {}


def drop_invalid_unused(model: type[BaseModel], data: dict[str, Any], names: typing.Iterable[str]) -> dict[str, Any]:
    """``data`` without those of ``names`` whose value its field would refuse: fields that the request switches
    off (hires fields without hires, the switch point without a refiner) take any value, as in A1111, and the
    default stands in."""
    out = dict(data)
    for name in names:
        if name not in out or name not in model.model_fields:
            continue
        key = (model, name)
        if key not in _FIELD_ADAPTERS:
            info = model.model_fields[name]
            _FIELD_ADAPTERS[key] = TypeAdapter(typing.Annotated[info.annotation, info])
        try:
            _FIELD_ADAPTERS[key].validate_python(out[name])
        except ValidationError:
            del out[name]
    return out


def _off(value: Any) -> bool:
    return value in (None, "", "None", "none", False, 0)


class GenerationParams(NullMeansDefault, NumbersAreNumbers):
    """Fields shared by txt2img and img2img, with A1111's names."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, validate_assignment=True)

    prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="Prompt")
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="Negative prompt")
    styles: list[typing.Annotated[str, Field(max_length=500)]] = Field(default_factory=list, max_length=MAX_STYLES,
                                                                         description="Prompt styles to apply")
    seed: int = Field(-1, ge=-1, le=SEED_MAX, description="Seed; -1 picks a random one")
    subseed: int = Field(-1, ge=-1, le=SEED_MAX, description="Variation seed; -1 picks a random one")
    subseed_strength: float = Field(0.0, ge=0.0, le=1.0, description="Variation strength")
    seed_resize_from_h: int = Field(-1, ge=-1, le=MAX_SIDE, description="Resize seed from height (0 or -1: off)")
    seed_resize_from_w: int = Field(-1, ge=-1, le=MAX_SIDE, description="Resize seed from width (0 or -1: off)")
    sampler_name: str | None = Field("DPM++ 2M", max_length=100, description="Sampling method")
    scheduler: str | None = Field("Automatic", max_length=100, description="Schedule type")
    batch_size: int = Field(1, ge=1, le=64, description="Images per batch")
    n_iter: int = Field(1, ge=1, le=1000, description="Batch count")
    steps: int = Field(20, ge=1, le=500, description="Sampling steps")
    cfg_scale: float = Field(7.0, ge=0.0, le=100.0, description="CFG Scale")
    distilled_cfg_scale: float = Field(3.5, ge=0.0, le=100.0,
                                       description="Distilled CFG Scale: Flux dev's guidance embedding (Forge's field)")
    width: int = Field(512, ge=64, le=MAX_SIDE, multiple_of=8, description="Width in pixels, a multiple of 8")
    height: int = Field(512, ge=64, le=MAX_SIDE, multiple_of=8, description="Height in pixels, a multiple of 8")
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    override_settings: dict[str, Any] = Field(default_factory=dict)
    override_settings_restore_afterwards: bool = True
    # What scripts add to the infotext (A1111's p.extra_generation_params); never taken from API requests.
    extra_generation_params: dict[str, Any] = Field(default_factory=dict, exclude=True)
    # The job's ControlNet units (``controlnet.units.ControlUnit``), from alwayson_scripts "ControlNet" or the
    # UI's accordion; never taken from API requests directly.
    controlnet_units: SkipJsonSchema[list[Any]] = Field(default_factory=list, exclude=True, max_length=10)
    # Flux Kontext's reference images (``families.flux_kontext.KontextRequest``), from alwayson_scripts
    # "Forge FluxKontext" or the UI's accordion; never taken from API requests directly.
    kontext: SkipJsonSchema[Any] = Field(default=None, exclude=True)
    # A1111's sampler parameters; unset (None): the settings eta_ancestral / eta_ddim / s_churn ... (sampler_params)
    eta: float | None = Field(None, description="Eta: ancestral noise (1 = full) or DDIM's eta")
    s_min_uncond: float | None = Field(None, description="Negative guidance minimum sigma (NGMS); 0 = off")
    s_churn: float | None = Field(None, description="Sigma churn (Euler)")
    s_tmax: float | None = Field(None, description="Sigma tmax; 0 = no upper bound")
    s_tmin: float | None = Field(None, description="Sigma tmin")
    s_noise: float | None = Field(None, description="Sigma noise")
    refiner_checkpoint: str | None = Field(None, max_length=500, description="Refiner checkpoint (SDXL refiner)")
    refiner_switch_at: float | None = Field(None, ge=0.01, le=1.0, description="Refiner switch at (fraction)")

    @model_validator(mode="before")
    @classmethod
    def _unused_fields_take_any_value(cls, data: Any) -> Any:
        if isinstance(data, dict) and _off(data.get("refiner_checkpoint")):
            data = drop_invalid_unused(cls, data, ("refiner_switch_at",))
        return data

    @model_validator(mode="after")
    def _seeds_of_every_image_fit(self) -> GenerationParams:
        last = self.batch_size * self.n_iter - 1
        for name in ("seed", "subseed"):
            value = getattr(self, name)
            if value > SEED_MAX - last:  # reported at the field (a model-level error would name no field)
                raise ValidationError.from_exception_data(type(self).__name__, [{
                    "type": PydanticCustomError("seed_range", "{name} + {count} images is above {limit}",
                                                {"name": name, "count": last + 1, "limit": SEED_MAX}),
                    "loc": (name,), "input": value}])
        return self


class Txt2ImgParams(GenerationParams):
    """txt2img, with the hires fix (a second img2img pass at a larger size) and the SDXL refiner."""

    enable_hr: bool = Field(False, description="Hires. fix: upscale and run a second pass")
    denoising_strength: float = Field(0.7, ge=0.0, le=1.0, description="Denoising strength of the hires pass")
    hr_scale: float = Field(2.0, ge=1.0, le=8.0, description="Upscale by")
    hr_upscaler: str | None = Field("Latent", max_length=200, description="Hires upscaler")
    hr_second_pass_steps: int = Field(0, ge=0, le=500, description="Hires steps; 0 = same as sampling steps")
    hr_resize_x: int = Field(0, ge=0, le=MAX_SIDE, description="Resize width to (0: use Upscale by)")
    hr_resize_y: int = Field(0, ge=0, le=MAX_SIDE, description="Resize height to (0: use Upscale by)")
    hr_checkpoint_name: str | None = Field(None, max_length=500, description="Hires checkpoint")
    hr_sampler_name: str | None = Field(None, max_length=100, description="Hires sampling method")
    hr_scheduler: str | None = Field(None, max_length=100, description="Hires schedule type")
    hr_prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="Hires prompt; empty = the prompt")
    hr_negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS,
                                    description="Hires negative prompt; empty = the negative prompt")
    hr_distilled_cfg: float = Field(3.5, ge=0.0, le=100.0,
                                    description="Hires Distilled CFG Scale (Flux dev's second pass; Forge's field)")

    @model_validator(mode="before")
    @classmethod
    def _hires_fields_without_hires_take_any_value(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("enable_hr"):
            data = drop_invalid_unused(cls, data, HIRES_FIELDS)
        return data


# Used only by the hires pass; A1111 reads none of them with enable_hr off (denoising_strength included, in txt2img).
HIRES_FIELDS = ("denoising_strength", "hr_scale", "hr_upscaler", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y",
                "hr_checkpoint_name", "hr_sampler_name", "hr_scheduler", "hr_prompt", "hr_negative_prompt")


class Img2ImgParams(GenerationParams):
    """img2img, sketch and inpainting. ``init_images``/``mask`` are PIL images (decoded by the caller)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, validate_assignment=True,
                              arbitrary_types_allowed=True)

    init_images: list[Any] = Field(default_factory=list, description="Initial images")
    resize_mode: int = Field(0, ge=0, le=3, description="0 Just resize, 1 Crop and resize, 2 Resize and fill, "
                                                          "3 Just resize (latent upscale)")
    denoising_strength: float = Field(0.75, ge=0.0, le=1.0, description="Denoising strength")
    image_cfg_scale: float | None = Field(None, ge=0.0, le=100.0, description="Image CFG scale (pix2pix models)")
    mask: Any = Field(None, description="Inpainting mask (white = repaint)")
    mask_blur_x: int = Field(4, ge=0, le=256, description="Mask blur in X")
    mask_blur_y: int = Field(4, ge=0, le=256, description="Mask blur in Y")
    mask_blur: int | None = Field(None, ge=0, le=256, description="Mask blur (both directions)")
    mask_round: bool = True
    inpainting_fill: int = Field(1, ge=0, le=3, description="Masked content: 0 fill, 1 original, 2 latent noise, "
                                                              "3 latent nothing")
    inpaint_full_res: bool = Field(False, description="Inpaint area: only masked")
    inpaint_full_res_padding: int = Field(32, ge=0, le=1024, description="Only masked padding, pixels")
    inpainting_mask_invert: int = Field(0, ge=0, le=1, description="Mask mode: 0 inpaint masked, 1 not masked")
    initial_noise_multiplier: float | None = Field(None, ge=0.0, le=1.5, description="Noise multiplier")

    def blur_xy(self) -> tuple[int, int]:
        """``mask_blur`` sets both directions, as A1111's property does."""
        if self.mask_blur is not None:
            return self.mask_blur, self.mask_blur
        return self.mask_blur_x, self.mask_blur_y


def clamp_steps_for_ui(steps: int) -> int:
    """The UI slider's range (1-150) is narrower than the API's."""
    return max(1, min(150, steps))


BUDGET_FIELD = "width*height*steps*batch_size*n_iter"


def megapixel_steps(p: GenerationParams) -> float:
    """What a job asks of the sampler: width x height x steps per image, plus the hires pass at its own size and
    steps, times the number of images, in millions. img2img counts its full step count (an upper bound)."""
    per_image = p.width * p.height * p.steps
    if getattr(p, "enable_hr", False):
        scale = float(getattr(p, "hr_scale", 2.0) or 1.0)
        rx, ry = int(getattr(p, "hr_resize_x", 0) or 0), int(getattr(p, "hr_resize_y", 0) or 0)
        if rx or ry:  # one side given: the other follows the aspect ratio
            hw = rx or p.width * ry / p.height
            hh = ry or p.height * rx / p.width
        else:
            hw, hh = p.width * scale, p.height * scale
        per_image += hw * hh * (int(getattr(p, "hr_second_pass_steps", 0) or 0) or p.steps)
    return per_image * p.batch_size * p.n_iter / 1e6


def check_budget(p: GenerationParams, limit: float, multiplier: int = 1) -> None:
    """Refuse, before anything is queued, a job larger than ``limit`` megapixel-steps (0: no limit);
    ``multiplier`` counts the jobs a script will run (an X/Y/Z plot's cells)."""
    from modules.errors import FieldError

    if not limit:
        return
    asked = megapixel_steps(p) * multiplier
    if asked > limit:
        raise FieldError(BUDGET_FIELD, f"this asks for {asked:,.0f} megapixel-steps, more than the "
                                       f"{limit:,.0f} this server accepts (setting max_job_megapixel_steps)")
