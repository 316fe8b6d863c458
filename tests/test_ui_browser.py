"""The Gradio UI in a real browser: Debian's chromium driven by Playwright against a real ``webui.py`` process.

No browser is downloaded: Playwright drives ``/usr/bin/chromium`` (run_tests.sh installs it with apt). A missing
browser FAILS these tests with a message saying what to install; it never skips them.
"""

from __future__ import annotations

import io
import re
import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright

from tests.support.server import make_data_dir, running_server, wait_for_model

pytestmark = pytest.mark.timeout(180)

CHROMIUM = os.environ.get("WEBUI_TEST_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--no-proxy-server"]
TIMEOUT_MS = 30_000  # every wait in the page; generation of a 64x64, 2-step image takes well under a second
SCREENSHOT = "txt2img-after-generate.png"
expect.set_options(timeout=TIMEOUT_MS)  # expect's own default is 5 s


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = make_data_dir(tmp_path_factory.mktemp("e2e-ui"), ["tiny"])
    (data_dir / "styles.csv").write_text('name,prompt,negative_prompt\ncinematic,"{prompt}, cinematic",blurry\n',
                                         encoding="utf-8")
    with running_server(data_dir) as srv:
        wait_for_model(srv)  # the page then shows the loaded checkpoint's title in the dropdown
        yield srv


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"No chromium at {CHROMIUM}: the browser tests need Debian's chromium. Install it with "
                    "`apt-get install chromium` (./run_tests.sh does this when run as root), or point "
                    "WEBUI_TEST_CHROMIUM at a chromium binary. `playwright install` is not used.", pytrace=False)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS,
            viewport={"width": 1400, "height": 1000}, timeout=TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def page_errors() -> list[str]:
    """Uncaught JavaScript errors of the module's page, as they arrive."""
    return []


@pytest.fixture
def js_errors(page_errors: list[str]) -> list[str]:
    """The page's uncaught JavaScript errors since this test began: one test's error fails that test, not every
    test after it."""
    page_errors.clear()
    return page_errors


@pytest.fixture(scope="module")
def page(browser, server, page_errors) -> Page:
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("pageerror", lambda err: page_errors.append(str(err)))
    page.goto(server.url + "/", wait_until="load")
    page.locator("#txt2img_generate").wait_for(state="visible")
    yield page
    page.close()


def number_input(page: Page, elem_id: str):
    """The number box of a slider (or a gr.Number) with this elem_id."""
    return page.locator(f"#{elem_id} input[type=number]")


def test_txt2img_tab_and_defaults(page: Page, server, js_errors):
    expect(page.get_by_role("tab", name="txt2img")).to_be_visible()
    expect(page.locator("#tab_txt2img")).to_be_visible()
    expect(page.locator("#txt2img_prompt textarea")).to_be_visible()
    expect(page.locator("#txt2img_prompt")).to_contain_text("Prompt")
    expect(page.locator("#txt2img_sampling")).to_contain_text("Sampling method")
    expect(page.locator("#txt2img_sampling input")).to_have_value("DPM++ 2M")
    expect(page.locator("#txt2img_scheduler input")).to_have_value("Automatic")
    expect(page.locator("#txt2img_steps")).to_contain_text("Sampling steps")
    expect(number_input(page, "txt2img_steps")).to_have_value("20")
    expect(number_input(page, "txt2img_width")).to_have_value("512")
    expect(number_input(page, "txt2img_height")).to_have_value("512")
    expect(page.locator("#txt2img_cfg_scale")).to_contain_text("CFG Scale")
    expect(number_input(page, "txt2img_cfg_scale")).to_have_value("7")
    expect(page.locator("#txt2img_seed input")).to_have_value("-1")
    expect(page.locator("#txt2img_generate")).to_have_text("Generate")
    expect(page.locator("#txt2img_generate")).to_be_enabled()

    title = server.get_json("/sdapi/v1/sd-models")[0]["title"]
    assert title.startswith("tiny.safetensors [")  # hashed once loaded
    expect(page.locator("#setting_sd_model_checkpoint input")).to_have_value(title)
    assert js_errors == []


