"""End to end through a real client: a real ``webui.py`` process on a 127.0.0.1 port, driven by the ``webuiapi``
PyPI client (what SillyTavern-style integrations use), with two tiny random sd1 checkpoints in its data dir."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.support.server import make_data_dir, running_server, wait_for_model, webuiapi_client

pytestmark = pytest.mark.timeout(180)

SEED = 4242


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = make_data_dir(tmp_path_factory.mktemp("e2e-api"), ["alpha", "beta"])
    with running_server(data_dir) as srv:
        wait_for_model(srv)
        yield srv


@pytest.fixture(scope="module")
def api(server):
    client = webuiapi_client(server)
    yield client
    client.session.close()


def titles(api) -> dict[str, str]:
    """model_name -> title, as /sdapi/v1/sd-models reports them now."""
    return {m["model_name"]: m["title"] for m in api.get_sd_models()}


def tiny_txt2img(api, seed: int = SEED, **kwargs):
    return api.txt2img(prompt="a red fox in the snow", width=64, height=64, steps=2, seed=seed, **kwargs)


def test_openapi_lists_txt2img(server):
    schema = server.get_json("/openapi.json")
    assert "/sdapi/v1/txt2img" in schema["paths"]
    assert "post" in schema["paths"]["/sdapi/v1/txt2img"]


def test_txt2img_returns_image_with_a1111_infotext(api):
    result = tiny_txt2img(api)
    assert len(result.images) == 1
    image = result.image
    assert isinstance(image, Image.Image) and image.size == (64, 64)
    # info: A1111's JSON string, decoded by the client into a dict
    assert isinstance(result.info, dict)
    assert result.info["seed"] == SEED and result.info["all_seeds"] == [SEED]
    assert result.info["width"] == 64 and result.info["height"] == 64 and result.info["steps"] == 2
    text = result.info["infotexts"][0]
    assert text.startswith("a red fox in the snow\n")
    for piece in ("Steps: 2,", f"Seed: {SEED},", "Size: 64x64", "Model hash: " + result.info["sd_model_hash"],
                  "Sampler: Euler a"):  # webuiapi's default sampler
        assert piece in text
    assert result.info["sd_model_name"] == "alpha"
    # the PNG itself carries the same infotext in its `parameters` chunk
    assert image.info["parameters"] == text
    # parameters: the request echoed back
    assert result.parameters["seed"] == SEED and result.parameters["width"] == 64
    assert result.parameters["prompt"] == "a red fox in the snow"


def test_override_checkpoint_is_restored_afterwards(api, server):
    """A1111: override_settings apply to one request; with override_settings_restore_afterwards (webuiapi's
    default) the next request uses the configured checkpoint again. Runs before any test sets
    sd_model_checkpoint, so the server is still in its fresh-install state (no config.json)."""
    assert tiny_txt2img(api).info["sd_model_name"] == "alpha"
    alpha = titles(api)["alpha"]
    try:
        over = tiny_txt2img(api, override_settings={"sd_model_checkpoint": "beta"})
        assert over.info["sd_model_name"] == "beta" and "Model: beta" in over.info["infotexts"][0]
        assert tiny_txt2img(api).info["sd_model_name"] == "alpha"
        assert api.util_get_current_model() == alpha
    finally:  # whatever happened, later tests start from alpha
        api.set_options({"sd_model_checkpoint": alpha})


def test_same_seed_gives_identical_pixels(api):
    a = tiny_txt2img(api, seed=99).image
    b = tiny_txt2img(api, seed=99).image
    c = tiny_txt2img(api, seed=100).image
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_model_list_through_client(api, server):
    models = api.get_sd_models()
    assert sorted(m["model_name"] for m in models) == ["alpha", "beta"]
    for m in models:
        assert m["filename"].startswith(str(server.data_dir / "models" / "Stable-diffusion"))
        assert m["title"].startswith(m["model_name"] + ".safetensors")
    names = api.util_get_model_names()
    assert names == sorted(m["title"] for m in models)
    assert api.util_get_current_model() == titles(api)["alpha"]


def test_switch_checkpoint_through_options(api):
    options = api.get_options()
    assert options["sd_model_checkpoint"] == titles(api)["alpha"]
    beta = titles(api)["beta"]
    assert api.set_options({"sd_model_checkpoint": beta}) is None  # A1111 answers null
    current = api.util_get_current_model()
    assert current.split(" [")[0] == "beta.safetensors"
    assert current == titles(api)["beta"]  # once loaded, the title carries its hash
    out = tiny_txt2img(api)
    assert out.info["sd_model_name"] == "beta"
    assert "Model: beta" in out.info["infotexts"][0]
    assert f"Model hash: {out.info['sd_model_hash']}" in out.info["infotexts"][0]
    beta_hash = [m for m in api.get_sd_models() if m["model_name"] == "beta"][0]["hash"]
    assert out.info["sd_model_hash"] == beta_hash

    api.util_set_model("alpha")  # webuiapi's fuzzy helper: closest title, then POST /options
    assert api.util_get_current_model() == titles(api)["alpha"]
    assert tiny_txt2img(api).info["sd_model_name"] == "alpha"


def test_unknown_checkpoint_is_422_and_current_model_stays(api):
    before = api.util_get_current_model()
    r = api.session.post(f"{api.baseurl}/options", json={"sd_model_checkpoint": "no-such-model.safetensors"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == "sd_model_checkpoint"
    assert api.util_get_current_model() == before


def test_bad_request_is_422_naming_the_field_and_server_keeps_serving(api):
    with pytest.raises(RuntimeError) as raised:
        api.txt2img(prompt="x", width=65, height=64, steps=2, seed=1)
    status, body = raised.value.args
    assert status == 422
    detail = json.loads(body)["detail"]
    assert any(e["loc"][-1] == "width" for e in detail), detail
    good = tiny_txt2img(api, seed=5)
    assert good.image.size == (64, 64) and good.info["seed"] == 5


def test_img2img_with_a_mask_through_the_client(api):
    rng = np.random.RandomState(0)
    init = Image.fromarray(rng.randint(0, 255, (64, 64, 3)).astype(np.uint8))
    mask = Image.new("L", (64, 64))
    mask.paste(255, (16, 16, 40, 40))
    result = api.img2img(images=[init], mask_image=mask, prompt="a patch", width=64, height=64, steps=2, seed=7,
                         denoising_strength=0.9, mask_blur=0, inpaint_full_res=False)
    out = np.asarray(result.image.convert("RGB"))
    keep = np.asarray(mask) == 0
    assert np.array_equal(out[keep], np.asarray(init)[keep])
    assert result.info["denoising_strength"] == 0.9 and "Mask blur: 0" in result.info["infotexts"][0]


def test_extras_png_info_and_lists_through_the_client(api):
    generated = tiny_txt2img(api, seed=11).image
    upscaled = api.extra_single_image(image=generated, upscaler_1="R-ESRGAN AnimeVideo", upscaling_resize=2)
    assert upscaled.image.size == (128, 128)
    batch = api.extra_batch_images(images=[generated, generated], upscaler_1="Lanczos", upscaling_resize=2)
    assert [im.size for im in batch.images] == [(128, 128), (128, 128)]
    info = api.png_info(generated)
    assert "Seed: 11" in info.info and info.parameters["Seed"] == "11"
    assert {"R-ESRGAN 4x+", "Lanczos"} <= {u["name"] for u in api.get_upscalers()}
    assert "Euler a" in api.util_get_sampler_names() and "karras" in api.util_get_scheduler_names()
    assert api.get_loras() == [] and api.get_hypernetworks() == []
    assert api.get_scripts()["img2img"] == ["poor man's outpainting", "prompts from file or textbox", "sd upscale",
                                            "loopback", "prompt matrix", "x/y/z plot", "controlnet",
                                            "forge fluxkontext"]
    assert "ram" in api.get_memory()


def test_progress_during_a_job_and_interrupt_through_the_client(api, server):
    import threading
    import time

    outcome: dict = {}

    def generate() -> None:
        outcome["result"] = api.txt2img(prompt="a long one", width=64, height=64, steps=150, n_iter=10, seed=1)

    worker = threading.Thread(target=generate)
    worker.start()
    poller = webuiapi_client(server)
    try:
        deadline = time.monotonic() + 120
        seen = []
        while time.monotonic() < deadline and len(seen) < 20 and worker.is_alive():
            progress = poller.get_progress()
            if progress["state"]["sampling_step"] > 0 and worker.is_alive():  # answered while the job still runs
                seen.append(progress["state"]["sampling_step"] + 1000 * progress["state"]["job_no"])
            time.sleep(0.1)
        # A second client polling every 100 ms is answered while the first one's job runs, many times within it, and
        # follows it: answers that waited for the job would come after it. (Their latency is a benchmark figure.)
        assert len(seen) >= 20 and seen[-1] > seen[0] and seen == sorted(seen), seen
        api.interrupt()
        worker.join(60)
        assert not worker.is_alive()
        assert outcome["result"].info["all_seeds"][0] == 1  # the finished part comes back
    finally:
        poller.session.close()
        api.interrupt()
