"""Shared fixtures. Tests never reach a model hub; GPU and real-weight tests are opt-in markers."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def tiny_api_client(tmp_path_factory):
    """An in-process /sdapi/v1 client over a data folder with one tiny sd1 checkpoint (one per test module)."""
    from tests.support.api_client import api_client
    from tests.support.tiny_checkpoints import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("data")
    write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion", "tiny")
    with api_client(root) as client:
        yield client


def pytest_collection_modifyitems(config, items):
    """gpu/real_weights tests run only when selected explicitly with -m; otherwise they are deselected (not reported
    as skipped, so a skip in the summary always means something)."""
    selected = config.getoption("-m") or ""
    opt_in = ("gpu", "real_weights")
    keep, dropped = [], []
    for item in items:
        wanted = [m for m in opt_in if m in item.keywords]
        (dropped if any(m not in selected for m in wanted) else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
