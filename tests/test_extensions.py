"""Extensions written the A1111 way (tests/fixtures/extensions) in a real app: discovery, enable/disable,
install.py, preload.py flags, scripts registering callbacks through the facade, assets, localization, and broken
extensions that never stop the start."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from tests.support.local_client import LocalClient

from modules import script_callbacks
from modules.cmd_args import parse_args

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "extensions"


def data_dir_with_extensions(root: Path, disabled: list[str] | None = None) -> Path:
    from tests.support.tiny_checkpoints import write_tiny_checkpoint

    shutil.copytree(FIXTURES, root / "extensions")
    write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion", "tiny")
    if disabled is not None:
        import json

        (root / "config.json").write_text(json.dumps({"disabled_extensions": disabled}), encoding="utf-8")
    return root


@pytest.fixture()
def app_factory(tmp_path, monkeypatch):
    monkeypatch.setattr("modules.extensions.IMPORT_TIMEOUT", 2.0)  # the hanging script is given up quickly
    built = []

    def build(*flags: str, disabled: list[str] | None = ("off-ext",)):
        from webui import create_app, discover_with_preload

        root = tmp_path / "data"
        if not root.exists():
            data_dir_with_extensions(root, list(disabled) if disabled is not None else None)
        script_callbacks.clear()
        argv = ["--data-dir", str(root), "--api", *flags]
        found, parser = discover_with_preload(argv)
        app = create_app(parse_args(argv, parser=parser, environ={}), found)
        built.append(app)
        return app, root

    yield build
    for app in built:
        app.state.runtime.jobs.stop()
    script_callbacks.clear()


def test_extension_callbacks_settings_routes_and_failures(app_factory):
    app, root = app_factory()  # the hanging import (an hour's sleep) is given up, the app is built
    rt = app.state.runtime
    by_name = {e.name: e for e in rt.extensions}
    assert set(by_name) == {"bad-install", "broken-syntax", "demo-ext", "hangs", "off-ext", "raises"}
    assert by_name["demo-ext"].loaded_scripts == ["demo.py", "demo_scripts.py"] and by_name["demo-ext"].errors == []
    assert "SyntaxError" in by_name["broken-syntax"].errors[0]
    assert "boom at import" in by_name["raises"].errors[0]
    assert "did not finish importing in 2 s" in by_name["hangs"].errors[0]  # after IMPORT_TIMEOUT, not the hour
    assert "exit code 3" in by_name["bad-install"].errors[0] and "cannot install" in by_name["bad-install"].errors[0]
    assert by_name["off-ext"].enabled is False and by_name["off-ext"].loaded_scripts == []
    with LocalClient(app) as client:
        hello = client.get("/demo-ext/hello").json()
        assert hello["hello"] == "hi" and hello["mode"] == "calm" and hello["has_ui"] is True
        assert hello["data_path"] == str(root)  # modules.paths, as extensions read it
        rt.jobs.run("load", lambda job: rt.manager.ensure(None))  # a checkpoint load reaches on_model_loaded
        assert client.get("/demo-ext/hello").json()["models_loaded"] == 1
        # on_before_image_saved renames the file and adds a chunk; on_image_saved sees the final name
        r = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "width": 64, "height": 64, "steps": 1,
                                                   "save_images": True})
        assert r.status_code == 200, r.text
        saved = sorted((root / "outputs" / "txt2img-images").rglob("*.png"))
        assert len(saved) == 1 and saved[0].name.endswith("-demo.png")
        from PIL import Image

        with Image.open(saved[0]) as im:
            assert im.info["demo"] == "added by demo-ext" and im.info["parameters"].startswith("x\n")
        demo_module = next(m for n, m in sys.modules.items() if n.endswith("demo_ext_demo"))
        assert demo_module.SAVED == [str(saved[0])]
        # Extras results go through the same hooks
        from modules.processing.postprocessing import ExtrasParams

        with Image.open(saved[0]) as im:
            source = im.copy()
        rt.submit_extras(ExtrasParams(upscaling_resize=1.0), [(source, "")]).wait(60)
        extras = sorted((root / "outputs" / "extras-images").rglob("*.png"))
        assert len(extras) == 1 and extras[0].name.endswith("-demo.png") and demo_module.SAVED[-1] == str(extras[0])
        with Image.open(extras[0]) as im:
            assert im.info["demo"] == "added by demo-ext" and im.info["parameters"].startswith("x\n")
        assert client.get("/off-ext").status_code == 404  # a disabled extension's scripts never ran
        # the extension's option is a real setting: validated, saved, shown in Settings
        assert client.post("/sdapi/v1/options", json={"demo_ext_mode": "loud"}).status_code == 200
        assert client.post("/sdapi/v1/options", json={"demo_ext_mode": "shout"}).status_code == 422
        assert client.get("/demo-ext/hello").json()["mode"] == "loud"
        assert demo_module.MODE_CHANGES == ["loud"]  # opts.onchange, reading opts.data
        assert demo_module.BEFORE_UI == [True]  # on_before_ui, reading cmd_opts
        listed = {e["name"]: e["enabled"] for e in client.get("/sdapi/v1/extensions").json()}
        assert listed["demo-ext"] is True and listed["off-ext"] is False
        js = client.get("/extension-assets/demo-ext/javascript/demo.js")
        assert js.status_code == 200 and "demoExtLoaded" in js.text
        assert client.get("/extension-assets/demo-ext/style.css").status_code == 200
        assert client.get("/extension-assets/demo-ext/install.py").status_code == 404  # only assets are served
        assert client.get("/extension-assets/off-ext/scripts/off.py").status_code == 404
        page = client.get("/").text
        assert "/extension-assets/demo-ext/javascript/demo.js" in page and "gradioApp" in page
    assert (root / "extensions" / "demo-ext" / "installed.txt").read_text() == "1"


def test_install_runs_once_preload_adds_flags_and_disable_all(app_factory):
    app, root = app_factory("--demo-ext-flag")
    assert app.state.runtime.args.demo_ext_flag is True  # added by preload.py before parsing
    app.state.runtime.options.apply({"demo_ext_mode": "loud"})
    again, _ = app_factory()
    assert (root / "extensions" / "demo-ext" / "installed.txt").read_text() == "1"  # unchanged installer: not rerun
    assert again.state.runtime.options.get("demo_ext_mode") == "loud"  # the extension's setting persisted
    none, _ = app_factory("--disable-all-extensions")
    assert all(not e.enabled for e in none.state.runtime.extensions)
    assert script_callbacks.callbacks("app_started") == []


def test_extension_localization_merges_only_for_active_extensions(app_factory):
    from modules import localization
    from webui import localization_dirs

    app, _ = app_factory()
    rt = app.state.runtime
    merged = localization.load("zh_CN", localization_dirs(rt))
    assert merged["Demo greeting"] == "演示问候" and merged["Generate"] == "生成"


@pytest.mark.timeout(180)
def test_extension_javascript_css_and_tab_reach_the_page(tmp_path):
    """In Debian's chromium against a real server: the extension's script ran (and its onUiLoaded callback), its
    stylesheet applies, its tab is there, and the Extensions tab lists it."""
    from playwright.sync_api import expect, sync_playwright

    from tests.support.server import make_data_dir, running_server
    from tests.test_ui_browser import CHROMIUM, LAUNCH_ARGS, set_tiny_size

    data_dir = make_data_dir(tmp_path / "srv", ["tiny"])
    shutil.copytree(FIXTURES / "demo-ext", data_dir / "extensions" / "demo-ext")
    with running_server(data_dir, []) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            page.goto(server.url + "/", wait_until="load")
            page.locator("#txt2img_generate").wait_for(state="visible", timeout=30_000)
            page.wait_for_function("window.demoExtLoaded === true && window.demoExtUiLoaded === true",
                                   timeout=30_000)
            # the always-on script's controls reach its hooks: enable it, generate, read the infotext
            page.locator("#txt2img_prompt textarea").fill("a cat")
            set_tiny_size(page)
            page.get_by_text("Demo always on", exact=True).first.click()  # open its accordion
            page.locator("#script_txt2img_demo_always_on_enabled input[type=checkbox]").check()
            seed_box = page.locator("#script_txt2img_demo_always_on_seed input")
            seed_box.fill("4321")
            seed_box.press("Tab")
            page.locator("#txt2img_generate").click()
            expect(page.locator("#html_info_txt2img")).to_contain_text("Demo seed: 4321", timeout=120_000)
            expect(page.locator("#html_info_txt2img")).to_contain_text("Seed: 4321")
            # a selectable script's controls show when it is chosen
            expect(page.locator("#script_txt2img_x_y_z_plot_x_values")).to_be_hidden()
            page.locator("#txt2img_script input").click()
            page.get_by_role("option", name="X/Y/Z plot").click()
            expect(page.locator("#script_txt2img_x_y_z_plot_x_values")).to_be_visible()
            page.get_by_role("tab", name="Demo tab").click()
            markdown = page.locator("#demo_ext_markdown")
            expect(markdown).to_contain_text("Demo tab content")
            assert markdown.evaluate("e => getComputedStyle(e).outlineColor") == "rgb(1, 2, 3)"
            page.get_by_role("tab", name="Extensions").click()
            expect(page.locator("#extensions_installed_html")).to_contain_text("demo-ext")
            page.get_by_role("tab", name="Settings").click()
            expect(page.locator("#tab_settings")).to_contain_text("Demo extension")  # its settings section
        finally:
            browser.close()


def test_help_lists_flags_that_extensions_add(tmp_path, capsys):
    from webui import main

    shutil.copytree(FIXTURES / "demo-ext", tmp_path / "extensions" / "demo-ext")
    with pytest.raises(SystemExit) as done:
        main(["--data-dir", str(tmp_path), "--help"])
    assert done.value.code == 0
    assert "--demo-ext-flag" in capsys.readouterr().out


def _demo_scripts_module():
    return next(m for n, m in sys.modules.items() if n.endswith("demo_ext_demo_scripts"))


def test_scripts_hooks_run_in_a1111_order_and_change_the_job(app_factory):
    import base64
    import io
    import json

    from PIL import Image, ImageChops

    from modules import scripts

    app, root = app_factory()
    demo = _demo_scripts_module()
    body = {"prompt": "x", "width": 64, "height": 64, "steps": 2, "batch_size": 2, "sampler_name": "Euler"}

    def images_of(response):
        assert response.status_code == 200, response.text
        return [Image.open(io.BytesIO(base64.b64decode(i))).convert("RGB") for i in response.json()["images"]]

    with LocalClient(app) as client:
        names = client.get("/sdapi/v1/scripts").json()
        assert {"demo always on", "demo twice"} <= set(names["txt2img"]) and "demo hidden" not in names["txt2img"]
        info = {s["name"]: s for s in client.get("/sdapi/v1/script-info").json() if not s["is_img2img"]}
        assert info["demo always on"]["is_alwayson"] is True
        assert [a["label"] for a in info["demo always on"]["args"]] == ["Enable demo", "Demo seed"]
        assert info["demo twice"]["args"][0]["value"] == 2 and info["demo twice"]["args"][0]["maximum"] == 10

        demo.CALLS.clear()
        demo.DENOISER_STEPS.clear()
        r = client.post("/sdapi/v1/txt2img", json={**body, "seed": 5,
                                                   "alwayson_scripts": {"Demo always on": {"args": [True, 4242]}}})
        changed = images_of(r)
        result = json.loads(r.json()["info"])
        assert result["all_seeds"] == [4242, 4243]  # process() replaced the seeds, and sampling used them
        assert result["all_prompts"] == ["x, demo", "x, demo"]  # process_batch() rewrote the batch's prompts
        assert all("Demo seed: 4242" in text for text in result["infotexts"])
        hooks = [c[0] for c in demo.CALLS]
        assert hooks == ["setup", "before_process", "process", "before_process_batch", "process_batch",
                         "postprocess_batch", "postprocess_image", "postprocess_image", "postprocess", "model"]
        assert demo.CALLS[2] == ("process", [5, 6]) and demo.CALLS[3] == ("before_process_batch", 0, [4242, 4243])
        assert demo.CALLS[5] == ("postprocess_batch", (2, 3, 64, 64), True)  # A1111's [0, 1] tensors
        assert demo.CALLS[-2] == ("postprocess", 2, 4242)  # the API returns no grid unless images are saved
        # on_cfg_denoiser saw every evaluation of both... one batch: 2 steps, with the pass's total
        assert [(s, t) for s, t, _ in demo.DENOISER_STEPS] == [(0, 2), (1, 2)]
        assert demo.DENOISED == [(0, (2, 4, 8, 8)), (1, (2, 4, 8, 8))] and demo.AFTER_CFG == [0, 1]
        assert ("model", True, False) in demo.CALLS  # shared.sd_model is the job's model; shared.state
        saved_path, refused = demo.SAVED_BY_SCRIPT[-2:]
        assert Path(saved_path).is_file() and Path(saved_path).is_relative_to(root / "outputs" / "txt2img-images")
        assert "-demo-" in Path(saved_path).name and refused.startswith("refused: ") and "outside" in refused
        assert not list(Path("/tmp").glob("escape*.png"))

        # the same seeds and prompts without the script give the unmirrored images
        plain = images_of(client.post("/sdapi/v1/txt2img", json={**body, "prompt": "x, demo", "seed": 4242}))
        assert len(changed) == len(plain) == 2
        for ours, reference in zip(changed, plain):
            assert ImageChops.difference(ours, reference.transpose(0)).getbbox() is None

        # a sampling callback's replacement is what the sampler uses
        demo.DEMO_ZERO_GUIDANCE.append(True)
        try:
            zeroed = images_of(client.post("/sdapi/v1/txt2img", json={**body, "prompt": "x, demo", "seed": 4242}))
        finally:
            demo.DEMO_ZERO_GUIDANCE.clear()
        assert ImageChops.difference(zeroed[0], plain[0]).getbbox() is not None

        # a selectable script's run() calls process_images twice and returns its own Processed
        demo.CALLS.clear()
        r = client.post("/sdapi/v1/txt2img", json={**body, "batch_size": 1, "seed": 9, "script_name": "demo twice",
                                                   "script_args": [3]})
        assert len(images_of(r)) == 2
        assert ("twice", 9, 3, True) in demo.CALLS, demo.CALLS[6:]
        assert [c[0] for c in demo.CALLS].count("process") == 1  # only the first run had p.scripts

        # a hook that raises is reported and the job goes on; unknown scripts are 422s naming the field
        errors_before = len(scripts.errors)
        r = client.post("/sdapi/v1/txt2img", json={**body, "alwayson_scripts": {"demo always on": [True, 13]}})
        assert r.status_code == 200 and "unlucky seed" in "".join(scripts.errors[errors_before:])
        r = client.post("/sdapi/v1/txt2img", json={**body, "alwayson_scripts": {"nope": {"args": []}}})
        assert r.status_code == 422 and "alwayson_scripts" in r.text
        r = client.post("/sdapi/v1/txt2img", json={**body, "script_name": "nope"})
        assert r.status_code == 422 and "demo twice" in r.text.lower()
        # the scripts' controls are in the page, the always-on one in the seed section's place
        config = client.get("/config").json()
        ids = [c.get("props", {}).get("elem_id") for c in config["components"]]
        assert "script_txt2img_demo_always_on_enabled" in ids and "script_img2img_demo_twice_steps" in ids
        assert ids.index("script_txt2img_demo_always_on_seed") < ids.index("txt2img_script")
        # on_after_component(elem_id=...) put the extension's button right after Generate; every component was seen
        assert ids.index("demo_ext_after_generate") == ids.index("txt2img_generate") + 1
        assert "txt2img_prompt" in demo.COMPONENTS_SEEN and "demo_ext_after_generate" not in demo.COMPONENTS_SEEN

        # pasting an infotext fills the script's infotext_fields control, after on_infotext_pasted ran
        from modules.ui import pnginfo_tab

        fields = {"prompt": object(), "script_arg_2": scripts.scripts_txt2img.inputs[2]}
        values = pnginfo_tab.txt2img_values_from_infotext("x\nSteps: 2, Seed: 1, Demo seed: 41", None, fields)
        assert values["script_arg_2"] == 42
    assert demo.UNLOADED == [True]  # on_script_unloaded at shutdown


def test_sd_webui_controlnet_is_replaced_by_the_built_in_controlnet(tmp_path):
    """The extension patches ldm internals this app does not have: its folder (by name, or by its files under
    another name) is listed as replaced and never imported, and its installer does not run."""
    from modules import extensions as ext_mod

    for name in ("sd-webui-controlnet", "my-controlnet-clone"):
        folder = tmp_path / "extensions" / name
        (folder / "internal_controlnet").mkdir(parents=True)
        (folder / "internal_controlnet" / "args.py").write_text("raise SystemExit('imported')\n")
        (folder / "scripts").mkdir()
        (folder / "scripts" / "controlnet.py").write_text("raise SystemExit('imported')\n")
        (folder / "install.py").write_text("raise SystemExit('installed')\n")
    other = tmp_path / "extensions" / "unrelated"
    (other / "scripts").mkdir(parents=True)
    found = {e.name: e for e in ext_mod.discover(tmp_path, {})}
    for name in ("sd-webui-controlnet", "my-controlnet-clone"):
        assert not found[name].enabled and found[name].replaced_by == "built-in"
        assert "ControlNet is built in" in found[name].notes[0]
    assert found["unrelated"].enabled and found["unrelated"].replaced_by is None
    ext_mod.run_installers(list(found.values()), tmp_path)  # would raise SystemExit if it ran install.py
    assert all(not e.errors for e in found.values())
