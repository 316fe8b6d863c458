"""The files A1111 keeps beside a network (``name.png`` / ``name.preview.png`` previews, ``name.json`` user
metadata, ``name.civitai.info``) and the one containment rule for serving or writing them.

A1111's keys in ``name.json``: ``description``, ``activation text``, ``preferred weight``, ``negative text``,
``sd version``, ``notes`` (the Lora editor's; other editors write ``description`` and ``notes``). Unknown keys in an
existing file are kept. Writes are atomic, and a file that is not a JSON object is never overwritten: the user
must fix it first (it may be a hand-written file we would destroy). Pure module: no gradio, no web framework.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from modules import fileio, filenames

PREVIEW_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif")  # A1111's default_allowed_preview_extensions
SD_VERSIONS = ("Unknown", "SD1", "SD2", "SDXL")  # A1111's network.SdVersion names
TEXT_KEYS = ("description", "activation text", "negative text", "notes")
MAX_TEXT = 100_000  # characters per field: a description, not a book
MAX_PREVIEW_BYTES = 32 * 1024 * 1024


class MetadataError(ValueError):
    """A user-metadata edit that cannot be saved (bad value, unreadable existing file); nothing was written."""


def preview_extensions(samples_format: str | None = None) -> tuple[str, ...]:
    """A1111's ``allowed_preview_extensions()``: the defaults plus the image format the user saves in."""
    fmt = (samples_format or "").lower().lstrip(".")
    return PREVIEW_EXTENSIONS + ((fmt,) if fmt and fmt not in PREVIEW_EXTENSIONS else ())


def find_preview(stem: str, samples_format: str | None = None) -> str | None:
    """The preview of the network whose path without extension is ``stem``: ``stem.<ext>`` then
    ``stem.preview.<ext>``, for each extension in A1111's order."""
    for ext in preview_extensions(samples_format):
        for candidate in (f"{stem}.{ext}", f"{stem}.preview.{ext}"):
            if os.path.isfile(candidate):
                return candidate
    return None


def thumb_url(filename: str) -> str:
    """A1111's ``link_preview``: relative to the page, with the mtime so a replaced preview is fetched anew."""
    try:
        mtime = os.path.getmtime(filename)
    except OSError:
        mtime = 0
    return f"./sd_extra_networks/thumb?filename={quote(filename.replace(os.sep, '/'))}&mtime={mtime}"


def servable_preview(filename: str, allowed_dirs: Iterable[str | os.PathLike[str]],
                     samples_format: str | None = None) -> Path | None:
    """The file ``filename`` names when the thumb route may send it: an existing file with a preview extension,
    strictly inside one of the model folders (symlinks resolved, so ``..`` and links out are refused)."""
    if not filename or "\x00" in filename or "://" in filename:
        return None
    path = Path(filename)
    if not path.is_absolute():
        return None  # A1111's links are absolute; a relative one would depend on the server's cwd
    if path.suffix.lower().lstrip(".") not in preview_extensions(samples_format):
        return None
    roots = [Path(d) for d in allowed_dirs if d]
    real = Path(os.path.realpath(path))
    if not any(real != Path(os.path.realpath(r)) and filenames.inside_any(real, [r]) for r in roots):
        return None
    return real if real.is_file() else None


def inside_model_dirs(filename: str, allowed_dirs: Iterable[str | os.PathLike[str]]) -> bool:
    return bool(filename) and filenames.inside_any(filename, [d for d in allowed_dirs if d])


def metadata_path(filename: str) -> Path:
    return Path(os.path.splitext(filename)[0] + ".json")