def set_tiny_size(page: Page) -> None:
    """64x64, 2 steps, typed into the sliders' number boxes as a user would."""
    for elem_id, value in (("txt2img_width", "64"), ("txt2img_height", "64"), ("txt2img_steps", "2")):
        box = number_input(page, elem_id)
        box.fill(value)
        box.press("Enter")
        expect(page.locator(f"#{elem_id} input[type=range]")).to_have_value(value)  # the slider followed


def generate_tiny(page: Page, prompt: str) -> None:
    """A 64x64, 2-step txt2img of ``prompt`` from the txt2img tab, done when its infotext shows."""
    page.get_by_role("tab", name="txt2img").first.click()
    set_tiny_size(page)
    page.locator("#txt2img_prompt textarea").fill(prompt)
    page.locator("#txt2img_generate").click()
    expect(page.locator("#html_info_txt2img")).to_contain_text(prompt)


def test_generate_shows_image_and_infotext(page: Page, server, js_errors, tmp_path_factory):
    set_tiny_size(page)
    page.locator("#txt2img_prompt textarea").fill("a tiny lighthouse at dusk")
    page.locator("#txt2img_generate").click()

    image = page.locator("#txt2img_gallery img").first
    expect(image).to_be_visible()
    info = page.locator("#html_info_txt2img")
    expect(info).to_contain_text("Steps: 2")
    expect(info).to_contain_text("Size: 64x64")
    text = info.inner_text().strip()
    assert text.startswith("a tiny lighthouse at dusk\n"), text
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in text and "Model: tiny" in text
    expect(page.locator("#html_info_txt2img .error")).to_have_count(0)

    # The image the gallery shows is the saved PNG, with the infotext in its `parameters` chunk.
    src = image.get_attribute("src")
    assert src, "gallery image has no src"
    url = src if src.startswith("http") else server.url + src
    assert url.startswith(server.url + "/")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as r:
        assert r.status == 200
        png = Image.open(io.BytesIO(r.read()))
        png.load()
    assert png.format == "PNG" and png.size == (64, 64)
    assert png.info["parameters"] == text
    saved = sorted((server.data_dir / "outputs" / "txt2img-images").rglob("*.png"))
    assert text in [Image.open(path).info.get("parameters") for path in saved]  # the UI saved it, too

    shot = Path(os.environ.get("WEBUI_TEST_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots")) / SCREENSHOT
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert js_errors == []


def test_ctrl_enter_in_prompt_generates(page: Page, server, js_errors):
    """The prompt placeholder promises it (A1111's shortcut): Ctrl+Enter generates, without a newline."""
    set_tiny_size(page)
    before = len(list((server.data_dir / "outputs" / "txt2img-images").rglob("*.png")))
    prompt = page.locator("#txt2img_prompt textarea")
    prompt.fill("a second tiny lighthouse")
    prompt.press("Control+Enter")
    expect(page.locator("#html_info_txt2img")).to_contain_text("a second tiny lighthouse")
    expect(page.locator("#html_info_txt2img")).to_contain_text("Size: 64x64")
    assert prompt.input_value() == "a second tiny lighthouse"
    assert len(list((server.data_dir / "outputs" / "txt2img-images").rglob("*.png"))) == before + 1
    assert js_errors == []


def test_token_counter_styles_and_unknown_lora_note(page: Page, server, js_errors):
    prompt = page.locator("#txt2img_prompt textarea")
    prompt.fill("a cat, (dog:1.2) <lora:nosuch:1>")  # brackets and tags are not tokens
    expect(page.locator("#txt2img_token_counter")).to_have_text("4/75")
    prompt.fill("cat " * 80)
    expect(page.locator("#txt2img_token_counter")).to_have_text("80/150")

    set_tiny_size(page)
    prompt.fill("a cat <lora:nosuch:1>")
    page.locator("#txt2img_styles input").click()
    page.get_by_role("option", name="cinematic").click()
    page.locator("#txt2img_generate").click()
    info = page.locator("#html_info_txt2img")
    expect(info).to_contain_text("Networks not found: nosuch")  # reported, and the image is still made
    expect(info).to_contain_text("a cat <lora:nosuch:1>, cinematic")
    expect(info).to_contain_text("Negative prompt: blurry")
    expect(page.locator("#txt2img_gallery img").first).to_be_visible()
    assert js_errors == []


