"""zh_CN is complete for what the page shows (issue 21 item 7), in Debian's chromium against a real server.

Every tab, every nested tab and every accordion is opened; then each visible text, each dropdown's chosen value,
each placeholder and each tip (title) must be Chinese or an entry of zh_CN.json (a key kept as it is, like "VAE" or "png"). Names
(checkpoints, samplers, styles: ``modules/ui/untranslated.py``) and generated text (infotexts) are not UI text.
A generation's progress and result messages are checked the same way while they show.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from modules.ui import untranslated
from tests.support.server import make_data_dir, running_server, wait_for_model
from tests.test_ui_browser import (TIMEOUT_MS, browser, js_errors, page_errors, set_numbers,  # noqa: F401
                                  set_tiny_size)

ZH = json.loads((Path(__file__).resolve().parent.parent / "localizations" / "zh_CN.json").read_text(encoding="utf-8"))

# What is left in English on the page: visible text nodes, chosen dropdown values, placeholders. A string with a
# CJK character is translated; an entry of the file (as key or value) is what the translation says it is.
LEFT_IN_ENGLISH = r"""([lists, zh]) => {
  const known = new Set([...Object.keys(zh), ...Object.values(zh)]);
  const names = [...lists.nameDropdowns.map((id) => '#' + id),
                 ...lists.nameDropdownSuffixes.map((s) => `[id$="${s}"]`)].join(',');
  const data = lists.data.join(',');
  const english = (t) => /[A-Za-z]{2,}/.test(t) && !/[\u3000-\u9fff\uff00-\uffef]/.test(t) && !known.has(t);
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    return r.width > 1 && r.height > 1 && getComputedStyle(el).visibility !== 'hidden';  // 1px: screen readers
  };
  const out = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const t = n.nodeValue.trim(), el = n.parentElement;
    if (!el || ['SCRIPT', 'STYLE', 'TEXTAREA', 'CODE'].includes(el.tagName) || !english(t)) continue;
    if (el.closest(data) || el.closest(names) || !visible(el)) continue;
    out.add(t);
  }
  // the dropdowns, as the page's config lists them: their input shows the chosen value (a textbox's is data)
  const dropdowns = new Set(window.gradio_config.components.filter((c) => c.type === 'dropdown')
                              .map((c) => c.props.elem_id).filter(Boolean));
  for (const input of document.querySelectorAll('input[type=text], input:not([type])')) {
    if (!visible(input)) continue;
    const holder = input.closest('[id]');
    if (holder && dropdowns.has(holder.id) && !input.closest(names) && english(input.value)) {
      out.add('chosen value: ' + input.value);
    }
    if (english(input.placeholder)) out.add('placeholder: ' + input.placeholder);
  }
  // tips: what a pointer over a button or a tool shows
  for (const el of document.querySelectorAll('[title]')) {
    if (!visible(el) || el.closest(data) || el.closest(names)) continue;
    const value = el.getAttribute('title').trim();
    if (english(value)) out.add('tip: ' + value);
  }
  return [...out].sort();
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = make_data_dir(tmp_path_factory.mktemp("zh-cn"), ["tiny"])
    (data_dir / "config.json").write_text(json.dumps({"localization": "zh_CN"}), encoding="utf-8")
    with running_server(data_dir) as srv:
        wait_for_model(srv)
        yield srv


@pytest.fixture(scope="module")
def page(browser, server, page_errors) -> Page:  # noqa: F811
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("pageerror", lambda err: page_errors.append(str(err)))
    page.goto(server.url + "/", wait_until="load")
    expect(page.locator("#txt2img_generate")).to_have_text("生成")  # the translation has been applied
    yield page
    page.close()


def _left(page: Page) -> list[str]:
    return page.evaluate(LEFT_IN_ENGLISH, [untranslated.page_data(), ZH])


def _open_accordions(page: Page) -> None:
    for _ in range(3):  # accordions inside accordions
        closed = page.locator(".label-wrap:not(.open)")
        for i in range(closed.count()):
            if closed.nth(i).is_visible():
                closed.nth(i).click()


