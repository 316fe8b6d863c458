"""Write the API's OpenAPI schema to ``docs/openapi.json`` (checked in; a test fails when it drifts).

    venv/bin/python -m modules.api.openapi_export
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).resolve().parent.parent.parent / "docs" / "openapi.json"


def current_schema() -> dict[str, Any]:
    """The schema of ``--nowebui --api`` on an empty data folder (what clients see, independent of the models)."""
    from modules.cmd_args import parse_args
    from webui import create_app

    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app(parse_args(["--nowebui", "--api", "--data-dir", data_dir], environ={}))
        try:
            return app.openapi()
        finally:
            app.state.runtime.jobs.stop()


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    SCHEMA_FILE.parent.mkdir(parents=True, exist_ok=True)
    SCHEMA_FILE.write_text(render(current_schema()), encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