def test_quicksettings_clip_skip_and_vae(page: Page, server, js_errors):
    expect(page.locator("#setting_sd_vae input")).to_have_value("Automatic")
    box = number_input(page, "setting_CLIP_stop_at_last_layers")
    box.fill("2")
    box.press("Enter")
    expect(page.locator("#model_status")).to_contain_text("Clip skip: 2")
    assert server.get_json("/sdapi/v1/options")["CLIP_stop_at_last_layers"] == 2
    set_tiny_size(page)
    page.locator("#txt2img_prompt textarea").fill("a clipped cat")
    page.locator("#txt2img_generate").click()
    expect(page.locator("#html_info_txt2img")).to_contain_text("Clip skip: 2")
    assert js_errors == []


def test_zh_cn_localization_applies_after_reload(page: Page, server, js_errors):
    status, _ = server.request("POST", "/sdapi/v1/options", {"localization": "zh_CN"})
    assert status == 200
    try:
        page.reload(wait_until="load")
        expect(page.locator("#txt2img_generate")).to_have_text("生成")
        expect(page.locator("#txt2img_prompt")).to_contain_text("提示词")
        expect(page.locator("#txt2img_steps")).to_contain_text("迭代步数")
        expect(page.locator("#txt2img_gallery")).to_contain_text("输出")  # a gallery's label is UI text
        expect(page.locator("#txt2img_hr")).to_contain_text("高分辨率修复")
        expect(page.get_by_text("Built with Gradio")).to_be_hidden()  # gradio's own footer is not ours
        expect(page.locator("#txt2img_prompt textarea")).to_have_attribute("placeholder", "提示词（按 Ctrl+Enter 生成）")
        # Names are not UI text: the checkpoint and the sampler keep theirs.
        expect(page.locator("#setting_sd_model_checkpoint input")).to_have_value(re.compile(r"^tiny\.safetensors"))
        expect(page.locator("#txt2img_sampling input")).to_have_value("DPM++ 2M")
        set_tiny_size(page)
        page.locator("#txt2img_generate").click()  # text that appears later (the infotext) stays as generated
        expect(page.locator("#html_info_txt2img")).to_contain_text("Steps: 2")
    finally:
        server.request("POST", "/sdapi/v1/options", {"localization": "None"})
        page.reload(wait_until="load")
    expect(page.locator("#txt2img_generate")).to_have_text("Generate")
    assert js_errors == []


def test_settings_tab_applies_and_the_setting_survives_a_restart(page: Page, server, js_errors):
    page.get_by_role("tab", name="Settings").click()
    search = page.locator("#settings_search textarea, #settings_search input").first
    search.fill("jpeg")
    search.press("Enter")
    quality = number_input(page, "setting_jpeg_quality")
    expect(quality).to_be_visible()
    quality.fill("91")
    quality.press("Enter")
    page.locator("#settings_submit").click()
    expect(page.locator("#settings_result")).to_contain_text("jpeg_quality")
    assert server.get_json("/sdapi/v1/options")["jpeg_quality"] == 91
    with running_server(server.data_dir) as restarted:  # a second process reading the same config.json
        assert restarted.get_json("/sdapi/v1/options")["jpeg_quality"] == 91
    page.get_by_role("tab", name="txt2img").click()
    assert js_errors == []