def read_user_metadata(filename: str) -> dict[str, Any]:
    """``name.json`` beside the network; {} when absent or unreadable (as A1111 shows such a card)."""
    try:
        data = json.loads(metadata_path(filename).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def clean_metadata_edit(edit: Mapping[str, Any]) -> dict[str, Any]:
    """The edit's known keys, checked: texts are strings, ``preferred weight`` a number in [-10, 10] (0 means
    "use the default multiplier", as in A1111), ``sd version`` one of A1111's names."""
    out: dict[str, Any] = {}
    for key in TEXT_KEYS:
        if key in edit:
            value = edit[key]
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise MetadataError(f"{key}: expected text")
            if len(value) > MAX_TEXT:
                raise MetadataError(f"{key}: longer than {MAX_TEXT} characters")
            out[key] = value
    if "preferred weight" in edit:
        value = edit["preferred weight"]
        try:
            weight = float(value if value not in (None, "") else 0)
        except (TypeError, ValueError):
            raise MetadataError("preferred weight: expected a number") from None
        if not -10 <= weight <= 10 or weight != weight:
            raise MetadataError("preferred weight: expected a number from -10 to 10")
        out["preferred weight"] = weight
    if "sd version" in edit:
        version = edit["sd version"] or "Unknown"
        if version not in SD_VERSIONS:
            raise MetadataError(f"sd version: one of {', '.join(SD_VERSIONS)}")
        out["sd version"] = version
    return out


def write_user_metadata(filename: str, edit: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``edit`` into ``name.json`` (atomically) and return what the file now holds. A bad value or an
    existing file that is not a JSON object raises MetadataError and leaves the file as it was."""
    changes = clean_metadata_edit(edit)
    path = metadata_path(filename)
    current: dict[str, Any] = {}
    if path.exists():
        try:
            current = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise MetadataError(f"{path.name} could not be read ({err}); fix or remove it first") from None
        if not isinstance(current, dict):
            raise MetadataError(f"{path.name} does not hold a JSON object; fix or remove it first")
    merged = {**current, **changes}
    fileio.atomic_write_json(path, merged, backup=False)
    return merged


def civitai_description(filename: str) -> str | None:
    """The description in ``name.civitai.info`` (Civitai Helper's file): the version's, else the model's."""
    try:
        info = json.loads(Path(os.path.splitext(filename)[0] + ".civitai.info").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    model = info.get("model") if isinstance(info.get("model"), dict) else {}
    for text in (info.get("description"), model.get("description")):
        if isinstance(text, str) and text.strip():
            return text
    return None


def metadata_description(metadata: Mapping[str, Any] | None) -> str | None:
    """A description a trainer wrote into the safetensors header (``modelspec.description``)."""
    text = (metadata or {}).get("modelspec.description")
    return text if isinstance(text, str) and text.strip() else None


def save_preview(target: str, data: bytes, allowed_dirs: Iterable[str | os.PathLike[str]]) -> Path:
    """Write the image ``data`` as the preview file ``target`` (a network's ``local_preview``), atomically, keeping
    the image's ``parameters`` text as A1111 does. ``target`` must lie inside a model folder and have a preview
    extension; ``data`` must be an image. ValueError otherwise, and nothing is written."""
    from PIL import Image, PngImagePlugin

    if len(data) > MAX_PREVIEW_BYTES:
        raise ValueError("the image is too large for a preview")
    if not inside_model_dirs(target, allowed_dirs):
        raise ValueError("previews are written only inside the model folders")
    ext = os.path.splitext(target)[1].lower().lstrip(".")
    if ext not in PREVIEW_EXTENSIONS:
        raise ValueError(f"a preview is one of: {', '.join(PREVIEW_EXTENSIONS)}")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as err:  # PIL raises many kinds for a bad file
        raise ValueError(f"not an image: {err}") from None
    params = image.info.get("parameters") if isinstance(image.info.get("parameters"), str) else None
    out = io.BytesIO()
    fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF"}[ext]
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        if params:
            info.add_text("parameters", params)
        image.save(out, format="PNG", pnginfo=info)
    else:
        if fmt == "JPEG" and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image.save(out, format=fmt)
    fileio.atomic_write_bytes(target, out.getvalue(), backup=False)
    return Path(target)
