"""``LocalClient``: fastapi's TestClient addressed as ``http://127.0.0.1`` (the Host a local browser sends), since
the app refuses unknown Host headers such as TestClient's default ``testserver`` (the DNS-rebinding guard)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def LocalClient(app: Any, **kwargs: Any) -> TestClient:  # noqa: N802 - reads like the class it returns
    kwargs.setdefault("base_url", "http://127.0.0.1")
    return TestClient(app, **kwargs)