def test_png_info_reads_a_generated_image_and_sends_it_back(page: Page, server, js_errors):
    set_tiny_size(page)
    page.locator("#txt2img_prompt textarea").fill("a cat to read back")
    page.locator("#txt2img_generate").click()
    expect(page.locator("#html_info_txt2img")).to_contain_text("a cat to read back")
    saved = sorted((server.data_dir / "outputs" / "txt2img-images").rglob("*.png"))
    with Image.open(saved[-1]) as im:
        infotext = im.info["parameters"]
    assert infotext.startswith("a cat to read back\n")
    page.locator("#txt2img_prompt textarea").fill("")
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(saved[-1]))
    expect(page.locator("#pnginfo_html")).to_contain_text(infotext.splitlines()[-1][:60])
    page.locator("#pnginfo_send_to_txt2img").click()
    expect(page.locator("#tab_txt2img")).to_be_visible()
    prompt_line = infotext.split("\n")[0]
    seed = re.search(r"Seed: (\d+)", infotext).group(1)
    expect(page.locator("#txt2img_prompt textarea")).to_have_value(prompt_line)
    expect(page.locator("#txt2img_seed input")).to_have_value(seed)
    expect(number_input(page, "txt2img_width")).to_have_value("64")
    assert js_errors == []


def test_paste_button_and_keyboard_shortcuts(page: Page, server, js_errors):
    last = (server.data_dir / "params.txt").read_text(encoding="utf-8")  # the last generation's infotext
    prompt = page.locator("#txt2img_prompt textarea")
    prompt.fill("")
    page.locator("#txt2img_paste").click()
    expect(prompt).to_have_value(last.split("\n")[0])
    seed = re.search(r"Seed: (\d+)", last).group(1)
    expect(page.locator("#txt2img_seed input")).to_have_value(seed)

    pasted = "a pasted owl\nSteps: 3, Sampler: Euler a, CFG scale: 5, Seed: 77, Size: 64x72"
    prompt.fill(pasted)
    page.locator("#txt2img_paste").click()
    expect(prompt).to_have_value("a pasted owl")
    expect(number_input(page, "txt2img_steps")).to_have_value("3")
    expect(number_input(page, "txt2img_height")).to_have_value("72")
    expect(page.locator("#txt2img_sampling input")).to_have_value("Euler a")

    # Esc in the prompt box interrupts a long job; the finished part is kept.
    number_input(page, "txt2img_steps").fill("150")
    number_input(page, "txt2img_steps").press("Enter")
    number_input(page, "txt2img_batch_count").fill("20")
    number_input(page, "txt2img_batch_count").press("Enter")
    prompt.press("Control+Enter")
    expect(page.locator("#txt2img_progress")).to_contain_text("Step", timeout=TIMEOUT_MS)
    prompt.press("Escape")
    expect(page.locator("#html_info_txt2img")).to_contain_text("Interrupted", timeout=TIMEOUT_MS)
    number_input(page, "txt2img_batch_count").fill("1")
    number_input(page, "txt2img_batch_count").press("Enter")
    assert "API" in page.locator("#footer").inner_text()
    assert js_errors == []


def test_progress_bar_and_live_preview_advance(page: Page, server, js_errors):
    import time

    status, _ = server.request("POST", "/sdapi/v1/options", {"show_progress_every_n_steps": 1})
    assert status == 200
    try:
        page.reload(wait_until="load")
        page.locator("#txt2img_generate").wait_for(state="visible")
        set_tiny_size(page)
        number_input(page, "txt2img_steps").fill("150")
        number_input(page, "txt2img_steps").press("Enter")
        # four images: the job is still running when Interrupt is pressed, however fast the machine
        set_numbers(page, {"txt2img_batch_count": "4"})
        page.locator("#txt2img_generate").click()
        bar = page.locator("#txt2img_progress [role=progressbar]")
        expect(bar).to_be_visible()
        seen = []
        deadline = time.time() + 30
        while time.time() < deadline and len(set(seen)) < 3:
            value = bar.get_attribute("aria-valuenow") if bar.count() else None
            if value is not None:
                seen.append(int(value))
            time.sleep(0.3)
        assert len(set(seen)) >= 3 and seen == sorted(seen), seen  # it moves, and only forward
        expect(page.locator("#txt2img_preview img")).to_be_visible()  # the live preview shows during the job
        expect(page.locator("#txt2img_progress")).to_contain_text("ETA")
        page.locator("#txt2img_interrupt").click()
        expect(page.locator("#html_info_txt2img")).to_contain_text("Interrupted")
    finally:
        server.request("POST", "/sdapi/v1/options", {"show_progress_every_n_steps": 10})
    set_numbers(page, {"txt2img_steps": "2", "txt2img_batch_count": "1"})
    assert js_errors == []


