"""A1111's emoji tool buttons (issue 21 item 4): each has a hover hint, in zh_CN too, and an icon drawn without an
emoji font; checked on the built page and in a real browser with no emoji font in the page's font stack."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import Page, expect

from modules.ui import tool_buttons
from tests.test_ui_browser import browser, js_errors, page, page_errors, server  # noqa: F401 (fixtures)
from tests.test_ui_strings import demo  # noqa: F401 (fixture: the built page)

ROOT = Path(__file__).resolve().parent.parent


def _emoji_buttons(demo) -> list[tuple[str, str, list[str]]]:  # noqa: F811
    """(elem_id, text, classes) of every button whose text is a symbol, not a word (↺ is gradio's own)."""
    found = []
    for block in demo.blocks.values():
        value = getattr(block, "value", None)
        if type(block).__name__ == "Button" and isinstance(value, str) and value.strip() and \
                not any(ch.isalnum() for ch in value) and len(value.strip()) <= 3:
            found.append((block.elem_id or "", value.strip(), list(block.elem_classes or [])))
    return found


def test_every_tool_button_has_an_icon_and_a_hint(demo):  # noqa: F811
    buttons = _emoji_buttons(demo)
    assert len(buttons) >= 15  # the page's own: refresh, paste, swap, seeds, output panels
    for elem_id, text, classes in buttons:
        assert text in tool_buttons.ICON_OF_TEXT, (elem_id, text)
        hinted = text in tool_buttons.TITLES or any(c in tool_buttons.CLASS_TITLES for c in classes)
        assert hinted, (elem_id, text)


def test_every_hint_is_in_zh_cn():
    zh = json.loads((ROOT / "localizations" / "zh_CN.json").read_text(encoding="utf-8"))
    missing = [t for t in {**tool_buttons.TITLES, **tool_buttons.CLASS_TITLES}.values() if t not in zh]
    assert missing == []


def _button_state(page: Page, elem_id: str) -> dict:
    return page.locator(f"#{elem_id}").evaluate("""b => {
        const before = getComputedStyle(b, '::before');
        return {title: b.title, icon: b.dataset.sdIcon || null, fontSize: getComputedStyle(b).fontSize,
                mask: before.webkitMaskImage || before.maskImage, width: before.width};
    }""")


def test_the_page_draws_icons_and_shows_hints(page: Page, server, js_errors):  # noqa: F811
    expect(page.locator("#txt2img_random_seed")).to_be_visible()
    expected = {"txt2img_random_seed": ("dice", tool_buttons.TITLES["🎲️"]),
                "txt2img_paste": ("paste", tool_buttons.TITLES["↙️"]),
                "save_txt2img": ("save", tool_buttons.CLASS_TITLES["sd-tip-save-image"]),
                "txt2img_send_to_extras": ("ruler", tool_buttons.CLASS_TITLES["sd-tip-send-extras"]),
                "refresh_sd_model_checkpoint": ("refresh", "Refresh")}
    for elem_id, (icon, title) in expected.items():
        state = _button_state(page, elem_id)
        assert state["icon"] == icon and state["title"] == title, (elem_id, state)
        assert state["fontSize"] == "0px" and state["mask"].startswith('url("data:image/svg+xml'), state
        assert float(state["width"].removesuffix("px")) >= 16, state  # a visible icon, not a tofu box
    # what the pixels show: the icon is drawn (not blank) inside the button
    shot = page.locator("#txt2img_random_seed").screenshot()
    import io

    import numpy as np
    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(shot)).convert("L")).astype(int)
    assert grey.max() - grey.min() > 80

    zh = json.loads((ROOT / "localizations" / "zh_CN.json").read_text(encoding="utf-8"))
    assert server.request("POST", "/sdapi/v1/options", {"localization": "zh_CN"})[0] == 200
    try:
        page.reload(wait_until="load")
        expect(page.locator("#txt2img_random_seed")).to_have_attribute("title", zh[tool_buttons.TITLES["🎲️"]])
        expect(page.locator("#save_txt2img")).to_have_attribute(
            "title", zh[tool_buttons.CLASS_TITLES["sd-tip-save-image"]])
    finally:
        assert server.request("POST", "/sdapi/v1/options", {"localization": "None"})[0] == 200
        page.reload(wait_until="load")
        page.locator("#txt2img_generate").wait_for(state="visible")
    assert js_errors == []
