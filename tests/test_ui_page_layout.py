"""The page before and after the first checkpoint (issue 21 item 5), in a real browser: the download offer shows
only while no checkpoint exists (after 🔄 and on a fresh page too), empty message blocks take no room under the
quick settings, each token counter sits at its prompt box's top right, and Settings lists its sections at the side
(a click opens one, search narrows the list)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.support.server import make_data_dir, running_server
from tests.support.tiny_checkpoints import write_tiny_checkpoint
from tests.test_ui_browser import browser, js_errors, page, page_errors  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = make_data_dir(tmp_path_factory.mktemp("e2e-first-run"), [])  # no checkpoint yet
    with running_server(data_dir) as srv:
        yield srv


def test_the_download_offer_goes_once_a_checkpoint_exists(page: Page, server, js_errors):
    folder = server.data_dir / "models" / "Stable-diffusion"
    expect(page.locator("#first_run_notice")).to_contain_text("No checkpoint found")
    expect(page.locator("#first_run_notice")).to_contain_text(str(folder))
    expect(page.locator("#download_sd_model")).to_be_visible()

    write_tiny_checkpoint("sd1", folder, "tiny")
    page.locator("#refresh_sd_model_checkpoint").click()
    expect(page.locator("#first_run_notice")).to_have_count(0)
    expect(page.locator("#first_run")).to_be_hidden()  # the empty block takes no room
    expect(page.locator("#download_sd_model")).to_be_hidden()

    page.reload(wait_until="load")  # a page opened later does not offer it either
    page.locator("#txt2img_generate").wait_for(state="visible")
    expect(page.locator("#download_sd_model")).to_be_hidden()
    expect(page.locator("#first_run")).to_be_hidden()
    quick, tabs = page.locator("#quicksettings").bounding_box(), page.locator("#tabs").bounding_box()
    assert 0 <= tabs["y"] - (quick["y"] + quick["height"]) < 40, (quick, tabs)  # no empty band between them
    assert js_errors == []


def test_token_counters_sit_at_the_prompt_boxes_top_right(page: Page, server, js_errors):
    for box_id, counter_id in (("txt2img_prompt", "txt2img_token_counter"),
                               ("txt2img_neg_prompt", "txt2img_negative_token_counter")):
        box = page.locator(f"#{box_id}").bounding_box()
        counter = page.locator(f"#{counter_id}").bounding_box()
        assert counter is not None and box is not None
        assert box["x"] + box["width"] * 0.8 < counter["x"] < box["x"] + box["width"], (box, counter)  # right
        assert box["y"] <= counter["y"] < box["y"] + 30, (box, counter)  # on the label's line, inside the box
    expect(page.locator("#txt2img_token_counter")).to_contain_text("0/75")
    page.locator("#txt2img_prompt textarea").fill("a red fox in the snow")
    expect(page.locator("#txt2img_token_counter")).not_to_contain_text("0/75")
    assert js_errors == []


def test_settings_side_list_opens_a_section_and_follows_the_search(page: Page, server, js_errors):
    page.get_by_role("tab", name="Settings").first.click()
    nav = page.locator("#settings_nav a[data-settings-section]")
    expect(nav.first).to_be_visible()
    sections = page.locator("#settings_sections .gr-accordion")
    assert nav.count() == sections.count() >= 10
    link = page.locator("#settings_nav a", has_text="Live previews")
    target = link.get_attribute("data-settings-section")
    content = page.locator(f"#{target} > [data-testid=accordion-content]")
    expect(content).to_be_hidden()  # only the first section starts open
    link.click()
    expect(content).to_be_visible()
    expect(page.locator(f"#{target}")).to_be_in_viewport()
    expect(link).to_have_class("active")

    search = page.locator("#settings_search textarea, #settings_search input").first
    search.fill("live preview")
    expect(nav).not_to_have_count(sections.count())
    texts = nav.all_inner_texts()
    assert "Live previews" in texts and len(texts) < sections.count(), texts
    search.fill("")
    expect(nav).to_have_count(sections.count())
    page.get_by_role("tab", name="txt2img").first.click()
    assert js_errors == []
