"""The checked-in OpenAPI schema (docs/openapi.json) is what the app serves, and it covers A1111's endpoints."""

from __future__ import annotations

import json

from modules.api.openapi_export import SCHEMA_FILE, current_schema, render

A1111_ROUTES = """txt2img img2img extra-single-image extra-batch-images png-info progress interrupt skip options cmd-flags
samplers schedulers upscalers latent-upscale-modes sd-models sd-vae loras refresh-loras embeddings refresh-embeddings
refresh-checkpoints refresh-vae hypernetworks face-restorers realesrgan-models prompt-styles memory scripts script-info
extensions unload-checkpoint reload-checkpoint interrogate""".split()


def test_schema_file_matches_the_app():
    served = render(current_schema())
    stored = SCHEMA_FILE.read_text(encoding="utf-8")
    assert served == stored, ("docs/openapi.json is out of date: run `venv/bin/python -m modules.api.openapi_export` "
                              "and commit the result")


def test_schema_covers_the_contract_and_the_job_api():
    paths = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))["paths"]
    missing = [r for r in A1111_ROUTES if f"/sdapi/v1/{r}" not in paths]
    assert missing == []
    assert {"/api/v1/jobs/txt2img", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/events"} <= set(paths)
