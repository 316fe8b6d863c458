"""The request guard in front of every route (campaign C24-C29, B15 body size): Host allow-list against DNS
rebinding, cross-site refusal for state-changing requests and websockets, the content-type gate on API POSTs,
the body limit, and one login for the UI, the API and every other route."""

from __future__ import annotations

import base64

import pytest
from starlette.websockets import WebSocketDisconnect

from modules.cmd_args import parse_args
from tests.support.local_client import LocalClient
from webui import create_app


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("guard")


def client_for(data_dir, *flags, **kwargs):
    return LocalClient(create_app(parse_args(["--data-dir", str(data_dir), *flags], environ={})), **kwargs)


@pytest.fixture(scope="module")
def api(data_dir):
    return client_for(data_dir, "--api")


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:7860", "127.0.0.1.nip.io",
                                  "192.168.1.5", "localhost.evil.com"])
def test_unknown_hosts_are_refused_everywhere(api, host):
    for method, path in (("GET", "/sdapi/v1/sd-models"), ("GET", "/"), ("POST", "/sdapi/v1/interrupt"),
                         ("GET", "/internal/localization")):
        r = api.request(method, path, headers={"Host": host})
        assert r.status_code == 421, (method, path, r.status_code)
        assert "allowed-hosts" in r.json()["detail"]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:7860", "localhost:7860", "[::1]:7860"])
def test_loopback_hosts_are_served(api, host):
    assert api.get("/sdapi/v1/sd-models", headers={"Host": host}).status_code == 200


def test_exposed_server_answers_ip_hosts_and_named_extra_hosts(data_dir):
    exposed = client_for(data_dir, "--api", "--listen", "--insecure-no-auth", "--allowed-hosts", "studio.lan")
    for host in ("192.168.1.5:7860", "10.0.0.2", "studio.lan", "[fe80::1]:7860"):
        assert exposed.get("/sdapi/v1/sd-models", headers={"Host": host}).status_code == 200, host
    assert exposed.get("/sdapi/v1/sd-models", headers={"Host": "rebind.attacker.example"}).status_code == 421
    anything = client_for(data_dir, "--api", "--allowed-hosts", "*")
    assert anything.get("/sdapi/v1/sd-models", headers={"Host": "whatever.example"}).status_code == 200


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"}, {"Origin": "http://127.0.0.1:9999"},
])
@pytest.mark.parametrize("path", ["/sdapi/v1/interrupt", "/sdapi/v1/skip", "/sdapi/v1/unload-checkpoint",
                                  "/sdapi/v1/options", "/gradio_api/queue/join", "/api/v1/jobs/txt2img"])
def test_cross_site_state_changes_are_refused(api, headers, path):
    r = api.post(path, headers=headers, json={})
    assert r.status_code == 403 and "cross-site" in r.json()["detail"]


def test_same_origin_and_non_browser_clients_pass(api):
    assert api.post("/sdapi/v1/interrupt", headers={"Origin": "http://127.0.0.1"}).status_code == 200
    assert api.post("/sdapi/v1/interrupt", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert api.post("/sdapi/v1/interrupt").status_code == 200  # webuiapi: no body, no content type
    # reading with a foreign Origin is allowed (CORS keeps the answer from the page) and changes nothing
    assert api.get("/sdapi/v1/sd-models", headers={"Origin": "http://evil.example"}).status_code == 200


def test_trusted_cors_origins_may_post(data_dir):
    trusted = client_for(data_dir, "--api", "--cors-allow-origins", "http://editor.local")
    assert trusted.post("/sdapi/v1/interrupt", headers={"Origin": "http://editor.local"}).status_code == 200
    assert trusted.post("/sdapi/v1/interrupt", headers={"Origin": "http://other.local"}).status_code == 403


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "TEXT/PLAIN; charset=utf-8"])
def test_form_content_types_cannot_reach_the_api(api, content_type):
    r = api.post("/sdapi/v1/interrupt", content=b"a=b", headers={"Content-Type": content_type})
    assert r.status_code == 415
    r = api.post("/sdapi/v1/options", content=b'{"samples_format": "jpg"}', headers={"Content-Type": content_type})
    assert r.status_code == 415
    assert api.get("/sdapi/v1/options").json()["samples_format"] == "png"


