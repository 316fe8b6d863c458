"""Issue 21, items 8 and 9, through a real ``webui.py`` server and Debian's chromium (see tests/test_ui_browser.py).

8. Infotext paste in the page: the ↙️ buttons of txt2img and img2img and PNG Info's send buttons set the sampler and
   schedule dropdowns from both infotext forms (``Sampler: X, Schedule type: Y`` and the legacy ``Sampler: X Y``),
   the hires ones too, and an X/Y/Z plot's ``X Values: "2,4"`` comes back as typed.
9. Messages and logs: no checkpoint, a client gone mid-upload, a checkpoint deleted from disk.
"""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from playwright.sync_api import Page, expect

from tests.support.server import HOST, make_data_dir, running_server, wait_for_model
from tests.test_ui_browser import TIMEOUT_MS, browser, page_errors, js_errors  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = make_data_dir(tmp_path_factory.mktemp("paste-ui"), ["tiny"])
    # The hires sampler/schedule dropdowns are drawn only with this setting (A1111's too).
    (data_dir / "config.json").write_text(json.dumps({"hires_fix_show_sampler": True}), encoding="utf-8")
    with running_server(data_dir) as srv:
        wait_for_model(srv)
        yield srv


@pytest.fixture(scope="module")
def page(browser, server, page_errors) -> Page:  # noqa: F811
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("pageerror", lambda err: page_errors.append(str(err)))
    page.goto(server.url + "/", wait_until="load")
    page.locator("#txt2img_generate").wait_for(state="visible")
    yield page
    page.close()


def paste(page: Page, tab: str, text: str) -> None:
    page.get_by_role("tab", name=tab).first.click()
    page.locator(f"#{tab}_prompt textarea").fill(text)
    page.locator(f"#{tab}_paste").click()
    expect(page.locator(f"#{tab}_prompt textarea")).to_have_value(text.split("\n")[0])  # the paste ran


def expect_sampler(page: Page, tab: str, sampler: str, schedule: str) -> None:
    expect(page.locator(f"#{tab}_sampling input")).to_have_value(sampler)
    expect(page.locator(f"#{tab}_scheduler input")).to_have_value(schedule)


# Both infotext forms of one sampler + schedule. Karras is DPM++ 2M's own schedule, so for it A1111 (and we) paste
# "Automatic", which runs Karras and writes "Schedule type: Karras" back into the next infotext; Euler a has no
# schedule of its own, so Karras shows as Karras.
FORMS = [
    ("Sampler: DPM++ 2M, Schedule type: Karras", "DPM++ 2M", "Automatic"),
    ("Sampler: DPM++ 2M Karras", "DPM++ 2M", "Automatic"),
    ("Sampler: Euler a, Schedule type: Karras", "Euler a", "Karras"),
    ("Sampler: Euler a Karras", "Euler a", "Karras"),
    ("Sampler: Euler Exponential", "Euler", "Exponential"),
]


@pytest.mark.parametrize("tab", ["txt2img", "img2img"])
def test_paste_button_sets_sampler_and_schedule_from_both_forms(page: Page, tab, js_errors):  # noqa: F811
    for n, (sampler_text, sampler, schedule) in enumerate(FORMS):
        paste(page, tab, f"a pasted fox {n}\nSteps: {3 + n}, {sampler_text}, CFG scale: 5, Seed: {70 + n}, "
                         "Size: 64x72")
        expect_sampler(page, tab, sampler, schedule)
        expect(page.locator(f"#{tab}_seed input")).to_have_value(str(70 + n))
        expect(page.locator(f"#{tab}_steps input[type=number]")).to_have_value(str(3 + n))
    assert js_errors == []


def test_paste_sets_the_hires_sampler_and_schedule(page: Page, js_errors):  # noqa: F811
    paste(page, "txt2img", "a hires fox\nSteps: 3, Sampler: Euler a, CFG scale: 5, Seed: 7, Size: 64x64, "
                           "Denoising strength: 0.5, Hires upscale: 2, Hires steps: 2, Hires upscaler: Latent, "
                           "Hires sampler: DPM++ 2M Karras")
    expect_sampler(page, "txt2img", "Euler a", "Automatic")
    page.locator("#txt2img_hr").get_by_text("Hires. fix").first.click()  # open the accordion
    expect(page.locator("#txt2img_enable_hr input")).to_be_checked()
    expect(page.locator("#hr_sampler input")).to_have_value("DPM++ 2M")
    expect(page.locator("#hr_scheduler input")).to_have_value("Karras")

    paste(page, "txt2img", "a hires fox 2\nSteps: 3, Sampler: Euler a, CFG scale: 5, Seed: 7, Size: 64x64, "
                           "Denoising strength: 0.5, Hires upscale: 2, Hires steps: 2, Hires upscaler: Latent, "
                           "Hires sampler: DPM++ SDE, Hires schedule type: Exponential")
    expect(page.locator("#hr_sampler input")).to_have_value("DPM++ SDE")
    expect(page.locator("#hr_scheduler input")).to_have_value("Exponential")
    assert js_errors == []


