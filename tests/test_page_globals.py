"""A1111's page-side API for extensions, in Debian's chromium against a real ``webui.py``: a test extension written
the way community extensions are (tagcomplete, aspect-ratio-helper, images-browser, infinite-image-browsing,
dynamic-prompts, the zh_CN localization) records on ``window`` what it found and what its callbacks saw; its
Python tab uses gradio 3 idioms (``_js=``, ``gr.Box``, ``.style()``, ``gr.inputs``, ``Dropdown(type="index")``,
``gr.Button.update``). A second extension imports A1111 internals we do not have and gets one line on the
Extensions tab.

One server and one page for the module; the page is served in zh_CN (so ``localization`` is not empty).
"""

from __future__ import annotations

import json
import textwrap

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.support.server import make_data_dir, running_server
from tests.test_ui_browser import CHROMIUM, LAUNCH_ARGS

pytestmark = pytest.mark.timeout(180)
TIMEOUT_MS = 30_000
expect.set_options(timeout=TIMEOUT_MS)

GLOBALS = [  # what A1111 defines before extensions' scripts run, and its kind
    ("opts", "object"), ("gradioApp", "function"), ("get_uiCurrentTabContent", "function"),
    ("get_uiCurrentTab", "function"), ("onUiLoaded", "function"), ("onUiUpdate", "function"),
    ("onAfterUiUpdate", "function"), ("onUiTabChange", "function"), ("onOptionsChanged", "function"),
    ("onOptionsAvailable", "function"), ("executeCallbacks", "function"), ("titles", "object"),
    ("localization", "object"), ("uiElementIsVisible", "function"), ("uiElementInSight", "function"),
    ("get_tab_index", "function"), ("create_tab_index_args", "function"), ("switch_to_txt2img", "function"),
    ("switch_to_img2img", "function"), ("switch_to_sketch", "function"), ("switch_to_inpaint", "function"),
    ("switch_to_inpaint_sketch", "function"), ("switch_to_extras", "function"),
    ("selected_gallery_index", "function"), ("extract_image_from_gallery", "function"), ("submit", "function"),
    ("submit_img2img", "function"), ("create_submit_args", "function"), ("args_to_array", "function"),
    ("set_theme", "function"), ("updateInput", "function"), ("restart_reload", "function"),
    ("gradio_config", "object"), ("ask_for_style_name", "function"), ("confirm_clear_prompt", "function"),
    ("randomId", "function"), ("requestProgress", "function"), ("request", "function"),
    ("requestGet", "function"), ("selectCheckpoint", "function"), ("activePromptTextarea", "object"),
    ("dimensionChange", "function"), ("onEdit", "function"), ("uiUpdateCallbacks", "object"),
]

