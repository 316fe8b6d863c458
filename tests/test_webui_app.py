"""webui.py's wiring of flags: --api gating, CORS, timing header, UI logins, --ckpt at startup, port fallback."""

from __future__ import annotations

import socket
import time

import pytest
from tests.support.local_client import LocalClient

from modules.cmd_args import parse_args
from tests.support.tiny_checkpoints import write_tiny_checkpoint
from webui import choose_port, create_app, start_background_load, ui_credentials


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion", "alpha", seed=1)
    return root


def app_for(*argv: str):
    return create_app(parse_args(list(argv), environ={}))


def test_sdapi_is_served_only_with_api_or_nowebui(data_dir):
    plain = LocalClient(app_for("--data-dir", str(data_dir)))  # UI only, as A1111 without --api
    assert plain.get("/sdapi/v1/sd-models").status_code == 404
    assert plain.get("/internal/ping").status_code == 200
    assert plain.get("/").status_code == 200  # the gradio page
    api = LocalClient(app_for("--nowebui", "--data-dir", str(data_dir)))
    response = api.get("/sdapi/v1/sd-models")
    assert response.status_code == 200 and response.json()[0]["model_name"] == "alpha"
    assert float(response.headers["X-Process-Time"]) >= 0


def test_internal_progress_answers_for_tasks_as_a1111(data_dir):
    """POST /internal/progress is served with or without --api (requestProgress() and extensions poll it)."""
    from modules import progress

    client = LocalClient(app_for("--data-dir", str(data_dir)))
    task = progress.create_task_id("txt2img")

    def state() -> tuple[bool, bool, bool]:
        body = client.post("/internal/progress", json={"id_task": task, "id_live_preview": -1}).json()
        return body["active"], body["queued"], body["completed"]

    assert state() == (False, False, False)
    progress.add_task_to_queue(task)
    assert state() == (False, True, False)
    progress.start_task(task)
    assert state() == (True, False, False)
    progress.finish_task(task)
    assert state() == (False, False, True)


def test_cors_origins(data_dir):
    client = LocalClient(app_for("--nowebui", "--data-dir", str(data_dir), "--cors-allow-origins",
                                "http://editor.local,http://other.local"))
    headers = {"Origin": "http://editor.local", "Access-Control-Request-Method": "POST"}
    allowed = client.options("/sdapi/v1/txt2img", headers=headers)
    assert allowed.headers.get("access-control-allow-origin") == "http://editor.local"
    denied = client.options("/sdapi/v1/txt2img", headers={**headers, "Origin": "http://evil.local"})
    assert "access-control-allow-origin" not in denied.headers
    regex = LocalClient(app_for("--nowebui", "--data-dir", str(data_dir), "--cors-allow-origins-regex",
                               r"http://.*\.example"))
    assert regex.get("/internal/ping", headers={"Origin": "http://a.example"}).headers[
        "access-control-allow-origin"] == "http://a.example"


def test_ui_logins_merge_flag_and_file(tmp_path):
    logins = tmp_path / "logins.txt"
    logins.write_text("bob:pw2\n\ncarol:a:b,dave:x\n", encoding="utf-8")
    args = parse_args(["--gradio-auth", "alice:pw1", "--gradio-auth-path", str(logins)], environ={})
    assert ui_credentials(args) == [("alice", "pw1"), ("bob", "pw2"), ("carol", "a:b"), ("dave", "x")]


def test_ckpt_flag_is_loaded_at_startup(data_dir, tmp_path):
    outside = write_tiny_checkpoint("sd1", tmp_path / "elsewhere", "zeta", seed=3)
    app = app_for("--nowebui", "--data-dir", str(data_dir), "--ckpt", str(outside))
    rt = app.state.runtime
    try:
        assert rt.registry.list()[0].path == outside.resolve()  # --ckpt is listed first, as in A1111
        start_background_load(app)
        deadline = time.time() + 120
        while rt.manager.info is None and time.time() < deadline:
            time.sleep(0.1)
        assert rt.manager.info is not None and rt.manager.info.path == outside.resolve()
    finally:
        rt.jobs.stop()


def test_default_port_falls_forward_but_explicit_port_does_not():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        taken = busy.getsockname()[1]
        assert choose_port("127.0.0.1", taken, explicit=True) == taken
        assert choose_port("127.0.0.1", taken, explicit=False) > taken


def test_subpath_answers_with_and_without_the_prefix(data_dir):
    from webui import StripSubpath

    client = LocalClient(StripSubpath(app_for("--nowebui", "--data-dir", str(data_dir)), "sd/"))
    assert client.get("/sd/internal/ping").status_code == 200
    assert client.get("/internal/ping").status_code == 200  # a proxy that strips the prefix
    assert client.get("/sd/sdapi/v1/samplers").json()[0]["name"] == "DPM++ 2M"
    assert client.get("/sdx/internal/ping").status_code == 404  # only the whole path segment matches


def test_a_configured_checkpoint_that_was_deleted_falls_back(tmp_path):
    import json

    root = tmp_path / "data"
    write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion", "alpha", seed=1)
    (root / "config.json").write_text(json.dumps({"sd_model_checkpoint": "gone.safetensors [0123456789]"}))
    app = app_for("--nowebui", "--data-dir", str(root))
    try:
        start_background_load(app)
        client = LocalClient(app)
        r = client.post("/sdapi/v1/txt2img", json={"width": 64, "height": 64, "steps": 1})
        assert r.status_code == 200, r.text
        assert json.loads(r.json()["info"])["sd_model_name"] == "alpha"
        assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("alpha.safetensors")
    finally:
        app.state.runtime.jobs.stop()


def test_freeze_settings_refuses_api_writes_and_keeps_config(data_dir):
    config = data_dir / "config.json"
    before = config.read_bytes() if config.exists() else None
    client = LocalClient(app_for("--nowebui", "--freeze-settings", "--data-dir", str(data_dir)))
    r = client.post("/sdapi/v1/options", json={"jpeg_quality": 33})
    assert r.status_code == 422 and "frozen" in r.text and r.json()["detail"][0]["loc"][-1] == "jpeg_quality"
    assert (config.read_bytes() if config.exists() else None) == before