XYZ_INFOTEXT = ('a grid of foxes\nSteps: 3, Sampler: Euler, CFG scale: 5, Seed: 7, Size: 64x64, '
                'Script: X/Y/Z plot, X Type: Steps, X Values: "2,4"')


@pytest.mark.parametrize("tab", ["txt2img", "img2img"])
def test_paste_keeps_xyz_plot_values_as_typed(page: Page, tab, js_errors):  # noqa: F811
    paste(page, tab, XYZ_INFOTEXT)
    expect(page.locator(f"#{tab}_script input")).to_have_value("X/Y/Z plot")
    expect(page.locator(f"#script_{tab}_x_y_z_plot_x_type input")).to_have_value("Steps")
    expect(page.locator(f"#script_{tab}_x_y_z_plot_x_values textarea")).to_have_value("2,4")
    expect(page.locator(f"#{tab}_sampling input")).to_have_value("Euler")
    assert js_errors == []


def _png_with(path: Path, text: str) -> Path:
    info = PngInfo()
    info.add_text("parameters", text)
    Image.new("RGB", (64, 64), (30, 90, 150)).save(path, pnginfo=info)
    return path


@pytest.mark.parametrize("target", ["txt2img", "img2img"])
def test_png_info_send_to_sets_sampler_schedule_and_xyz_values(page: Page, target, js_errors,  # noqa: F811
                                                                tmp_path):
    text = ('a fox from a png\nSteps: 4, Sampler: Euler a Karras, CFG scale: 5, Seed: 99, Size: 64x64, '
            'Script: X/Y/Z plot, X Type: Seed, X Values: "2,4"')
    png = _png_with(tmp_path / "fox.png", text)
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(png))
    expect(page.locator("#pnginfo_html")).to_contain_text("X Values")
    page.locator(f"#pnginfo_send_to_{target}").click()
    expect(page.locator(f"#tab_{target}")).to_be_visible()
    expect(page.locator(f"#{target}_prompt textarea")).to_have_value("a fox from a png")
    expect_sampler(page, target, "Euler a", "Karras")
    expect(page.locator(f"#script_{target}_x_y_z_plot_x_values textarea")).to_have_value("2,4")
    assert js_errors == []


# -- 9. messages and logs ---------------------------------------------------------------------------------------------


def _new_log(server, start: int) -> str:
    return (server.log_dir / "stderr.log").read_text(encoding="utf-8", errors="replace")[start:]


def _log_size(server) -> int:
    return len((server.log_dir / "stderr.log").read_text(encoding="utf-8", errors="replace"))


def _wait_quiet(server, seconds: float = 3.0) -> None:
    """Until the log stops growing (what the server logs about a dropped connection is written by then)."""
    deadline, size = time.monotonic() + seconds * 4, -1
    while time.monotonic() < deadline:
        time.sleep(seconds / 3)
        now = _log_size(server)
        if now == size:
            return
        size = now


@pytest.mark.parametrize("path, content_type, head", [
    ("/sdapi/v1/img2img", "application/json", b'{"prompt": "x", "init_images": ["'),
    ("/gradio_api/upload", "multipart/form-data; boundary=XX",
     b'--XX\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'),
])
def test_client_gone_mid_upload_is_no_error_in_the_log(server, path, content_type, head):
    start = _log_size(server)
    with socket.create_connection((HOST, server.port), timeout=30) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: {HOST}:{server.port}\r\nContent-Type: {content_type}\r\n"
                  "Content-Length: 20000000\r\n\r\n".encode() + head + b"A" * 2_000_000)  # of 20 MB
        time.sleep(1.5)  # the server is reading the body
    _wait_quiet(server)
    log = _new_log(server, start)
    assert "ERROR" not in log and "Traceback" not in log and "ClientDisconnect" not in log, log
    assert server.get_json("/sdapi/v1/progress")["state"]["job_count"] == 0  # and it serves on


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("no-checkpoint")  # passed as --data-dir; no checkpoint in it
    with running_server(data_dir, ["--no-download-sd-model"]) as srv:
        yield srv


