"""Extras: upscale an existing image (upscaler 1, optionally blended with upscaler 2), as A1111's Extras tab does,
and save it with an ``extras`` text chunk beside the image's original ``parameters``.

Geometry is A1111's: "Scale by" targets ``size * factor`` rounded down to a multiple of 8 (capped by "Max side
length"); "Scale to" scales to cover the target and, with "Crop to fit", centre-crops to it. Model upscalers run
their native factor as often as needed (at most three times), then Lanczos fits the exact size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from modules.errors import FieldError
from modules.processing import imageops, saving
from modules.processing.job_settings import JobSettings
from modules.processing.upscale import PIXEL_UPSCALERS, pixel_upscaler

MAX_OUTPUT_SIDE = 16384
MAX_OUTPUT_PIXELS = 8192 * 8192
EXTRAS = saving.OutputKind("outdir_extras_samples", "outdir_extras_samples")


class ExtrasParams(BaseModel):
    """A1111's extras fields (UI defaults; the API's differ only in ``upscaling_resize``, 2 instead of 4)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    resize_mode: int = Field(0, ge=0, le=1, description="0: scale by upscaling_resize, 1: scale to width/height")
    upscaling_resize: float = Field(4.0, ge=1.0, le=8.0, description="Resize (scale by)")
    max_side_length: int = Field(0, ge=0, le=MAX_OUTPUT_SIDE, description="Max side length (0: no limit)")
    upscaling_resize_w: int = Field(512, ge=1, le=MAX_OUTPUT_SIDE, description="Width (scale to)")
    upscaling_resize_h: int = Field(512, ge=1, le=MAX_OUTPUT_SIDE, description="Height (scale to)")
    upscaling_crop: bool = Field(True, description="Crop to fit")
    upscaler_1: str = Field("None", max_length=200, description="Upscaler 1")
    upscaler_2: str = Field("None", max_length=200, description="Upscaler 2")
    extras_upscaler_2_visibility: float = Field(0.0, ge=0.0, le=1.0, description="Upscaler 2 visibility")
    upscale_first: bool = False  # legacy: the upscale always comes first here
    gfpgan_visibility: float = Field(0.0, ge=0.0, le=1.0, description="GFPGAN visibility")
    codeformer_visibility: float = Field(0.0, ge=0.0, le=1.0, description="CodeFormer visibility")
    codeformer_weight: float = Field(0.0, ge=0.0, le=1.0, description="CodeFormer weight")


@dataclass
class ExtrasResult:
    image: Image.Image
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def infotext(self) -> str:
        """A1111's ``extras`` chunk: ``Postprocess upscale by: 4, Postprocess upscaler: R-ESRGAN 4x+``."""
        from modules.infotext import quote

        return ", ".join(k if k == v else f"{k}: {quote(str(v))}" for k, v in self.info.items() if v is not None)


def check_upscalers(p: ExtrasParams, registry: Any) -> None:
    """Both names exist (422 naming the field, with the valid names)."""
    choices = upscaler_names(registry)
    for field_name in ("upscaler_1", "upscaler_2"):
        if getattr(p, field_name) not in choices:
            raise FieldError(field_name, f"unknown upscaler {getattr(p, field_name)!r}", choices)


def upscaler_names(registry: Any) -> list[str]:
    return [*PIXEL_UPSCALERS, *(registry.names() if registry is not None else [])]


def _target(image: Image.Image, p: ExtrasParams, info: dict[str, Any]) -> tuple[float, tuple[int, int] | None]:
    """(scale factor, crop size or None), recording A1111's info keys."""
    if p.resize_mode == 1:
        info["Postprocess upscale to"] = f"{p.upscaling_resize_w}x{p.upscaling_resize_h}"
        scale = max(p.upscaling_resize_w / image.width, p.upscaling_resize_h / image.height)
        return scale, (p.upscaling_resize_w, p.upscaling_resize_h) if p.upscaling_crop else None
    scale = p.upscaling_resize
    info["Postprocess upscale by"] = int(scale) if float(scale).is_integer() else scale  # "4", as A1111's UI
    if p.max_side_length and max(image.size) * scale > p.max_side_length:
        w, h = image.width * scale, image.height * scale
        ratio = p.max_side_length / max(w, h)
        scale = max(int(w * ratio) / image.width, int(h * ratio) / image.height)
        info["Max side length"] = p.max_side_length
    return scale, None


