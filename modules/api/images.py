"""Images in and out of the API: base64 PNGs that keep their ``parameters`` chunk; inputs as base64 or data URIs."""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image

from modules.processing.saving import encode_image

MAX_INPUT_BYTES = 50 * 1024 * 1024
# Checked from the header, before any pixel is decoded (a small file can declare 50,000 x 50,000 pixels). Pillow's
# own decompression-bomb guard stays on for every other image the app opens.
MAX_INPUT_SIDE = 16384
MAX_INPUT_PIXELS = 64 * 1024 * 1024


class BadImage(ValueError):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


def encode_pil_to_base64(image: Image.Image, fmt: str = "png") -> str:
    """Plain base64 (no data-URI prefix), with string ``info`` items such as ``parameters`` embedded."""
    infotext = image.info.get("parameters") if isinstance(image.info.get("parameters"), str) else None
    extra = {k: v for k, v in image.info.items() if isinstance(v, str) and k != "parameters"}
    return base64.b64encode(encode_image(image, fmt, infotext, extra_text=extra if fmt == "png" else None)).decode()


def decode_base64_to_image(data: str, field: str = "image") -> Image.Image:
    """Accept plain base64 or a ``data:image/...;base64,`` URI; 400-class errors name the field."""
    if not isinstance(data, str) or not data:
        raise BadImage(field, "expected a base64-encoded image")
    if data.startswith("data:"):
        _, _, data = data.partition(",")
    if len(data) > MAX_INPUT_BYTES * 4 // 3 + 4:
        raise BadImage(field, "image is too large")
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as err:
        raise BadImage(field, f"invalid base64: {err}") from err
    try:
        image = Image.open(io.BytesIO(raw))  # reads the header only
        width, height = image.size
        if width * height > MAX_INPUT_PIXELS or max(width, height) > MAX_INPUT_SIDE:
            raise BadImage(field, f"image is {width}x{height}; at most {MAX_INPUT_SIDE} pixels a side and "
                                  f"{MAX_INPUT_PIXELS // 1_000_000} megapixels are accepted")
        image.load()  # the first frame only: a 10,000-frame GIF costs one frame
    except BadImage:
        raise
    except Image.DecompressionBombError as err:
        raise BadImage(field, "image has too many pixels") from err
    except Exception as err:  # noqa: BLE001 - any decoder failure is a bad input, not a server fault
        raise BadImage(field, f"could not decode image: {type(err).__name__}") from err
    return image