def set_numbers(page: Page, values: dict[str, str]) -> None:
    for elem_id, value in values.items():
        box = number_input(page, elem_id)
        box.fill(value)
        box.press("Enter")


def _wait_until_drawn(page: Page, canvas, timeout_s: float = 30.0) -> None:
    """Until the editor's canvas shows the uploaded picture (a noise image: far from uniform), polled on the
    page's own clock rather than a fixed sleep."""
    for _ in range(int(timeout_s * 10)):
        pixels = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("L"))
        if pixels.std() > 20:
            return
        page.wait_for_timeout(100)
    raise AssertionError("the uploaded image never appeared in the inpaint editor")


def test_inpaint_upload_paint_a_mask_and_generate(page: Page, server, js_errors, tmp_path):
    rng = np.random.RandomState(0)
    original = Image.fromarray(rng.randint(0, 255, (64, 64, 3)).astype(np.uint8))
    source = tmp_path / "photo.png"
    original.save(source)
    page.get_by_role("tab", name="img2img", exact=True).first.click()
    page.get_by_role("tab", name="Inpaint", exact=True).click()
    expect(page.locator("#img2img_mask_blur")).to_be_visible()  # inpaint controls show in inpaint modes only
    editor = page.locator("#img2maskimg")
    canvas = editor.locator("canvas").first
    # Gradio's editor appends its canvas once its tools are set up; a file given before that reaches an image tool
    # without a context and throws (seen on a slow CI machine), so the upload waits for the canvas
    expect(canvas).to_be_visible()
    editor.locator("input[type=file]").set_input_files(str(source))
    canvas.scroll_into_view_if_needed()
    _wait_until_drawn(page, canvas)  # the upload lands asynchronously: a stroke before it would paint nothing
    editor.locator("button[aria-label=Brush]").click()
    box = canvas.bounding_box()
    scale = min(box["width"], box["height"]) / 64
    left, top = box["x"] + (box["width"] - 64 * scale) / 2, box["y"] + (box["height"] - 64 * scale) / 2
    page.mouse.move(left + 6 * scale, top + 6 * scale)
    page.mouse.down()
    for x in range(6, 20, 2):  # a short stroke near the top-left corner
        page.mouse.move(left + x * scale, top + 8 * scale, steps=2)
    page.mouse.up()
    set_numbers(page, {"img2img_width": "64", "img2img_height": "64", "img2img_steps": "2", "img2img_mask_blur": "0",
                       "img2img_denoising_strength": "0.9"})
    page.locator("#img2img_generate").click()
    info = page.locator("#html_info_img2img")
    expect(info).to_contain_text("Masked content: original")
    expect(info).to_contain_text("Denoising strength: 0.9")
    saved = sorted((server.data_dir / "outputs" / "img2img-images").rglob("*.png"))[-1]
    result = np.asarray(Image.open(saved).convert("RGB")).astype(int)
    changed = np.any(result != np.asarray(original).astype(int), axis=2)
    assert changed.sum() > 20  # the painted area was repainted
    ys, xs = np.nonzero(changed)
    assert ys.max() < 48 and xs.max() < 56  # ... and only there: the far corner is the original, pixel for pixel
    assert not changed[48:, :].any() and not changed[:, 56:].any()
    assert js_errors == []


