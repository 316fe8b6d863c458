"""How fast the server answers progress requests while a job samples (issue 21 item 11: the latency limits the
tests used to assert now live here, as figures).

    venv/bin/python tests/benchmarks/progress_latency.py [--side 512] [--steps 30] [--polls 60] [--interval 0.25]

A real ``webui.py`` server on the tiny SD1 test checkpoint runs one txt2img of ``--side`` px (seconds per step on a
CPU) while this script polls, at ``--interval``, the three progress routes clients use: ``GET /sdapi/v1/progress``
(A1111's API, with its live preview), the same with ``skip_current_image=true``, and ``POST /internal/progress``
(A1111's page route). It prints min / median / p95 / max milliseconds per route, and how many polls saw the step
count move. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

ROUTES = (("GET", "/sdapi/v1/progress", None), ("GET", "/sdapi/v1/progress?skip_current_image=true", None),
          ("POST", "/internal/progress", {"id_task": "", "id_live_preview": -1, "live_preview": True}))


def _timed(base: str, method: str, path: str, body: dict | None) -> tuple[float, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.loads(response.read())
    return (time.perf_counter() - started) * 1000.0, payload


def _summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return (f"min {ordered[0]:7.1f}  median {statistics.median(ordered):7.1f}  p95 {p95:7.1f}  "
            f"max {ordered[-1]:7.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--polls", type=int, default=60, help="polls per route")
    parser.add_argument("--interval", type=float, default=0.25)
    args = parser.parse_args()

    from tests.support.server import make_data_dir, running_server, wait_for_model

    data_dir = make_data_dir(Path(tempfile.mkdtemp(prefix="progress-latency-")), ["tiny"])
    with running_server(data_dir) as server:
        wait_for_model(server)
        job: dict[str, float] = {}

        def generate() -> None:
            started = time.perf_counter()
            server.request("POST", "/sdapi/v1/txt2img", {"prompt": "a lighthouse", "width": args.side,
                                                         "height": args.side, "steps": args.steps}, timeout=3600)
            job["seconds"] = time.perf_counter() - started

        worker = threading.Thread(target=generate, daemon=True)
        worker.start()
        while server.get_json("/sdapi/v1/progress?skip_current_image=true")["state"]["sampling_step"] < 1:
            time.sleep(0.05)
        timings: dict[str, list[float]] = {path: [] for _, path, _ in ROUTES}
        steps_seen: set[int] = set()
        while any(len(t) < args.polls for t in timings.values()) and worker.is_alive():
            for method, path, body in ROUTES:
                ms, payload = _timed(server.url, method, path, body)
                timings[path].append(ms)
                state = payload.get("state") if isinstance(payload, dict) else None
                if isinstance(state, dict):
                    steps_seen.add(int(state.get("sampling_step", 0)))
            time.sleep(args.interval)
        worker.join()
    print(f"job: {args.side}x{args.side}, {args.steps} steps, {job.get('seconds', float('nan')):.1f} s; "
          f"polls saw {len(steps_seen)} different steps")
    for _, path, _ in ROUTES:
        if timings[path]:
            print(f"{path:45s} n={len(timings[path]):3d}  {_summary(timings[path])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
