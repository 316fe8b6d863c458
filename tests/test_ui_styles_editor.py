"""A1111's styles editor (🖌️) in a real browser (issue 21 item 6): create, edit, apply and delete a style, with
styles.csv on disk as the oracle."""

from __future__ import annotations

import csv

import pytest
from playwright.sync_api import Page, expect

from tests.support.server import make_data_dir, running_server
from tests.test_ui_browser import browser, js_errors, page, page_errors  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = make_data_dir(tmp_path_factory.mktemp("e2e-styles"), [])
    (data_dir / "styles.csv").write_text('name,prompt,negative_prompt\ncinematic,"{prompt}, cinematic",blurry\n',
                                         encoding="utf-8")
    with running_server(data_dir) as srv:
        yield srv


def _styles(server) -> dict[str, tuple[str, str]]:
    with open(server.data_dir / "styles.csv", encoding="utf-8-sig", newline="") as file:
        return {row["name"]: (row["prompt"], row["negative_prompt"]) for row in csv.DictReader(file)}


def _choose(page: Page, dropdown: str, option: str) -> None:
    page.locator(f"#{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def test_create_apply_edit_and_delete_a_style(page: Page, server, js_errors):
    expect(page.locator("#txt2img_styles_dialog")).to_be_hidden()
    page.locator("#txt2img_styles_edit_button").click()
    dialog = page.locator("#txt2img_styles_dialog")
    expect(dialog).to_be_visible()

    # a new style from the main prompts (📝 copies them), under a typed name
    page.locator("#txt2img_prompt textarea").fill("{prompt}, watercolor")
    page.locator("#txt2img_neg_prompt textarea").fill("photo")
    page.locator("#txt2img_style_copy").click()
    expect(page.locator("#txt2img_edit_style_prompt textarea")).to_have_value("{prompt}, watercolor")
    name_box = page.locator("#txt2img_styles_edit_select input")
    name_box.fill("watercolor")
    name_box.press("Enter")
    page.locator("#txt2img_edit_style_save").click()
    expect(page.locator("#txt2img_edit_style_message")).to_contain_text("watercolor")
    assert _styles(server) == {"cinematic": ("{prompt}, cinematic", "blurry"),
                               "watercolor": ("{prompt}, watercolor", "photo")}

    # the main Styles dropdown offers it; 📋 writes the chosen styles into the prompts and empties the choice
    page.locator("#txt2img_prompt textarea").fill("a fox")
    page.locator("#txt2img_neg_prompt textarea").fill("")
    _choose(page, "txt2img_styles", "watercolor")
    page.locator("#txt2img_style_apply_dialog").click()
    expect(page.locator("#txt2img_prompt textarea")).to_have_value("a fox, watercolor")
    expect(page.locator("#txt2img_neg_prompt textarea")).to_have_value("photo")
    expect(page.locator("#txt2img_styles .token")).to_have_count(0)

    # choosing an existing style loads it; an edit is saved in place
    _choose(page, "txt2img_styles_edit_select", "cinematic")
    expect(page.locator("#txt2img_edit_style_prompt textarea")).to_have_value("{prompt}, cinematic")
    page.locator("#txt2img_edit_style_neg_prompt textarea").fill("blurry, lowres")
    page.locator("#txt2img_edit_style_save").click()
    expect(page.locator("#txt2img_edit_style_message")).to_contain_text("cinematic")
    assert _styles(server)["cinematic"] == ("{prompt}, cinematic", "blurry, lowres")

    # delete: gone from the file and from the main dropdown's choices
    _choose(page, "txt2img_styles_edit_select", "watercolor")
    page.locator("#txt2img_edit_style_delete").click()
    expect(page.locator("#txt2img_edit_style_message")).to_contain_text("watercolor")
    assert set(_styles(server)) == {"cinematic"}
    page.locator("#txt2img_styles input").click()
    expect(page.get_by_role("option", name="watercolor", exact=True)).to_have_count(0)
    page.keyboard.press("Escape")
    page.locator("#txt2img_edit_style_close").click()
    expect(dialog).to_be_hidden()
    assert js_errors == []
