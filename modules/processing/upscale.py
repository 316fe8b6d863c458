"""Upscalers for the hires pass: A1111's latent modes (resize the latents) and pixel upscalers (resize the decoded
image, then encode it again). Model upscalers (ESRGAN family) join through ``ModelUpscalers`` when they are present.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from PIL import Image

from modules.errors import FieldError

if TYPE_CHECKING:  # torch only when latents are really resized: the API schemas import this module at start
    import torch

# name -> (torch interpolate mode, antialias), A1111 ``shared.latent_upscale_modes``
LATENT_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
DEFAULT_LATENT_MODE = "Latent"

_PIL_FILTERS = {"Lanczos": Image.Resampling.LANCZOS, "Nearest": Image.Resampling.NEAREST}
PIXEL_UPSCALERS = ("None", "Lanczos", "Nearest")


class ModelUpscalers(Protocol):
    """What the model-upscaler registry offers the hires pass."""

    def names(self) -> Sequence[str]: ...

    def upscale(self, name: str, image: Image.Image, scale: float) -> Image.Image: ...


def hires_upscaler_names(models: ModelUpscalers | None = None) -> list[str]:
    """The Hires upscaler dropdown in A1111's order: latent modes, then None/Lanczos/Nearest, then models."""
    return [*LATENT_MODES, *PIXEL_UPSCALERS, *(models.names() if models is not None else ())]


def check_upscaler(name: str | None, models: ModelUpscalers | None = None, field: str = "hr_upscaler") -> str:
    """The upscaler to use for ``name`` (None: A1111's default latent mode); unknown names name the field."""
    if name is None or name == "":
        return DEFAULT_LATENT_MODE
    choices = hires_upscaler_names(models)
    if name not in choices:
        raise FieldError(field, f"unknown upscaler {name!r}", choices)
    return name


def is_latent(name: str) -> bool:
    return name in LATENT_MODES


def upscale_latents(latents: torch.Tensor, name: str, height: int, width: int) -> torch.Tensor:
    """Latents resized to ``height`` x ``width`` latent cells with the latent mode ``name``."""
    import torch

    mode, antialias = LATENT_MODES[name]
    kwargs: dict[str, Any] = {"antialias": antialias} if mode in ("bilinear", "bicubic") else {}
    return torch.nn.functional.interpolate(latents, size=(height, width), mode=mode, **kwargs)


MAX_MODEL_PASSES = 3  # A1111's ``Upscaler.upscale`` runs a model at most three times


def pixel_upscaler(name: str, models: ModelUpscalers | None = None,
                   field: str = "hr_upscaler") -> Callable[[Image.Image, int, int], Image.Image]:
    """A function resizing an image to (width, height) with the pixel or model upscaler ``name`` (hires fix,
    Extras and SD upscale share it).

    "None" resizes with Lanczos too: the result must reach the target size whatever the upscaler."""
    if name in _PIL_FILTERS or name == "None":
        resample = _PIL_FILTERS.get(name, Image.Resampling.LANCZOS)
        return lambda image, w, h: image.resize((w, h), resample=resample)
    if models is None or name not in models.names():
        raise FieldError(field, f"unknown upscaler {name!r}", hires_upscaler_names(models))

    def run(image: Image.Image, w: int, h: int) -> Image.Image:
        # Model upscalers have a fixed factor; repeat them until big enough, then fit exactly (A1111 ``upscale``).
        for _ in range(MAX_MODEL_PASSES):
            if image.width >= w and image.height >= h:
                break
            bigger = models.upscale(name, image, max(w / image.width, h / image.height))
            if bigger.size == image.size:
                break
            image = bigger
        return image.resize((w, h), resample=Image.Resampling.LANCZOS) if image.size != (w, h) else image

    return run