PROBE_JS = """
// Top level, as an A1111 extension's script: what exists now, during the page's parse.
window.__probe = {order: ["a"], readyState: document.readyState, kinds: {}, tabs: [], changes: []};
for (const name of %(names)s) __probe.kinds[name] = typeof window[name];
__probe.localizedAtLoad = localization["Probe label"];
document.addEventListener("DOMContentLoaded", () => { __probe.domContentLoaded = true; });
titles = Object.assign({}, titles, {"Probe label": "Probe tooltip"});  // dynamic-prompts' idiom
onUiLoaded(() => {
  __probe.loaded = {prompt: !!gradioApp().querySelector("#txt2img_prompt"), tab: get_uiCurrentTabContent().id,
                    root: gradioApp().tagName, byId: !!gradioApp().getElementById("txt2img_prompt"),
                    // tabs never opened are in the page too (prompt-all-in-one binds to both prompt boxes now)
                    unopened: ["#img2img_prompt textarea", "#img2img_neg_prompt textarea", "#extras_image",
                               "#pnginfo_image", "#probe_text", "#settings_search",
                               // and tabs inside tabs (images-browser looks up each of its inner tabs)
                               "#probe_inner_b", "#img2img_scale", "#extras_batch_input_dir",
                               // and what closed accordions hold
                               "#probe_in_closed"]
                      .filter((s) => !gradioApp().querySelector(s)),
                    // and the page is back on txt2img, its panels visible
                    shown: get_uiCurrentTabContent().id + ":" + getComputedStyle(
                      gradioApp().querySelector("#tab_txt2img")).visibility};
});
onOptionsAvailable(() => {
  __probe.available = {clip: opts.CLIP_stop_at_last_layers, localization: opts.localization,
                       promptThere: !!gradioApp().querySelector("#txt2img_prompt textarea")};
});
onOptionsChanged(() => { __probe.changes.push(opts.CLIP_stop_at_last_layers); });
onUiTabChange(() => { __probe.tabs.push(get_uiCurrentTabContent() && get_uiCurrentTabContent().id); });
onUiUpdate((mutations) => { __probe.updateGotMutations = Array.isArray(mutations) && mutations.length > 0; });
onAfterUiUpdate(() => { __probe.afterUpdates = (__probe.afterUpdates || 0) + 1; });
document.addEventListener("DOMContentLoaded", () => {  // aspect-ratio-helper's way to wait for opts
  const observer = new MutationObserver(() => {
    if (window.opts && window.opts.CLIP_stop_at_last_layers !== undefined) {
      observer.disconnect();
      __probe.observerSawOpts = true;
    }
  });
  observer.observe(gradioApp(), {childList: true, subtree: true});
});
function probeBeforeGo(text, choice, slider) {  // a gradio 3 _js= function, by name
  __probe.js = [text, choice, slider];
  return [text.toUpperCase(), choice, slider];
}
"""
SECOND_JS = "window.__probe.order.push('b');"
MODULE_JS = "window.__probe.order.push('module');"
PROBE_TAB = '''
import gradio as gr

from modules import script_callbacks


def on_ui_tabs():
    with gr.Blocks(analytics_enabled=False) as tab:
        with gr.Box(elem_id="probe_box"):
            text = gr.Textbox(label="Probe label", elem_id="probe_text").style(container=True)
            choice = gr.Dropdown(["zero", "one", "two"], value="zero", type="index", label="Probe choice",
                                 elem_id="probe_choice")
            slider = gr.inputs.Slider(0, 10, 1, 3, label="Probe slider")
            go = gr.Button("Probe go", variant="tool", elem_id="probe_go").style(full_width=False)
            out = gr.Textbox(label="Probe out", elem_id="probe_out")
            later = gr.Button("Probe later", visible=False, elem_id="probe_later")
        go.click(fn=lambda t, c, s: (f"{t}|{c}|{int(s)}", gr.Button.update(visible=True)),
                 inputs=[text, choice, slider], outputs=[out, later], _js="probeBeforeGo") \\
            .then(fn=None, _js="() => { window.__probe.then = true; }")
        with gr.Tabs(elem_id="probe_inner_tabs"):  # images-browser: an inner tab per folder
            with gr.Tab("Inner A"):
                gr.Textbox(label="Inner a", elem_id="probe_inner_a")
            with gr.Tab("Inner B"):
                gr.Textbox(label="Inner b", elem_id="probe_inner_b")
        with gr.Accordion("Probe closed", open=False):  # dynamic-prompts clicks a button in a closed one
            gr.Button("Probe in closed", elem_id="probe_in_closed")
        hide = gr.Button("Probe hide", elem_id="probe_hide")
        hide.click(lambda: gr.update(visible=False), outputs=[out])
    return [(tab, "Probe", "probe")]


script_callbacks.on_ui_tabs(on_ui_tabs)
'''


def write_extensions(root):
    probe = root / "extensions" / "probe-ext"
    (probe / "javascript").mkdir(parents=True)
    (probe / "scripts").mkdir()
    (probe / "localizations").mkdir()
    names = json.dumps([name for name, _ in GLOBALS])
    (probe / "javascript" / "a_probe.js").write_text(PROBE_JS % {"names": names}, encoding="utf-8")
    (probe / "javascript" / "b_second.js").write_text(SECOND_JS, encoding="utf-8")
    (probe / "javascript" / "c_module.mjs").write_text(MODULE_JS, encoding="utf-8")
    (probe / "scripts" / "probe_tab.py").write_text(PROBE_TAB, encoding="utf-8")
    (probe / "localizations" / "zh_CN.json").write_text(json.dumps({"Probe label": "探针标签"}), encoding="utf-8")
    needs = root / "extensions" / "needs-ldm" / "scripts"
    needs.mkdir(parents=True)
    (needs / "a_sampler.py").write_text("from modules import sd_samplers_kdiffusion\n", encoding="utf-8")
    (needs / "b_sampler.py").write_text("import modules.sd_samplers_kdiffusion as k\n", encoding="utf-8")
    (needs / "c_guarded.py").write_text(textwrap.dedent("""
        try:
            from ldm.modules.diffusionmodules.openaimodel import UNetModel
        except ImportError as err:
            REASON = str(err)
    """), encoding="utf-8")
    (root / "config.json").write_text(json.dumps({"localization": "zh_CN"}), encoding="utf-8")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_data_dir(tmp_path_factory.mktemp("page-globals"), [])  # no checkpoint: nothing to load
    write_extensions(root)
    with running_server(root, []) as srv:
        yield srv


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.js_errors = errors
            page.goto(server.url + "/", wait_until="load")
            page.wait_for_function("window.__probe && window.__probe.loaded && window.__probe.available")
            yield page
        finally:
            browser.close()


