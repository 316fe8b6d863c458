"""Flux through a real server: the transformer in ``models/unet`` (Forge's/ComfyUI's folder) with clip_l and
t5xxl in ``models/text_encoder`` and ae in ``models/VAE``, found without configuration, chosen by
``forge_additional_modules``, generating through ``/sdapi/v1/txt2img`` beside an SD checkpoint; a missing piece is a
clear error and the loaded model stays."""

from __future__ import annotations

import base64
import json
import io

import numpy as np
import pytest
from PIL import Image

from tests.support import tiny_flux
from tests.support.server import make_data_dir, running_server, wait_for_model

pytestmark = pytest.mark.timeout(240)
FLUX = "flux1-dev-tiny.safetensors"


def flux_data_dir(root):
    """A --data-dir with the tiny SD checkpoint (loaded at start) and a tiny Flux dev laid out as Forge users keep
    it: the transformer in models/unet, clip_l and t5xxl in models/text_encoder, ae in models/VAE."""
    data_dir = make_data_dir(root, ["tiny"])
    tiny_flux.write_split(data_dir / "models", tiny_flux.build(seed=0), name=FLUX, folder="unet")
    return data_dir


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(flux_data_dir(tmp_path_factory.mktemp("flux-server"))) as srv:
        wait_for_model(srv)
        yield srv


def _flux_request(**extra):
    body = {"prompt": "a lighthouse at dusk", "steps": 3, "width": 64, "height": 64, "seed": 11,
            "sampler_name": "Euler", "cfg_scale": 1, "distilled_cfg_scale": 3.5,
            "override_settings": {"sd_model_checkpoint": FLUX}}
    body.update(extra)
    return body


def _pixels(response) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(response["images"][0]))).convert("RGB"))


def test_flux_checkpoint_in_models_unet_is_listed_and_generates(server):
    titles = [m["title"] for m in server.get_json("/sdapi/v1/sd-models")]
    assert any(t.startswith(FLUX) for t in titles)
    status, first = server.request("POST", "/sdapi/v1/txt2img", _flux_request(), timeout=180)
    assert status == 200, first
    info = first["info"]
    assert "Distilled CFG Scale: 3.5" in info and "Sampler: Euler, Schedule type: Simple" in info
    assert _pixels(first).std() > 5
    status, again = server.request("POST", "/sdapi/v1/txt2img", _flux_request(), timeout=180)
    assert status == 200 and np.array_equal(_pixels(first), _pixels(again))  # same seed, same pixels
    status, other = server.request("POST", "/sdapi/v1/txt2img", _flux_request(distilled_cfg_scale=1.0), timeout=180)
    assert status == 200 and not np.array_equal(_pixels(first), _pixels(other))
    options = server.get_json("/sdapi/v1/options")
    assert options["forge_additional_modules"] == []  # found without configuration
    assert "Module 1: ae, Module 2: clip_l, Module 3: t5xxl_fp16" in info


def test_a_forge_infotext_sets_the_distilled_scale_and_the_modules(server):
    forge = ("a lighthouse at dusk\nSteps: 3, Sampler: Euler, Schedule type: Simple, CFG scale: 1, "
             "Distilled CFG Scale: 2, Seed: 11, Size: 64x64, Model: flux1-dev-tiny, Version: f2.0.1v1.10.1, "
             "Module 1: ae, Module 2: clip_l, Module 3: t5xxl_nowhere")
    body = {"infotext": forge, "override_settings": {"sd_model_checkpoint": FLUX}}
    status, answer = server.request("POST", "/sdapi/v1/txt2img", body, timeout=120)
    assert status == 422 and "t5xxl_nowhere" in str(answer)  # the modules it names were looked up
    body["infotext"] = forge.replace("t5xxl_nowhere", "t5xxl_fp16")
    status, answer = server.request("POST", "/sdapi/v1/txt2img", body, timeout=180)
    assert status == 200, answer
    text = json.loads(answer["info"])["infotexts"][0]
    assert "CFG scale: 1.0, Distilled CFG Scale: 2.0, Seed: 11" in text  # the API prints floats, as A1111's
    assert "Module 1: ae, Module 2: clip_l, Module 3: t5xxl_fp16" in text
    status, first = server.request("POST", "/sdapi/v1/txt2img", _flux_request(distilled_cfg_scale=2), timeout=180)
    assert np.array_equal(_pixels(first), _pixels(answer))  # the same picture as those parameters typed in