def test_send_to_img2img_carries_image_and_parameters(page: Page, server, js_errors):
    generate_tiny(page, "a lamp to send on")
    seed = re.search(r"Seed: (\d+)", page.locator("#html_info_txt2img").inner_text()).group(1)
    page.locator("#txt2img_send_to_img2img").click()
    expect(page.locator("#tab_img2img")).to_be_visible()
    expect(page.locator("#img2img_prompt textarea")).to_have_value("a lamp to send on")
    expect(page.locator("#img2img_seed input")).to_have_value(seed)
    expect(page.locator("#img2img_image img")).to_be_visible()
    # A1111's page helper for the "Resize to" readout finds the shown mode's picture (64x64), not another tab's
    assert page.evaluate("currentImg2imgSourceResolution(1, 1, 2)") == [64, 64, 2]
    set_numbers(page, {"img2img_steps": "2", "img2img_width": "64", "img2img_height": "64"})
    page.locator("#img2img_generate").click()
    expect(page.locator("#html_info_img2img")).to_contain_text("a lamp to send on")
    expect(page.locator("#html_info_img2img")).to_contain_text(f"Seed: {seed}")
    page.get_by_role("tab", name="txt2img").first.click()
    assert js_errors == []


def test_script_dropdown_shows_the_chosen_scripts_controls_and_runs_it(page: Page, server, js_errors):
    """The Script dropdown from the one script registry: each choice shows its own controls only, and Generate
    runs it (SD upscale doubles the picture in tiles of the width x height)."""
    generate_tiny(page, "a tile to upscale")
    page.locator("#txt2img_send_to_img2img").click()
    expect(page.locator("#img2img_image img")).to_be_visible()
    # A1111's page helper for the "Resize to" readout finds the shown mode's picture (64x64), not another tab's
    assert page.evaluate("currentImg2imgSourceResolution(1, 1, 2)") == [64, 64, 2]
    set_numbers(page, {"img2img_steps": "2", "img2img_width": "64", "img2img_height": "64"})

    def choose(title: str) -> None:
        page.locator("#img2img_script input").click()
        page.get_by_role("option", name=title, exact=True).click()
        expect(page.locator("#img2img_script input")).to_have_value(title)

    choose("Poor man's outpainting")
    expect(page.locator("#img2img_outpaint_pixels")).to_be_visible()
    expect(page.locator("#img2img_sd_upscale_overlap")).to_be_hidden()
    choose("SD upscale")
    expect(page.locator("#img2img_sd_upscale_overlap")).to_be_visible()
    expect(page.locator("#img2img_outpaint_pixels")).to_be_hidden()
    page.locator("#img2img_sd_upscale_upscaler_index input").click()
    page.get_by_role("option", name="Lanczos", exact=True).click()
    set_numbers(page, {"img2img_sd_upscale_overlap": "16"})  # smaller than the 64-pixel tiles
    before = set(server.data_dir.glob("outputs/img2img-images/*/*.png"))
    page.locator("#img2img_generate").click()
    expect(page.locator("#html_info_img2img")).to_contain_text("a tile to upscale")
    made = sorted(set(server.data_dir.glob("outputs/img2img-images/*/*.png")) - before)
    assert made
    with Image.open(made[-1]) as result:
        assert result.size == (128, 128)  # the default scale factor 2
    choose("None")
    expect(page.locator("#img2img_sd_upscale_overlap")).to_be_hidden()
    page.get_by_role("tab", name="txt2img").first.click()
    assert js_errors == []