def probe(page: Page) -> dict:
    return page.evaluate("() => JSON.parse(JSON.stringify(window.__probe))")


def test_globals_exist_before_extension_scripts_run_and_callbacks_fire(page: Page):
    seen = probe(page)
    assert seen["kinds"] == dict(GLOBALS)
    assert seen["readyState"] == "loading"  # run while the page was parsed, as A1111 runs them
    assert seen["domContentLoaded"] is True  # so DOMContentLoaded listeners (aspect-ratio-helper) start
    assert seen["order"] == ["a", "b", "module"]  # each .js by name, then the .mjs modules
    assert seen["localizedAtLoad"] == "探针标签"  # the extension's own zh_CN entry, there from the first line
    assert seen["loaded"] == {"prompt": True, "tab": "tab_txt2img", "root": "GRADIO-APP", "byId": True,
                              "unopened": [], "shown": "tab_txt2img:visible"}
    # opts arrive once the UI is there (tagcomplete sets itself up on the first update with opts filled)
    assert seen["available"] == {"clip": 1, "localization": "zh_CN", "promptThere": True}
    assert seen["changes"][:1] == [1]
    page.wait_for_function("window.__probe.observerSawOpts === true", timeout=30_000)  # without any user action
    assert seen["updateGotMutations"] is True and seen["afterUpdates"] >= 1
    assert page.evaluate("() => get_uiCurrentTab().getAttribute('aria-controls')") == "tab_txt2img"
    assert page.evaluate("() => uiElementIsVisible(gradioApp().querySelector('#txt2img_prompt'))") is True
    assert page.evaluate("() => uiElementInSight(gradioApp().querySelector('#txt2img_prompt'))") is True
    assert page.js_errors == []


def test_opts_follow_a_setting_changed_in_the_page(page: Page, server):
    box = page.locator("#setting_CLIP_stop_at_last_layers input[type=number]")
    box.fill("3")
    box.press("Enter")
    page.wait_for_function("window.opts.CLIP_stop_at_last_layers === 3")
    assert probe(page)["changes"][-1] == 3  # onOptionsChanged ran with the new value
    assert server.get_json("/sdapi/v1/options")["CLIP_stop_at_last_layers"] == 3
    box.fill("1")
    box.press("Enter")
    page.wait_for_function("window.opts.CLIP_stop_at_last_layers === 1")


def test_tab_switching_helpers(page: Page):
    assert page.evaluate("() => switch_to_img2img(1, 'x')") == [1, "x"]  # passes its arguments through
    page.wait_for_function("get_uiCurrentTabContent() && get_uiCurrentTabContent().id === 'tab_img2img'")
    page.wait_for_function("get_tab_index('mode_img2img') === 0")
    page.evaluate("() => switch_to_inpaint()")
    page.wait_for_function("get_tab_index('mode_img2img') === 2")
    assert page.evaluate("() => submit_img2img('ignored', 'x', [1])")[1:] == [2, None]  # mode index, no gallery
    assert page.evaluate("() => uiElementIsVisible(gradioApp().querySelector('#txt2img_prompt'))") is False
    page.evaluate("() => switch_to_txt2img()")
    page.wait_for_function("get_uiCurrentTabContent().id === 'tab_txt2img'")
    assert probe(page)["tabs"][-3:] == ["tab_txt2img", "tab_img2img", "tab_txt2img"]
    assert page.evaluate("() => get_tab_index('tabs')") == 0
    assert page.evaluate("() => selected_gallery_index()") == -1  # nothing generated, nothing selected


def test_gradio_3_selectors_for_prompt_boxes_match(page: Page):
    """gradio 3's "#txt2img_prompt > label > textarea" (tagcomplete's and many extensions' selector) finds the
    prompt box, which gradio 6 nests one level deeper."""
    assert page.evaluate("""() => {
      const box = document.querySelector('#txt2img_prompt textarea');
      return [gradioApp().querySelector('#txt2img_prompt > label > textarea') === box,
              document.querySelectorAll('#txt2img_prompt>label>textarea').length,
              box.matches('#txt2img_prompt > label > textarea'),
              box.closest('#txt2img_prompt > label') !== null,
              document.querySelector('#txt2img_prompt > textarea')];
    }""") == [True, 1, True, True, None]