def upscale_once(image: Image.Image, name: str, scale: float, registry: Any) -> Image.Image:
    """A1111's ``Upscaler.upscale``: to ``size * scale`` rounded down to 8 pixels."""
    dest_w, dest_h = int(image.width * scale // 8 * 8), int(image.height * scale // 8 * 8)
    dest_w, dest_h = max(dest_w, 1), max(dest_h, 1)
    if dest_w * dest_h > MAX_OUTPUT_PIXELS or max(dest_w, dest_h) > MAX_OUTPUT_SIDE:
        raise FieldError("upscaling_resize", f"the result would be {dest_w}x{dest_h}; the limit is "
                                             f"{MAX_OUTPUT_PIXELS // 1_000_000} megapixels, {MAX_OUTPUT_SIDE} per side")
    return pixel_upscaler(name, registry, field="upscaler_1")(image, dest_w, dest_h)


def run_extras(image: Image.Image, p: ExtrasParams, registry: Any, face_restorers: Any = None) -> ExtrasResult:
    """Upscale (and restore faces, when restorers are available) one image; returns it with A1111's info."""
    image = imageops.flatten(imageops.normalize_input(image))
    info: dict[str, Any] = {}
    if p.upscaler_1 != "None" or (p.upscaler_2 != "None" and p.extras_upscaler_2_visibility > 0):
        scale, crop = _target(image, p, info)
        first = upscale_once(image, p.upscaler_1, scale, registry)
        info["Postprocess upscaler"] = p.upscaler_1
        if p.upscaler_2 != "None" and p.extras_upscaler_2_visibility > 0:
            second = upscale_once(image, p.upscaler_2, scale, registry)
            if second.size != first.size:
                second = second.resize(first.size, Image.Resampling.LANCZOS)
            first = Image.blend(first.convert("RGB"), second.convert("RGB"), p.extras_upscaler_2_visibility)
            info["Postprocess upscaler 2"] = p.upscaler_2
        if crop is not None:
            w, h = crop
            canvas = Image.new("RGB", (w, h))
            canvas.paste(first, box=(w // 2 - first.width // 2, h // 2 - first.height // 2))
            first = canvas
            info["Postprocess crop to"] = f"{w}x{h}"
        image = first
    if face_restorers is not None:
        image = face_restorers.restore(image, p, info)
    elif p.gfpgan_visibility > 0 or p.codeformer_visibility > 0:
        raise FieldError("gfpgan_visibility" if p.gfpgan_visibility > 0 else "codeformer_visibility",
                         "face restoration is not available")
    return ExtrasResult(image, info)


def check_request(p: ExtrasParams, registry: Any, face_restorers: Any) -> None:
    """Everything that can be refused before the job is queued."""
    check_upscalers(p, registry)
    if face_restorers is not None:
        face_restorers.check(p)


def save_extras(result: ExtrasResult, source_info: Mapping[str, Any], settings: Mapping[str, Any], data_dir: Path,
                basename: str = "", output_dir: Path | None = None, hooks: saving.SaveHooks | None = None) -> Path:
    """Write the result as A1111 names extras: ``NNNNN.png`` (or the input's name in a batch), the ``extras``
    chunk added, the original ``parameters`` kept; never over an existing file. ``hooks``: the extensions'
    on_before_image_saved / on_image_saved, as for generated images."""
    from modules import fileio, filenames

    folder = output_dir if output_dir is not None else saving.output_dir(settings, data_dir, EXTRAS, grid=False)
    folder.mkdir(parents=True, exist_ok=True)
    settings = JobSettings.of(settings)
    fmt = settings.samples_format or "png"
    if basename and settings.use_original_name_batch:
        stem = filenames.sanitize_filename_part(basename)
    else:
        stem = f"{filenames.next_sequence_number(folder, ''):05}"
    parameters = source_info.get("parameters") if isinstance(source_info.get("parameters"), str) else None
    extra = {"extras": result.infotext} if result.infotext else {}
    hooked = saving.HookedSave.before(hooks, result.image, None, folder, folder / f"{stem}.{fmt}", parameters,
                                      extra)
    data = saving.encode_image(hooked.image, fmt, hooked.infotext if settings.enable_pnginfo else None,
                               settings.jpeg_quality, extra_text=hooked.extra if fmt == "png" else None)
    hooked.target.parent.mkdir(parents=True, exist_ok=True)
    path = fileio.write_new_file(hooked.target, data)
    hooked.after(path)
    return path
