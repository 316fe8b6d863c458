"""The ControlNet accordion in a real browser (Debian's chromium + Playwright) against a real server with a tiny
ControlNet: upload, control-type filter, the preprocessor's sliders, the preview, Generate, and infotext paste."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.support.server import make_data_dir, running_server, wait_for_model
from tests.support.tiny_controlnet import write_tiny_controlnet
from tests.test_ui_browser import (browser, js_errors, number_input, page, page_errors,  # noqa: F401
                                  set_tiny_size)  # fixtures: page opens this module's server

pytestmark = pytest.mark.timeout(180)
UNIT = "txt2img_controlnet_ControlNet-0"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = make_data_dir(tmp_path_factory.mktemp("cn-ui"), ["tiny"])
    write_tiny_controlnet(data_dir / "models" / "ControlNet", "control_v11p_sd15_canny")
    write_tiny_controlnet(data_dir / "models" / "ControlNet", "control_v11f1e_sd15_tile", seed=2)
    with running_server(data_dir) as srv:
        wait_for_model(srv)
        yield srv


def _square_png(tmp_path) -> str:
    image = Image.new("RGB", (64, 64), "black")
    image.paste((255, 255, 255), (16, 16, 48, 48))
    path = tmp_path / "square.png"
    image.save(path)
    return str(path)


def test_accordion_filters_previews_generates_and_pastes(page: Page, server, js_errors, tmp_path):
    page.locator("#txt2img_controlnet").get_by_text("ControlNet", exact=True).first.click()
    expect(page.locator(f"#{UNIT}_enable_checkbox")).to_be_visible()
    page.locator(f"#{UNIT}_input_image input[type=file]").set_input_files(_square_png(tmp_path))
    expect(page.locator(f"#{UNIT}_input_image img")).to_be_visible()

    page.locator(f"#{UNIT}_type_filter_radio").get_by_text("Canny", exact=True).click()
    expect(page.locator(f"#{UNIT}_preprocessor_dropdown input")).to_have_value("canny")
    canny = next(t for t in server.get_json("/controlnet/model_list")["model_list"] if "canny" in t)
    expect(page.locator(f"#{UNIT}_model_dropdown input")).to_have_value(canny)  # the tile model filtered out
    expect(page.locator(f"#{UNIT}_threshold_A_slider")).to_contain_text("Low Threshold")
    expect(number_input(page, f"{UNIT}_threshold_A_slider")).to_have_value("100")
    expect(page.locator(f"#{UNIT}_threshold_B_slider")).to_contain_text("High Threshold")

    page.locator(f"#{UNIT}_trigger_preprocessor").click()
    preview = page.locator(f"#{UNIT}_generated_image img")
    expect(preview).to_be_visible()

    page.locator(f"#{UNIT}_enable_checkbox input").check()
    set_tiny_size(page)
    page.locator("#txt2img_prompt textarea").fill("a controlled cube")
    page.locator("#txt2img_generate").click()
    info = page.locator("#html_info_txt2img")
    expect(info).to_contain_text("ControlNet 0: ")
    assert "Module: canny" in info.inner_text() and "Threshold A: 100" in info.inner_text()
    expect(page.locator("#txt2img_gallery img")).to_have_count(2)  # the image and the detected map
    expect(page.locator("#html_info_txt2img .error")).to_have_count(0)

    # Paste an infotext with other unit values: the accordion follows.
    page.locator(f"#{UNIT}_enable_checkbox input").uncheck()
    text = (info.inner_text().strip().replace("Weight: 1.0", "Weight: 0.55")
            .replace("Control Mode: Balanced", "Control Mode: My prompt is more important"))
    page.locator("#txt2img_prompt textarea").fill(text)
    page.locator("#txt2img_paste").click()
    expect(number_input(page, f"{UNIT}_control_weight_slider")).to_have_value("0.55")
    expect(page.locator(f"#{UNIT}_enable_checkbox input")).to_be_checked()
    expect(page.locator(f"#{UNIT}_control_mode_radio input[value='My prompt is more important']")).to_be_checked()
    assert js_errors == []


def test_enabled_unit_without_image_is_a_readable_error(page: Page, server, js_errors):
    page.get_by_role("tab", name="ControlNet Unit 1").click()
    page.locator("#txt2img_controlnet_ControlNet-1_enable_checkbox input").check()
    page.locator("#txt2img_generate").click()
    error = page.locator("#html_info_txt2img .error")
    expect(error).to_contain_text("ControlNet Unit 1.model: no ControlNet model selected")
    page.locator("#txt2img_controlnet_ControlNet-1_type_filter_radio").get_by_text("Tile", exact=True).click()
    expect(page.locator("#txt2img_controlnet_ControlNet-1_model_dropdown input")).not_to_have_value("None")
    page.locator("#txt2img_generate").click()
    expect(error).to_contain_text("ControlNet Unit 1.image: ControlNet is enabled but no input image is given")
    assert server.get_json("/sdapi/v1/options")["sd_model_checkpoint"].startswith("tiny")
    assert js_errors == []
