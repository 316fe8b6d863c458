"""A1111's ``modules.images`` for extensions: ``save_image``, ``image_grid``, ``draw_grid_annotations``,
``GridAnnotation``, ``resize_image`` and ``read_info_from_image``, over our saving, grid and metadata code.

``save_image`` writes only inside the outputs folder (a path elsewhere is refused), never over a file, with the
job's settings and the extensions' save hooks, like every image the app writes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from PIL import Image

from modules import filenames
from modules.processing import imageops, saving
from modules.processing.job_settings import JobSettings
from modules.processing.xyz_grid import GridAnnotation, draw_grid_annotations  # noqa: F401 - A1111 names


def _settings_and_roots() -> tuple[dict[str, Any], Path, Any]:
    from modules import shared
    from modules.processing.compat import active_context

    ctx = active_context()
    if ctx is not None:
        return dict(ctx.settings), Path(ctx.data_dir), ctx.save_hooks
    if shared.runtime is None:
        raise RuntimeError("modules.images.save_image needs the running app")
    from modules import script_callbacks

    return shared.opts.as_dict(), Path(shared.runtime.paths.data_dir), script_callbacks.save_hooks()


def save_image(image: Image.Image, path: str, basename: str = "", seed: Any = None, prompt: str | None = None,
               extension: str = "png", info: str | None = None, short_filename: bool = False,
               no_prompt: bool = False, grid: bool = False, pnginfo_section_name: str = "parameters", p: Any = None,
               existing_info: dict[str, Any] | None = None, forced_filename: str | None = None, suffix: str = "",
               save_to_dirs: bool | None = None) -> tuple[str, str | None]:
    """A1111's signature; returns (image path, text path or None)."""
    settings, data_dir, hooks = _settings_and_roots()
    roots = saving.output_roots(settings, data_dir)
    directory = Path(path) if path else roots[0]
    directory = directory if directory.is_absolute() else data_dir / directory
    if not filenames.inside_any(directory, roots):
        raise ValueError(f"save_image: {path} is outside the output folders")
    real = os.path.realpath(directory)
    settings["samples_format" if not grid else "grid_format"] = extension or "png"
    if save_to_dirs is not None:
        settings["grid_save_to_dirs" if grid else "save_to_dirs"] = bool(save_to_dirs)
    if forced_filename:
        settings["samples_filename_pattern"], settings["save_images_add_number"] = forced_filename, False
    from datetime import datetime

    fields = {"seed": seed if seed is not None else getattr(p, "seed", ""), "prompt": "" if no_prompt else
              (prompt if prompt is not None else getattr(p, "prompt", "")), "date": datetime.now(),
              "width": image.width, "height": image.height, "steps": getattr(p, "steps", ""),
              "cfg": getattr(p, "cfg_scale", ""), "sampler": getattr(p, "sampler_name", ""),
              "negative_prompt": getattr(p, "negative_prompt", ""), "styles": getattr(p, "styles", []),
              "job_timestamp": getattr(p, "job_timestamp", ""), "batch_number": getattr(p, "iteration", 0),
              "prompt_words_limit": JobSettings.of(settings).directories_max_prompt_words}
    written = saving.save_image(image, Path(real), settings=settings, fields=fields, infotext=info, grid=grid,
                                suffix=suffix, hooks=hooks, p=p, basename=basename or None)
    text = written.with_suffix(".txt")
    return str(written), str(text) if text.exists() else None


def image_grid(imgs: Sequence[Image.Image], batch_size: int = 1, rows: int | None = None) -> Image.Image:
    if rows is None:
        rows = saving.grid_rows(len(imgs), batch_size, -1)
    return saving.image_grid(list(imgs), rows)


def resize_image(resize_mode: int, im: Image.Image, width: int, height: int, upscaler_name: str | None = None
                 ) -> Image.Image:
    """A1111's resize modes 0-2 (just resize, crop and resize, resize and fill), with Lanczos."""
    return imageops.resize_image(resize_mode, im, width, height)


def read_info_from_image(image: Image.Image) -> tuple[str | None, dict[str, Any]]:
    """A1111's ``(geninfo, items)`` of an opened image: the generation parameters (PNG ``parameters`` chunk, EXIF
    UserComment of a JPEG/WebP, a GIF comment, a NovelAI PNG converted) or None, and its other text items."""
    from modules.image_metadata import read_generation_info

    return read_generation_info(image)


LANCZOS = Image.Resampling.LANCZOS  # A1111's names for the resampling filters
NEAREST = Image.Resampling.NEAREST


def flatten(img: Image.Image, bgcolor: str) -> Image.Image:
    """A1111's ``flatten``: RGB, transparency composited over ``bgcolor`` ("#ffffff")."""
    return imageops.flatten(img, bgcolor)


class Grid(NamedTuple):
    """A1111's tile grid: ``tiles`` is ``[[y, h, [[x, w, tile_image], ...]], ...]``, a row per entry."""

    tiles: list[list[Any]]
    tile_w: int
    tile_h: int
    image_w: int
    image_h: int
    overlap: int


def split_grid(image: Image.Image, tile_w: int = 512, tile_h: int = 512, overlap: int = 64) -> Grid:
    """A1111's ``split_grid``: tiles covering ``image`` with at least ``overlap`` shared pixels (the SD upscale
    split), in A1111's list layout, which extensions index into."""
    from modules.processing import sd_upscale

    ours = sd_upscale.split_grid(image, tile_w, tile_h, overlap)
    rows = [[row[0].y, tile_h, [[tile.x, tile_w, tile.image] for tile in row]] for row in ours.tiles]
    return Grid(rows, tile_w, tile_h, image.width, image.height, overlap)


def combine_grid(grid: Grid) -> Image.Image:
    """A1111's ``combine_grid``: the tiles (which the caller may have replaced) pasted back, each fading in over the
    overlap."""
    from modules.processing import sd_upscale

    rows = [[sd_upscale.Tile(x, y, tile) for x, _w, tile in row] for y, _h, row in grid.tiles]
    return sd_upscale.combine_grid(sd_upscale.Grid(rows, grid.image_w, grid.image_h, grid.tile_w, grid.tile_h,
                                                   grid.overlap))


def sanitize_filename_part(text: str | None, replace_spaces: bool = True) -> str | None:
    """A1111's: ``text`` safe as part of a file name (None stays None)."""
    if text is None:
        return None
    return filenames.sanitize_filename_part(text, replace_spaces=replace_spaces)
