"""/sdapi/v1/img2img and txt2img's hires fields in-process: A1111's fields, defaults and shapes; 4xx for bad input."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.support.api_client import api_client
from tests.support.tiny_checkpoints import write_tiny_checkpoint


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion", "alpha", seed=1)
    return root


@pytest.fixture(scope="module")
def client(data_dir):
    with api_client(data_dir) as c:
        yield c


def b64(image: Image.Image, fmt: str = "PNG", data_uri: bool = False) -> str:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    text = base64.b64encode(buf.getvalue()).decode()
    return f"data:image/{fmt.lower()};base64,{text}" if data_uri else text


def decode(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image


def picture(width=64, height=64) -> Image.Image:
    rng = np.random.RandomState(3)
    return Image.fromarray(rng.randint(0, 255, (height, width, 3)).astype(np.uint8))


BASE = {"prompt": "a cat", "width": 64, "height": 64, "steps": 4, "seed": 11}


def test_img2img_shape_defaults_and_echo(client):
    r = client.post("/sdapi/v1/img2img", json={**BASE, "init_images": [b64(picture(), data_uri=True)]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"images", "parameters", "info"}
    params = body["parameters"]
    assert params["init_images"] is None and params["mask"] is None  # not echoed unless include_init_images
    assert params["denoising_strength"] == 0.75 and params["inpaint_full_res"] is True
    assert params["inpaint_full_res_padding"] == 0 and params["inpainting_fill"] == 0 and params["resize_mode"] == 0
    info = json.loads(body["info"])
    assert info["denoising_strength"] == 0.75 and info["sampler_name"] == "Euler"
    image = decode(body["images"][0])
    assert image.size == (64, 64)
    assert "Denoising strength: 0.75" in image.info["parameters"]


def test_include_init_images_echoes_them(client):
    data = b64(picture())
    r = client.post("/sdapi/v1/img2img", json={**BASE, "steps": 1, "init_images": [data], "include_init_images": True})
    assert r.json()["parameters"]["init_images"] == [data]


def test_inpaint_over_the_api_keeps_the_unmasked_pixels(client):
    init = picture(96, 64)
    mask = Image.new("L", (96, 64))
    mask.paste(255, (30, 20, 60, 44))
    r = client.post("/sdapi/v1/img2img", json={**BASE, "init_images": [b64(init)], "mask": b64(mask),
                                               "mask_blur": 0, "denoising_strength": 0.9})
    assert r.status_code == 200, r.text
    out = np.asarray(decode(r.json()["images"][0]).convert("RGB"))
    assert out.shape == (64, 96, 3)  # only masked (the API default) returns the original's size
    keep = np.asarray(mask) == 0
    assert np.array_equal(out[keep], np.asarray(init)[keep])
    assert "Inpaint area: Only masked" in decode(r.json()["images"][0]).info["parameters"]


def test_missing_init_images_is_404_naming_the_field(client):
    r = client.post("/sdapi/v1/img2img", json={**BASE})
    assert r.status_code == 404
    assert r.json()["detail"][0]["loc"] == ["body", "init_images"]


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG file whose header declares ``width`` x ``height`` pixels (a decompression bomb's shape)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("field,payload", [
    ("init_images.0", {"init_images": ["not base64 at all!!"]}),
    ("init_images.0", {"init_images": [base64.b64encode(b"\x89PNG\r\n\x1a\ncorrupt").decode()]}),
    ("mask", {"init_images": [None], "mask": "%%%"}),
    ("init_images.0", {"init_images": [""]}),
    ("init_images.0", {"init_images": ["iVBORw0KGgo="]}),  # a PNG signature and nothing else
    ("init_images.0", {"init_images": [base64.b64encode(_png_declaring(50_000, 50_000)).decode()]}),
    ("init_images.0", {"init_images": [base64.b64encode(_png_declaring(100_000, 10)).decode()]}),
    ("mask", {"init_images": [None], "mask": base64.b64encode(_png_declaring(20_000, 20_000)).decode()}),
])
def test_bad_images_are_400_naming_the_field_and_the_server_stays_up(client, field, payload):
    if payload.get("init_images") == [None]:
        payload = {**payload, "init_images": [b64(picture())]}
    r = client.post("/sdapi/v1/img2img", json={**BASE, **payload})
    assert r.status_code == 400, r.text
    assert r.json()["detail"][0]["loc"] == ["body", field]
    assert client.post("/sdapi/v1/img2img", json={**BASE, "steps": 1, "init_images": [b64(picture())]}).status_code == 200


@pytest.mark.parametrize("payload,field", [({"denoising_strength": 1.5}, "denoising_strength"),
                                           ({"resize_mode": 7}, "resize_mode"),
                                           ({"inpainting_fill": 9}, "inpainting_fill"),
                                           ({"script_name": "no such script"}, "script_name")])
def test_out_of_range_img2img_values_are_422(client, payload, field):
    r = client.post("/sdapi/v1/img2img", json={**BASE, "init_images": [b64(picture())], **payload})
    assert r.status_code == 422
    assert field in json.dumps(r.json()["detail"])


def test_poor_mans_outpainting_script_extends_the_picture(client):
    init = picture(64, 64)
    r = client.post("/sdapi/v1/img2img", json={**BASE, "init_images": [b64(init)], "denoising_strength": 0.8,
                                               "script_name": "poor man's outpainting",
                                               "script_args": [32, 4, "fill", ["left", "down"]]})
    assert r.status_code == 200, r.text
    out = np.asarray(decode(r.json()["images"][0]).convert("RGB"))
    assert out.shape == (96, 96, 3)
    # the old picture sits at (32, 0); away from the repainted, blurred seam it is unchanged
    assert np.array_equal(out[0:48, 48:96], np.asarray(init)[0:48, 16:64])  # seam + blur reach ~15 px


def test_txt2img_hires_fields(client):
    r = client.post("/sdapi/v1/txt2img", json={**BASE, "steps": 2, "enable_hr": True, "hr_scale": 1.5,
                                               "hr_second_pass_steps": 2})
    assert r.status_code == 200, r.text
    image = decode(r.json()["images"][0])
    assert image.size == (96, 96)
    text = image.info["parameters"]
    # API defaults: hires denoising 0.75, upscaler None -> Latent
    assert "Denoising strength: 0.75" in text and "Hires upscaler: Latent" in text and "Hires upscale: 1.5" in text


@pytest.mark.parametrize("payload,field", [({"hr_upscaler": "4x-Nope"}, "hr_upscaler"),
                                           ({"hr_sampler_name": "Nope"}, "hr_sampler_name"),
                                           ({"hr_scale": 100}, "hr_scale")])
def test_bad_hires_values_are_422_naming_the_field(client, payload, field):
    r = client.post("/sdapi/v1/txt2img", json={**BASE, "enable_hr": True, **payload})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == field


def test_infotext_field_fills_what_the_request_does_not_set(client):
    infotext = "a fox in snow\nNegative prompt: blurry\nSteps: 3, Sampler: Euler a, CFG scale: 5, Seed: 99, Size: 64x72"
    r = client.post("/sdapi/v1/txt2img", json={"infotext": infotext, "steps": 2})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["prompt"] == "a fox in snow" and info["negative_prompt"] == "blurry" and info["seed"] == 99
    assert info["steps"] == 2  # the request's own value wins
    assert (info["width"], info["height"]) == (64, 72) and info["sampler_name"] == "Euler a"
    assert info["cfg_scale"] == 5.0


def test_unknown_alwayson_script_is_422_as_in_a1111(client):
    r = client.post("/sdapi/v1/txt2img", json={**BASE, "alwayson_scripts": {"ADetailer": {"args": []}}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "alwayson_scripts"]
    assert client.post("/sdapi/v1/txt2img", json={**BASE, "steps": 1, "alwayson_scripts": {}}).status_code == 200


def test_odd_but_valid_images_are_accepted(client):
    """A 1x1 picture, a data URI whose MIME lies (the bytes decide), and a GIF of 2,000 frames (only the first is
    decoded)."""
    tiny = b64(picture(1, 1))
    assert client.post("/sdapi/v1/img2img", json={**BASE, "steps": 1, "init_images": [tiny]}).status_code == 200
    lying = "data:text/html;base64," + b64(picture())
    assert client.post("/sdapi/v1/img2img", json={**BASE, "steps": 1, "init_images": [lying]}).status_code == 200
    frames = [Image.new("P", (64, 64), i % 200) for i in range(2000)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=10)
    r = client.post("/sdapi/v1/img2img", json={**BASE, "steps": 1,
                                               "init_images": [base64.b64encode(buffer.getvalue()).decode()]})
    assert r.status_code == 200, r.text


def test_pillows_bomb_guard_stays_on(client):
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS >= 89_478_485


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/x.png", "http://169.254.169.254/latest/meta-data",
                                 "http://[::1]:{port}/x.png", "http://0x7f000001:{port}/x.png",
                                 "http://%6cocalhost:{port}/x.png", "https://example.com/cat.png",
                                 "file:///etc/passwd"])
def test_image_urls_are_never_fetched(client, url):
    """Campaign B16: this server never fetches images by URL (SSRF has nothing to use): a URL is a 400 naming the
    field, and a listening server sees no request."""
    import http.server
    import threading

    hits = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    listener = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    try:
        target = url.format(port=listener.server_address[1])
        for payload, field in (({"init_images": [target]}, "init_images.0"),
                               ({"init_images": [b64(picture())], "mask": target}, "mask")):
            r = client.post("/sdapi/v1/img2img", json={**BASE, **payload})
            assert r.status_code == 400 and r.json()["detail"][0]["loc"] == ["body", field]
        r = client.post("/sdapi/v1/extra-single-image", json={"image": target})
        assert r.status_code == 400
    finally:
        listener.shutdown()
    assert hits == []
