"""A1111's /sd_extra_networks routes and the card panel's own (issue 21 item 1), on a real app with files in
A1111's folders; the files on disk are the oracle."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from modules import extra_networks_files as files
from modules.cmd_args import parse_args
from tests.support.local_client import LocalClient
from tests.support.tiny_checkpoints import write_tiny_checkpoint
from tests.support.tiny_lora import write_lora
from webui import create_app

import torch


def _png(color: tuple[int, int, int], text: str | None = None) -> bytes:
    from PIL import PngImagePlugin

    out = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("parameters", text)
    Image.new("RGB", (8, 8), color).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def _lora_sd() -> dict[str, torch.Tensor]:
    key = "lora_te_text_model_encoder_layers_0_mlp_fc1"
    return {f"{key}.lora_down.weight": torch.zeros(2, 4), f"{key}.lora_up.weight": torch.zeros(4, 2)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("extra-networks")
    write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion", "base", seed=1)
    lora_dir = root / "models" / "Lora"
    write_lora(lora_dir / "styles", "detail", _lora_sd(), metadata={"ss_output_name": "detail",
                                                                    "modelspec.description": "from the header"})
    write_lora(lora_dir, "plain", _lora_sd())
    (lora_dir / "styles" / "detail.json").write_text(json.dumps({"preferred weight": 0.8, "notes": "keep me"}))
    (lora_dir / "styles" / "detail.preview.png").write_bytes(_png((255, 0, 0)))
    (root / "secret.png").write_bytes(_png((0, 0, 255)))
    app = create_app(parse_args(["--nowebui", "--data-dir", str(root)], environ={}))
    with LocalClient(app) as client:
        yield client, root
    app.state.runtime.jobs.stop()


def test_thumb_serves_previews_from_the_model_folders_only(setup):
    client, root = setup
    preview = root / "models" / "Lora" / "styles" / "detail.preview.png"
    r = client.get("/sd_extra_networks/thumb", params={"filename": str(preview), "mtime": "1"})
    assert r.status_code == 200 and r.content == preview.read_bytes()
    outside = [str(root / "secret.png"), str(root / "models" / "Lora" / ".." / ".." / "secret.png"),
               "../../secret.png", str(root / "models" / "Lora" / "styles" / "detail.json"),
               str(root / "models" / "Lora" / "missing.png"), "/etc/passwd"]
    for name in outside:
        r = client.get("/sd_extra_networks/thumb", params={"filename": name})
        assert r.status_code == 404, name
        assert b"\x89PNG" not in r.content


def test_cards_carry_a1111_prompt_preview_and_description(setup):
    client, root = setup
    r = client.get("/sd_extra_networks/get-single-card", params={"page": "lora", "tabname": "txt2img",
                                                                  "name": "detail"})
    assert r.status_code == 200
    card = r.json()["html"]
    assert "data-prompt='&quot;&lt;lora:detail:&quot; + 0.8 + &quot;&gt;&quot;'" in card
    assert "./sd_extra_networks/thumb?filename=" in card and "detail.preview.png" in card
    assert "from the header" in card and "data-path='styles'" in card
    pane = client.get("/sd_extra_networks/pane", params={"page": "lora", "tabname": "img2img"}).json()["html"]
    assert "id='img2img_lora_cards'" in pane and "data-name='plain'" in pane and "data-path='styles'" in pane
    # the plain one has no preferred weight: the page's default multiplier (A1111's expression)
    assert "opts[&#x27;extra_networks_default_multiplier&#x27;]" in pane or \
        "opts.extra_networks_default_multiplier" in pane
    meta = client.get("/sd_extra_networks/metadata", params={"page": "lora", "item": "detail"}).json()
    assert json.loads(meta["metadata"])["ss_output_name"] == "detail"
    assert client.get("/sd_extra_networks/metadata", params={"page": "nope", "item": "x"}).json() == {}
    checkpoints = client.get("/sd_extra_networks/pane", params={"page": "checkpoints"}).json()["html"]
    assert "data-action='checkpoint'" in checkpoints and "data-checkpoint='base.safetensors" in checkpoints
    hyper = client.get("/sd_extra_networks/pane", params={"page": "hypernetworks"}).json()["html"]
    assert "not supported" in hyper


def test_user_metadata_is_saved_to_name_json_and_bad_input_changes_nothing(setup):
    client, root = setup
    path = root / "models" / "Lora" / "styles" / "detail.json"
    edit = {"description": "red things", "activation text": "redstyle", "preferred weight": 0.65,
            "negative text": "blue", "sd version": "SD1", "notes": "keep me"}
    r = client.post("/sd_extra_networks/user-metadata", json={"page": "lora", "name": "detail",
                                                              "user_metadata": edit})
    assert r.status_code == 200, r.text
    assert json.loads(path.read_text(encoding="utf-8")) == edit
    before = path.read_bytes()
    for bad in ({"preferred weight": "heavy"}, {"sd version": "SD9"}, {"description": 5}):
        r = client.post("/sd_extra_networks/user-metadata", json={"page": "lora", "name": "detail",
                                                                  "user_metadata": bad})
        assert r.status_code == 422, bad
        assert path.read_bytes() == before
    card = client.get("/sd_extra_networks/get-single-card", params={"page": "lora", "name": "detail"}).json()["html"]
    assert "0.65" in card and "redstyle" in card and "red things" in card
    # a hand-made file that is not JSON is never overwritten
    broken = root / "models" / "Lora" / "plain.json"
    broken.write_text("{not json", encoding="utf-8")
    r = client.post("/sd_extra_networks/user-metadata", json={"page": "lora", "name": "plain",
                                                              "user_metadata": {"description": "x"}})
    assert r.status_code == 422 and broken.read_text(encoding="utf-8") == "{not json"
    broken.unlink()
    assert client.post("/sd_extra_networks/user-metadata", json={"page": "lora", "name": "missing",
                                                                 "user_metadata": {}}).status_code == 404


def test_replace_preview_writes_the_image_beside_the_network(setup):
    client, root = setup
    data = _png((0, 255, 0), text="a green square, Steps: 2")
    r = client.post("/sd_extra_networks/replace-preview",
                    json={"page": "lora", "name": "plain",
                          "image": "data:image/png;base64," + base64.b64encode(data).decode()})
    assert r.status_code == 200, r.text
    written = Image.open(root / "models" / "Lora" / "plain.png")
    assert written.getpixel((0, 0)) == (0, 255, 0) and written.info.get("parameters") == "a green square, Steps: 2"
    r = client.post("/sd_extra_networks/replace-preview", json={"page": "lora", "name": "plain", "image": "AAAA"})
    assert r.status_code == 422
    assert Image.open(root / "models" / "Lora" / "plain.png").getpixel((0, 0)) == (0, 255, 0)


def test_a_weight_that_is_not_a_number_never_reaches_the_page_script(setup):
    client, root = setup
    path = root / "models" / "Lora" / "plain.json"
    path.write_text(json.dumps({"preferred weight": "alert(document.cookie)"}), encoding="utf-8")
    try:
        card = client.get("/sd_extra_networks/get-single-card", params={"page": "lora", "name": "plain"}).json()
        assert "alert" not in card["html"] and "extra_networks_default_multiplier" in card["html"]
    finally:
        path.unlink()


def test_servable_preview_refuses_links_out(tmp_path: Path):
    models = tmp_path / "models"
    models.mkdir()
    (tmp_path / "outside.png").write_bytes(_png((1, 2, 3)))
    (models / "link.png").symlink_to(tmp_path / "outside.png")
    (models / "inside.png").write_bytes(_png((1, 2, 3)))
    assert files.servable_preview(str(models / "link.png"), [models]) is None
    assert files.servable_preview(str(models / "inside.png"), [models]) == (models / "inside.png").resolve()
    assert files.servable_preview("inside.png", [models]) is None


# The tests below build apps of their own (the pages read the app bound last, shared.runtime): keep them last.
def test_routes_need_the_login(tmp_path: Path):
    write_tiny_checkpoint("sd1", tmp_path / "models" / "Stable-diffusion", "base", seed=1)
    app = create_app(parse_args(["--nowebui", "--data-dir", str(tmp_path), "--api-auth", "u:p"], environ={}))
    try:
        with LocalClient(app) as client:
            assert client.get("/sd_extra_networks/pane", params={"page": "lora"}).status_code == 401
            assert client.get("/sd_extra_networks/pane", params={"page": "lora"}, auth=("u", "p")).status_code == 200
    finally:
        app.state.runtime.jobs.stop()


def test_textual_inversion_cards_once_a_model_is_loaded(tmp_path: Path):
    from tests.support.engine import load_tiny
    from tests.support.tiny_files import save_a1111_pt, vectors
    from webui import start_background_load

    ckpt = write_tiny_checkpoint("sd1", tmp_path / "models" / "Stable-diffusion", "base", seed=1)
    width = load_tiny(ckpt).text_encoder.config.hidden_size
    save_a1111_pt(tmp_path / "embeddings" / "mystyle.pt", vectors(2, width, seed=5) * 0.1)
    (tmp_path / "embeddings" / "mystyle.preview.png").write_bytes(_png((9, 9, 9)))
    app = create_app(parse_args(["--nowebui", "--data-dir", str(tmp_path)], environ={}))
    start_background_load(app)
    try:
        with LocalClient(app) as client:
            rt = app.state.runtime
            import time

            deadline = time.monotonic() + 120
            while rt.manager.info is None and time.monotonic() < deadline:
                time.sleep(0.1)
            pane = client.get("/sd_extra_networks/pane", params={"page": "textual inversion"}).json()["html"]
            assert "data-name='mystyle'" in pane and "data-prompt='&quot;mystyle&quot;'" in pane
            assert "data-allow-neg='true'" in pane and "mystyle.preview.png" in pane
    finally:
        app.state.runtime.jobs.stop()

