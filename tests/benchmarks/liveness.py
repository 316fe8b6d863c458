"""Liveness on this machine (security issue 22, item 3): how long a running job takes to stop after
``POST /sdapi/v1/interrupt``, and a server to exit after SIGTERM, each with the fix and without it.

    venv/bin/python tests/benchmarks/liveness.py [--side 1024] [--steps 20] [--skip-sigterm]

Interrupt: the tiny SD1 test model at ``--side`` px (a step takes seconds on a CPU), interrupted 2 s into its second
step, in process; "step-level" disables the per-job block hooks (the behaviour before: the step runs to its end).
SIGTERM: a real ``webui.py`` server during a synchronous 1024x1024 txt2img, signalled once the job samples;
"plain uvicorn" serves with ``uvicorn.run`` as before (capped at 60 s).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

REPO = Path(__file__).resolve().parents[2]


def interrupt_latency(side: int, steps: int, hooks: bool) -> tuple[float, float]:
    """(seconds from the interrupt to the response, seconds of a whole step)."""
    import modules.processing.generation as generation
    from tests.support.api_client import api_client
    from tests.support.tiny_checkpoints import write_tiny_checkpoint

    original = generation.interrupt_points
    if not hooks:
        generation.interrupt_points = lambda progress, modules: contextlib.nullcontext(0)
    root = Path(tempfile.mkdtemp(prefix="liveness-"))
    write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion", "tiny")
    try:
        with api_client(root) as client:
            rt = client.app.state.runtime
            rt.options.apply({"max_job_seconds": 0})
            assert client.post("/sdapi/v1/txt2img", json={"width": 64, "height": 64, "steps": 2}).status_code == 200
            done: dict[str, float] = {}

            def generate() -> None:
                client.post("/sdapi/v1/txt2img", json={"width": side, "height": side, "steps": steps})
                done["at"] = time.perf_counter()

            worker = threading.Thread(target=generate)
            worker.start()
            while rt.jobs.current is None or rt.jobs.current.progress.snapshot().sampling_step < 1:
                time.sleep(0.05)
            time.sleep(2.0)  # inside the second step
            asked = time.perf_counter()
            client.post("/sdapi/v1/interrupt")
            worker.join()
            timings = rt.jobs.jobs()[-1].progress.step_timings()
            step = timings[0][2] if timings else float("nan")
            return done["at"] - asked, step
    finally:
        generation.interrupt_points = original


def sigterm_to_exit(plain_uvicorn: bool, cap: float = 60.0) -> float | None:
    from tests.support.server import Server, _ping, free_port, make_data_dir, server_env, wait_for_model

    root = make_data_dir(Path(tempfile.mkdtemp(prefix="liveness-srv-")))
    port = free_port()
    patch = ("import modules.shutdown as s, uvicorn; "
             "s.serve = lambda app, jobs, grace_seconds=5, **kw: uvicorn.run(app, **kw); ") if plain_uvicorn else ""
    code = (patch + "import sys, webui; sys.argv = ['webui.py', '--api', '--data-dir', " + repr(str(root)) +
            f", '--port', '{port}']; sys.exit(webui.main())")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=server_env(root),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Server(process, port, root, root)
    try:
        while not _ping(port):
            time.sleep(0.25)
        wait_for_model(server)
        def generate() -> None:
            with contextlib.suppress(OSError):  # the server goes away mid-request: that is the point
                server.request("POST", "/sdapi/v1/txt2img", {"width": 1024, "height": 1024, "steps": 40}, timeout=900)

        threading.Thread(target=generate, daemon=True).start()
        while server.request("GET", "/sdapi/v1/progress")[1]["state"]["sampling_steps"] != 40:
            time.sleep(0.1)
        time.sleep(1.0)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(cap)
            return time.monotonic() - signalled
        except subprocess.TimeoutExpired:
            return None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--skip-sigterm", action="store_true")
    args = parser.parse_args()
    for hooks in (False, True):
        latency, step = interrupt_latency(args.side, args.steps, hooks)
        label = "inside the step" if hooks else "step-level (before)"
        print(f"interrupt {label:22s} {args.side}x{args.side}: {latency:6.2f} s to stop (a step takes {step:.1f} s)",
              flush=True)
    if not args.skip_sigterm:
        for plain in (True, False):
            seconds = sigterm_to_exit(plain)
            label = "plain uvicorn (before)" if plain else "modules.shutdown"
            shown = f"{seconds:6.2f} s" if seconds is not None else "still running after 60 s"
            print(f"SIGTERM to exit, {label:22s}: {shown}", flush=True)


if __name__ == "__main__":
    main()
