"""Writing generated images the way A1111 names them, with their infotext embedded, never overwriting a file.

``outputs/txt2img-images/2024-07-27/00000-1234567890.png`` for samples (5-digit sequence, then the filename pattern,
``[seed]`` by default) and ``outputs/txt2img-grids/2024-07-27/grid-0000.png`` for grids (4 digits). The sequence number
continues from the highest one already in the folder. Files are written to a temporary name and linked into place, so
a crash never leaves a truncated image under a final name.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from PIL import Image, PngImagePlugin

from modules import fileio, filenames
from modules.processing.job_settings import JobSettings

EXIF_USER_COMMENT = 0x9286
EXIF_IFD = 0x8769


@dataclass
class ImageSaveParams:
    """What a before-save hook (A1111's ``on_before_image_saved``) may change: the image, the file name (kept
    inside the output folder) and the PNG text chunks (``pnginfo``, ``parameters`` included)."""

    image: Any
    p: Any
    filename: str
    pnginfo: dict[str, Any]


@dataclass(frozen=True)
class SaveHooks:
    before: Any = None  # Callable[[ImageSaveParams], None]
    after: Any = None  # called with the params of the file written


@dataclass(frozen=True)
class OutputKind:
    samples_setting: str
    grids_setting: str


TXT2IMG = OutputKind("outdir_txt2img_samples", "outdir_txt2img_grids")
IMG2IMG = OutputKind("outdir_img2img_samples", "outdir_img2img_grids")


def encode_image(image: Image.Image, fmt: str, infotext: str | None, quality: int = 80,
                 extra_text: Mapping[str, str] | None = None) -> bytes:
    """Encode with the infotext: PNG ``parameters`` text chunk; JPEG/WEBP EXIF UserComment (UTF-16, as A1111)."""
    fmt = fmt.lower()
    buf = io.BytesIO()
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        for key, value in (extra_text or {}).items():
            info.add_text(key, value)
        if infotext:
            info.add_text("parameters", infotext)
        image.save(buf, format="PNG", pnginfo=info)
    else:
        pil_format = {"jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}.get(fmt)
        if pil_format is None:
            raise ValueError(f"unsupported image format {fmt!r}")
        exif = Image.Exif()
        if infotext:
            exif.get_ifd(EXIF_IFD)[EXIF_USER_COMMENT] = b"UNICODE\0" + infotext.encode("utf-16-be")
        rgb = image.convert("RGB") if pil_format == "JPEG" else image
        rgb.save(buf, format=pil_format, quality=quality, exif=exif.tobytes())
    return buf.getvalue()


def output_dir(settings: Mapping[str, Any], data_dir: Path, kind: OutputKind, grid: bool) -> Path:
    """The configured folder, relative to the data dir. ``outdir_samples``/``outdir_grids`` override all kinds."""
    settings = JobSettings.of(settings)
    override = settings.outdir_grids if grid else settings.outdir_samples
    folder = override or settings.get(kind.grids_setting if grid else kind.samples_setting) or ""  # by kind
    path = Path(folder)
    return path if path.is_absolute() else data_dir / path


def output_roots(settings: Mapping[str, Any], data_dir: Path) -> list[Path]:
    """Where images may be written: the outputs folder and every configured output folder."""
    roots = [data_dir / "outputs"]
    for key, value in settings.items():
        if key.startswith("outdir_") and isinstance(value, str) and value:
            roots.append(Path(value) if Path(value).is_absolute() else data_dir / value)
    return roots


def save_image(image: Image.Image, directory: Path, *, settings: Mapping[str, Any], fields: Mapping[str, Any],
               infotext: str | None, grid: bool = False, suffix: str = "", hooks: SaveHooks | None = None,
               p: Any = None, basename: str | None = None) -> Path:
    """Save one image with A1111's naming under ``directory`` and return the path written. ``hooks`` see (and may
    change) the image, name and text chunks before, and the result after. ``basename`` replaces "grid" for grids
    (``xyz_grid-0000.png``) and joins the number of samples (``00001-name-1234.png``), as scripts ask."""
    root = directory
    settings = JobSettings.of(settings)
    to_dirs = settings.grid_save_to_dirs if grid else settings.save_to_dirs
    if to_dirs:
        sub = filenames.relative_subpath(
            filenames.apply_pattern(settings.directories_filename_pattern or "[date]", fields))
        directory = filenames.contained_path(directory, sub) if sub else directory
    directory.mkdir(parents=True, exist_ok=True)
    fmt = (settings.grid_format if grid else settings.samples_format) or "png"
    if grid:
        basename, decoration = basename or "grid", ""
    else:
        basename = basename or ""
        pattern = settings.samples_filename_pattern or ("[seed]" if to_dirs else "[seed]-[prompt_spaces]")
        decoration = filenames.apply_pattern(pattern, fields)
    add_number = settings.save_images_add_number
    number = filenames.next_sequence_number(directory, basename if grid else "") if add_number or grid else None
    if number is None:
        stem = decoration or "image"
    elif basename and not grid:
        stem = f"{number:05}-{basename}" + (f"-{decoration}" if decoration else "")
    elif basename:
        stem = f"{basename}-{number:04}" + (f"-{decoration}" if decoration else "")
    else:
        stem = f"{number:05}" + (f"-{decoration}" if decoration else "")
    stem = filenames.sanitize_filename_part(stem + suffix)
    target = directory / f"{stem}.{fmt}"
    hooked = HookedSave.before(hooks, image, p, root, target, infotext, {})
    data = encode_image(hooked.image, fmt, hooked.infotext if settings.enable_pnginfo else None,
                        settings.jpeg_quality, extra_text=hooked.extra if fmt == "png" else None)
    hooked.target.parent.mkdir(parents=True, exist_ok=True)
    path = fileio.write_new_file(hooked.target, data)
    if settings.save_txt and hooked.infotext:
        fileio.write_new_file(path.with_suffix(".txt"), hooked.infotext.encode("utf-8"))
    hooked.after(path)
    return path


@dataclass
class HookedSave:
    """An image about to be written, after the extensions' before-save hooks changed what they may."""

    image: Any
    target: Path
    infotext: str | None
    extra: dict[str, str]
    hooks: SaveHooks | None = None
    params: ImageSaveParams | None = None

    @classmethod
    def before(cls, hooks: SaveHooks | None, image: Any, p: Any, root: Path, target: Path, infotext: str | None,
               extra: dict[str, str]) -> HookedSave:
        """Run ``hooks.before``: the image, the name (kept inside ``root``) and the text chunks may change."""
        if hooks is None or not (hooks.before or hooks.after):
            return cls(image, target, infotext, dict(extra))
        chunks = {**({"parameters": infotext} if infotext else {}), **extra}
        params = ImageSaveParams(image, p, str(target), chunks)
        if hooks.before:
            hooks.before(params)
            image = params.image
            infotext = params.pnginfo.get("parameters") if isinstance(params.pnginfo.get("parameters"), str) \
                else None
            extra = {k: v for k, v in params.pnginfo.items() if k != "parameters" and isinstance(v, str)}
            target = _hooked_target(root, Path(params.filename), target)
        return cls(image, target, infotext, dict(extra), hooks, params)

    def after(self, path: Path) -> None:
        """Run ``hooks.after`` with the name really written."""
        if self.params is not None and self.hooks is not None and self.hooks.after:
            self.params.filename = str(path)
            self.hooks.after(self.params)


