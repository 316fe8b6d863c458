"""The rest of /sdapi/v1 in-process: png-info, memory, scripts, script-info, extensions, hypernetworks,
interrogate; server-stop/-restart/-kill exist only with --api-server-stop."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image, PngImagePlugin



@pytest.fixture(scope="module")
def client(tiny_api_client):
    return tiny_api_client


def png_with(text: str | None, **chunks: str) -> str:
    info = PngImagePlugin.PngInfo()
    if text is not None:
        info.add_text("parameters", text)
    for key, value in chunks.items():
        info.add_text(key, value)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG", pnginfo=info)
    return base64.b64encode(buf.getvalue()).decode()


def test_png_info(client):
    text = "a cat\nNegative prompt: ugly\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512"
    r = client.post("/sdapi/v1/png-info", json={"image": "data:image/png;base64," + png_with(text, extras="x: 1")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["info"] == text and body["items"] == {"extras": "x: 1"}
    assert body["parameters"]["Prompt"] == "a cat" and body["parameters"]["Seed"] == "5"  # strings, as A1111
    assert body["parameters"]["Size-1"] == "512"
    empty = client.post("/sdapi/v1/png-info", json={"image": png_with(None)}).json()
    assert empty["info"] == "" and empty["parameters"] == {}
    assert client.post("/sdapi/v1/png-info", json={"image": ""}).status_code == 404
    assert client.post("/sdapi/v1/png-info", json={"image": "***"}).status_code == 400


def test_png_info_with_a_long_parameter_line_answers_and_a_too_long_one_is_refused(client):
    """Security issue item 2: a 200,000-character word run (A1111's regex: minutes, holding the GIL) parses; a text
    over MAX_INFOTEXT_CHARS is a 422 naming the image; the request infotext field has the same bound."""
    from modules.infotext import MAX_INFOTEXT_CHARS

    run = "a" * 200_000
    text = f"a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 64x64, Note: {run}"
    r = client.post("/sdapi/v1/png-info", json={"image": png_with(text)})
    assert r.status_code == 200, r.text[:300]
    assert r.json()["parameters"]["Note"] == run and r.json()["parameters"]["Seed"] == "5"
    too_long = client.post("/sdapi/v1/png-info", json={"image": png_with("x" * (MAX_INFOTEXT_CHARS + 1))})
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == ["body", "image"]
    field = client.post("/sdapi/v1/txt2img", json={"infotext": "x" * (MAX_INFOTEXT_CHARS + 1)})
    assert field.status_code == 422 and "infotext" in field.text


def test_memory(client):
    body = client.get("/sdapi/v1/memory").json()
    assert set(body) == {"ram", "cuda"} and body["ram"]["total"] > body["ram"]["used"] > 0


def test_scripts_and_script_info(client):
    scripts = client.get("/sdapi/v1/scripts").json()
    assert scripts == {"txt2img": ["prompts from file or textbox", "prompt matrix", "x/y/z plot", "controlnet",
                                   "forge fluxkontext"],
                       "img2img": ["poor man's outpainting", "prompts from file or textbox", "sd upscale", "loopback",
                                   "prompt matrix", "x/y/z plot", "controlnet", "forge fluxkontext"]}
    # ControlNet and Forge's Flux Kontext: built in, always on
    info = client.get("/sdapi/v1/script-info").json()
    controlnet = [s for s in info if s["name"] == "controlnet"]
    assert [s["is_img2img"] for s in controlnet] == [False, True] and all(s["is_alwayson"] for s in controlnet)
    assert controlnet[0]["args"][0]["value"]["module"] == "none" and len(controlnet[0]["args"]) == 3
    upscale = next(s for s in info if s["name"] == "sd upscale")
    assert upscale["is_img2img"] is True and upscale["is_alwayson"] is False
    assert set(upscale["args"][1]) == {"label", "value", "minimum", "maximum", "step", "choices"}
    assert "R-ESRGAN 4x+" in upscale["args"][2]["choices"]


def test_lists_without_features(client):
    assert client.get("/sdapi/v1/extensions").json() == []
    assert client.get("/sdapi/v1/hypernetworks").json() == []


def test_interrogate_without_its_files_says_which_to_put_where(client):
    r = client.post("/sdapi/v1/interrogate", json={"image": png_with(None), "model": "clip"})
    assert r.status_code == 422 and "model_base_caption_capfilt_large.pth" in r.json()["detail"][0]["msg"]
    assert r.json()["detail"][0]["loc"] == ["body", "model"]
    r = client.post("/sdapi/v1/interrogate", json={"image": png_with(None), "model": "deepdanbooru"})
    assert r.status_code == 422 and "model-resnet_custom_v3.pt" in r.json()["detail"][0]["msg"]
    assert client.post("/sdapi/v1/interrogate", json={"image": png_with(None), "model": "blip9"}).status_code == 404


def test_server_control_needs_the_flag(client):
    for route in ("server-stop", "server-restart", "server-kill"):
        assert client.post(f"/sdapi/v1/{route}").status_code == 404


def test_server_stop_restart_and_kill_with_the_flag(tmp_path):
    import time

    from tests.support.server import _ping, running_server

    # an extension that stops its worker on A1111's on_before_reload, which runs before the restart re-executes
    marker = tmp_path / "before-reload.txt"
    script = tmp_path / "extensions" / "reload-watch" / "scripts" / "watch.py"
    script.parent.mkdir(parents=True)
    script.write_text("from modules import script_callbacks\n"
                      f"script_callbacks.on_before_reload(lambda: open({str(marker)!r}, 'a').write('called\\n'))\n",
                      encoding="utf-8")
    with running_server(tmp_path, ["--api", "--api-server-stop", "--skip-load-model-at-start",
                                   "--nowebui"]) as server:
        status, body = server.request("POST", "/sdapi/v1/server-restart")
        assert status == 200 and body == "Restarting."
        deadline = time.monotonic() + 60
        # on_before_reload runs once the old server has stopped listening, just before the re-exec: from then on a
        # ping that answers is the restarted server's
        while time.monotonic() < deadline and not marker.exists():
            time.sleep(0.1)
        assert marker.exists(), f"on_before_reload did not run in 60 s\n{server.log_tail()}"
        while time.monotonic() < deadline and not _ping(server.port):
            time.sleep(0.2)
        assert _ping(server.port) and server.process.poll() is None  # the same process, serving again
        assert marker.read_text(encoding="utf-8") == "called\n"
        status, body = server.request("POST", "/sdapi/v1/server-stop")
        assert status == 200 and body == "Stopping."
        server.process.wait(timeout=30)
        assert server.process.returncode == 0
    with running_server(tmp_path, ["--api", "--api-server-stop", "--skip-load-model-at-start",
                                   "--nowebui"]) as server:
        status, body = server.request("POST", "/sdapi/v1/server-kill")
        assert status == 200 and body == "Killing."
        server.process.wait(timeout=30)
