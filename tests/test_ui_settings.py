"""Settings tab: pure conversion/diff/apply logic on a real Options, plus a gradio build smoke test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modules.options import OptionInfo, Options
from modules.ui import settings_tab as st


@pytest.fixture
def opts(tmp_path: Path) -> Options:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"jpeg_quality": 90, "unknown_ext_key": 3}, indent=4), encoding="utf-8")
    o = Options(path)
    o.load()
    return o


def ui_values(opts: Options, keys: list[str]) -> list:
    """What the components hold before the user touches anything."""
    return [st.component_spec(k, opts.registry[k], opts.get(k))["kwargs"]["value"] for k in keys]


# -- component_spec -------------------------------------------------------------------------------------------
def test_spec_kinds(opts: Options) -> None:
    reg = opts.registry
    assert st.component_spec("samples_save", reg["samples_save"])["type"] == "checkbox"
    s = st.component_spec("jpeg_quality", reg["jpeg_quality"], 90)
    assert s["type"] == "slider"
    assert s["kwargs"] == {"label": "Quality for saved jpeg and webp images", "elem_id": "setting_jpeg_quality",
                           "value": 90, "minimum": 1, "maximum": 100, "step": 1}
    d = st.component_spec("samples_format", reg["samples_format"])
    assert d["type"] == "dropdown" and d["kwargs"]["choices"] == ["png", "jpg", "jpeg", "webp"]
    assert d["kwargs"]["multiselect"] is False
    assert st.component_spec("localization", reg["localization"])["type"] == "textbox"
    t = st.component_spec("hide_samplers", reg["hide_samplers"], ["Euler", "DDIM"])
    assert t["type"] == "textbox" and t["kwargs"]["value"] == "Euler, DDIM"
    # very wide int range -> Number with precision 0
    n = st.component_spec("eta_noise_seed_delta", reg["eta_noise_seed_delta"])
    assert n["type"] == "number" and n["kwargs"]["precision"] == 0


def test_spec_unbounded_float_step_and_callable_choices() -> None:
    assert st.component_spec("x", OptionInfo(1.5, "X"))["type"] == "number"
    f = st.component_spec("f", OptionInfo(0.5, "F", minimum=0, maximum=1, step=0.05))
    assert f["type"] == "slider" and f["kwargs"]["step"] == 0.05
    calls = []

    def choices():
        calls.append(1)
        return ["a", "b"]

    m = st.component_spec("m", OptionInfo(["a"], "M", kind="list", choices=choices))
    assert m["type"] == "dropdown" and m["kwargs"]["multiselect"] is True and m["kwargs"]["value"] == ["a"]
    d = st.component_spec("d", OptionInfo("gone", "D", choices=choices))
    assert d["kwargs"]["choices"] == ["a", "b", "gone"]  # a stale value stays shown
    assert len(calls) == 2


def test_visible_keys_skip_quicksettings_and_restricted(opts: Options) -> None:
    keys = st.visible_keys(opts)
    for k in ("sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers"):
        assert k not in keys
    assert "outdir_samples" in keys and "samples_filename_pattern" in keys
    hidden = st.visible_keys(opts, hide_dir_config=True)
    assert not any(opts.registry[k].restricted for k in hidden)
    assert "samples_save" in hidden
    secs = st.sections(opts, keys)
    assert secs[0][0] == ("saving-images", "Saving images/grids")
    assert [s[0][0] for s in secs][:3] == ["saving-images", "saving-paths", "saving-to-dirs"]


# -- conversion and diff --------------------------------------------------------------------------------------
def test_from_ui_conversions(opts: Options) -> None:
    reg = opts.registry
    assert st.from_ui(reg["jpeg_quality"], 85.0) == 85 and isinstance(st.from_ui(reg["jpeg_quality"], 85.0), int)
    assert st.from_ui(reg["jpeg_quality"], 85.5) == 85.5  # left for validate to refuse
    assert st.from_ui(reg["hide_samplers"], " Euler , ,DDIM ") == ["Euler", "DDIM"]
    assert st.from_ui(reg["hide_samplers"], "") == []
    assert st.from_ui(OptionInfo(0.5, "F"), 1) == 1.0
    assert st.from_ui(reg["sd_model_checkpoint"], "") is None


def test_changed_values_untouched_is_empty(opts: Options) -> None:
    keys = st.visible_keys(opts)
    assert st.changed_values(opts, keys, ui_values(opts, keys)) == {}


def test_changed_values_diff(opts: Options) -> None:
    keys = ["jpeg_quality", "samples_save", "hide_samplers", "n_rows"]
    values = [90.0, False, "Euler", -1.0]
    assert st.changed_values(opts, keys, values) == {"samples_save": False, "hide_samplers": ["Euler"]}
    with pytest.raises(ValueError):
        st.changed_values(opts, keys, values[:2])


# -- apply ----------------------------------------------------------------------------------------------------
def test_apply_success_writes_and_reports(opts: Options) -> None:
    keys = ["jpeg_quality", "localization", "samples_format"]
    ok, msg = st.apply_settings(opts, keys, [70.0, "ru_RU", "png"])
    assert ok
    assert msg.startswith("2 settings changed: jpeg_quality, localization.")
    assert "Reload the UI" in msg and "localization" in msg.split("Reload")[1]
    saved = json.loads(opts.path.read_text(encoding="utf-8"))
    assert saved["jpeg_quality"] == 70 and isinstance(saved["jpeg_quality"], int)
    assert saved["localization"] == "ru_RU" and saved["unknown_ext_key"] == 3
    ok, msg = st.apply_settings(opts, keys, [70, "ru_RU", "png"])
    assert ok and msg == "0 settings changed."


@pytest.mark.parametrize("keys,values,field", [
    (["samples_save", "jpeg_quality"], [False, 500.0], "jpeg_quality"),  # out of range
    (["samples_save", "jpeg_quality"], [False, 50.5], "jpeg_quality"),  # not whole
    (["samples_save", "samples_format"], [False, "bmp"], "samples_format"),  # not a choice
    (["samples_save", "jpeg_quality"], [False, None], "jpeg_quality"),  # emptied number box
])
def test_apply_error_writes_nothing(opts: Options, keys, values, field) -> None:
    before = opts.path.read_bytes()
    ok, msg = st.apply_settings(opts, keys, values)
    assert not ok and msg.startswith(f"{field}: ")
    assert opts.path.read_bytes() == before  # byte-identical
    assert opts.get("samples_save") is True  # the valid change was not applied either


def test_apply_frozen_writes_nothing(opts: Options) -> None:
    before = opts.path.read_bytes()
    ok, msg = st.apply_settings(opts, ["samples_save"], [False], frozen=True)
    assert not ok and "frozen" in msg
    assert opts.path.read_bytes() == before and opts.get("samples_save") is True


def test_apply_restricted_refused_when_dirs_hidden(opts: Options) -> None:
    before = opts.path.read_bytes()
    ok, msg = st.apply_settings(opts, ["outdir_samples"], ["/tmp/x"], hide_dir_config=True)
    assert not ok and msg.startswith("outdir_samples: ")
    assert opts.path.read_bytes() == before


def test_result_html_escapes() -> None:
    out = st.result_html(False, "samples_format: '<b>' is not one of: png")
    assert "<b>" not in out and "&lt;b&gt;" in out and "error" in out


def test_search_visibility() -> None:
    labels = {"a": "Show progressbar", "b": "File format for images"}
    assert st.search_visibility(labels, "") == {"a": True, "b": True}
    assert st.search_visibility(labels, "PROGRESS") == {"a": True, "b": False}
    assert st.search_visibility(labels, "  format ") == {"a": False, "b": True}


# -- gradio smoke ---------------------------------------------------------------------------------------------
def _runtime(tmp_path: Path, *flags: str):
    from modules import cmd_args, runtime

    return runtime.build_runtime(cmd_args.parse_args(["--data-dir", str(tmp_path), *flags], environ={}))


def test_build_settings_tab(tmp_path: Path) -> None:
    import gradio as gr

    rt = _runtime(tmp_path)
    with gr.Blocks() as demo:
        controls = st.build_settings_tab(rt)
    keys = st.visible_keys(rt.options)
    assert list(controls.components) == keys
    ids = [c.elem_id for c in controls.components.values()]
    assert len(ids) == len(set(ids)) and all(i.startswith("setting_") for i in ids)
    assert "setting_sd_vae" not in ids and "setting_sd_model_checkpoint" not in ids
    assert controls.submit.elem_id == "settings_submit" and controls.search.elem_id == "settings_search"
    assert controls.result.elem_id == "settings_result"
    assert controls.reload.elem_id == "settings_restart_gradio"
    # a section is #settings_<its id>, as A1111's (stable-diffusion-webui-state styles #settings_state)
    sections = {c.elem_id for c in demo.blocks.values() if isinstance(c, gr.Accordion)}
    assert {"settings_saving-images", "settings_sd"} <= sections
    assert isinstance(controls.components["samples_save"], gr.Checkbox)
    assert isinstance(controls.components["jpeg_quality"], gr.Slider)
    assert isinstance(controls.components["samples_format"], gr.Dropdown)
    assert isinstance(controls.components["hide_samplers"], gr.Textbox)
    assert controls.components["samples_save"].label == "Always save all generated images"
    assert len(controls.refresh_fn()) == len(keys)
    assert demo.get_config_file()["components"]  # the config serialises
    # the Apply handler goes through apply_settings: check via the registered function
    fns = [f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "on_apply"]
    assert len(fns) == 1
    values = ui_values(rt.options, keys)
    values[keys.index("samples_save")] = False
    # the fixed words are their own element, so that the page translates them; the count and names are data
    assert "1 <span class='ui-text'>settings changed</span>: samples_save" in fns[0].fn(*values)
    assert rt.options.get("samples_save") is False


def test_build_settings_tab_flags(tmp_path: Path) -> None:
    import gradio as gr

    rt = _runtime(tmp_path, "--freeze-settings", "--hide-ui-dir-config")
    with gr.Blocks() as demo:
        controls = st.build_settings_tab(rt)
    assert not any(rt.options.registry[k].restricted for k in controls.components)
    assert controls.components["samples_save"].interactive is False
    fn = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "on_apply")
    keys = list(controls.components)
    values = ui_values(rt.options, keys)
    values[keys.index("samples_save")] = False
    assert "frozen" in fn(*values)
    assert rt.options.get("samples_save") is True
    assert not rt.options.path.exists() or "samples_save" not in rt.options.path.read_text()