def _hooked_target(root: Path, wanted: Path, planned: Path) -> Path:
    """A hook's new file name, kept inside the output folder (a name outside it keeps the planned one)."""
    import logging

    try:
        relative = os.path.relpath(os.path.abspath(wanted), os.path.abspath(root))
        return filenames.contained_path(root, relative)
    except ValueError:
        logging.getLogger(__name__).warning("a save hook asked for %s, outside %s; keeping %s", wanted, root,
                                            planned.name)
        return planned


def grid_rows(count: int, batch_size: int, n_rows: int, prevent_empty_spots: bool = False) -> int:
    """A1111's rule: ``n_rows`` if set, the batch size for 0, else round(sqrt(count)); with
    ``grid_prevent_empty_spots`` the largest divisor of ``count`` not above sqrt(count). Never more rows than images."""
    if n_rows > 0:
        rows = n_rows
    elif n_rows == 0:
        rows = max(1, batch_size)
    elif prevent_empty_spots:
        rows = max(1, math.floor(math.sqrt(count)))
        while count % rows != 0:
            rows -= 1
    else:
        rows = max(1, round(math.sqrt(count)))
    return max(1, min(rows, count))


@dataclass
class ImageGridLoopParams:
    """A1111's ``script_callbacks.ImageGridLoopParams``: an ``on_image_grid`` callback may change the layout."""

    imgs: list[Image.Image]
    cols: int
    rows: int


def image_grid(images: Sequence[Image.Image], rows: int,
               hook: Callable[[ImageGridLoopParams], None] | None = None) -> Image.Image:
    """The images in ``rows`` rows, left to right; ``hook`` (extensions' ``on_image_grid``) may change the layout."""
    cols = math.ceil(len(images) / rows)
    if hook is not None:
        params = ImageGridLoopParams(list(images), cols, rows)
        hook(params)
        images, cols, rows = params.imgs, max(1, int(params.cols)), max(1, int(params.rows))
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h), "black")
    for i, img in enumerate(images):
        grid.paste(img, box=(i % cols * w, i // cols * h))
    return grid
