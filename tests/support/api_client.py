"""An in-process ``/sdapi/v1`` client over the real app (``--nowebui --api``), the background load started."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Sequence

from tests.support.local_client import LocalClient

from modules.cmd_args import parse_args


@contextlib.contextmanager
def api_client(data_dir: Path, extra_args: Sequence[str] = ()) -> Iterator[Any]:
    from webui import create_app, start_background_load

    args = parse_args(["--nowebui", "--api", "--data-dir", str(data_dir), *extra_args], environ={})
    app = create_app(args)
    start_background_load(app)
    try:
        with LocalClient(app) as client:
            yield client
    finally:
        app.state.runtime.jobs.stop()