def test_generate_forever_repeats_until_cancelled(page: Page, server, js_errors):
    import time

    page.get_by_role("tab", name="txt2img").first.click()
    set_tiny_size(page)
    folder = server.data_dir / "outputs" / "txt2img-images"
    count = lambda: len(list(folder.rglob("*.png")))  # noqa: E731
    before = count()
    page.locator("#txt2img_generate").click(button="right")
    page.locator("#context_menu").get_by_text("Generate forever").click()
    deadline = time.time() + 60
    while count() < before + 3 and time.time() < deadline:
        time.sleep(0.2)
    assert count() >= before + 3  # it went on by itself
    # the menu can close when a finished job re-renders the page under it: open it again until the click lands
    cancel = page.locator("#context_menu").get_by_text("Cancel generate forever")
    for attempt in range(5):
        page.locator("#txt2img_generate").click(button="right")
        try:
            cancel.click(timeout=5_000)
            break
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: try again, the last attempt raises
            if attempt == 4:
                raise
    # The run in flight finishes (its progress line goes; a slow run can outlast any fixed quiet time); then nothing
    # more starts.
    expect(page.locator("#txt2img_progress")).to_be_empty(timeout=90_000)
    settled, stable_since = count(), time.time()
    while time.time() - stable_since < 3 and time.time() < deadline + 30:
        time.sleep(0.2)
        if count() != settled:
            settled, stable_since = count(), time.time()
    time.sleep(2)
    assert count() == settled
    expect(page.locator("#txt2img_progress")).to_be_empty()
    assert js_errors == []


def test_extras_upscales_with_real_esrgan_and_keeps_the_parameters(page: Page, server, js_errors):
    generate_tiny(page, "a shell for extras")
    page.locator("#txt2img_send_to_extras").click()
    expect(page.locator("#tab_extras")).to_be_visible()
    expect(page.locator("#extras_image img")).to_be_visible()
    page.locator("#extras_upscaler_1 input").click()
    page.get_by_role("option", name="R-ESRGAN AnimeVideo", exact=True).click()
    expect(page.locator("#extras_upscaler_1 input")).to_have_value("R-ESRGAN AnimeVideo")
    box = number_input(page, "extras_upscaling_resize")
    box.fill("2")
    box.press("Enter")
    page.locator("#extras_generate").click()
    expect(page.locator("#html_info_x")).to_contain_text("Postprocess upscaler: R-ESRGAN AnimeVideo")
    saved = sorted((server.data_dir / "outputs" / "extras-images").glob("*.png"))[-1]
    with Image.open(saved) as result:
        assert result.size == (128, 128)
        assert result.info["parameters"].startswith("a shell for extras\n")
        assert "Postprocess upscale by: 2" in result.info["extras"]
    page.get_by_role("tab", name="txt2img").first.click()
    assert js_errors == []


ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"  # git-ignored


def test_screenshots_of_each_tab_in_english_and_zh_cn(page: Page, server, js_errors):
    """Kept as test artifacts (not committed) so a person can look at every tab in both languages."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tabs = {"txt2img": "txt2img", "img2img": "img2img", "Extras": "extras", "PNG Info": "pnginfo",
            "Settings": "settings"}
    zh_names = {"txt2img": "文生图", "img2img": "图生图", "Extras": "后期处理", "PNG Info": "图片信息", "Settings": "设置"}
    for language in ("None", "zh_CN"):
        server.request("POST", "/sdapi/v1/options", {"localization": language})
        page.reload(wait_until="load")
        page.locator("#txt2img_generate").wait_for(state="visible")
        for english, slug in tabs.items():
            name = zh_names[english] if language == "zh_CN" else english
            page.get_by_role("tab", name=name, exact=True).first.click()
            expect(page.locator(f"#tab_{slug}")).to_be_visible()
            shot = ARTIFACTS / f"{slug}-{'zh_CN' if language == 'zh_CN' else 'en'}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
    server.request("POST", "/sdapi/v1/options", {"localization": "None"})
    page.reload(wait_until="load")
    page.get_by_role("tab", name="txt2img").click()
    assert js_errors == []


def test_theme_flag_forces_the_theme(browser, tmp_path_factory):
    data_dir = make_data_dir(tmp_path_factory.mktemp("e2e-theme"), ["tiny"])
    with running_server(data_dir, ["--theme", "dark"]) as themed:
        page = browser.new_page()
        try:
            page.goto(themed.url + "/", wait_until="load")
            page.wait_for_url(re.compile(r"__theme=dark"))
            page.locator("#txt2img_generate").wait_for(state="visible")
            assert page.evaluate("document.body.classList.contains('dark') || "
                                 "document.documentElement.classList.contains('dark')")
        finally:
            page.close()
