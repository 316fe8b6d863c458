"""Extras: A1111's upscale geometry, upscaler 2 blending, info text and saving, over the API too."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from modules.errors import FieldError
from modules.processing import postprocessing as pp
from modules.upscalers.face_restoration import FaceRestorers
from modules.upscalers.registry import UpscalerRegistry


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return UpscalerRegistry({}, tmp_path_factory.mktemp("RealESRGAN"))


def picture(w=40, h=30) -> Image.Image:
    return Image.fromarray((np.random.RandomState(1).rand(h, w, 3) * 255).astype(np.uint8))


def test_scale_by_rounds_down_to_8_and_records_the_info(registry):
    out = pp.run_extras(picture(), pp.ExtrasParams(upscaler_1="Lanczos", upscaling_resize=2.5), registry)
    assert out.image.size == (96, 72)  # 100x75 -> multiples of 8
    assert out.infotext == "Postprocess upscale by: 2.5, Postprocess upscaler: Lanczos"


def test_scale_to_covers_and_crops(registry):
    out = pp.run_extras(picture(40, 30), pp.ExtrasParams(resize_mode=1, upscaling_resize_w=64,
                                                         upscaling_resize_h=64, upscaler_1="Nearest"), registry)
    assert out.image.size == (64, 64)
    assert "Postprocess upscale to: 64x64" in out.infotext and "Postprocess crop to: 64x64" in out.infotext
    uncropped = pp.run_extras(picture(40, 30), pp.ExtrasParams(resize_mode=1, upscaling_resize_w=64,
                                                               upscaling_resize_h=64, upscaling_crop=False,
                                                               upscaler_1="Nearest"), registry)
    assert uncropped.image.size == (80, 64)  # scaled to cover (2.13x), 85x64 rounded down to 8


def test_max_side_length_caps_the_result(registry):
    out = pp.run_extras(picture(40, 30), pp.ExtrasParams(upscaler_1="Lanczos", upscaling_resize=4,
                                                         max_side_length=100), registry)
    assert max(out.image.size) <= 100 and "Max side length: 100" in out.infotext


def test_model_upscaler_and_upscaler_2_blend(registry):
    image = picture(32, 32)
    one = pp.run_extras(image, pp.ExtrasParams(upscaler_1="R-ESRGAN AnimeVideo", upscaling_resize=4), registry)
    two = pp.run_extras(image, pp.ExtrasParams(upscaler_1="Nearest", upscaling_resize=4), registry)
    both = pp.run_extras(image, pp.ExtrasParams(upscaler_1="R-ESRGAN AnimeVideo", upscaler_2="Nearest",
                                                extras_upscaler_2_visibility=0.5, upscaling_resize=4), registry)
    expected = (np.asarray(one.image, dtype=np.float64) + np.asarray(two.image, dtype=np.float64)) / 2
    assert np.abs(np.asarray(both.image, dtype=np.float64) - expected).max() <= 1
    assert "Postprocess upscaler 2: Nearest" in both.infotext


def test_none_changes_nothing(registry):
    image = picture()
    out = pp.run_extras(image, pp.ExtrasParams(), registry)
    assert np.array_equal(np.asarray(out.image), np.asarray(image)) and out.infotext == ""


def test_unknown_upscaler_and_unavailable_face_restoration_name_their_field(registry, tmp_path):
    with pytest.raises(FieldError) as err:
        pp.check_upscalers(pp.ExtrasParams(upscaler_2="ESRGAN 99x"), registry)
    assert err.value.field == "upscaler_2" and "R-ESRGAN 4x+" in err.value.choices
    restorers = FaceRestorers(tmp_path / "GFPGAN", tmp_path / "Codeformer")
    with pytest.raises(FieldError) as err:
        pp.check_request(pp.ExtrasParams(gfpgan_visibility=1.0), registry, restorers)
    assert err.value.field == "gfpgan_visibility" and "not installed" in str(err.value)
    assert str(tmp_path / "GFPGAN") in str(err.value)  # says where the weights go
    (tmp_path / "Codeformer").mkdir()
    (tmp_path / "Codeformer" / "codeformer-v0.1.0.pth").write_bytes(b"x")
    with pytest.raises(FieldError) as err:
        pp.check_request(pp.ExtrasParams(codeformer_visibility=0.5), registry, restorers)
    assert "detection_Resnet50_Final.pth" in str(err.value)  # weights alone are not enough: the detector too


def test_save_keeps_parameters_and_adds_extras(registry, tmp_path):
    image = picture()
    image.info["parameters"] = "a cat\nSteps: 20, Seed: 1"
    result = pp.run_extras(image, pp.ExtrasParams(upscaler_1="Lanczos", upscaling_resize=2), registry)
    settings = {"samples_format": "png", "outdir_extras_samples": "outputs/extras-images"}
    first = pp.save_extras(result, image.info, settings, tmp_path)
    second = pp.save_extras(result, image.info, settings, tmp_path)
    assert first.name == "00000.png" and second.name == "00001.png"
    assert first.parent == tmp_path / "outputs" / "extras-images"
    saved = Image.open(first)
    assert saved.info["parameters"] == "a cat\nSteps: 20, Seed: 1"
    assert saved.info["extras"] == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    named = pp.save_extras(result, {}, settings, tmp_path, basename="holiday photo")
    again = pp.save_extras(result, {}, settings, tmp_path, basename="holiday photo")
    assert named.name == "holiday_photo.png" and again.name != named.name  # A1111 sanitising; never overwrites


# ------------------------------------------------------------------------------------------------------ API


def b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a dog\nSteps: 5")
    image.save(buf, format="PNG", pnginfo=info)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def client(tiny_api_client):
    return tiny_api_client


def test_api_lists(client):
    upscalers = client.get("/sdapi/v1/upscalers").json()
    names = [u["name"] for u in upscalers]
    assert names[:3] == ["None", "Lanczos", "Nearest"] and "R-ESRGAN 4x+" in names
    assert set(upscalers[0]) == {"name", "model_name", "model_path", "model_url", "scale"}
    esr = next(u for u in upscalers if u["name"] == "R-ESRGAN 4x+")
    assert esr["model_name"] == "RealESRGAN" and esr["scale"] == 4
    assert {m["name"] for m in client.get("/sdapi/v1/realesrgan-models").json()} == {
        "R-ESRGAN 4x+", "R-ESRGAN 4x+ Anime6B", "R-ESRGAN AnimeVideo"}
    assert client.get("/sdapi/v1/latent-upscale-modes").json()[0] == {"name": "Latent"}
    assert [r["name"] for r in client.get("/sdapi/v1/face-restorers").json()] == ["CodeFormer", "GFPGAN"]


def test_api_extra_single_image(client):
    r = client.post("/sdapi/v1/extra-single-image", json={"image": b64(picture(24, 16)), "upscaler_1": "Lanczos"})
    assert r.status_code == 200, r.text
    body = r.json()
    out = Image.open(io.BytesIO(base64.b64decode(body["image"])))
    assert out.size == (48, 32)  # the API's default: scale by 2
    assert "Postprocess upscaler: Lanczos" in body["html_info"]
    assert out.info["parameters"] == "a dog\nSteps: 5" and "Postprocess upscale by: 2" in out.info["extras"]


def test_api_extra_batch_images(client):
    r = client.post("/sdapi/v1/extra-batch-images", json={
        "imageList": [{"data": b64(picture(16, 16)), "name": "a.png"}, {"data": b64(picture(8, 16)), "name": "b"}],
        "upscaler_1": "R-ESRGAN AnimeVideo", "upscaling_resize": 4})
    assert r.status_code == 200, r.text
    sizes = [Image.open(io.BytesIO(base64.b64decode(x))).size for x in r.json()["images"]]
    assert sizes == [(64, 64), (32, 64)]


@pytest.mark.parametrize("payload,status,field", [
    ({"image": "%%%", "upscaler_1": "Lanczos"}, 400, "image"),
    ({"image": None, "upscaler_1": "Nope"}, 422, "upscaler_1"),
    ({"image": None, "upscaler_1": "Lanczos", "gfpgan_visibility": 1}, 422, "gfpgan_visibility"),
    ({"image": None, "upscaling_resize": 50}, 422, "upscaling_resize"),
])
def test_api_bad_requests(client, payload, status, field):
    if payload.get("image") is None:
        payload = {**payload, "image": b64(picture())}
    r = client.post("/sdapi/v1/extra-single-image", json=payload)
    assert r.status_code == status, r.text
    assert field in json.dumps(r.json()["detail"])


def test_save_hooks_may_rename_inside_the_output_folder_only(tmp_path):
    from modules.processing import saving

    image = Image.new("RGB", (8, 8))
    seen = []

    def escape(params):
        params.filename = str(tmp_path.parent / "outside.png")
        params.pnginfo["parameters"] = "changed"

    hooks = saving.SaveHooks(before=escape, after=lambda params: seen.append(params.filename))
    path = saving.save_image(image, tmp_path / "out", settings={"save_to_dirs": False}, fields={"seed": 1},
                             infotext="original", hooks=hooks)
    assert path.parent == tmp_path / "out" and not (tmp_path.parent / "outside.png").exists()
    assert Image.open(path).info["parameters"] == "changed" and seen == [str(path)]
    inside = saving.SaveHooks(before=lambda params: setattr(params, "filename", str(tmp_path / "out" / "sub" / "x.png")))
    moved = saving.save_image(image, tmp_path / "out", settings={"save_to_dirs": False}, fields={"seed": 2},
                              infotext="t", hooks=inside)
    assert moved == tmp_path / "out" / "sub" / "x.png"
