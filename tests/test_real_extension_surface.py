"""A1111 names that real extensions of issue 17 section 1 use and that were missing, reproduced by an extension
written here (never their code) and loaded by the real app:

- tagcomplete builds its settings as ``shared.OptionInfo(...).info(...).needs_restart()`` in ``on_ui_settings``;
- images-browser imports ``save_files`` from ``modules.ui_common``, reads ``images.read_info_from_image``, lists
  ``scripts.list_scripts("scripts", ".py")`` and sets ``shared.opts.outdir_save`` for a moment, then restores it;
- prompt-all-in-one iterates ``ui_extra_networks.extra_pages`` and each page's ``list_items()``;
- infinite-image-browsing reads the output folders from ``shared.opts.data`` (A1111 keeps every default there);
- dynamic prompts' combinatorial mode sets ``p.all_prompts`` to every combination and ``p.n_iter`` to match in its
  ``process`` hook, and A1111 then runs that many batches.

The checks use independent oracles: PNG chunks read back with Pillow, files on disk, config.json as JSON.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import textwrap
import types
import zipfile
from pathlib import Path

import pytest
from PIL import Image

EXTENSION = '''
import math

import modules.scripts as scripts
from modules import extensions, images, script_callbacks, shared, ui_extra_networks
from modules.shared import opts
from modules.ui_common import plaintext_to_html, save_files

SEEN = {"save_files": save_files, "plaintext_to_html": plaintext_to_html,
        # infinite-image-browsing reads the output folders from opts.data, on the first start too
        "outdir_at_import": opts.data.get("outdir_txt2img_samples"),
        # images-browser and IIB find themselves and the others through modules.extensions
        "extensions": [(e.name, e.enabled, e.is_builtin, str(e.path)) for e in extensions.extensions],
        "active": [e.name for e in extensions.active()],
        "dirs": (extensions.extensions_dir, extensions.extensions_builtin_dir)}


def on_ui_settings():
    section = ("surface", "Surface test")
    built = {
        "surface_restart": shared.OptionInfo(True, "Needs a restart").needs_restart(),
        "surface_info": shared.OptionInfo("", "With a note").info("see the README").needs_restart(),
        "surface_reload": shared.OptionInfo("a", "Reloads the page", component_args={"choices": ["a", "b"]})
                          .needs_reload_ui(),
        "surface_link": shared.OptionInfo(3, "Linked", component_args={"minimum": 0, "maximum": 5})
                        .link("wiki", "https://example.invalid/wiki"),
    }
    SEEN["isinstance"] = all(isinstance(o, shared.OptionInfo) for o in built.values())
    for key, opt in shared.options_section(section, built).items():
        shared.opts.add_option(key, opt)
    SEEN["data_after_add"] = {k: shared.opts.data.get(k) for k in built}


script_callbacks.on_ui_settings(on_ui_settings)


def list_my_scripts():
    return [(f.basedir, f.filename, f.path) for f in scripts.list_scripts("scripts", ".py")]


def extra_network_names():
    return {page.name: [item["name"] for item in page.list_items()] for page in ui_extra_networks.extra_pages}


def save_elsewhere(folder, js_data, gallery, index):
    """images-browser's 'copy to directory': outdir_save changed for the call, then restored."""
    original = shared.opts.outdir_save
    shared.opts.outdir_save = folder
    try:
        return save_files(js_data, gallery, False, index)
    finally:
        shared.opts.outdir_save = original


class Combinations(scripts.Script):
    """Every combination of {a|b} groups, one batch each, as dynamic prompts' combinatorial mode does."""

    def title(self):
        return "surface combinations"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return []

    def process(self, p, *args):
        import itertools
        import re

        parts = re.split(r"\\{([^}]*)\\}", p.prompt)
        choices = [part.split("|") if i % 2 else [part] for i, part in enumerate(parts)]
        prompts = ["".join(c) for c in itertools.product(*choices)]
        if len(prompts) < 2:
            return
        p.n_iter = math.ceil(len(prompts) / p.batch_size)
        p.all_prompts = prompts
        p.all_negative_prompts = [p.negative_prompt] * len(prompts)
        p.all_seeds = [p.all_seeds[0] + i for i in range(len(prompts))]
        p.all_subseeds = [p.all_subseeds[0]] * len(prompts)
