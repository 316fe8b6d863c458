"""ui-config.json: A1111's UI defaults file changes what the controls start with, and never breaks the page."""

from __future__ import annotations

import json

import pytest

from modules.cmd_args import parse_args
from modules.runtime import build_runtime


def build(data_dir, extra=()):
    from modules.ui.app import build_ui

    rt = build_runtime(parse_args(["--data-dir", str(data_dir), *extra], environ={}))
    demo = build_ui(rt)
    return rt, demo


def component(demo, elem_id):
    return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def test_first_start_writes_the_defaults(tmp_path):
    build(tmp_path)
    data = json.loads((tmp_path / "ui-config.json").read_text(encoding="utf-8"))
    assert data["txt2img/Sampling steps/value"] == 20 and data["txt2img/Sampling steps/maximum"] == 150
    assert data["img2img/Denoising strength/value"] == 0.75 and data["txt2img/Sampling method/value"] == "DPM++ 2M"
    assert data["img2img/Mask blur/value"] == 4 and data["txt2img/Hires. fix/value"] is False


def test_a_second_start_finds_nothing_to_ignore(tmp_path, caplog):
    """What the first start wrote fits the controls at the next (an empty textbox is "", never null)."""
    build(tmp_path)
    data = json.loads((tmp_path / "ui-config.json").read_text(encoding="utf-8"))
    assert data["txt2img/Negative prompt/value"] == "" and data["img2img/Prompt/value"] == ""
    assert [k for k, v in data.items() if v is None] == ["img2img/Checkpoint/value"]  # "no override" is null
    rt, _ = build(tmp_path)
    assert [r.getMessage() for r in caplog.records if "ui-config.json" in r.getMessage()] == []


def test_nulls_an_earlier_version_wrote_are_no_warning(tmp_path, caplog):
    (tmp_path / "ui-config.json").write_text(json.dumps({"txt2img/Negative prompt/value": None}), encoding="utf-8")
    _, demo = build(tmp_path)
    assert component(demo, "txt2img_neg_prompt").value in ("", None)
    assert [r.getMessage() for r in caplog.records if "does not fit" in r.getMessage()] == []


def test_stored_values_become_the_controls_defaults(tmp_path):
    (tmp_path / "ui-config.json").write_text(json.dumps({
        "txt2img/Sampling steps/value": 33, "txt2img/Sampling steps/maximum": 200,
        "txt2img/Sampling method/value": "Euler a", "txt2img/Width/value": 768,
        "img2img/Resize mode/value": "Crop and resize", "txt2img/Negative prompt/value": "blurry",
        "txt2img/Hires. fix/value": True}), encoding="utf-8")
    _, demo = build(tmp_path)
    assert component(demo, "txt2img_steps").value == 33 and component(demo, "txt2img_steps").maximum == 200
    assert component(demo, "txt2img_sampling").value == "Euler a"
    assert component(demo, "txt2img_width").value == 768
    assert component(demo, "resize_mode").value == "Crop and resize"
    assert component(demo, "txt2img_neg_prompt").value == "blurry"
    assert component(demo, "txt2img_enable_hr").value is True
    data = json.loads((tmp_path / "ui-config.json").read_text(encoding="utf-8"))
    assert data["txt2img/Sampling steps/value"] == 33  # the user's values are kept when missing keys are added
    assert "img2img/Sampling steps/value" in data


@pytest.mark.parametrize("key,value", [("txt2img/Sampling steps/value", 9999), ("txt2img/Sampling steps/value", "x"),
                                       ("txt2img/Sampling method/value", "No Such Sampler"),
                                       ("txt2img/Hires. fix/value", "yes"), ("txt2img/CFG Scale/step", 0)])
def test_values_that_do_not_fit_are_ignored(tmp_path, key, value):
    (tmp_path / "ui-config.json").write_text(json.dumps({key: value}), encoding="utf-8")
    _, demo = build(tmp_path)
    assert component(demo, "txt2img_steps").value == 20 and component(demo, "txt2img_sampling").value == "DPM++ 2M"
    assert component(demo, "txt2img_cfg_scale").step == 0.5
    assert json.loads((tmp_path / "ui-config.json").read_text(encoding="utf-8"))[key] == value  # left for the user


def test_corrupt_file_is_kept_aside_and_defaults_are_used(tmp_path):
    (tmp_path / "ui-config.json").write_text('{"txt2img/Sampling steps/value": 3', encoding="utf-8")
    rt, demo = build(tmp_path)
    assert component(demo, "txt2img_steps").value == 20
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("ui-config.json") and p.name != "ui-config.json"]
    assert len(kept) == 1 and kept[0].read_text(encoding="utf-8") == '{"txt2img/Sampling steps/value": 3'
    assert any("ui-config.json" in note for note in rt.startup_notes)
    assert json.loads((tmp_path / "ui-config.json").read_text(encoding="utf-8"))["txt2img/Sampling steps/value"] == 20


def test_ui_config_file_flag(tmp_path):
    (tmp_path / "mine.json").write_text(json.dumps({"txt2img/Sampling steps/value": 42}), encoding="utf-8")
    _, demo = build(tmp_path, ["--ui-config-file", "mine.json"])
    assert component(demo, "txt2img_steps").value == 42
    assert not (tmp_path / "ui-config.json").exists()