def test_a_sampler_flux_lacks_is_a_422_naming_the_field(server):
    status, body = server.request("POST", "/sdapi/v1/txt2img", _flux_request(sampler_name="DDIM"), timeout=120)
    assert status == 422, body
    assert body["detail"][0]["loc"] == ["body", "sampler_name"] and "Euler" in str(body)
    status, body = server.request("POST", "/sdapi/v1/txt2img", _flux_request(width=72), timeout=120)
    assert status == 422 and body["detail"][0]["loc"] == ["body", "width"]


def test_chosen_modules_without_t5_are_a_clear_error_and_the_model_stays(server):
    status, body = server.request("POST", "/sdapi/v1/txt2img", {"prompt": "sd", "steps": 2, "width": 64,
                                                                 "height": 64, "seed": 1}, timeout=120)
    assert status == 200
    loaded = server.get_json("/sdapi/v1/options")["sd_model_checkpoint"]
    status, body = server.request("POST", "/sdapi/v1/txt2img", _flux_request(
        override_settings={"sd_model_checkpoint": FLUX, "forge_additional_modules": ["clip_l.safetensors"]}),
        timeout=120)
    assert status == 422, body
    assert body["detail"][0]["loc"] == ["body", "forge_additional_modules"]
    text = str(body)
    assert "no T5 text encoder and no VAE" in text and "t5xxl_fp16.safetensors" in text
    assert server.get_json("/sdapi/v1/options")["sd_model_checkpoint"] == loaded
    status, body = server.request("POST", "/sdapi/v1/txt2img", _flux_request(
        override_settings={"sd_model_checkpoint": FLUX, "forge_additional_modules": ["t5xxl_nowhere.safetensors"]}),
        timeout=120)
    assert status == 422 and "t5xxl_nowhere.safetensors" in str(body)
    assert body["detail"][0]["loc"] == ["body", "forge_additional_modules"]
    status, body = server.request("POST", "/sdapi/v1/txt2img", {"prompt": "sd again", "steps": 2, "width": 64,
                                                                 "height": 64, "seed": 1}, timeout=120)
    assert status == 200  # the server and the SD checkpoint are still there
    status, body = server.request("POST", "/sdapi/v1/txt2img", _flux_request(override_settings={
        "sd_model_checkpoint": FLUX,
        "forge_additional_modules": ["clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors"]}),
        timeout=180)
    assert status == 200, body  # chosen explicitly, by file name as Forge's dropdown shows them


def test_xyz_plot_over_the_distilled_cfg_scale(server):
    args = ["Distilled CFG Scale", "1, 4", [], "Nothing", "", [], "Nothing", "", [], True, True, False, False,
            False, False, False, 0, False]
    status, body = server.request("POST", "/sdapi/v1/txt2img", _flux_request(script_name="X/Y/Z plot",
                                                                             script_args=args), timeout=180)
    assert status == 200, body
    texts = json.loads(body["info"])["infotexts"]
    assert "Distilled CFG Scale: 1.0" in texts[1] and "Distilled CFG Scale: 4.0" in texts[2]
    assert "X Type: Distilled CFG Scale" in texts[0]
    cells = [np.asarray(Image.open(io.BytesIO(base64.b64decode(i))).convert("RGB")) for i in body["images"][1:3]]
    assert not np.array_equal(cells[0], cells[1])


def test_a_flux_hires_checkpoint_cannot_continue_sd_latents(server):
    body = {"prompt": "sd", "steps": 2, "width": 64, "height": 64, "seed": 1, "enable_hr": True, "hr_scale": 2,
            "hr_upscaler": "Latent", "denoising_strength": 0.5, "hr_checkpoint_name": FLUX,
            "override_settings": {"sd_model_checkpoint": "tiny.safetensors"}}
    status, answer = server.request("POST", "/sdapi/v1/txt2img", body, timeout=180)
    assert status == 422, answer
    assert answer["detail"][0]["loc"] == ["body", "hr_checkpoint_name"] and "latent spaces differ" in str(answer)


