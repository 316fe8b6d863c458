"""Requests that A1111's own test suite sends, as A1111 answers them (issue 17: its test/ folder passes against our
server; ``tests/benchmarks/a1111_api_suite.py`` runs it). Each test here pins one incompatibility that suite found.

``inpainting_mask_invert`` is declared ``int`` in A1111's img2img schema, but A1111's pydantic (v1) reads JSON
``false``/``true`` there as 0/1, and clients send a bool: A1111's own img2img tests send ``false`` with and without
a mask and ``true`` for the inverted mask. Our number fields refuse bools otherwise (``NumbersAreNumbers``).
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

SIDE = 64


def _b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _decode(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image


def _init_and_mask() -> tuple[Image.Image, Image.Image]:
    rng = np.random.RandomState(5)
    init = Image.fromarray(rng.randint(0, 256, (SIDE, SIDE, 3)).astype(np.uint8))
    mask = Image.new("L", (SIDE, SIDE), 0)
    mask.paste(255, (0, 0, SIDE // 2, SIDE))  # white (repaint) on the left half
    return init, mask


def _img2img(client, **fields):
    init, _ = _init_and_mask()
    body = {"prompt": "example prompt", "width": SIDE, "height": SIDE, "steps": 2, "seed": 7,
            "init_images": [_b64(init)], "denoising_strength": 0.9, "mask_blur": 0, "inpainting_fill": 1,
            "inpaint_full_res": False, **fields}
    r = client.post("/sdapi/v1/img2img", json=body)
    assert r.status_code == 200, r.text
    image = _decode(r.json()["images"][0])
    return np.asarray(image.convert("RGB")), image.info.get("parameters", "")


def test_mask_invert_false_without_a_mask_is_plain_img2img(tiny_api_client):
    out, _ = _img2img(tiny_api_client, mask=None, inpainting_mask_invert=False)
    assert out.shape == (SIDE, SIDE, 3)


def test_mask_invert_as_a_bool_is_the_mask_mode(tiny_api_client):
    init, mask = _init_and_mask()
    original = np.asarray(init)
    left, right = np.s_[:, : SIDE // 2], np.s_[:, SIDE // 2:]

    masked, masked_info = _img2img(tiny_api_client, mask=_b64(mask), inpainting_mask_invert=False)
    # Inpaint masked: the white (left) half is repainted, the black half is the original pixel for pixel.
    assert np.array_equal(masked[right], original[right])
    assert not np.array_equal(masked[left], original[left])
    assert "Mask mode" not in masked_info

    inverted, inverted_info = _img2img(tiny_api_client, mask=_b64(mask), inpainting_mask_invert=True)
    # Inpaint not masked: the other way round, and A1111's infotext says so.
    assert np.array_equal(inverted[left], original[left])
    assert not np.array_equal(inverted[right], original[right])
    assert "Mask mode: Inpaint not masked" in inverted_info

    # The bools are exactly the numbers 0 and 1 (same seed, same image).
    as_zero, _ = _img2img(tiny_api_client, mask=_b64(mask), inpainting_mask_invert=0)
    as_one, _ = _img2img(tiny_api_client, mask=_b64(mask), inpainting_mask_invert=1)
    assert np.array_equal(as_zero, masked) and np.array_equal(as_one, inverted)