def _visit_every_tab(page: Page) -> dict[str, list[str]]:
    """Each top-level tab, then each tab nested in it, with every accordion open: what is left in English."""
    found: dict[str, list[str]] = {}
    top = page.locator("#tabs > div > [role=tablist] [role=tab], #tabs > [role=tablist] [role=tab], "
                       "#tabs > .tab-wrapper [role=tab]")
    titles = [t for t in top.all_inner_texts() if t.strip()]
    assert "文生图" in titles and "设置" in titles, titles
    for title in titles:
        page.locator("#tabs [role=tab]").filter(has_text=title).first.click()
        _open_accordions(page)
        found[title] = _left(page)
        nested = page.locator("#tabs [role=tabpanel] [role=tab]")
        for i in range(nested.count()):
            tab = nested.nth(i)
            if tab.is_visible():
                name = tab.inner_text()
                tab.click()
                _open_accordions(page)
                found[f"{title} > {name}"] = _left(page)
    return found


def test_every_tab_and_accordion_is_in_chinese(page: Page, js_errors):  # noqa: F811
    left = {where: strings for where, strings in _visit_every_tab(page).items() if strings}
    assert left == {}, ("add these to localizations/zh_CN.json (or, if they are names, to modules/ui/untranslated.py):"
                        f" {json.dumps(left, ensure_ascii=False, indent=1)}")
    assert js_errors == []


def _open_txt2img(page: Page) -> None:
    """txt2img's Generation tab (the last test left another tab open)."""
    page.locator("#tabs [role=tab]").filter(has_text="文生图").first.click()
    page.locator("#txt2img_extra_tabs [role=tab]").first.click()
    expect(page.locator("#txt2img_generate")).to_be_visible()


def test_chosen_values_are_translated_and_sent_in_english(page: Page, server, js_errors):  # noqa: F811
    _open_txt2img(page)
    expect(page.locator("#txt2img_scheduler input")).to_have_value(ZH["Automatic"])
    expect(page.locator("#txt2img_sampling input")).to_have_value("DPM++ 2M")  # a name stays a name
    page.locator("#txt2img_script input").click()
    page.get_by_role("option", name=ZH["X/Y/Z plot"], exact=True).click()
    expect(page.locator("#script_txt2img_x_y_z_plot_x_type input")).to_have_value(ZH["Seed"])
    page.locator("#txt2img_scheduler input").click()
    page.get_by_role("option", name=ZH["Exponential"], exact=True).click()
    page.locator("#txt2img_script input").click()
    page.get_by_role("option", name=ZH["None"], exact=True).click()
    set_tiny_size(page)
    page.locator("#txt2img_prompt textarea").fill("a translated fox")
    page.locator("#txt2img_generate").click()
    # the job got A1111's English values: the infotext (data, not translated) says so
    expect(page.locator("#html_info_txt2img")).to_contain_text("Schedule type: Exponential")
    assert _left(page) == [], _left(page)  # the result's messages and buttons too
    page.locator("#txt2img_gallery img").first.click()  # the gallery's preview, with its own buttons
    expect(page.locator("#txt2img_gallery img").first).to_be_visible()
    assert _left(page) == [], _left(page)
    assert js_errors == []


def test_progress_and_interrupt_messages_are_in_chinese(page: Page, js_errors):  # noqa: F811
    """While a job runs (the progress bar, its step and ETA words, the live preview) and after an interrupt."""
    _open_txt2img(page)
    set_numbers(page, {"txt2img_width": "64", "txt2img_height": "64", "txt2img_steps": "150"})
    page.locator("#txt2img_generate").click()
    progress = page.locator(".progress-bar, .progress-text").first
    expect(progress).to_be_visible()
    running = _left(page)
    page.locator("#txt2img_interrupt").click()
    expect(page.locator("#html_info_txt2img")).to_contain_text("Steps: 150")
    assert (running, _left(page)) == ([], [])
    set_numbers(page, {"txt2img_steps": "2"})
    assert js_errors == []