def test_no_checkpoint_is_one_readable_line_naming_the_folder(browser, empty_server, js_errors):  # noqa: F811
    folder = str(empty_server.data_dir / "models" / "Stable-diffusion")
    start = _log_size(empty_server)
    status, body = empty_server.request("POST", "/sdapi/v1/txt2img", {"prompt": "x", "steps": 1, "width": 64,
                                                                       "height": 64})
    assert status == 409 and body["error"] == "No checkpoint" and folder in body["detail"], body

    page = browser.new_page()
    try:
        page.goto(empty_server.url + "/", wait_until="load")
        page.locator("#txt2img_prompt textarea").fill("a cat with no model")
        page.locator("#txt2img_generate").click()
        info = page.locator("#html_info_txt2img")
        expect(info).to_contain_text("No checkpoint found")
        text = info.inner_text().strip()
        assert folder in text and "\n" not in text and "Traceback" not in text, text
        expect(page.locator("#html_info_txt2img .error")).to_have_count(1)
    finally:
        page.close()
    _wait_quiet(empty_server)
    log = _new_log(empty_server, start)
    assert "Traceback" not in log and "ERROR" not in log, log
    assert "No checkpoint found" in log  # one warning line per failed job says what happened


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    data_dir = make_data_dir(tmp_path_factory.mktemp("deleted-checkpoint"), ["alpha", "beta"])
    with running_server(data_dir) as srv:
        wait_for_model(srv)  # alpha, the first, is loaded
        yield srv


def _offered(page: Page) -> list[str]:
    page.locator("#setting_sd_model_checkpoint input").click()
    options = page.get_by_role("option")
    expect(options.first).to_be_visible()
    texts = [t.replace("✓", "").strip() for t in options.all_inner_texts()]
    page.keyboard.press("Escape")
    return texts


def test_deleted_checkpoint_is_not_used_after_refresh(browser, two_checkpoints, js_errors):  # noqa: F811
    srv = two_checkpoints
    ckpts = srv.data_dir / "models" / "Stable-diffusion"
    assert srv.get_json("/sdapi/v1/options")["sd_model_checkpoint"].startswith("alpha")
    page = browser.new_page()
    try:
        page.goto(srv.url + "/", wait_until="load")
        page.locator("#txt2img_generate").wait_for(state="visible")
        assert [t.split(" ")[0] for t in _offered(page)] == ["alpha.safetensors", "beta.safetensors"]

        # The loaded checkpoint's file goes; the 🔄 button drops it and the next job does not use it silently.
        (ckpts / "alpha.safetensors").unlink()
        page.locator("#refresh_sd_model_checkpoint").click()
        expect(page.locator("#setting_sd_model_checkpoint input")).to_have_value(re.compile(r"^beta"))
        assert all(not t.startswith("alpha") for t in _offered(page))
        status, body = srv.request("POST", "/sdapi/v1/txt2img", {"prompt": "x", "steps": 1, "width": 64,
                                                                  "height": 64})
        assert status == 200 and "Model: beta" in json.loads(body["info"])["infotexts"][0], body.get("info")
        # A job naming the deleted one gets a clear error.
        status, body = srv.request("POST", "/sdapi/v1/txt2img", {
            "prompt": "x", "steps": 1, "width": 64, "height": 64,
            "override_settings": {"sd_model_checkpoint": "alpha.safetensors"}})
        assert status == 422 and "'alpha.safetensors' not found" in json.dumps(body), body

        # The last one goes too (through the API's refresh): a job is a clear "no checkpoint", not beta from memory.
        (ckpts / "beta.safetensors").unlink()
        status, _ = srv.request("POST", "/sdapi/v1/refresh-checkpoints")
        assert status == 200 and srv.get_json("/sdapi/v1/sd-models") == []
        status, body = srv.request("POST", "/sdapi/v1/txt2img", {"prompt": "x", "steps": 1, "width": 64,
                                                                  "height": 64})
        assert status == 409 and body["error"] == "No checkpoint" and str(ckpts) in body["detail"], body
        page.locator("#txt2img_prompt textarea").fill("a cat from a deleted model")
        page.locator("#txt2img_generate").click()
        expect(page.locator("#html_info_txt2img")).to_contain_text("No checkpoint found")
    finally:
        page.close()
    assert "Traceback" not in srv.log_tail(20000)
