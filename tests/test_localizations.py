"""Shipped localization files keep A1111's format: a flat JSON object of English text -> translation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

LOCALIZATIONS = Path(__file__).resolve().parent.parent / "localizations"


@pytest.mark.parametrize("path", sorted(LOCALIZATIONS.glob("*.json")), ids=lambda p: p.name)
def test_localization_file_format(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and data
    for key, value in data.items():
        if key == "rtl":
            assert isinstance(value, bool)
            continue
        assert isinstance(key, str) and key == key.strip() and key
        assert isinstance(value, str) and value.strip()


def test_zh_cn_ships_and_translates_the_main_controls() -> None:
    data = json.loads((LOCALIZATIONS / "zh_CN.json").read_text(encoding="utf-8"))
    for label in ("Generate", "Prompt", "Negative prompt", "Sampling method", "Sampling steps", "CFG Scale", "Seed"):
        assert data[label] != label


def test_zh_cn_translates_the_controlnet_accordion() -> None:
    """Every label the ControlNet accordion shows (its controls, the control modes, resize modes and the
    preprocessors' slider names) has a zh_CN string."""
    from modules.controlnet import preprocessors
    from modules.controlnet.units import ControlMode, HiresOption, ResizeMode

    data = json.loads((LOCALIZATIONS / "zh_CN.json").read_text(encoding="utf-8"))
    labels = {"Control Weight", "Starting Control Step", "Ending Control Step", "Control Type", "Preprocessor",
              "Pixel Perfect", "Low VRAM", "Run preprocessor", "ControlNet Unit 0", "Control Mode", "Resize Mode",
              "Hires-Fix Option", *(m.value for m in (*ControlMode, *ResizeMode, *HiresOption))}
    labels |= {s.label for p in preprocessors.ordered() for s in p.sliders if s.visible and p.run is not None}
    missing = sorted(label for label in labels if label not in data)
    assert not missing, missing
