"""Flux.1 Kontext: reference images the transformer reads beside the latents it denoises, for instruction edits
("make it a watercolour") and for putting subjects of one or two pictures into a new one.

The contract is Forge's: the always-on script "Forge FluxKontext" (DenOfEquity's forge2_flux_kontext) with the
arguments ``[enabled, image 1, image 2, sizing, reduce]`` in txt2img and img2img, which API clients send as
``alwayson_scripts: {"Forge FluxKontext": {"args": [...]}}`` (images as base64). Kontext checkpoints have Flux.1
dev's tensors exactly, so nothing in the file tells them apart: the references are what asks for Kontext.

Each reference is sized (``sizing``: "no change", "to output" = the pass's own size, or "to BFL recommended" = the
resolution of diffusers' ``PREFERRED_KONTEXT_RESOLUTIONS`` nearest its aspect ratio; resized to cover and centre-
cropped), halved when ``reduce``, rounded down to a multiple of 16, encoded by the VAE (the distribution's mode,
as diffusers' FluxKontextPipeline encodes it), packed into 2x2 patch tokens and appended after the image tokens at
every transformer call, its positions ``(1, row, column)``; a second image sits below or beside the first (where
the grid stays squarer, ComfyUI's placement). The transformer's output for those tokens is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from PIL import Image

from modules.errors import FieldError

TITLE = "Forge FluxKontext"
NAME = TITLE.lower()  # /sdapi/v1/scripts lists titles lower-cased, as A1111
SIZINGS = ("no change", "to output", "to BFL recommended")
DEFAULT_SIZING = "to BFL recommended"
MULTIPLE = 16  # 8x autoencoder, 2x2 patches


@dataclass
class KontextRequest:
    """The job's reference images (one or two, RGB) and how they are sized."""

    images: list[Image.Image]
    sizing: str = DEFAULT_SIZING
    reduce: bool = False
    where: str = f"alwayson_scripts.{TITLE}.args"  # the field an error names
    _tokens: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)


def parse_args(args: Sequence[Any], where: str, decode: Callable[[str, str], Image.Image]) -> KontextRequest | None:
    """The script's ``[enabled, image1, image2, sizing, reduce]`` (shorter lists take the defaults) as a request;
    None when disabled or without an image. ``decode(base64, field)`` reads an API image."""
    values = list(args) + [None] * (5 - len(args))
    enabled, first, second, sizing, reduce = values[:5]
    if not enabled:
        return None
    images = []
    for index, image in ((1, first), (2, second)):
        if image is None or image == "":
            continue
        if isinstance(image, str):
            image = decode(image, f"{where}.{index}")
        if not isinstance(image, Image.Image):
            raise FieldError(f"{where}.{index}", "a Kontext reference image must be a base64 image")
        images.append(image.convert("RGB"))
    if not images:
        return None
    sizing = DEFAULT_SIZING if sizing in (None, "") else str(sizing)
    if sizing not in SIZINGS:
        raise FieldError(f"{where}.3", f"Kontext image size/crop {sizing!r} is not one of {', '.join(SIZINGS)}")
    return KontextRequest(images, sizing, bool(reduce), where)


def script_info(is_img2img: bool) -> dict[str, Any]:
    """The ``/sdapi/v1/script-info`` entry, with the extension's controls and defaults."""
    def arg(label: str, value: Any, choices: Any = None) -> dict[str, Any]:
        return {"label": label, "value": value, "minimum": None, "maximum": None, "step": None, "choices": choices}

    return {"name": NAME, "is_alwayson": True, "is_img2img": is_img2img,
            "args": [arg(TITLE, False), arg("Image 1", None), arg("Image 2", None),
                     arg("Kontext image size/crop", DEFAULT_SIZING, list(SIZINGS)),
                     arg("reduce to half width and height", False)]}


def preferred_resolutions() -> list[tuple[int, int]]:
    """BFL's Kontext training resolutions (width, height), as diffusers carries them."""
    from diffusers.pipelines.flux.pipeline_flux_kontext import PREFERRED_KONTEXT_RESOLUTIONS

    return [tuple(r) for r in PREFERRED_KONTEXT_RESOLUTIONS]


def reference_size(image_size: tuple[int, int], sizing: str, output_size: tuple[int, int],
                   reduce: bool) -> tuple[int, int]:
    """(width, height) a reference is encoded at."""
    width, height = image_size
    if sizing == "to output":
        width, height = output_size
    elif sizing == "to BFL recommended":
        aspect = width / height
        _, width, height = min((abs(aspect - w / h), w, h) for w, h in preferred_resolutions())
    if reduce:
        width, height = width // 2, height // 2
    return max(MULTIPLE, width // MULTIPLE * MULTIPLE), max(MULTIPLE, height // MULTIPLE * MULTIPLE)


def positions(grids: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each reference's (row, column) offset in token units, from its (rows, columns): below the ones before it
    when the whole then stays no taller than wide, else to their right."""
    offsets, rows, columns = [], 0, 0
    for h, w in grids:
        row, column = (0, columns) if h + rows > w + columns else (rows, 0)
        offsets.append((row, column))
        columns, rows = max(columns, w + column), max(rows, h + row)
    return offsets


def reference_tokens(request: KontextRequest, output_size: tuple[int, int],
                     encode: Callable[[torch.Tensor], torch.Tensor], key: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens (1, N, 64), positions (N, 3)) of the request's references for a pass of ``output_size``; computed
    once per size and model (``key``) in a job."""
    from modules.processing import imageops
    from modules.processing.families.flux import pack
    from modules.processing.txt2img import pil_to_tensor

    cache_key = (*output_size, key)
    if cache_key in request._tokens:
        return request._tokens[cache_key]
    latents = []
    for image in request.images:
        width, height = reference_size(image.size, request.sizing, output_size, request.reduce)
        if image.size != (width, height):
            image = imageops.resize_image(1, image, width, height)  # cover, centre crop (Lanczos)
        latents.append(encode(pil_to_tensor([image])))
    grids = [(int(z.shape[2]) // 2, int(z.shape[3]) // 2) for z in latents]
    ids = []
    for (h, w), (row, column) in zip(grids, positions(grids)):
        grid = torch.zeros(h, w, 3)
        grid[..., 0] = 1
        grid[..., 1] = torch.arange(row, row + h, dtype=torch.float32)[:, None]
        grid[..., 2] = torch.arange(column, column + w, dtype=torch.float32)[None, :]
        ids.append(grid.reshape(-1, 3))
    result = torch.cat([pack(z) for z in latents], dim=1), torch.cat(ids)
    request._tokens[cache_key] = result
    return result