def test_small_helpers(page: Page):
    assert page.evaluate("() => args_to_array([1, 'a'])") == [1, "a"]
    assert page.evaluate("() => /^task\\([a-z0-9]{10,15}\\)$/.test(randomId())") is True
    assert page.evaluate("() => create_submit_args([1, 2, ['old gallery']])") == [1, 2, None]
    assert page.evaluate("() => { let got; executeCallbacks([(x) => { got = x; }, () => { throw 1; }], 7);"
                         " return got; }") == 7  # a callback that throws does not stop the queue
    page.once("dialog", lambda dialog: dialog.accept("my style"))
    assert page.evaluate("() => ask_for_style_name(null, 'p', 'n')") == ["my style", "p", "n"]
    page.once("dialog", lambda dialog: dialog.accept())
    assert page.evaluate("() => confirm_clear_prompt('p', 'n')") == ["", ""]
    page.once("dialog", lambda dialog: dialog.dismiss())
    assert page.evaluate("() => confirm_clear_prompt('p', 'n')") == ["p", "n"]
    # requestProgress polls /internal/progress: a task the server never heard of is given up after
    # inactivityTimeout seconds (atEnd called), having been answered (onProgress) meanwhile
    page.evaluate("() => { window.__progressAnswers = 0; requestProgress(randomId(),"
                  " gradioApp().querySelector('#txt2img_gallery'), null, () => { window.__progressEnded = true; },"
                  " (res) => { window.__progressAnswers += res.active === false && res.queued === false; }, 1); }")
    page.wait_for_function("window.__progressEnded === true")
    assert page.evaluate("window.__progressAnswers") >= 1


def test_gradio3_tab_of_an_extension_runs_js_then_python(page: Page):
    page.evaluate("() => gradioApp().querySelector('#tabs button[role=tab][aria-controls=tab_probe]').click()")
    text = page.locator("#probe_text textarea")
    expect(text).to_be_visible()
    expect(page.locator("#probe_box.gr-group").first).to_be_visible()  # gr.Box is a group (its id is there twice)
    expect(page.locator("#probe_later")).to_be_hidden()
    expect(page.locator("#probe_later")).to_be_attached()  # hidden as in gradio 3: its page script can find it
    expect(page.locator("#probe_in_closed")).to_be_hidden()  # built before onUiLoaded, then closed again
    # an extension sets a textbox from script and tells gradio with updateInput (tagcomplete, prompt-all-in-one)
    page.evaluate("() => { const t = gradioApp().querySelector('#probe_text textarea'); t.value = 'cat';"
                  " updateInput(t); }")
    page.locator("#probe_choice input").click()
    page.get_by_role("option", name="two").click()
    page.locator("#probe_go").click()
    # _js ran first (by name, with the inputs), then the Python function with what it returned; the dropdown
    # gave its index; gr.inputs.Slider its default; gr.Button.update(visible=True) showed the button
    expect(page.locator("#probe_out textarea")).to_have_value("CAT|2|3")
    assert probe(page)["js"] == ["cat", "two", 3]
    expect(page.locator("#probe_later")).to_be_visible()
    page.wait_for_function("window.__probe.then === true")  # .then(_js=...)
    # titles: the extension's tooltip on its (translated) label
    label = page.get_by_text("探针标签", exact=True).first
    expect(label).to_have_attribute("title", "Probe tooltip")
    assert "tool" in page.locator("#probe_go").get_attribute("class")
    page.locator("#probe_hide").click()  # gr.update(visible=False) hides it and leaves it in the page
    expect(page.locator("#probe_out")).to_be_hidden()
    expect(page.locator("#probe_out")).to_be_attached()
    assert page.js_errors == []


def test_extensions_tab_says_which_a1111_internals_are_missing(page: Page):
    page.evaluate("() => gradioApp().querySelector('#tabs button[role=tab][aria-controls=tab_extensions]').click()")
    table = page.locator("#extensions_installed_html")
    row = table.locator("tr", has_text="needs-ldm")
    expect(row).to_contain_text("needs A1111 internals not in this web UI: modules.sd_samplers_kdiffusion "
                                "(a_sampler.py, b_sampler.py)")
    expect(row.locator(".extension-needs-a1111")).to_have_count(1)  # one line, not a traceback per script
    expect(row).not_to_contain_text("Traceback")
    expect(row).to_contain_text("c_guarded.py")  # guarded with except ImportError: it loaded
    expect(table.locator("tr", has_text="probe-ext")).not_to_contain_text("needs A1111")
    page.evaluate("() => switch_to_txt2img()")


def test_restart_reload_and_set_theme_reload_the_page(page: Page, server):
    with page.expect_navigation(wait_until="load"):  # after the server answered its ping again
        page.evaluate("() => restart_reload()")
        expect(page.locator("h1", has_text="Reloading...")).to_be_visible()
    page.wait_for_function("window.__probe && window.__probe.loaded")
    with page.expect_navigation(wait_until="load"):
        page.evaluate("() => set_theme('dark')")
    assert page.url.endswith("/?__theme=dark")
    page.wait_for_function("window.__probe && window.__probe.loaded")
    assert page.evaluate("() => document.body.classList.contains('dark') ||"
                         " document.documentElement.classList.contains('dark')") is True
    assert page.js_errors == []