def test_websockets_from_foreign_origins_are_closed(api):
    with pytest.raises(WebSocketDisconnect) as refused:
        with api.websocket_connect("ws://127.0.0.1/gradio_api/queue/join", headers={"Origin": "http://evil.example"}):
            pass
    assert refused.value.code == 1008 and "cross-site" in refused.value.reason


def test_request_bodies_over_the_limit_are_413_before_decoding(data_dir):
    small = client_for(data_dir, "--api", "--max-request-mb", "1")
    big = b'{"prompt": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    r = small.post("/sdapi/v1/txt2img", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "1 MB" in r.json()["detail"]

    def chunks():  # no Content-Length: the streamed body is counted
        for _ in range(3):
            yield b"a" * (600 * 1024)

    r = small.post("/sdapi/v1/txt2img", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert small.get("/sdapi/v1/sd-models").status_code == 200  # the server goes on


def test_one_login_covers_api_ui_and_our_routes(data_dir):
    # --gradio-auth alone used to leave /sdapi/v1 open
    locked = client_for(data_dir, "--api", "--listen", "--gradio-auth", "ann:s3cret:x")
    for path in ("/sdapi/v1/cmd-flags", "/sdapi/v1/options", "/internal/localization", "/api/v1/jobs",
                 "/sdapi/v1/loras"):
        r = locked.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Basic", path
        assert locked.get(path, headers=basic("ann", "s3cret:x")).status_code == 200, path
        assert locked.get(path, headers=basic("ann", "wrong")).status_code == 401
    assert locked.post("/sdapi/v1/options", json={"samples_format": "jpg"}).status_code == 401
    page = locked.get("/", follow_redirects=False)
    assert page.status_code != 401  # gradio's own login page serves the UI
    assert locked.get("/config").status_code == 401  # gradio guards its routes itself
    # the UI's login cookie works for our routes too (the page's own calls, extensions' fetches)
    login = locked.post("/login", data={"username": "ann", "password": "s3cret:x"})
    assert login.status_code == 200
    assert locked.get("/internal/localization").status_code == 200
    assert locked.get("/sdapi/v1/sd-models").status_code == 200
    api_only = client_for(data_dir, "--api", "--api-auth", "bot:token")
    assert api_only.get("/sdapi/v1/sd-models").status_code == 401
    assert api_only.get("/sdapi/v1/sd-models", headers=basic("bot", "token")).status_code == 200


def test_empty_passwords_are_refused_at_start(data_dir, capsys):
    flags = ["--data-dir", str(data_dir), "--api", "--api-auth", "bot:"]
    with pytest.raises(SystemExit) as exited:  # the command line is refused in one line, exit status 2
        parse_args(flags, environ={})
    assert exited.value.code == 2 and "empty password" in capsys.readouterr().err
    with pytest.raises(ValueError, match="empty password"):  # flags built without the start checks: still refused
        create_app(parse_args(flags, environ={}, check_access=False))


def test_admin_actions_are_off_on_an_exposed_server_without_a_login(data_dir):
    import gradio as gr

    from modules.runtime import build_runtime
    from modules.ui.settings_tab import build_settings_tab

    flags = ["--api", "--api-server-stop", "--listen", "--insecure-no-auth"]
    open_server = client_for(data_dir, *flags)
    r = open_server.post("/sdapi/v1/server-stop", headers={"Host": "192.168.1.5"})
    assert r.status_code == 403 and "without a login" in r.json()["detail"]
    assert open_server.get("/sdapi/v1/sd-models", headers={"Host": "192.168.1.5"}).status_code == 200  # still up
    # folder and filename settings are not offered in Settings there
    rt = build_runtime(parse_args(["--data-dir", str(data_dir), *flags], environ={}))
    with gr.Blocks():
        exposed = build_settings_tab(rt)
    local = build_runtime(parse_args(["--data-dir", str(data_dir)], environ={}))
    with gr.Blocks():
        normal = build_settings_tab(local)
    for key in ("outdir_samples", "samples_filename_pattern"):
        assert key in normal.components and key not in exposed.components


def test_internal_errors_are_json_without_a_traceback(data_dir, caplog):
    app = create_app(parse_args(["--data-dir", str(data_dir), "--nowebui"], environ={}))

    def boom() -> None:
        raise RuntimeError("secret detail /home/user/.ssh")

    app.add_api_route("/boom", boom)
    client = LocalClient(app, raise_server_exceptions=False)
    r = client.get("/boom")
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    body = r.text
    assert "error id" in r.json()["detail"] and "secret detail" not in body and "Traceback" not in body
    assert "secret detail" in caplog.text  # the log has it


def test_uploaded_active_files_are_downloads_and_nothing_is_sniffed(data_dir):
    ui = client_for(data_dir)
    for name, content in (("evil.html", b"<script>alert(1)</script>"), ("evil.png", b"<html><script>x</script>"),
                          ("evil.svg", b"<svg xmlns='http://www.w3.org/2000/svg'><script>x</script></svg>")):
        uploaded = ui.post("/gradio_api/upload", files={"files": (name, content)})
        assert uploaded.status_code == 200, uploaded.text
        served = ui.get(f"/gradio_api/file={uploaded.json()[0]}")
        assert served.status_code == 200
        assert served.headers["x-content-type-options"] == "nosniff"
        kind = served.headers.get("content-type", "")
        if not kind.startswith(("image/png", "image/jpeg", "image/webp")):
            assert served.headers.get("content-disposition", "").startswith("attachment"), (name, kind)
    page = ui.get("/")
    assert page.headers["content-security-policy"] == "frame-ancestors 'self'"
    assert page.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("target", ["config.json", "../config.json", "/etc/passwd", "webui.py",
                                    "models/Stable-diffusion/x.safetensors", "..%2fconfig.json"])
def test_the_file_route_serves_nothing_outside_outputs_and_uploads(data_dir, target):
    (data_dir / "config.json").write_text("{}", encoding="utf-8")
    ui = client_for(data_dir)
    r = ui.get(f"/gradio_api/file={data_dir / target if not target.startswith('/') else target}")
    assert r.status_code in (403, 404) and "{}" != r.text
    r = ui.get(f"/gradio_api/file={target}")
    assert r.status_code in (403, 404)


def test_repeated_wrong_logins_are_locked_out(data_dir):
    locked = client_for(data_dir, "--api", "--api-auth", "bot:token")
    for _ in range(10):
        assert locked.get("/sdapi/v1/sd-models", headers=basic("bot", "guess")).status_code == 401
    r = locked.get("/sdapi/v1/sd-models", headers=basic("bot", "token"))  # even the right one, for a while
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    ui = client_for(data_dir, "--gradio-auth", "ann:pw")
    for _ in range(10):
        ui.post("/login", data={"username": "ann", "password": "nope"})
    assert ui.post("/login", data={"username": "ann", "password": "pw"}).status_code == 429


def test_login_check_answers_as_a1111s(data_dir):
    """gradio 3's /login_check, which A1111 served and clients probe: null when no login is needed or given, else 401
    "Not authenticated" (no Basic challenge: a browser must not pop up a dialog)."""
    open_ui = client_for(data_dir, "--api")
    r = open_ui.get("/login_check")
    assert r.status_code == 200 and r.json() is None
    locked = client_for(data_dir, "--api", "--gradio-auth", "ann:pw")
    r = locked.get("/login_check")
    assert r.status_code == 401 and r.json() == {"detail": "Not authenticated"}
    assert "www-authenticate" not in r.headers
    assert locked.get("/login_check", headers=basic("ann", "wrong")).status_code == 401
    assert locked.get("/login_check/", headers=basic("ann", "pw")).json() is None
    assert locked.post("/login", data={"username": "ann", "password": "pw"}).status_code == 200
    r = locked.get("/login_check")  # the UI's login cookie
    assert r.status_code == 200 and r.json() is None
    assert client_for(data_dir, "--nowebui").get("/login_check").status_code == 404  # no UI, no gradio route
