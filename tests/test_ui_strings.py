"""Every text the UI renders has a zh_CN translation, and the localization files merge as A1111 merges them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from modules import localization
from modules.cmd_args import parse_args
from modules.ui import untranslated

ROOT = Path(__file__).resolve().parent.parent
_NOT_TEXT = re.compile(r"^[\W\d_]*$")  # emoji-only buttons, numbers, punctuation


def ui_strings(demo) -> set[str]:
    """Labels, placeholders, button texts, tab titles and info lines of every component."""
    found: set[str] = set()
    for block in demo.blocks.values():
        for attr in ("label", "placeholder", "info"):
            value = getattr(block, attr, None)
            if isinstance(value, str):
                found.add(value.strip())
        if type(block).__name__ in ("Button", "DownloadButton", "UploadButton") and isinstance(block.value, str):
            found.add(block.value.strip())
        kind = type(block).__name__
        # Radio and CheckboxGroup choices are UI text, never file names; so are a dropdown's, unless it lists names
        # (modules/ui/untranslated.py), where only the UI words among them are
        names = kind == "Dropdown" and untranslated.is_name_dropdown(getattr(block, "elem_id", None))
        if kind in ("Radio", "CheckboxGroup", "Dropdown"):
            for choice in getattr(block, "choices", None) or []:
                label = choice[0] if isinstance(choice, (tuple, list)) else choice
                if isinstance(label, str) and (not names or label in untranslated.UI_WORDS_IN_NAME_LISTS):
                    found.add(label.strip())
    return {s for s in found if s and not _NOT_TEXT.match(s)}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from modules.runtime import build_runtime
    from modules.ui.app import build_ui

    from webui import load_scripts

    rt = build_runtime(parse_args(["--data-dir", str(tmp_path_factory.mktemp("ui"))], environ={}))
    load_scripts(rt, [])  # the built-in scripts' controls (X/Y/Z plot, ...) are part of the page
    assert rt.scripts.txt2img.selectable_titles == ["Prompts from file or textbox", "Prompt matrix", "X/Y/Z plot"]
    return build_ui(rt)


def test_zh_cn_translates_text_that_appears_later():
    """Progress, queue, interrupt and error words are rendered apart from their numbers, so they translate."""
    from modules.ui import common

    zh = json.loads((ROOT / "localizations" / "zh_CN.json").read_text(encoding="utf-8"))
    from modules.ui.extras_tab import NOTHING_TO_DO
    from modules.processing.builtin_scripts import SD_UPSCALE_NOTE
    from modules.ui.settings_tab import MESSAGE_PHRASES

    later = (*common.LATER_STRINGS, *MESSAGE_PHRASES, SD_UPSCALE_NOTE, NOTHING_TO_DO, "version:")
    assert [s for s in later if s not in zh] == []
    html_text = common.progress_html(3, 20, 0, 2, 5.0, "", 0)
    assert "<span class='ui-text'>Step</span> 3/20" in html_text and "<span class='ui-text'>ETA</span>" in html_text
    assert "<span class='ui-text'>In queue: position</span> 2" in common.progress_html(0, 0, 0, 0, 0, "", 2)


def test_zh_cn_translates_every_rendered_string(demo):
    zh = json.loads((ROOT / "localizations" / "zh_CN.json").read_text(encoding="utf-8"))
    strings = ui_strings(demo)
    assert {"Generate", "Prompt", "Sampling steps"} <= strings  # the walk sees the page
    missing = sorted(s for s in strings if s not in zh)
    assert missing == [], f"add these to localizations/zh_CN.json: {missing}"


def test_files_merge_in_discovery_order_and_bad_files_are_ignored(tmp_path):
    core, ext = tmp_path / "core", tmp_path / "ext" / "localizations"
    core.mkdir()
    ext.mkdir(parents=True)
    (core / "xx.json").write_text(json.dumps({"Generate": "Gen", "Seed": "S"}), encoding="utf-8")
    (ext / "xx.json").write_text(json.dumps({"Seed": "Seed!", "rtl": True}), encoding="utf-8")
    (ext / "broken.json").write_text("{not json", encoding="utf-8")
    (ext / "list.json").write_text("[1, 2]", encoding="utf-8")
    dirs = [core, ext]
    assert localization.load("xx", dirs) == {"Generate": "Gen", "Seed": "Seed!", "rtl": True}
    assert localization.load("broken", dirs) == {} and localization.load("list", dirs) == {}
    assert localization.load("None", dirs) == {} and localization.load("nosuch", dirs) == {}
    assert localization.names(dirs) == ["None", "broken", "list", "xx"]


def test_the_setting_offers_the_shipped_files(tmp_path):
    from modules.runtime import build_runtime

    rt = build_runtime(parse_args(["--nowebui", "--data-dir", str(tmp_path)], environ={}))
    assert "zh_CN" in rt.options.registry["localization"].current_choices()
    with pytest.raises(ValueError, match="localization"):
        rt.options.apply({"localization": "xx_NOPE"})