def test_an_sd_job_does_not_read_the_flux_module_choice(server):
    """SD checkpoints carry their text encoders and VAE: a module choice (even one naming no file) is never looked
    up for them."""
    body = {"prompt": "sd", "steps": 2, "width": 64, "height": 64, "seed": 1,
            "override_settings": {"sd_model_checkpoint": "tiny.safetensors",
                                  "forge_additional_modules": ["t5xxl_nowhere.safetensors"]}}
    status, answer = server.request("POST", "/sdapi/v1/txt2img", body, timeout=120)
    assert status == 200, answer


def test_the_weight_storage_choice_reloads_the_flux_model_both_ways(server):
    """Forge's forge_unet_storage_dtype: a float8 choice stores the (fp32) transformer's Linear weights in 8 bits,
    so the picture changes; Automatic again loads it as the file has it, the first picture back bit for bit."""
    status, first = server.request("POST", "/sdapi/v1/txt2img", _flux_request(), timeout=180)
    assert status == 200, first
    body = _flux_request(override_settings={"sd_model_checkpoint": FLUX, "forge_unet_storage_dtype": "float8-e4m3fn"})
    status, low = server.request("POST", "/sdapi/v1/txt2img", body, timeout=180)
    assert status == 200, low
    assert not np.array_equal(_pixels(first), _pixels(low))
    status, again = server.request("POST", "/sdapi/v1/txt2img", _flux_request(), timeout=180)
    assert status == 200 and np.array_equal(_pixels(first), _pixels(again))
    body = _flux_request(override_settings={"sd_model_checkpoint": FLUX, "forge_unet_storage_dtype": "int3"})
    status, answer = server.request("POST", "/sdapi/v1/txt2img", body, timeout=60)
    assert status == 422 and "forge_unet_storage_dtype" in str(answer), answer


def test_forge_flux_kontext_references_by_api(server):
    """Forge's always-on "Forge FluxKontext" with its argument list: the reference changes the picture, a
    disabled one changes nothing, bad values are 422s naming the argument, and the scripts list names it."""
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.radial_gradient("L").convert("RGB").resize((64, 64)).save(buffer, format="PNG")
    reference = base64.b64encode(buffer.getvalue()).decode()
    status, plain = server.request("POST", "/sdapi/v1/txt2img", _flux_request(), timeout=180)
    assert status == 200, plain
    body = _flux_request(alwayson_scripts={"Forge FluxKontext": {"args": [True, reference, None, "to output",
                                                                          False]}})
    status, edited = server.request("POST", "/sdapi/v1/txt2img", body, timeout=180)
    assert status == 200, edited
    assert not np.array_equal(_pixels(plain), _pixels(edited))
    body["alwayson_scripts"] = {"forge fluxkontext": {"args": [False, reference, None, "to output", False]}}
    status, off = server.request("POST", "/sdapi/v1/txt2img", body, timeout=180)
    assert status == 200 and np.array_equal(_pixels(plain), _pixels(off))
    body["alwayson_scripts"] = {"Forge FluxKontext": {"args": [True, reference, None, "sideways", False]}}
    status, answer = server.request("POST", "/sdapi/v1/txt2img", body, timeout=60)
    assert status == 422 and "alwayson_scripts.Forge FluxKontext.args.3" in str(answer), answer
    body["alwayson_scripts"] = {"Forge FluxKontext": {"args": [True, "not an image", None, "to output", False]}}
    status, answer = server.request("POST", "/sdapi/v1/txt2img", body, timeout=60)
    assert status in (400, 422) and "alwayson_scripts.Forge FluxKontext.args.1" in str(answer), answer
    assert "forge fluxkontext" in server.get_json("/sdapi/v1/scripts")["txt2img"]
    info = [s for s in server.get_json("/sdapi/v1/script-info") if s["name"] == "forge fluxkontext"]
    assert {s["is_img2img"] for s in info} == {False, True} and info[0]["args"][3]["value"] == "to BFL recommended"
