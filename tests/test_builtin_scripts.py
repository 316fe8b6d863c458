"""Prompt matrix and Loopback, the built-in Scripts, through /sdapi/v1 on a tiny checkpoint."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image, ImageChops


def _decode(data):
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def _encode(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_prompt_matrix_makes_every_combination_in_a_labelled_grid(tiny_api_client):
    r = tiny_api_client.post("/sdapi/v1/txt2img", json={
        "prompt": "a cat|red|hat", "seed": 4, "steps": 1, "width": 64, "height": 64, "sampler_name": "Euler",
        "script_name": "Prompt matrix", "script_args": [False, False, "positive", "comma", 0]})
    assert r.status_code == 200, r.text
    images = [_decode(i) for i in r.json()["images"]]
    info = json.loads(r.json()["info"])
    assert len(images) == 5
    prompts = [t.split("\n")[0] for t in info["infotexts"][1:]]
    assert prompts == ["a cat", "a cat, red", "a cat, hat", "a cat, red, hat"]
    assert all("Seed: 4," in t for t in info["infotexts"])  # one seed for all
    grid = images[0]
    pad_top = grid.height - 2 * 64
    assert grid.width == 48 + 2 * 64 and pad_top > 0  # "red" across the columns, "hat" down the rows
    for i, cell in enumerate(images[1:]):
        x, y = 48 + (i % 2) * 64, pad_top + (i // 2) * 64
        assert ImageChops.difference(grid.crop((x, y, x + 64, y + 64)), cell).getbbox() is None


def test_prompt_matrix_at_start_with_different_seeds(tiny_api_client):
    r = tiny_api_client.post("/sdapi/v1/txt2img", json={
        "prompt": "cat|red", "seed": 10, "steps": 1, "width": 64, "height": 64,
        "script_name": "prompt matrix", "script_args": [True, True, "positive", "space", 0]})
    info = json.loads(r.json()["info"])
    assert [t.split("\n")[0] for t in info["infotexts"][1:]] == ["cat", "red cat"]
    assert info["all_seeds"] == [10, 11]


def test_loopback_feeds_each_result_back_with_the_denoising_curve(tiny_api_client):
    init = Image.new("RGB", (64, 64), (200, 40, 40))
    r = tiny_api_client.post("/sdapi/v1/img2img", json={
        "init_images": [_encode(init)], "prompt": "x", "seed": 7, "steps": 4, "width": 64, "height": 64,
        "denoising_strength": 0.5, "script_name": "Loopback", "script_args": [3, 0.2, "Linear", "None"]})
    assert r.status_code == 200, r.text
    images = [_decode(i) for i in r.json()["images"]]
    texts = json.loads(r.json()["info"])["infotexts"]
    assert len(images) == 4 and images[0].size == (3 * 64, 64)  # a row of the three loops, then each
    strengths = [t.split("Denoising strength: ")[1].split(",")[0] for t in texts[1:]]
    assert [float(s) for s in strengths] == pytest.approx([0.5, 0.35, 0.2])
    assert [t.split("Seed: ")[1].split(",")[0] for t in texts[1:]] == ["7", "8", "9"]
    assert all("Denoising curve: Linear" in t for t in texts[1:])
    assert ImageChops.difference(images[1], images[2]).getbbox() is not None
    assert "loopback" not in tiny_api_client.get("/sdapi/v1/scripts").json()["txt2img"]  # img2img only


@pytest.mark.parametrize("args, words", [([0, 0.5, "Linear", "None"], "loops"),
                                         ([2, 0.5, "Wavy", "None"], "curve"),
                                         ([2, 0.5, "Linear", "CLIP"], "interrogation")])
def test_loopback_bad_arguments_are_422s(tiny_api_client, args, words):
    r = tiny_api_client.post("/sdapi/v1/img2img", json={
        "init_images": [_encode(Image.new("RGB", (64, 64)))], "steps": 1, "width": 64, "height": 64,
        "script_name": "loopback", "script_args": args})
    assert r.status_code == 422 and words in r.text
