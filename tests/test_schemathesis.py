"""Schemathesis against our OpenAPI schema (campaign goal 4; none of the peers do this): every operation, a
bounded number of generated requests each, through the real app with a tiny checkpoint. No request may get a
5xx, and none may be stopped by the request guard (the generated requests must reach the handlers)."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from modules.cmd_args import parse_args
from tests.support.tiny_checkpoints import write_tiny_checkpoint


def _app():
    import tempfile
    from pathlib import Path

    from webui import create_app

    root = Path(tempfile.mkdtemp(prefix="schemathesis-"))
    write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion", "tiny")
    # generated jobs stay tiny: anything over 0.2 megapixel-steps (64x64 at 48 steps) is a quick 422
    (root / "config.json").write_text(json.dumps({"max_job_megapixel_steps": 0.2, "samples_save": False,
                                                  "grid_save": False}), encoding="utf-8")
    app = create_app(parse_args(["--nowebui", "--api", "--data-dir", str(root), "--allowed-hosts",
                                 "testserver,localhost"], environ={}))
    # No background load here: this runs at collection, and a model load builds modules under accelerate's
    # process-wide empty-weights patch, which must not overlap other tests building their tiny models. The first
    # generated generation request loads the checkpoint, on the job thread, while this module's tests run.
    return app


APP = _app()  # at import: schemathesis reads the schema when the module is collected
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def _stop_jobs():
    yield
    APP.state.runtime.jobs.stop()


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_generated_request_gets_a_server_error(case):
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
    assert response.status_code != 421, "the Host guard stopped a generated request: it never reached a handler"
    if response.status_code == 415:  # schemathesis also sends form content types: the guard's JSON-only answer
        sent = (case.headers or {}).get("Content-Type", "").split(";")[0].strip().lower()
        assert sent in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"), sent
