"""A1111's ``modules.api.api`` for extensions (rembg, ControlNet, taggers add routes that decode and encode images
with it): ``decode_base64_to_image``, ``encode_pil_to_base64`` (bytes, as A1111 returns them), and the small
helpers its module has. Our own routes live in ``modules/api/routes.py``; this is only the names extensions import.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from modules.api import images as _images


def decode_base64_to_image(encoding: str) -> Image.Image:
    """A base64 image or data URI; a bad one is a 400 naming ``image`` (A1111 answers 500 "Invalid encoded
    image"). Size limits are ours."""
    return _images.decode_base64_to_image(encoding, "image")


def encode_pil_to_base64(image: Image.Image) -> bytes:
    """The image as base64 PNG bytes, with its ``parameters`` text (A1111 returns bytes; extensions ``.decode()``)."""
    return _images.encode_pil_to_base64(image).encode("ascii")


def validate_sampler_name(name: str) -> str:
    """The sampler's canonical name; an unknown one is a 422 naming ``sampler_name``."""
    from modules import samplers

    return samplers.resolve_sampler(name, None)[0].name


def script_name_to_index(name: str, scripts: list[Any]) -> int:
    """The index of the script titled ``name`` (case-insensitive) in ``scripts``; unknown is a 422."""
    from modules.errors import FieldError

    for index, script in enumerate(scripts):
        if script.title().lower() == name.lower():
            return index
    raise FieldError("script_name", f"script '{name}' not found", [s.title() for s in scripts])
