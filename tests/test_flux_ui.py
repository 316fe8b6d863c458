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


def test_kontext_accordion_reference_changes_the_picture(page: Page, server, js_errors, tmp_path):
    """Forge's Kontext accordion: with a reference uploaded and Enable on, the same seed gives another picture;
    with Enable off again, the first one back (its PNG bytes compared)."""
    from PIL import Image as PILImage

    if not str(server.get_json("/sdapi/v1/options")["sd_model_checkpoint"]).startswith(FLUX):  # run alone
        title = next(m["title"] for m in server.get_json("/sdapi/v1/sd-models") if m["title"].startswith(FLUX))
        page.locator("#setting_sd_model_checkpoint input").click()
        page.get_by_role("option", name=title, exact=True).click()
        expect(page.locator("#model_status")).to_contain_text("Loaded in", timeout=60_000)
    set_tiny_size(page)
    page.locator("#txt2img_sampling input").click()
    page.get_by_role("option", name="Euler", exact=True).click()
    box = number_input(page, "txt2img_cfg_scale")
    box.fill("1")
    box.press("Enter")
    seed = number_input(page, "txt2img_seed")
    seed.fill("5")
    seed.press("Enter")
    page.locator("#txt2img_prompt textarea").fill("make it blue")
    folder = server.data_dir / "outputs" / "txt2img-images"

    def generate() -> bytes:
        """Generate, and the pixels of the one new PNG once the page shows the result."""
        before = set(folder.rglob("*.png")) if folder.exists() else set()
        page.locator("#txt2img_generate").click()
        for _ in range(240):  # the new file, then the page's infotext of it
            new = sorted(set(folder.rglob("*.png")) - before) if folder.exists() else []
            if new:
                break
            page.wait_for_timeout(250)
        assert len(new) == 1, new
        expect(page.locator("#txt2img_generate")).to_be_visible()
        expect(page.locator("#html_info_txt2img")).to_contain_text("make it blue", timeout=60_000)
        with PILImage.open(new[0]) as im:
            return im.convert("RGB").tobytes()

    plain = generate()
    reference = tmp_path / "reference.png"
    PILImage.radial_gradient("L").convert("RGB").resize((64, 64)).save(reference)
    page.locator("#txt2img_kontext").get_by_text("Forge FluxKontext").click()
    page.locator("#txt2img_kontext_image1 input[type=file]").set_input_files(str(reference))
    expect(page.locator("#txt2img_kontext_image1 img")).to_be_visible()
    page.locator("#txt2img_kontext_enabled input").check()
    edited = generate()
    assert edited != plain
    page.locator("#txt2img_kontext_enabled input").uncheck()
    assert generate() == plain
    assert js_errors == []
