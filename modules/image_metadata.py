"""Reading the generation parameters back out of an image, as A1111's ``images.read_info_from_image`` does.

PNG: the ``parameters`` text chunk. JPEG/WEBP: EXIF UserComment (``b"UNICODE\\0"`` + UTF-16 as A1111/piexif write
it; big- and little-endian and the ASCII form are accepted too). GIF: the ``comment`` extension. NovelAI PNGs
(``Software: NovelAI``) are converted to an A1111 infotext. Pure Pillow: no gradio, no torch.
"""

from __future__ import annotations

import json
from typing import Any

from PIL import Image

EXIF_USER_COMMENT = 0x9286
EXIF_IFD = 0x8769

# A1111's IGNORED_INFO_KEYS: Pillow's technical items that are not metadata text.
IGNORED_INFO_KEYS = frozenset({
    "jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "exif", "loop", "background", "timestamp",
    "duration", "progressive", "progression", "icc_profile", "chromaticity", "photoshop", "xmp",
})

# NovelAI's sampler ids -> A1111 names (A1111 maps them through its sampler aliases; unknown -> "Euler a").
_NOVELAI_SAMPLERS = {
    "k_euler_ancestral": "Euler a", "k_euler_a": "Euler a", "k_euler": "Euler", "k_lms": "LMS", "k_heun": "Heun",
    "k_dpm_2": "DPM2", "k_dpm_2_ancestral": "DPM2 a", "k_dpm_2_a": "DPM2 a", "k_dpmpp_2m": "DPM++ 2M",
    "k_dpmpp_2s_ancestral": "DPM++ 2S a", "k_dpmpp_2s_a": "DPM++ 2S a", "k_dpmpp_sde": "DPM++ SDE",
    "k_dpmpp_2m_sde": "DPM++ 2M SDE", "k_dpm_fast": "DPM fast", "k_dpm_ad": "DPM adaptive", "ddim": "DDIM",
    "plms": "PLMS",
}


def _strip_nuls(text: str) -> str:
    return text.rstrip("\0")


def decode_user_comment(data: bytes | str | None) -> str | None:
    """An EXIF UserComment as text: 8-byte character-code prefix, then the payload (None when empty)."""
    if data is None:
        return None
    if isinstance(data, str):  # Pillow may already have decoded an ASCII comment
        return _strip_nuls(data) or None
    prefix, payload = data[:8], data[8:]
    if prefix == b"UNICODE\0":
        if payload[:2] == b"\xff\xfe":
            text = payload[2:].decode("utf-16-le", errors="replace")
        elif payload[:2] == b"\xfe\xff":
            text = payload[2:].decode("utf-16-be", errors="replace")
        else:
            # No BOM: piexif and A1111 write big-endian; some tools write little-endian. ASCII-range text has its
            # zero bytes at even offsets in big-endian, at odd offsets in little-endian.
            even = payload[0::2].count(0)
            odd = payload[1::2].count(0)
            text = payload.decode("utf-16-le" if odd > even else "utf-16-be", errors="replace")
    elif prefix in (b"ASCII\0\0\0", b"\0" * 8):
        text = payload.decode("utf-8", errors="replace")
    elif prefix == b"JIS\0\0\0\0\0":
        text = payload.decode("shift_jis", errors="replace")
    else:  # no recognised prefix: take the whole thing as text
        text = data.decode("utf-8", errors="replace")
    return _strip_nuls(text) or None


def _exif_user_comment(image: Image.Image) -> str | None:
    try:
        exif = image.getexif()
        value = exif.get_ifd(EXIF_IFD).get(EXIF_USER_COMMENT)
        if value is None:
            value = exif.get(EXIF_USER_COMMENT)
    except Exception:  # noqa: BLE001 - a broken EXIF block (any Pillow error) is "no infotext", never an error
        return None
    return decode_user_comment(value)


def _as_text(value: Any) -> str | None:
    """Info items as strings; binary ones (not clean UTF-8) are skipped."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
        return text if all(c.isprintable() or c in "\n\r\t" for c in text) else None
    return str(value)


def _novelai_infotext(image: Image.Image, items: dict[str, str]) -> str | None:
    try:
        data = json.loads(items["Comment"])
        sampler = _NOVELAI_SAMPLERS.get(str(data.get("sampler", "")).lower(), "Euler a")
        return (f"{items.get('Description', '')}\nNegative prompt: {data['uc']}\n"
                f"Steps: {data['steps']}, Sampler: {sampler}, CFG scale: {data['scale']}, Seed: {data['seed']}, "
                f"Size: {image.width}x{image.height}, Clip skip: 2, ENSD: 31337")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def read_generation_info(image: Image.Image) -> tuple[str | None, dict[str, str]]:
    """``(parameters text or None, other info items as strings)`` of an opened image.

    The image must come straight from ``Image.open`` (or keep its ``.info``): conversions may drop metadata.
    """
    info = dict(getattr(image, "info", None) or {})
    geninfo_raw = info.pop("parameters", None)
    geninfo = _as_text(geninfo_raw) if geninfo_raw is not None else None
    comment = info.pop("comment", None)
    items: dict[str, str] = {}
    for key, value in info.items():
        if str(key) in IGNORED_INFO_KEYS:
            continue
        text = _as_text(value)
        if text is not None:
            items[str(key)] = text

    if not geninfo:
        geninfo = _exif_user_comment(image)
    if not geninfo and comment is not None:  # GIF
        geninfo = _as_text(comment) if isinstance(comment, str) else bytes(comment).decode("utf-8", errors="ignore")
        geninfo = geninfo or None
    elif comment is not None:
        text = _as_text(comment)
        if text:
            items["comment"] = text
    if not geninfo and items.get("Software") == "NovelAI":
        geninfo = _novelai_infotext(image, items)
    return geninfo or None, items


__all__ = ["IGNORED_INFO_KEYS", "decode_user_comment", "read_generation_info"]
