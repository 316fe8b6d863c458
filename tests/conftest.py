"""Shared fixtures. Tests never reach a model hub; GPU and real-weight tests are opt-in markers."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """gpu/real_weights tests run only when selected explicitly with -m."""
    selected = config.getoption("-m") or ""
    for item in items:
        for marker in ("gpu", "real_weights"):
            if marker in item.keywords and marker not in selected:
                item.add_marker(pytest.mark.skip(reason=f"opt-in: run with -m {marker}"))
