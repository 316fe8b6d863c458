"""The live preview and the result panels in a real browser (issue 21 items 2 and 3): the preview takes the
gallery's place at the box's size whatever the method draws, TAESD from models/VAE-approx draws at the image's
size, and the Extras result has the output buttons of the other tabs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.support.server import make_data_dir, running_server, wait_for_model
from tests.test_ui_browser import (browser, js_errors, number_input, page, page_errors,  # noqa: F401
                                   set_numbers)  # fixtures: page opens this module's server
from tests.test_live_preview import write_taesd


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = make_data_dir(tmp_path_factory.mktemp("e2e-preview"), ["tiny"])
    write_taesd(data_dir / "models" / "VAE-approx" / "taesd_decoder.pth")
    with running_server(data_dir) as srv:
        wait_for_model(srv)
        yield srv


def _natural_size(page: Page, selector: str) -> tuple[int, int]:
    """The picture's own size once it has loaded, read in the same look as the check (the preview's <img> is
    replaced as new previews arrive)."""
    size = page.wait_for_function("s => { const i = document.querySelector(s); "
                                  "return i && i.complete && i.naturalWidth > 0 ? [i.naturalWidth, i.naturalHeight] "
                                  ": null; }", arg=selector)
    return tuple(size.json_value())


def _run_until_preview(page: Page, server, method: str) -> tuple[int, int]:
    status, _ = server.request("POST", "/sdapi/v1/options", {"show_progress_every_n_steps": 1,
                                                             "show_progress_type": method})
    assert status == 200
    page.reload(wait_until="load")
    page.locator("#txt2img_generate").wait_for(state="visible")
    set_numbers(page, {"txt2img_width": "64", "txt2img_height": "64", "txt2img_steps": "150"})
    page.locator("#txt2img_generate").click()
    image = page.locator("#txt2img_preview img")
    expect(image).to_be_visible()
    expect(page.locator("#txt2img_gallery")).to_be_hidden()  # the preview is in its place
    box = image.bounding_box()
    assert box is not None and box["width"] >= 300 and box["height"] >= 300, box  # the box, not the 8 px latent
    size = _natural_size(page, "#txt2img_preview img")
    page.locator("#txt2img_interrupt").click()  # (or the job ends first: either way the gallery comes back)
    expect(page.locator("#html_info_txt2img")).to_contain_text("Steps: 150")
    expect(page.locator("#txt2img_gallery")).to_be_visible()
    expect(page.locator("#txt2img_preview")).to_be_hidden()
    return size


def test_the_preview_fills_the_gallery_box_in_each_method(page: Page, server, js_errors):
    try:
        assert _run_until_preview(page, server, "Approx cheap") == (8, 8)  # the latent's size, scaled up
        assert _run_until_preview(page, server, "TAESD") == (64, 64)  # the file in models/VAE-approx
        # Approx NN without its model.pt: the next cheaper method, and the log says which file to put where
        assert _run_until_preview(page, server, "Approx NN") == (8, 8)
        assert "live preview Approx NN needs model.pt in" in server.log_tail(20000)
    finally:
        server.request("POST", "/sdapi/v1/options", {"show_progress_every_n_steps": 10,
                                                     "show_progress_type": "Approx NN"})
        set_numbers(page, {"txt2img_steps": "2"})
    assert js_errors == []


def test_extras_result_has_the_output_buttons(page: Page, server, js_errors, tmp_path):
    picture = Image.fromarray(np.random.RandomState(1).randint(0, 255, (48, 40, 3), dtype=np.uint8))
    upload = tmp_path / "source.png"
    picture.save(upload)
    page.get_by_role("tab", name="Extras").first.click()
    page.locator("#extras_image input[type=file]").set_input_files(str(upload))
    expect(page.locator("#extras_image img")).to_be_visible()
    for button in ("extras_open_folder", "save_extras", "save_zip_extras", "extras_send_to_img2img",
                   "extras_send_to_inpaint"):
        expect(page.locator(f"#{button}")).to_be_visible()
    page.locator("#extras_upscaler_1 input").click()
    page.get_by_role("option", name="R-ESRGAN AnimeVideo", exact=True).click()
    box = number_input(page, "extras_upscaling_resize")
    box.fill("2")
    box.press("Enter")
    page.locator("#extras_generate").click()
    expect(page.locator("#extras_gallery img").first).to_be_visible()

    before = set((server.data_dir / "log" / "images").glob("*.png"))
    page.locator("#save_extras").click()
    expect(page.locator("#download_files_extras")).to_be_visible()
    saved = set((server.data_dir / "log" / "images").glob("*.png")) - before
    assert len(saved) == 1
    with Image.open(saved.pop()) as copy:
        assert copy.size == (80, 96)  # the 2x result, not the source

    page.locator("#extras_send_to_img2img").click()
    expect(page.locator("#tab_img2img")).to_be_visible()
    shown = page.locator("#img2img_image img").first
    expect(shown).to_be_visible()
    data = shown.evaluate("img => fetch(img.src).then(r => r.arrayBuffer()).then(b => Array.from(new Uint8Array(b)))")
    with Image.open(io.BytesIO(bytes(data))) as sent:
        assert sent.size == (80, 96)
    page.get_by_role("tab", name="txt2img").first.click()
    assert js_errors == []