'''


def _write_lora(path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 4)}, str(path),
              metadata={"ss_output_name": "surface_alias"})
    path.with_suffix(".json").write_text(json.dumps({"activation text": "shiny", "preferred weight": 0.7}),
                                         encoding="utf-8")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from tests.support.api_client import api_client
    from tests.support.tiny_checkpoints import write_tiny_checkpoint

    from modules import script_callbacks

    root = tmp_path_factory.mktemp("surface")
    write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion", "tiny")
    _write_lora(root / "models" / "Lora" / "surface_lora.safetensors")
    scripts_dir = root / "extensions" / "surface-ext" / "scripts"
    scripts_dir.mkdir(parents=True)
    (scripts_dir / "surface.py").write_text(textwrap.dedent(EXTENSION), encoding="utf-8")
    script_callbacks.clear()
    with api_client(root) as client:
        rt = client.app.state.runtime
        rt.jobs.run("wait for the first load", lambda job: None, timeout=120)
        ext = next(m for n, m in sys.modules.items() if n.endswith("surface_ext_surface"))
        yield types.SimpleNamespace(client=client, rt=rt, root=root, ext=ext)
    script_callbacks.clear()


def test_the_extension_loads(app):
    ext = next(e for e in app.rt.extensions if e.name == "surface-ext")
    assert ext.errors == [] and ext.loaded_scripts == ["surface.py"]
    from modules import script_callbacks

    assert not [m for m in script_callbacks.errors if m.startswith("surface-ext")]


def test_modules_extensions_lists_the_running_apps_extensions(app):
    from modules.extensions import BUILTIN_DIR

    seen = app.ext.SEEN
    folder = app.root / "extensions" / "surface-ext"
    assert ("surface-ext", True, False, str(folder)) in seen["extensions"] and "surface-ext" in seen["active"]
    assert seen["dirs"] == (str(app.root / "extensions"), str(BUILTIN_DIR))


def test_option_info_builder_methods_as_tagcomplete_uses_them(app):
    from modules import shared

    registry = app.rt.options.registry
    assert app.ext.SEEN["isinstance"] is True
    assert {k: registry[k].section for k in ("surface_restart", "surface_info", "surface_reload")} == {
        k: ("surface", "Surface test") for k in ("surface_restart", "surface_info", "surface_reload")}
    assert registry["surface_restart"].comment == "(requires restart)"
    assert registry["surface_info"].comment == "(see the README) (requires restart)"
    assert "wiki" in registry["surface_link"].comment and registry["surface_link"].maximum == 5
    assert bool(registry["surface_reload"].needs_reload_ui) and not registry["surface_restart"].needs_reload_ui
    assert registry["surface_reload"].choices == ["a", "b"]
    # they are real settings: validated, saved, returned
    assert app.client.post("/sdapi/v1/options", json={"surface_reload": "b"}).status_code == 200
    assert app.client.post("/sdapi/v1/options", json={"surface_reload": "zzz"}).status_code == 422
    assert app.client.get("/sdapi/v1/options").json()["surface_reload"] == "b"
    assert shared.opts.surface_reload == "b"
    # the Settings tab reads needs_reload_ui as a flag
    from modules.ui import settings_tab

    ok, message = settings_tab.apply_settings(app.rt.options, ["surface_reload"], ["a"])
    assert ok, message


def test_opts_data_holds_every_default_on_a_first_start(app):
    # absolute, as A1111 writes it for a data folder outside its install folder: IIB joins it to the working dir
    assert app.ext.SEEN["outdir_at_import"] == str(app.root / "outputs" / "txt2img-images")
    assert app.ext.SEEN["data_after_add"] == {"surface_restart": True, "surface_info": "", "surface_reload": "a",
                                              "surface_link": 3}


def test_opts_attribute_assignment_is_a_session_value(app):
    """``shared.opts.samples_format = "jpg"`` (A1111's Options.__setattr__): used at once, validated, not saved."""
    from modules import shared
    from modules.options import OptionError

    config = app.rt.options.path
    before = json.loads(config.read_text(encoding="utf-8"))["samples_format"]
    shared.opts.samples_format = "jpg"
    try:
        assert shared.opts.samples_format == "jpg" and app.rt.options.get("samples_format") == "jpg"
        assert json.loads(config.read_text(encoding="utf-8"))["samples_format"] == before  # not written
        with pytest.raises(OptionError):
            shared.opts.samples_format = 5
    finally:
        shared.opts.samples_format = before
    assert "samples_format" not in vars(shared.opts)  # never shadowed by an instance attribute
    shared.opts.not_a_setting = 1  # any other name stays an ordinary attribute
    assert vars(shared.opts)["not_a_setting"] == 1
    del shared.opts.not_a_setting


def _png_with_infotext(text: str) -> str:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, format="PNG", pnginfo=info)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_save_files_and_read_info_from_image_as_images_browser_uses_them(app):
    from modules import images

    text = "a red square\nSteps: 3, Sampler: Euler, CFG scale: 7, Seed: 42, Size: 16x16"
    js_data = json.dumps({"infotexts": [text], "index_of_first_image": 0, "width": 16, "height": 16})
    result, message = app.ext.SEEN["save_files"](js_data, [_png_with_infotext(text)], True, 0)
    saved = [Path(p) for p in result["value"]]
    folder = app.root / "log" / "images"
    assert [p.parent for p in saved] == [folder, folder] and saved[1].name == "images.zip"
    assert "Saved: " + saved[0].name in message
    with Image.open(saved[0]) as im:
        assert im.info["parameters"] == text and im.size == (16, 16)
        geninfo, items = images.read_info_from_image(im)
    assert geninfo == text and "parameters" not in items
    with zipfile.ZipFile(saved[1]) as archive:
        assert archive.namelist() == [saved[0].name]
    # outdir_save set for the call (a folder the user chose), restored after it
    elsewhere = app.root / "outputs" / "chosen"
    result, _ = app.ext.save_elsewhere(str(elsewhere), js_data, [_png_with_infotext(text)], 0)
    assert Path(result["value"][0]).parent == elsewhere
    assert app.rt.options.get("outdir_save") == str(app.root / "log" / "images")
    assert json.loads(app.rt.options.path.read_text(encoding="utf-8"))["outdir_save"] == str(app.root / "log" / "images")


def test_list_scripts_and_scripts_data(app):
    from modules import scripts

    listed = app.ext.list_my_scripts()
    ext_dir = app.root / "extensions" / "surface-ext"
    assert (str(ext_dir), "surface.py", str(ext_dir / "scripts" / "surface.py")) in listed
    builtin = [row for row in listed if row[0] == str(Path(scripts.INSTALL_DIR))]
    assert builtin and all(Path(path).parent == Path(scripts.INSTALL_DIR) / "scripts" for _b, _n, path in builtin)
    data = {d.script_class.__name__: d for d in scripts.scripts_data}
    assert data["Combinations"].path == str(ext_dir / "scripts" / "surface.py")
    assert data["Combinations"].basedir == str(ext_dir) and data["Combinations"].module is app.ext


def test_extra_network_pages_as_prompt_all_in_one_reads_them(app):
    from modules import ui_extra_networks

    names = app.ext.extra_network_names()
    assert list(names) == ["textual inversion", "checkpoints", "lora"]
    assert names["checkpoints"] == ["tiny"] and names["lora"] == ["surface_lora"]
    lora_page = next(p for p in ui_extra_networks.extra_pages if p.name == "lora")
    item = next(iter(lora_page.list_items()))
    lora_file = app.root / "models" / "Lora" / "surface_lora.safetensors"
    assert item["filename"] == str(lora_file) and item["metadata"]["ss_output_name"] == "surface_alias"
    assert item["prompt"] == '"<lora:surface_alias:" + 0.7 + ">" + " shiny"'  # A1111's JS expression
    assert item["search_terms"] == ["Lora/surface_lora.safetensors"]
    assert item["preview"] is None  # no previews are served here


def test_a_process_hook_that_sets_n_iter_runs_that_many_batches(app):
    body = {"prompt": "a {red|blue} {cube|ball}", "width": 64, "height": 64, "steps": 1, "seed": 5,
            "alwayson_scripts": {"surface combinations": {"args": []}}}
    r = app.client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["all_prompts"] == ["a red cube", "a red ball", "a blue cube", "a blue ball"]
    assert info["all_seeds"] == [5, 6, 7, 8]
    pictures = [Image.open(io.BytesIO(base64.b64decode(b))) for b in r.json()["images"]]
    texts = [p.info.get("parameters", "") for p in pictures if p.size == (64, 64)]
    assert [t.split("\n")[0] for t in texts if "Seed: " in t][-4:] == info["all_prompts"]
    # more batches than a request may ask for is refused with the reason, and the server goes on
    body["prompt"] = "x" + "{a|b}" * 11  # 2048 combinations: n_iter 2048 > 1000
    r = app.client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code in (400, 422, 500) and "n_iter" in r.text
    assert app.client.post("/sdapi/v1/txt2img", json={"prompt": "ok", "width": 64, "height": 64,
                                                       "steps": 1}).status_code == 200
