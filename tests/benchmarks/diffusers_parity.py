"""Ours against plain diffusers on the same full-size SD1.5-shaped file: start-up load, time per step at several sizes,
peak resident memory (issue 23 goals: load <= 1.2x diffusers', every step size <= 1.05x).

    venv/bin/python tests/benchmarks/diffusers_parity.py [--repeats 2] [--sizes 64 256 512] [--steps 4]
                                                         [--out DIR] [--keep] [--hash-cached]
                                                         [--threads N] [--only ours|diffusers] [--plain-in-ours]

The checkpoint (2 GiB fp16, random weights, the original LDM layout users download) is written once by
``full_size_sd15.write_checkpoint`` (reused from ``--out`` when present). Plain diffusers gets a local config folder
(model_index.json, unet/vae/text_encoder/scheduler configs, tokenizer), written from the same shapes, and loads with
``StableDiffusionPipeline.from_single_file(path, config=folder, local_files_only=True)``: nothing is fetched.

Each run is a fresh subprocess, ours and diffusers alternating (A B A B), so imports count as they do at start-up.
In the child, ``import`` is torch plus the entry module (ours: ``modules.runtime``, what webui.py imports before
the page; diffusers and the model classes come with our first load, as in the app; diffusers:
``from diffusers import StableDiffusionPipeline``, which imports them), ``load`` is the
load call (ours: ``ModelManager.load`` as the start-up job runs it, with the SHA-256 the title needs, on a fresh
``cache.json`` unless ``--hash-cached``; diffusers: ``from_single_file`` in fp32) and ``start-up`` is process start
to a usable model: the like-for-like start-up figure, whatever is counted as import. Then each ``--sizes`` generates ``--steps`` steps of Euler at CFG 7 (ours: ``txt2img`` on the
app's job worker thread; diffusers: the pipeline's ``__call__``, latents out); the time per step is the median
interval between step ends after the first step. Peak RSS is the child's ``ru_maxrss``. Medians over ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

PROMPT = "a photograph of an astronaut riding a horse"


# ---------------------------------------------------------------------------------------------------------------------
# children (one system, one fresh process)


def _rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child_ours(path: Path, sizes: list[int], steps: int, cache_dir: Path, started: float,
                plain_too: bool) -> dict:
    t0 = time.time()
    import torch  # noqa: F401

    __import__("modules.runtime")  # what webui.py imports before the page; diffusers comes with the first load
    from modules.hashing import HashCache
    from modules.jobs import JobQueue
    from modules.models.devices import DevicePolicy
    from modules.models.manager import ModelManager
    from modules.models.registry import CheckpointRegistry
    from modules.processing.progress import JobProgress
    from tests.support.engine import default_settings, run_txt2img

    imported = time.time()
    registry = CheckpointRegistry([path.parent], HashCache(cache_dir / "cache.json"))
    registry.refresh()
    info = registry.list()[0]
    manager = ModelManager(registry, DevicePolicy.cpu())
    jobs = JobQueue()
    t1 = time.time()
    model = jobs.run("load", lambda job: manager.load(info))  # the start-up load runs on the job worker
    loaded = time.time()
    result = {"import_s": imported - t0, "load_s": loaded - t1, "startup_s": loaded - started,
              "title": info.title, "threads": torch.get_num_threads()}

    class Timed(JobProgress):
        def __init__(self) -> None:
            super().__init__()
            self.ends: list[float] = []

        def step(self, step: int, latents=None) -> None:
            self.ends.append(time.perf_counter())
            super().step(step, latents)

    settings = default_settings(samples_save=False, grid_save=False)
    for size in sizes:
        progress = Timed()
        jobs.run("txt2img", lambda job: run_txt2img(
            model, cache_dir, settings=settings, progress=progress, prompt=PROMPT, width=size, height=size,
            steps=steps, seed=1, sampler_name="Euler", cfg_scale=7.0, do_not_save_samples=True,
            do_not_save_grid=True))
        result[f"step_{size}"] = statistics.median(b - a for a, b in zip(progress.ends, progress.ends[1:]))
    if plain_too:  # the same modules through diffusers' pipeline, in this process, on the same worker thread
        from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

        pipe = StableDiffusionPipeline(vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer,
                                       unet=model.unet, scheduler=EulerDiscreteScheduler.from_config(
                                           model.scheduler_config), safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
        for size in sizes:
            result[f"plain_step_{size}"] = jobs.run("plain", lambda job: _pipeline_steps(pipe, size, steps))
    result["peak_rss_mib"] = _rss_mib()
    jobs.stop()
    return result


def _pipeline_steps(pipe, size: int, steps: int) -> float:
    """The median seconds between step ends of one pipeline call (latents out: no VAE decode)."""
    import torch

    pipe.set_progress_bar_config(disable=True)
    ends: list[float] = []

    def on_step(_pipe, _i, _t, kwargs):
        ends.append(time.perf_counter())
        return kwargs

    pipe(PROMPT, num_inference_steps=steps, guidance_scale=7.0, height=size, width=size, output_type="latent",
         generator=torch.Generator().manual_seed(1), callback_on_step_end=on_step)
    return statistics.median(b - a for a, b in zip(ends, ends[1:]))


def _child_diffusers(path: Path, config: Path, sizes: list[int], steps: int, started: float) -> dict:
    t0 = time.time()
    import torch

    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    imported = time.time()
    pipe = StableDiffusionPipeline.from_single_file(str(path), config=str(config), local_files_only=True,
                                                    torch_dtype=torch.float32, safety_checker=None,
                                                    requires_safety_checker=False)
    loaded = time.time()
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    result = {"import_s": imported - t0, "load_s": loaded - imported, "startup_s": loaded - started,
              "threads": torch.get_num_threads()}
    for size in sizes:
        result[f"step_{size}"] = _pipeline_steps(pipe, size, steps)
    result["peak_rss_mib"] = _rss_mib()
    return result


# ---------------------------------------------------------------------------------------------------------------------
# parent


def write_diffusers_config(path: Path, folder: Path) -> Path:
    """A diffusers pipeline folder without weights, from the file's shapes (our loader on the meta device)."""
    import torch
    from diffusers import EulerDiscreteScheduler
    from safetensors import safe_open

    from modules.models.devices import DevicePolicy
    from modules.models.loader import build_from_state_dict

    if (folder / "model_index.json").is_file():
        return folder
    with safe_open(str(path), "pt") as f:
        sd = {k: torch.empty(f.get_slice(k).get_shape(), device="meta", dtype=torch.float16) for k in f.keys()}
    meta = DevicePolicy(device=torch.device("meta"), dtype=torch.float32, vae_dtype=torch.float32)
    model = build_from_state_dict(sd, path, meta)
    model.unet.save_config(folder / "unet")
    model.vae.save_config(folder / "vae")
    model.text_encoder.config.save_pretrained(folder / "text_encoder")
    model.tokenizer.save_pretrained(folder / "tokenizer")
    EulerDiscreteScheduler.from_config(model.scheduler_config).save_config(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
        "feature_extractor": [None, None], "safety_checker": [None, None], "requires_safety_checker": False,
        "scheduler": ["diffusers", "EulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "image_encoder": [None, None]}, indent=1))
    return folder


def _run_child(argv: list[str], threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
    started = time.time()
    proc = subprocess.run([sys.executable, __file__, "--child", *argv, "--started", repr(started)], cwd=REPO,
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="*", default=[64, 256, 512])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--hash-cached", action="store_true", help="ours finds the file's sha256 in cache.json")
    parser.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS of both children (0: torch's)")
    parser.add_argument("--plain-in-ours", action="store_true",
                        help="also time diffusers' pipeline on our loaded modules inside our process (plain_step_*)")
    parser.add_argument("--only", choices=("ours", "diffusers"), default=None)
    parser.add_argument("--child", choices=("ours", "diffusers"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "ours":
        print(json.dumps(_child_ours(args.file, args.sizes, args.steps, args.cache, args.started,
                                     args.plain_in_ours)))
        return 0
    if args.child == "diffusers":
        print(json.dumps(_child_diffusers(args.file, args.config, args.sizes, args.steps, args.started)))
        return 0

    out = args.out or Path(tempfile.mkdtemp(prefix="parity-"))
    checkpoints = out / "Stable-diffusion"
    checkpoints.mkdir(parents=True, exist_ok=True)
    path = checkpoints / "full_size_sd15_random.safetensors"
    if not path.is_file():
        from tests.benchmarks.full_size_sd15 import write_checkpoint

        written = write_checkpoint(checkpoints, seed=0, drop_cache=False)
        print(f"wrote {path.name} ({written['file_bytes'] / 2**30:.2f} GiB) in {written['write_s']:.0f} s",
              flush=True)
    config = write_diffusers_config(path, out / "diffusers-config")
    with open(path, "rb") as f:  # warm page cache for both: the disk is not what is compared
        while f.read(1 << 24):
            pass
    common = ["--file", str(path), "--steps", str(args.steps), "--sizes", *map(str, args.sizes)]
    ours_flags = ["--plain-in-ours"] if args.plain_in_ours else []
    systems = [args.only] if args.only else ["ours", "diffusers"]
    runs: dict[str, list[dict]] = {name: [] for name in systems}
    for repeat in range(args.repeats):
        for name in systems:
            if name == "ours":
                cache = Path(tempfile.mkdtemp(prefix="parity-cache-", dir=out))
                if args.hash_cached:
                    from modules.hashing import HashCache, sha256_file

                    sha256_file(path, HashCache(cache / "cache.json"), f"checkpoint/{path.stem}")
                result = _run_child(["ours", *common, *ours_flags, "--cache", str(cache)], args.threads)
            else:
                result = _run_child(["diffusers", *common, "--config", str(config)], args.threads)
            runs[name].append(result)
            shown = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items())
            print(f"repeat {repeat + 1} {name}: {shown}", flush=True)
    keys = ["import_s", "load_s", "startup_s", *(f"step_{s}" for s in args.sizes), "peak_rss_mib"]
    median = {name: {k: statistics.median(r[k] for r in rs) for k in keys} for name, rs in runs.items()}
    if args.plain_in_ours and "ours" in runs:
        for size in args.sizes:
            inside = statistics.median(r[f"plain_step_{size}"] for r in runs["ours"])
            print(f"in our process, diffusers' pipeline on our modules at {size}: {inside:.3f} s/step; ours "
                  f"{median['ours'][f'step_{size}']:.3f} ({median['ours'][f'step_{size}'] / inside:.2f}x)")
    print(f"\nload average {os.getloadavg()[0]:.2f}; medians of {args.repeats}; seconds (RSS in MiB)")
    print(f"{'':<16}" + "".join(f"{name:>12}" for name in systems) + ("       ratio" if len(systems) == 2 else ""))
    for k in keys:
        row = f"{k:<16}" + "".join(f"{median[name][k]:>12.3f}" for name in systems)
        if len(systems) == 2 and median["diffusers"][k]:
            row += f"{median['ours'][k] / median['diffusers'][k]:>11.2f}x"
        print(row)
    if not args.keep and args.out is None:
        path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
