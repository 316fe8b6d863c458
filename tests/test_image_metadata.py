"""Reading infotext back from images written by modules.processing.saving.encode_image (and by other tools)."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image, PngImagePlugin

from modules.image_metadata import decode_user_comment, read_generation_info
from modules.processing.saving import encode_image

INFOTEXT = ("a castle, (masterpiece:1.2), ünïcödé 城\nNegative prompt: blurry, <img src=x onerror=alert(1)>\n"
            "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, Size: 512x768, "
            'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "detail: 62c6ad1e4a01", Version: v1.10.1')


def _image() -> Image.Image:
    return Image.new("RGB", (16, 16), (10, 200, 30))


def _reopen(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@pytest.mark.parametrize("fmt", ["png", "jpg", "jpeg", "webp"])
def test_round_trip_encode_image(fmt):
    geninfo, items = read_generation_info(_reopen(encode_image(_image(), fmt, INFOTEXT)))
    assert geninfo == INFOTEXT
    assert "parameters" not in items and "exif" not in items


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_no_infotext(fmt):
    geninfo, items = read_generation_info(_reopen(encode_image(_image(), fmt, None)))
    assert geninfo is None
    assert all(isinstance(v, str) for v in items.values())


def test_png_other_text_items_are_kept_and_binary_ones_skipped():
    data = encode_image(_image(), "png", INFOTEXT, extra_text={"Software": "tool", "note": "x<y"})
    geninfo, items = read_generation_info(_reopen(data))
    assert geninfo == INFOTEXT
    assert items["Software"] == "tool" and items["note"] == "x<y"

    img = _image()
    img.info["icc_profile"] = b"\x00\x01\xff"
    buf = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "p")
    img.save(buf, format="PNG", pnginfo=info, icc_profile=b"\x00\x01\xff" * 10, dpi=(72, 72))
    geninfo, items = read_generation_info(_reopen(buf.getvalue()))
    assert geninfo == "p"
    assert "icc_profile" not in items and "dpi" not in items


def test_in_memory_pil_info():
    img = _image()
    img.info["parameters"] = INFOTEXT
    assert read_generation_info(img) == (INFOTEXT, {})


def _jpeg_with_comment(raw: bytes, fmt: str = "JPEG") -> Image.Image:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = raw
    buf = io.BytesIO()
    _image().save(buf, format=fmt, exif=exif.tobytes())
    return _reopen(buf.getvalue())


@pytest.mark.parametrize("raw", [
    b"UNICODE\0" + INFOTEXT.encode("utf-16-be"),
    b"UNICODE\0" + INFOTEXT.encode("utf-16-le"),
    b"UNICODE\0" + INFOTEXT.encode("utf-16"),  # with BOM
])
def test_user_comment_unicode_forms(raw):
    assert read_generation_info(_jpeg_with_comment(raw))[0] == INFOTEXT
    assert decode_user_comment(raw) == INFOTEXT


def test_user_comment_ascii_and_undefined():
    ascii_text = "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512"
    assert read_generation_info(_jpeg_with_comment(b"ASCII\0\0\0" + ascii_text.encode()))[0] == ascii_text
    assert decode_user_comment(b"\0" * 8 + ascii_text.encode()) == ascii_text
    assert decode_user_comment(b"UNICODE\0") is None
    assert decode_user_comment(None) is None


def test_webp_user_comment_little_endian():
    raw = b"UNICODE\0" + INFOTEXT.encode("utf-16-le")
    assert read_generation_info(_jpeg_with_comment(raw, "WEBP"))[0] == INFOTEXT


def test_gif_comment():
    buf = io.BytesIO()
    _image().convert("P").save(buf, format="GIF", comment=INFOTEXT.encode("utf-8"))
    geninfo, items = read_generation_info(_reopen(buf.getvalue()))
    assert geninfo == INFOTEXT
    assert "comment" not in items and "background" not in items


def test_novelai_png():
    buf = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "NovelAI")
    info.add_text("Description", "1girl, masterpiece")
    info.add_text("Comment", json.dumps({"uc": "lowres", "steps": 28, "scale": 11, "seed": 42,
                                         "sampler": "k_euler_ancestral"}))
    _image().save(buf, format="PNG", pnginfo=info)
    geninfo, items = read_generation_info(_reopen(buf.getvalue()))
    assert geninfo == ("1girl, masterpiece\nNegative prompt: lowres\nSteps: 28, Sampler: Euler a, CFG scale: 11, "
                       "Seed: 42, Size: 16x16, Clip skip: 2, ENSD: 31337")
    assert items["Software"] == "NovelAI"


def test_broken_exif_is_no_infotext():
    img = _image()
    img.info["exif"] = b"Exif\0\0garbage"
    assert read_generation_info(img) == (None, {})
