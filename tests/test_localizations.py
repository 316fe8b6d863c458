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
