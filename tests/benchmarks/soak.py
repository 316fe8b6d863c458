"""Soak: many sequential generations with random valid parameters on a tiny checkpoint; resident memory, open files
and threads must stay flat (campaign E42).

    venv/bin/python tests/benchmarks/soak.py [--jobs 1000] [--seed 0]

Runs the real app in-process (``--nowebui --api``) and sends each job through ``/sdapi/v1/txt2img`` or ``img2img``
(sizes 64-128, 1-4 steps, every sampler, batches, hires fix, seeds, styles of prompt syntax). Prints a table of
resident memory (MiB), open file descriptors, threads and temp files every tenth of the run, and the growth from
the end of the warm-up (the first 20%: torch's per-shape caches fill while the random sizes, samplers and modes
are first met) to the end. Exits 1 when a job fails or memory grows by more than 5%.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psutil  # noqa: E402
from PIL import Image  # noqa: E402

PROMPTS = ["a cat", "(a dog:1.3), [sunset:night:0.5]", "a [red|blue] car AND a tree :0.5", "portrait BREAK studio",
           "((masterpiece)), landscape, <lora:none:0.5>", "x" * 300]


def _picture(rng: random.Random, size: int) -> str:
    image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _request(rng: random.Random, samplers: list[str]) -> tuple[str, dict]:
    size = rng.choice([64, 96, 128])
    body = {"prompt": rng.choice(PROMPTS), "negative_prompt": rng.choice(["", "blurry", "(bad:1.2)"]),
            "seed": rng.randrange(2**32), "steps": rng.randint(1, 4), "cfg_scale": rng.choice([1.0, 5.0, 7.5]),
            "width": size, "height": rng.choice([64, 96, 128]), "sampler_name": rng.choice(samplers),
            "batch_size": rng.choice([1, 1, 2]), "subseed_strength": rng.choice([0.0, 0.0, 0.3])}
    if rng.random() < 0.3:
        return "img2img", {**body, "init_images": [_picture(rng, size)], "denoising_strength": rng.random()}
    if rng.random() < 0.2:
        body.update(enable_hr=True, hr_scale=1.5, hr_second_pass_steps=1, denoising_strength=0.5)
    return "txt2img", body


def _sample(process: psutil.Process, tmp: Path) -> tuple[float, int, int, int]:
    return (process.memory_info().rss / 2**20, process.num_fds(), process.num_threads(),
            sum(1 for _ in tmp.rglob("*")) if tmp.exists() else 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from modules.cmd_args import parse_args
    from tests.support.local_client import LocalClient
    from tests.support.tiny_checkpoints import write_tiny_checkpoint
    from webui import create_app, start_background_load

    root = Path(tempfile.mkdtemp(prefix="soak-"))
    write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion", "tiny")
    (root / "config.json").write_text(json.dumps({"samples_save": False, "grid_save": False}), encoding="utf-8")
    app = create_app(parse_args(["--nowebui", "--api", "--data-dir", str(root)], environ={}))
    start_background_load(app)
    rng = random.Random(args.seed)
    process = psutil.Process(os.getpid())
    tmp = Path(tempfile.gettempdir()) / "gradio"
    rows, failures = [], 0
    started = time.perf_counter()
    with LocalClient(app) as client:
        samplers = [s["name"] for s in client.get("/sdapi/v1/samplers").json()]
        warm_up = max(1, args.jobs // 5)  # every size x sampler x mode combination has been seen by then
        for number in range(1, args.jobs + 1):
            kind, body = _request(rng, samplers)
            response = client.post(f"/sdapi/v1/{kind}", json=body)
            if response.status_code != 200:
                failures += 1
                print(f"job {number} ({kind}) failed: {response.status_code} {response.text[:200]}")
            if number == warm_up or number % max(1, args.jobs // 10) == 0 or number == args.jobs:
                rows.append((number, time.perf_counter() - started, *_sample(process, tmp)))
                print(f"{number} jobs, {rows[-1][1]:.0f} s, RSS {rows[-1][2]:.1f} MiB", flush=True)
    app.state.runtime.jobs.stop()

    print(f"\n{args.jobs} jobs, {failures} failed, {time.perf_counter() - started:.0f} s "
          f"({(time.perf_counter() - started) / args.jobs * 1000:.0f} ms a job)\n")
    print(f"{'jobs':>6} {'seconds':>8} {'RSS MiB':>8} {'fds':>5} {'threads':>8} {'tmp files':>9}")
    for number, seconds, rss, fds, threads, temp in rows:
        print(f"{number:>6} {seconds:>8.0f} {rss:>8.1f} {fds:>5} {threads:>8} {temp:>9}")
    base, last = rows[0], rows[-1]
    growth = (last[2] - base[2]) / base[2] * 100
    print(f"\nafter warm-up (job {base[0]}) to the end: RSS {growth:+.1f}%, fds {last[3] - base[3]:+d}, "
          f"threads {last[4] - base[4]:+d}, temp files {last[5] - base[5]:+d}")
    return 1 if failures or growth > 5 else 0


if __name__ == "__main__":
    sys.exit(main())
