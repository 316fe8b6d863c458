"""A1111's img2img "SD upscale" script: upscale the init image, then redraw it tile by tile with img2img at the
processing size, and blend the tiles back along their overlaps.

Script arguments are A1111's, in its order: (an info text, ignored), tile overlap, upscaler (index into the
upscaler list, or its name), scale factor. The tiles of one picture share the job; each "batch count" makes one
more picture with the next seed. Infotext gets ``SD upscale overlap`` and ``SD upscale upscaler``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from modules.errors import FieldError
from modules.processing import imageops, saving
from modules.processing.context import Processed, ProcessingContext
from modules.processing.params import Img2ImgParams

TITLE = "SD upscale"
DEFAULT_ARGS: tuple[Any, ...] = ("", 64, 0, 2.0)


@dataclass(frozen=True)
class Tile:
    x: int
    y: int
    image: Image.Image


@dataclass
class Grid:
    tiles: list[list[Tile]]  # rows
    width: int
    height: int
    tile_w: int
    tile_h: int
    overlap: int


def _positions(size: int, tile: int, overlap: int) -> list[int]:
    """Tile starts covering ``size`` with at least ``overlap`` shared pixels, spread evenly (A1111's split)."""
    if size <= tile:
        return [0]
    count = math.ceil((size - overlap) / (tile - overlap))
    step = (size - tile) / (count - 1) if count > 1 else 0
    return [int(i * step) for i in range(count)]


def split_grid(image: Image.Image, tile_w: int, tile_h: int, overlap: int) -> Grid:
    rows = []
    for y in _positions(image.height, tile_h, overlap):
        row = [Tile(x, y, image.crop((x, y, x + tile_w, y + tile_h)))
               for x in _positions(image.width, tile_w, overlap)]
        rows.append(row)
    return Grid(rows, image.width, image.height, tile_w, tile_h, overlap)


def combine_grid(grid: Grid) -> Image.Image:
    """Paste the tiles back; where they overlap the later one fades in linearly over ``overlap`` pixels."""
    out = np.zeros((grid.height, grid.width, 3), dtype=np.float32)
    ramp = np.linspace(0.0, 1.0, grid.overlap + 2, dtype=np.float32)[1:-1] if grid.overlap else np.empty(0)
    for r, row in enumerate(grid.tiles):
        for c, tile in enumerate(row):
            array = np.asarray(tile.image.convert("RGB"), dtype=np.float32)
            h, w = min(array.shape[0], grid.height - tile.y), min(array.shape[1], grid.width - tile.x)
            wy, wx = np.ones(h, np.float32), np.ones(w, np.float32)
            n = min(len(ramp), h, w)
            if r > 0 and n:
                wy[:n] = ramp[:n]
            if c > 0 and n:
                wx[:n] = ramp[:n]
            window = (wy[:, None] * wx[None, :])[..., None]
            region = (slice(tile.y, tile.y + h), slice(tile.x, tile.x + w))
            out[region] = out[region] * (1 - window) + array[:h, :w] * window
    return Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8))


@dataclass(frozen=True)
class SdUpscaleArgs:
    overlap: int
    upscaler: str
    scale: float

    def check(self, p: Img2ImgParams) -> None:
        if not p.init_images:
            raise FieldError("init_images", "SD upscale needs an init image")

    def run(self, p: Img2ImgParams, ctx: ProcessingContext,
            process: Callable[[Img2ImgParams, ProcessingContext], Processed], upscalers: Any = None) -> Processed:
        return run(p, self, ctx, process, upscalers)


def parse_args(args: Sequence[Any], upscaler_names: Sequence[str]) -> SdUpscaleArgs:
    values = list(args) + list(DEFAULT_ARGS[len(args):])
    _, overlap, upscaler, scale = values[:4]
    try:
        overlap, scale = int(overlap), float(scale)
    except (TypeError, ValueError) as err:
        raise FieldError("script_args", "tile overlap and scale factor must be numbers") from err
    if isinstance(upscaler, int) and not isinstance(upscaler, bool):
        if not 0 <= upscaler < len(upscaler_names):
            raise FieldError("script_args", f"upscaler index {upscaler} is out of range", list(upscaler_names))
        upscaler = upscaler_names[upscaler]
    if upscaler not in upscaler_names:
        raise FieldError("script_args", f"unknown upscaler {upscaler!r}", list(upscaler_names))
    if not 0 <= overlap <= 256 or not 1.0 <= scale <= 4.0:
        raise FieldError("script_args", "tile overlap must be 0-256 and scale factor 1-4")
    return SdUpscaleArgs(overlap, str(upscaler), scale)


def run(p: Img2ImgParams, args: SdUpscaleArgs, ctx: ProcessingContext,
        process: Callable[[Img2ImgParams, ProcessingContext], Processed], upscalers: Any = None) -> Processed:
    from modules.processing import postprocessing

    source = imageops.flatten(imageops.normalize_input(p.init_images[0]),
                              ctx.settings.img2img_background_color or "#ffffff")
    image = postprocessing.upscale_once(source, args.upscaler, args.scale, upscalers) if args.upscaler != "None" \
        else source
    if args.overlap >= min(p.width, p.height):
        raise FieldError("script_args", "tile overlap must be smaller than the tile (width and height)")
    grid = split_grid(image, p.width, p.height, args.overlap)
    tiles = [tile for row in grid.tiles for tile in row]
    extra = {"SD upscale overlap": args.overlap, "SD upscale upscaler": args.upscaler}
    results: list[Image.Image] = []
    infotexts: list[str] = []
    saved: list[Any] = []
    first: Processed | None = None
    seed = p.seed
    for n in range(p.n_iter):
        done: list[Image.Image] = []
        batch_seed = seed if seed == -1 else seed + n
        for start in range(0, len(tiles), p.batch_size):
            if ctx.progress.interrupted and done:
                break
            chunk = tiles[start:start + p.batch_size]
            part = p.model_copy(update={"init_images": [t.image for t in chunk], "batch_size": len(chunk),
                                        "n_iter": 1, "seed": batch_seed, "mask": None, "resize_mode": 0,
                                        "do_not_save_samples": True, "do_not_save_grid": True,
                                        "extra_generation_params": {**p.extra_generation_params, **extra}})
            processed = process(part, ctx)
            first = first or processed
            if batch_seed != -1:
                batch_seed = processed.seed + 1
            done += processed.images[processed.index_of_first_image:]
        rebuilt = Grid([[Tile(t.x, t.y, done.pop(0) if done else t.image) for t in row] for row in grid.tiles],
                       grid.width, grid.height, grid.tile_w, grid.tile_h, grid.overlap)
        combined = combine_grid(rebuilt)
        assert first is not None
        text = first.infotexts[first.index_of_first_image]
        combined.info["parameters"] = text
        path = None
        if ctx.settings.samples_save and not p.do_not_save_samples:
            fields = {"seed": first.seed + n, "prompt": first.prompt, "width": combined.width,
                      "height": combined.height, "model_name": ctx.checkpoint.model_name}
            path = saving.save_image(combined, saving.output_dir(ctx.settings, ctx.data_dir, saving.IMG2IMG, False),
                                     settings=ctx.settings, fields=fields, infotext=text)
        results.append(combined)
        infotexts.append(text)
        saved.append(path)
        if ctx.progress.interrupted:
            break
    assert first is not None
    first.images, first.infotexts, first.saved_paths, first.index_of_first_image = results, infotexts, saved, 0
    first.all_seeds = [first.seed + i for i in range(len(results))]
    return first

