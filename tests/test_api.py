"""/sdapi/v1 in-process: A1111's shapes and defaults, our 4xx answers for bad input."""

from __future__ import annotations

import base64
import io
import json
import time

import pytest
from tests.support.local_client import LocalClient
from PIL import Image

from modules.cmd_args import parse_args
from tests.support.api_client import api_client
from tests.support.tiny_checkpoints import write_tiny_checkpoint
from webui import create_app


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    ckpts = root / "models" / "Stable-diffusion"
    write_tiny_checkpoint("sd1", ckpts, "alpha", seed=1)
    write_tiny_checkpoint("sd1", ckpts / "sub", "beta", seed=2)
    return root


@pytest.fixture(scope="module")
def client(data_dir):
    with api_client(data_dir) as c:
        yield c


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def test_sd_models_shape(client):
    models = client.get("/sdapi/v1/sd-models").json()
    assert [m["model_name"] for m in models] == ["alpha", "sub_beta"] or [m["model_name"] for m in models] == [
        "alpha", "sub/beta"]
    for m in models:
        assert set(m) == {"title", "model_name", "hash", "sha256", "filename", "config"}
        assert m["title"].startswith(m["filename"].split("models/Stable-diffusion/")[-1].replace("\\", "/"))


def test_txt2img_shape_defaults_and_png_parameters(client, data_dir):
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "a cat", "width": 64, "height": 64, "steps": 2,
                                               "seed": 77, "unknown_field_from_a_client": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"images", "parameters", "info"}
    assert body["parameters"]["sampler_index"] == "Euler" and body["parameters"]["save_images"] is False
    info = json.loads(body["info"])
    for key in ("prompt", "all_prompts", "seed", "all_seeds", "sampler_name", "cfg_scale", "steps", "infotexts",
                "sd_model_name", "sd_model_hash", "index_of_first_image", "job_timestamp", "version"):
        assert key in info
    assert info["seed"] == 77 and info["sampler_name"] == "Euler" and info["steps"] == 2
    image = decode(body["images"][0])
    assert image.size == (64, 64)
    assert image.info["parameters"] == info["infotexts"][0]
    assert "CFG scale: 7.0" in image.info["parameters"]
    assert "Model hash: " + info["sd_model_hash"] in image.info["parameters"]
    assert not (data_dir / "outputs" / "txt2img-images").exists()  # the API saves only when asked


def test_api_default_steps_is_50(client):
    r = client.post("/sdapi/v1/txt2img", json={"width": 64, "height": 64, "send_images": False})
    assert r.status_code == 200
    assert json.loads(r.json()["info"])["steps"] == 50 and r.json()["images"] == []


def test_save_images_writes_files_and_grid_comes_first(client, data_dir):
    r = client.post("/sdapi/v1/txt2img", json={"width": 64, "height": 64, "steps": 2, "batch_size": 2,
                                               "save_images": True, "seed": 3})
    body = r.json()
    info = json.loads(body["info"])
    assert len(body["images"]) == 3 and info["index_of_first_image"] == 1
    assert decode(body["images"][0]).size == (128, 64)
    saved = sorted((data_dir / "outputs" / "txt2img-images").rglob("*.png"))
    assert [p.name for p in saved][-2:] == ["00000-3.png", "00001-4.png"]


@pytest.mark.parametrize("payload, field", [
    ({"width": 65}, "width"),
    ({"width": 0}, "width"),
    ({"height": 2**31}, "height"),
    ({"steps": 0}, "steps"),
    ({"steps": 10**7}, "steps"),
    ({"batch_size": 0}, "batch_size"),
    ({"seed": 2**64}, "seed"),
    ({"seed": "abc"}, "seed"),
    ({"cfg_scale": "NaN"}, "cfg_scale"),
    ({"width": "512.5"}, "width"),
    ({"width": 7}, "width"),
    ({"width": 63}, "width"),
    ({"width": -64}, "width"),
    ({"width": 1e9}, "width"),
    ({"height": 2**15}, "height"),
    ({"width": 512.5}, "width"),
    ({"height": "Infinity"}, "height"),
    ({"cfg_scale": 1e308}, "cfg_scale"),
    ({"cfg_scale": -1e308}, "cfg_scale"),
    ({"cfg_scale": "-Infinity"}, "cfg_scale"),
    ({"steps": -1}, "steps"),
    ({"n_iter": 0}, "n_iter"),
    ({"n_iter": 10**4}, "n_iter"),
    ({"batch_size": 10**4}, "batch_size"),
    ({"seed": 2**64}, "seed"),
    ({"seed": 2**64 - 1, "batch_size": 2}, "seed"),  # image 2's seed would not fit
    ({"seed": -2**63}, "seed"),
    ({"prompt": "x" * 1_000_001}, "prompt"),
    ({"sampler_name": "../../x"}, "sampler_name"),
])
def test_out_of_range_values_are_422_naming_the_field(client, payload, field):
    r = client.post("/sdapi/v1/txt2img", json=payload)
    assert r.status_code == 422
    locs = [e["loc"][-1] for e in r.json()["detail"]]
    assert field in locs


