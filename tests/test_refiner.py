"""The SDXL refiner: a second checkpoint takes over at "switch at" of the steps (tiny real-layout SDXL files)."""

from __future__ import annotations

import pytest

from modules.processing.context import CheckpointIdentity, ProcessingContext
from modules.processing.img2img import img2img
from modules.processing.params import Img2ImgParams, Txt2ImgParams
from modules.processing.txt2img import txt2img
from tests.support.api_client import api_client
from tests.support.engine import default_settings, load_tiny
from tests.support.tiny_checkpoints import write_tiny_checkpoint


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ckpt")
    return (load_tiny(write_tiny_checkpoint("sdxl", directory, "base")),
            load_tiny(write_tiny_checkpoint("sdxl-refiner", directory, "refiner")))


def context(base, refiner, tmp_path, seen):
    return ProcessingContext(
        model=base, checkpoint=CheckpointIdentity("base [0123456789]", "base", "0123456789"),
        settings=default_settings(), data_dir=tmp_path,
        denoiser_hooks=[lambda step, cond, uncond: seen.append((step, cond.context.shape[-1]))],
        refiner=refiner, refiner_checkpoint=CheckpointIdentity("refiner [abcdef0123]", "refiner", "abcdef0123"))


@pytest.mark.parametrize("switch_at,base_steps", [(0.8, 8), (0.5, 5), (0.25, 3)])
def test_refiner_takes_over_at_switch_at(models, tmp_path, switch_at, base_steps):
    base, refiner = models
    seen: list[tuple[int, int]] = []
    out = txt2img(Txt2ImgParams(prompt="a cat", width=64, height=64, steps=10, seed=3, sampler_name="Euler",
                                refiner_checkpoint="refiner", refiner_switch_at=switch_at),
                  context(base, refiner, tmp_path, seen))
    widths = [w for _, w in seen]
    assert len(widths) == 10 and [s for s, _ in seen] == list(range(10))  # the step count carries over
    assert len(set(widths[:base_steps])) == 1 and len(set(widths[base_steps:])) == 1
    assert widths[0] != widths[-1]  # base (CLIP-L + bigG) and refiner (bigG only) contexts differ
    assert f"Refiner: refiner [abcdef0123], Refiner switch at: {switch_at}" in out.infotexts[0]
    assert out.images[0].size == (64, 64)


def test_refiner_at_one_never_switches(models, tmp_path):
    base, refiner = models
    seen: list[tuple[int, int]] = []
    out = txt2img(Txt2ImgParams(prompt="x", width=64, height=64, steps=4, sampler_name="Euler",
                                refiner_checkpoint="refiner", refiner_switch_at=1.0),
                  context(base, refiner, tmp_path, seen))
    assert len({w for _, w in seen}) == 1 and "Refiner" not in out.infotexts[0]


def test_refiner_with_hires_runs_in_the_second_pass(models, tmp_path):
    base, refiner = models
    seen: list[tuple[int, int]] = []
    out = txt2img(Txt2ImgParams(prompt="x", width=64, height=64, steps=4, sampler_name="Euler", enable_hr=True,
                                hr_scale=1.5, hr_second_pass_steps=4, refiner_checkpoint="refiner",
                                refiner_switch_at=0.5), context(base, refiner, tmp_path, seen))
    widths = [w for _, w in seen]
    assert len(set(widths[:6])) == 1 and widths[6] != widths[0] and len(widths) == 8
    assert out.images[0].size == (96, 96) and "Refiner switch at: 0.5" in out.infotexts[0]


def test_refiner_in_img2img(models, tmp_path):
    from PIL import Image

    base, refiner = models
    seen: list[tuple[int, int]] = []
    out = img2img(Img2ImgParams(prompt="x", width=64, height=64, steps=10, sampler_name="Euler",
                                init_images=[Image.new("RGB", (64, 64), "gray")], denoising_strength=0.5,
                                refiner_checkpoint="refiner", refiner_switch_at=0.5),
                  context(base, refiner, tmp_path, seen))
    widths = [w for _, w in seen]
    assert len(widths) == 6 and widths[2] == widths[0] and widths[3] != widths[0]  # ceil(6 * 0.5) = 3 base steps
    assert "Refiner: refiner" in out.infotexts[0]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    folder = root / "models" / "Stable-diffusion"
    write_tiny_checkpoint("sdxl", folder, "base")
    write_tiny_checkpoint("sdxl-refiner", folder, "refiner")
    write_tiny_checkpoint("sd1", folder, "sd15")
    with api_client(root, ["--ckpt", str(folder / "base.safetensors")]) as c:
        yield c


BASE = {"prompt": "a cat", "width": 64, "height": 64, "steps": 4, "seed": 1, "sampler_name": "Euler",
        "override_settings": {"sd_model_checkpoint": "base"}}


def test_api_refiner(client):
    r = client.post("/sdapi/v1/txt2img", json={**BASE, "refiner_checkpoint": "refiner", "refiner_switch_at": 0.5})
    assert r.status_code == 200, r.text
    info = r.json()["info"]
    assert "Refiner: refiner [" in info and "Refiner switch at: 0.5" in info
    # the configured checkpoint is still the base: the refiner is loaded next to it, not instead of it
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("base")


def test_api_unknown_refiner_is_422_with_choices(client):
    r = client.post("/sdapi/v1/txt2img", json={**BASE, "refiner_checkpoint": "nope"})
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "refiner_checkpoint"] and any("refiner" in c for c in detail["choices"])


def test_api_refiner_from_another_latent_space_is_refused(client):
    r = client.post("/sdapi/v1/txt2img", json={**BASE, "refiner_checkpoint": "sd15"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "refiner_checkpoint"]
    assert client.post("/sdapi/v1/txt2img", json={**BASE, "steps": 1}).status_code == 200  # still serving


def test_api_hires_checkpoint(client):
    body = {**BASE, "enable_hr": True, "hr_scale": 1.5, "hr_second_pass_steps": 1, "steps": 2}
    r = client.post("/sdapi/v1/txt2img", json={**body, "hr_checkpoint_name": "refiner"})
    assert r.status_code == 200, r.text
    assert "Hires checkpoint: refiner [" in r.json()["info"]
    assert client.post("/sdapi/v1/txt2img", json={**body, "hr_checkpoint_name": "Use same checkpoint"}
                       ).status_code == 200
    for name, status in (("nope", 422), ("sd15", 422)):
        bad = client.post("/sdapi/v1/txt2img", json={**body, "hr_checkpoint_name": name})
        assert bad.status_code == status and bad.json()["detail"][0]["loc"] == ["body", "hr_checkpoint_name"]


def test_api_refiner_same_as_base_does_nothing(client):
    r = client.post("/sdapi/v1/txt2img", json={**BASE, "refiner_checkpoint": "base", "refiner_switch_at": 0.5})
    assert r.status_code == 200 and "Refiner" not in r.json()["info"]
