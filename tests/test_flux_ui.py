"""Flux in a real browser (Debian's chromium + Playwright) against a real server: the checkpoint chosen in the
quicksettings beside an SD one, the VAE / Text Encoder choice showing what is there, Distilled CFG Scale beside CFG
Scale, a generation whose infotext carries Forge's keys, and PNG Info sending the distilled scale back."""

from __future__ import annotations

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.support.server import running_server, wait_for_model
from tests.test_flux_server import FLUX, flux_data_dir
from tests.test_ui_browser import (browser, js_errors, number_input, page, page_errors,  # noqa: F401
                                  set_tiny_size)  # fixtures: page opens this module's server

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(flux_data_dir(tmp_path_factory.mktemp("flux-ui"))) as srv:
        wait_for_model(srv)
        yield srv


def test_choose_flux_generate_and_paste_the_distilled_scale_back(page: Page, server, js_errors):
    modules = page.locator("#setting_forge_additional_modules")
    modules.locator("input").click()
    for name in ("clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors"):
        expect(page.get_by_role("option", name=name, exact=True)).to_be_visible()
    page.keyboard.press("Escape")
    title = next(m["title"] for m in server.get_json("/sdapi/v1/sd-models") if m["title"].startswith(FLUX))
    page.locator("#setting_sd_model_checkpoint input").click()
    page.get_by_role("option", name=title, exact=True).click()
    expect(page.locator("#model_status")).to_contain_text("Loaded in", timeout=60_000)
    assert server.get_json("/sdapi/v1/options")["sd_model_checkpoint"].startswith(FLUX)  # hashed once loaded

    page.locator("#txt2img_sampling input").click()
    page.get_by_role("option", name="Euler", exact=True).click()
    set_tiny_size(page)
    box = number_input(page, "txt2img_cfg_scale")
    box.fill("1")
    box.press("Enter")
    distilled = number_input(page, "txt2img_distilled_cfg_scale")
    expect(distilled).to_have_value("3.5")
    distilled.fill("2.5")
    distilled.press("Enter")
    page.locator("#txt2img_prompt textarea").fill("a flux lighthouse")
    page.locator("#txt2img_generate").click()
    info = page.locator("#html_info_txt2img")
    expect(info).to_contain_text("a flux lighthouse")
    expect(info).to_contain_text("CFG scale: 1, Distilled CFG Scale: 2.5")
    expect(info).to_contain_text("Sampler: Euler, Schedule type: Simple")

    saved = sorted((server.data_dir / "outputs" / "txt2img-images").rglob("*.png"))
    with Image.open(saved[-1]) as im:
        assert "Distilled CFG Scale: 2.5" in im.info["parameters"]
    distilled.fill("3.5")
    distilled.press("Enter")
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(saved[-1]))
    expect(page.locator("#pnginfo_html")).to_contain_text("Distilled CFG Scale: 2.5")
    page.locator("#pnginfo_send_to_txt2img").click()
    expect(page.locator("#tab_txt2img")).to_be_visible()
    expect(number_input(page, "txt2img_distilled_cfg_scale")).to_have_value("2.5")
    assert js_errors == []


def test_diffusion_in_low_bits_is_chosen_beside_the_checkpoint(page: Page, server, js_errors):
    low_bits = page.locator("#setting_forge_unet_storage_dtype")
    expect(low_bits.locator("input")).to_have_value("Automatic")
    low_bits.locator("input").click()
    page.get_by_role("option", name="float8-e4m3fn (fp16 LoRA)", exact=True).click()
    expect(page.locator("#model_status")).to_contain_text("Diffusion in Low Bits")
    assert server.get_json("/sdapi/v1/options")["forge_unet_storage_dtype"] == "float8-e4m3fn (fp16 LoRA)"
    low_bits.locator("input").click()
    page.get_by_role("option", name="Automatic", exact=True).click()
    expect(page.locator("#model_status")).to_contain_text("Automatic")
    assert server.get_json("/sdapi/v1/options")["forge_unet_storage_dtype"] == "Automatic"
    assert js_errors == []