@pytest.mark.parametrize("raw, field", [
    ('{"eta": NaN}', "eta"),
    ('{"s_noise": Infinity}', "s_noise"),
    ('{"s_churn": -Infinity}', "s_churn"),
    ('{"s_tmax": NaN}', "s_tmax"),
    ('{"s_tmin": 1e999}', "s_tmin"),
    ('{"cfg_scale": NaN}', "cfg_scale"),
    ('{"steps": true}', "steps"),
    ('{"steps": "20"}', "steps"),
    ('{"seed": "5"}', "seed"),
    ('{"width": false}', "width"),
    ('{"cfg_scale": "7"}', "cfg_scale"),
    ('{"denoising_strength": true}', "denoising_strength"),
    ('{"styles": [' + ",".join(['"s"'] * 101) + "]}", "styles"),
])
def test_json_nan_infinity_booleans_and_strings_for_numbers_are_422_naming_the_field(client, raw, field):
    """Security issue item 6: the JSON tokens NaN/Infinity (Python's json reads them) and a boolean or a string where
    a number belongs are refused, not read as nan, 1 or 20 by pydantic's lax mode."""
    r = client.post("/sdapi/v1/txt2img", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert field in [e["loc"][-1] for e in r.json()["detail"]]


def test_numbers_written_as_whole_floats_and_nulls_for_sampler_parameters_are_accepted(client):
    """What real clients send: webuiapi sends eta/s_* numbers, others send null; 20.0 for an int is a whole number."""
    body = {"prompt": "x", "steps": 2.0, "width": 64, "height": 64, "eta": 1.0, "s_churn": 0, "s_tmax": None,
            "s_tmin": 0, "s_noise": 1, "s_min_uncond": 0}
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text
    assert json.loads(r.json()["info"])["steps"] == 2


def test_unknown_sampler_is_422_with_choices(client):
    r = client.post("/sdapi/v1/txt2img", json={"sampler_name": "No Such Sampler", "width": 64, "height": 64})
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert detail["loc"][-1] == "sampler_name" and "Euler a" in detail["choices"]


def test_options_round_trip_and_checkpoint_switch(client, data_dir):
    opts = client.get("/sdapi/v1/options").json()
    assert opts["samples_format"] == "png"
    assert client.post("/sdapi/v1/options", json=opts).status_code == 200  # posting back GET is a no-op
    assert client.post("/sdapi/v1/options", json={"jpeg_quality": 90}).status_code == 200
    assert client.get("/sdapi/v1/options").json()["jpeg_quality"] == 90
    beta = [m for m in client.get("/sdapi/v1/sd-models").json() if "beta" in m["model_name"]][0]
    r = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": beta["title"]})
    assert r.status_code == 200, r.text
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith(beta["title"].split(" [")[0])
    out = client.post("/sdapi/v1/txt2img", json={"width": 64, "height": 64, "steps": 1}).json()
    assert json.loads(out["info"])["sd_model_name"] == "beta"
    config = json.loads((data_dir / "config.json").read_text(encoding="utf-8"))
    assert config["jpeg_quality"] == 90 and "beta" in config["sd_model_checkpoint"]


def test_checkpoint_switch_through_options_is_a_job_that_progress_reports(client):
    import threading

    models = {m["model_name"]: m["title"] for m in client.get("/sdapi/v1/sd-models").json()}
    deadline = time.time() + 60
    current = None
    while current is None and time.time() < deadline:  # the startup load first
        current = client.get("/sdapi/v1/options").json()["sd_model_checkpoint"]
        time.sleep(0.05)
    target = next(t for name, t in models.items() if not current.startswith(t.split(" [")[0]))
    done = threading.Event()
    answers: list = []

    def switch() -> None:
        answers.append(client.post("/sdapi/v1/options", json={"sd_model_checkpoint": target}).status_code)
        done.set()

    threading.Thread(target=switch).start()
    seen = set()
    while not done.is_set():
        info = client.get("/sdapi/v1/progress?skip_current_image=true").json()
        if info.get("textinfo"):
            seen.add(info["textinfo"])
        time.sleep(0.01)
    assert answers == [200]
    assert any(t.startswith("Loading ") and target.split(" [")[0] in t for t in seen), seen


@pytest.mark.parametrize("payload, field", [
    ({"sd_model_checkpoint": "../../etc/passwd"}, "sd_model_checkpoint"),
    ({"outdir_txt2img_samples": "/tmp/x"}, "outdir_txt2img_samples"),
    ({"jpeg_quality": "high"}, "jpeg_quality"),
    ({"not_a_setting": 1}, "not_a_setting"),
])
def test_bad_options_are_422_and_config_unchanged(client, data_dir, payload, field):
    config = data_dir / "config.json"
    before = config.read_bytes() if config.exists() else None
    r = client.post("/sdapi/v1/options", json=payload)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == field
    assert (config.read_bytes() if config.exists() else None) == before


def test_corrupt_checkpoint_is_refused_and_loaded_model_keeps_working(client, data_dir):
    bad = data_dir / "models" / "Stable-diffusion" / "broken.safetensors"
    good = (data_dir / "models" / "Stable-diffusion" / "alpha.safetensors").read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    (data_dir / "models" / "Stable-diffusion" / "broken.yaml").write_bytes(
        (data_dir / "models" / "Stable-diffusion" / "alpha.yaml").read_bytes())
    assert client.post("/sdapi/v1/refresh-checkpoints").status_code == 200
    titles = [m["title"] for m in client.get("/sdapi/v1/sd-models").json()]
    broken = [t for t in titles if t.startswith("broken")][0]
    before = client.get("/sdapi/v1/options").json()["sd_model_checkpoint"]
    r = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": broken})
    assert r.status_code == 422 and "incomplete" in r.text.lower()
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == before
    per_request = client.post("/sdapi/v1/txt2img", json={"width": 64, "height": 64, "steps": 1,
                                                         "override_settings": {"sd_model_checkpoint": broken}})
    assert per_request.status_code == 422
    detail = per_request.json()["detail"][0]
    assert detail["loc"][-1] == "sd_model_checkpoint" and detail["kind"] == "incomplete"
    ok = client.post("/sdapi/v1/txt2img", json={"width": 64, "height": 64, "steps": 1})
    assert ok.status_code == 200
    assert json.loads(ok.json()["info"])["sd_model_name"] in ("alpha", "beta")
    bad.unlink()


def test_progress_idle_shape_and_interrupt(client):
    idle = client.get("/sdapi/v1/progress").json()
    assert idle["progress"] == 0 and idle["eta_relative"] == 0 and idle["state"]["job_count"] == 0
    assert client.post("/sdapi/v1/interrupt").json() == {}
    assert client.post("/sdapi/v1/skip").status_code == 200


def test_progress_answers_while_a_job_runs(client):
    rt = client.app.state.runtime
    from modules.processing.params import Txt2ImgParams

    job = rt.submit_txt2img(Txt2ImgParams(width=64, height=64, steps=150, n_iter=2), from_api=True)
    seen = []  # (the job still running once the answer was in, the step it reported)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not job._done.is_set():
        body = client.get("/sdapi/v1/progress").json()
        seen.append((not job._done.is_set(), body["state"]["sampling_step"]))
        if body["state"]["sampling_step"] > 5:
            break
        time.sleep(0.05)
    client.post("/sdapi/v1/interrupt")
    job._done.wait(60)
    # Answered mid-job, with the job's progress: a /progress that waited for the job (or for its lock) could only
    # answer after the job. (How fast it answers is a figure for a benchmark, not a limit here.)
    assert any(running and step > 0 for running, step in seen), seen


def test_samplers_and_schedulers_lists(client):
    names = [s["name"] for s in client.get("/sdapi/v1/samplers").json()]
    assert names[0] == "DPM++ 2M" and "Euler a" in names and "DDIM" in names
    labels = [s["label"] for s in client.get("/sdapi/v1/schedulers").json()]
    assert labels[0] == "Automatic" and "Karras" in labels


def test_cmd_flags_hide_secrets(data_dir):
    args = parse_args(["--nowebui", "--data-dir", str(data_dir), "--api-auth", "me:se:cret"], environ={})
    app = create_app(args)
    with LocalClient(app) as c:
        assert c.get("/sdapi/v1/sd-models").status_code == 401
        auth = ("me", "se:cret")
        flags = c.get("/sdapi/v1/cmd-flags", auth=auth).json()
        assert "se:cret" not in json.dumps(flags)
        assert c.get("/sdapi/v1/sd-models", auth=("me", "wrong")).status_code == 401
    app.state.runtime.jobs.stop()
