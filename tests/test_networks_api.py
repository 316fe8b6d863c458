"""LoRA, textual inversion, VAE choice and styles used the way users use them: through /sdapi/v1 txt2img on a tiny
checkpoint, with real files in A1111's folders."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import torch
from tests.support.local_client import LocalClient
from PIL import Image

from modules.cmd_args import parse_args
from tests.support.engine import load_tiny
from tests.support.tiny_checkpoints import write_tiny_checkpoint
from tests.support.tiny_files import perturbed, save_a1111_pt, save_vae_file, vectors
from tests.support.tiny_lora import kohya_lora, write_lora
from webui import create_app, start_background_load

LORA_LAYERS = {
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k":
        ("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"),
    "lora_unet_down_blocks_0_resnets_0_conv1": ("unet", "down_blocks.0.resnets.0.conv1"),
    "lora_te_text_model_encoder_layers_0_mlp_fc1": ("text_encoder", "encoder.layers.0.mlp.fc1"),
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("networks")
    ckpt = write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion", "base", seed=1)
    model = load_tiny(ckpt)  # for shapes and widths only
    shapes = {k: tuple(getattr(model, c).get_submodule(n).weight.shape) for k, (c, n) in LORA_LAYERS.items()}
    write_lora(root / "models" / "Lora", "detail", kohya_lora(shapes, seed=3))
    (root / "models" / "Lora" / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    width = model.text_encoder.config.hidden_size
    save_a1111_pt(root / "embeddings" / "mystyle.pt", vectors(2, width, seed=5) * 0.1)
    save_a1111_pt(root / "embeddings" / "wrongsize.pt", vectors(1, width + 8, seed=6))
    save_vae_file(root / "models" / "VAE" / "finetuned.safetensors", perturbed(model.vae.state_dict(), 4))
    (root / "styles.csv").write_text('name,prompt,negative_prompt\ncinematic,"{prompt}, cinematic",blurry\n',
                                     encoding="utf-8")
    app = create_app(parse_args(["--nowebui", "--data-dir", str(root)], environ={}))
    start_background_load(app)
    with LocalClient(app) as client:
        yield client, app.state.runtime
    app.state.runtime.jobs.stop()


def generate(client, **fields):
    body = {"prompt": "a cat", "width": 64, "height": 64, "steps": 2, "seed": 11, "sampler_name": "Euler",
            **fields}
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    image = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))
    image.load()
    return np.asarray(image.convert("RGB"), dtype=np.int16), info


def weights(model):
    return {f"{slot}.{k}": v.clone() for slot in ("unet", "text_encoder")
            for k, v in getattr(model, slot).state_dict().items()}


def test_lora_in_the_prompt_changes_the_image_and_is_recorded(setup):
    client, rt = setup
    plain, _ = generate(client)
    before = weights(rt.manager.model)
    with_lora, info = generate(client, prompt="a cat <lora:detail:0.8>")
    text = info["infotexts"][0]
    assert text.startswith("a cat <lora:detail:0.8>\n")  # the tag stays in the infotext prompt
    assert re.search(r'Lora hashes: "detail: [0-9a-f]{12}"', text)
    assert not np.array_equal(plain, with_lora)
    after = weights(rt.manager.model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # removed after the job, bit for bit
    again, _ = generate(client)
    assert np.array_equal(plain, again)
    te_only, _ = generate(client, prompt="a cat <lora:detail:te=0.8:unet=0>")
    assert not np.array_equal(te_only, with_lora) and not np.array_equal(te_only, plain)


def test_unknown_and_broken_loras_are_reported_and_the_job_goes_on(setup):
    client, _ = setup
    plain, _ = generate(client)
    image, info = generate(client, prompt="a cat <lora:nosuch:1> <lora:broken:1> <lora:../../Stable-diffusion/base:1>")
    assert np.array_equal(image, plain)  # nothing was applied
    comments = " ".join(info["comments"])
    assert "nosuch" in comments and "broken" in comments and "Lora hashes" not in info["infotexts"][0]
    names = {item["name"] for item in client.get("/sdapi/v1/loras").json()}
    assert "detail" in names


def test_embedding_trigger_word_is_used_and_hashed(setup):
    client, _ = setup
    plain, _ = generate(client)
    styled, info = generate(client, prompt="a cat mystyle")
    assert not np.array_equal(plain, styled)
    assert re.search(r'TI hashes: "mystyle: [0-9a-f]{12}"', info["infotexts"][0])
    listing = client.get("/sdapi/v1/embeddings").json()
    assert listing["loaded"]["mystyle"]["vectors"] == 2 and "wrongsize" in listing["skipped"]


def test_vae_choice_without_reloading_the_checkpoint(setup):
    client, rt = setup
    assert [v["model_name"] for v in client.get("/sdapi/v1/sd-vae").json()] == ["finetuned.safetensors"]
    model_before = rt.manager.model
    plain, info = generate(client)
    assert "VAE" not in info["infotexts"][0]
    assert client.post("/sdapi/v1/options", json={"sd_vae": "finetuned.safetensors"}).status_code == 200
    other, info = generate(client)
    assert rt.manager.model is model_before  # same loaded model object: only VAE weights changed
    assert re.search(r"Model: base, VAE hash: [0-9a-f]{10}, VAE: finetuned\.safetensors(, |$)", info["infotexts"][0])
    assert info["sd_vae_name"] == "finetuned.safetensors" and not np.array_equal(plain, other)
    assert client.post("/sdapi/v1/options", json={"sd_vae": "Automatic"}).status_code == 200
    back, info = generate(client)
    assert np.array_equal(plain, back) and "VAE" not in info["infotexts"][0]
    bad = client.post("/sdapi/v1/options", json={"sd_vae": "missing.safetensors"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "sd_vae"


def test_styles_are_merged_into_the_prompts(setup):
    client, _ = setup
    _, info = generate(client, prompt="a cat", styles=["cinematic"])
    assert info["prompt"] == "a cat, cinematic" and info["negative_prompt"] == "blurry"
    assert info["infotexts"][0].startswith("a cat, cinematic\nNegative prompt: blurry\n")
    styles = client.get("/sdapi/v1/prompt-styles").json()
    assert styles == [{"name": "cinematic", "prompt": "{prompt}, cinematic", "negative_prompt": "blurry"}]


def test_a_corrupt_embedding_file_is_skipped_and_jobs_go_on(setup):
    client, _ = setup
    root = setup[1].paths.data_dir
    (root / "embeddings" / "damaged.safetensors").write_bytes(b"\xff" * 64)
    image, info = generate(client, prompt="a cat damaged mystyle")
    assert image.std() > 0 and 'mystyle: ' in info["infotexts"][0] and "damaged:" not in info["infotexts"][0]
    skipped = client.get("/sdapi/v1/embeddings").json()["skipped"]
    assert "damaged" in skipped


def test_one_hundred_generations_alternating_lora_leave_base_weights_bit_identical(setup):
    """The job path itself (tag parsing, apply, encode, sample, restore), not only the LoRA library."""
    from modules.processing.context import CheckpointIdentity, ProcessingContext
    from modules.processing.params import Txt2ImgParams
    from modules.processing.txt2img import txt2img
    from tests.support.engine import default_settings

    _, rt = setup
    model = rt.manager.model
    before = weights(model)
    settings = default_settings(samples_save=False, grid_save=False)
    ctx = ProcessingContext(model=model, checkpoint=CheckpointIdentity("base", "base", None), settings=settings,
                            data_dir=rt.paths.data_dir, loras=rt.loras, save_params_txt=False)
    images = {}
    for i in range(100):
        prompt = "a cat <lora:detail:1>" if i % 2 else "a cat"
        out = txt2img(Txt2ImgParams(prompt=prompt, width=64, height=64, steps=1, seed=5, sampler_name="Euler"), ctx)
        pixels = np.asarray(out.images[0], dtype=np.int16)
        assert np.array_equal(images.setdefault(prompt, pixels), pixels)  # every repeat is the same image
    after = weights(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not np.array_equal(images["a cat"], images["a cat <lora:detail:1>"])


def test_a_lora_added_while_running_is_found_without_refresh(setup):
    client, rt = setup
    model = rt.manager.model
    shapes = {k: tuple(getattr(model, c).get_submodule(n).weight.shape) for k, (c, n) in LORA_LAYERS.items()}
    write_lora(rt.paths.data_dir / "models" / "Lora" / "late", "newcomer", kohya_lora(shapes, seed=9))
    _, info = generate(client, prompt="a cat <lora:newcomer:1>")
    assert re.search(r'Lora hashes: "newcomer: [0-9a-f]{12}"', info["infotexts"][0])


def test_refresh_endpoints_pick_up_files_added_while_running(setup):
    client, rt = setup
    root = rt.paths.data_dir
    model = rt.manager.model
    write_lora(root / "models" / "Lora", "latecomer", kohya_lora(
        {k: tuple(getattr(model, c).get_submodule(n).weight.shape) for k, (c, n) in LORA_LAYERS.items()}, seed=9))
    assert client.post("/sdapi/v1/refresh-loras").status_code == 200
    assert "latecomer" in {x["name"] for x in client.get("/sdapi/v1/loras").json()}
    save_vae_file(root / "models" / "VAE" / "second.safetensors", perturbed(model.vae.state_dict(), 6))
    assert client.post("/sdapi/v1/refresh-vae").status_code == 200
    assert "second.safetensors" in {v["model_name"] for v in client.get("/sdapi/v1/sd-vae").json()}
    save_a1111_pt(root / "embeddings" / "newword.pt", vectors(1, model.text_encoder.config.hidden_size, seed=8))
    assert client.post("/sdapi/v1/refresh-embeddings").status_code == 200
    assert "newword" in client.get("/sdapi/v1/embeddings").json()["loaded"]


def test_unload_and_reload_checkpoint(setup):
    client, rt = setup
    assert client.post("/sdapi/v1/unload-checkpoint").json() == {}
    assert rt.manager.model is None
    _, info = generate(client)  # the next generation loads it again
    assert rt.manager.model is not None and info["sd_model_name"] == "base"
    assert client.post("/sdapi/v1/reload-checkpoint").json() == {}
    assert rt.manager.model is not None
