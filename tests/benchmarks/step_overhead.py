"""Per-step overhead: our txt2img against a plain diffusers ``StableDiffusionPipeline`` on the same weights, same
scheduler (Euler), steps, size, CFG and seed, in one process (issue 10 goal: ratio at most 1.03 on CPU; live
preview and progress under 3% of step time).

    venv/bin/python tests/benchmarks/step_overhead.py [--size 256] [--steps 4 12] [--repeats 3] [--threads N]

The model is an SD1-shaped UNet of mid size (SD1.5's four levels at 1/5 of its width: 34 M parameters) in a
checkpoint loaded through our loader; the pipeline gets the very same module objects. The time per step is
``(T(high steps) - T(low steps)) / (high - low)`` for each system, which cancels everything that does not repeat
per step (prompt encoding, VAE decode, saving). Runs alternate between the systems; the median of ``--repeats``
is reported. A third configuration runs ours with a live preview at every step (the UI's costliest setting).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

PROMPT = "a photograph of an astronaut riding a horse"


def mid_model():
    from diffusers import UNet2DConditionModel

    from tests.support.engine import load_tiny
    from tests.support.tiny_checkpoints import write_tiny_checkpoint

    folder = Path(tempfile.mkdtemp(prefix="overhead-"))
    model = load_tiny(write_tiny_checkpoint("sd1", folder, "tiny"))
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(64, 128, 256, 256), down_block_types=(
            "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=model.text_encoder.config.hidden_size, attention_head_dim=8).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in unet.parameters():
            p.normal_(0, 0.02)
    model.unet = unet
    return model, folder


def ours(model, folder: Path, size: int, steps: int, preview: bool) -> float:
    from modules.processing.generation import live_preview
    from modules.processing.progress import JobProgress
    from tests.support.engine import default_settings, run_txt2img

    progress = JobProgress(preview_every=1 if preview else 0)
    progress.set_preview(live_preview(model).decode if preview else None)
    settings = default_settings(samples_save=False, grid_save=False)
    started = time.perf_counter()
    run_txt2img(model, folder, settings=settings, progress=progress, prompt=PROMPT, width=size, height=size,
                steps=steps, seed=1, sampler_name="Euler", cfg_scale=7.0, do_not_save_samples=True,
                do_not_save_grid=True)
    return time.perf_counter() - started


def plain(pipe, size: int, steps: int) -> float:
    started = time.perf_counter()
    pipe(PROMPT, num_inference_steps=steps, guidance_scale=7.0, height=size, width=size,
         generator=torch.Generator().manual_seed(1))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, nargs=2, default=(4, 12))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    model, folder = mid_model()
    params = sum(p.numel() for p in model.unet.parameters())
    pipe = StableDiffusionPipeline(vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer,
                                   unet=model.unet, scheduler=EulerDiscreteScheduler.from_config(
                                       model.scheduler_config), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    low, high = args.steps
    ours(model, folder, args.size, low, False)  # warm-up: first calls allocate and pick kernels
    plain(pipe, args.size, low)
    per_step: dict[str, list[float]] = {"ours": [], "diffusers": [], "ours + preview": []}
    for _ in range(args.repeats):
        per_step["ours"].append((ours(model, folder, args.size, high, False)
                                 - ours(model, folder, args.size, low, False)) / (high - low))
        per_step["diffusers"].append((plain(pipe, args.size, high) - plain(pipe, args.size, low)) / (high - low))
        per_step["ours + preview"].append((ours(model, folder, args.size, high, True)
                                           - ours(model, folder, args.size, low, True)) / (high - low))
    median = {k: statistics.median(v) for k, v in per_step.items()}
    print(f"UNet {params / 1e6:.0f} M parameters, {args.size}x{args.size}, Euler, CFG 7, steps {low} and {high}, "
          f"{torch.get_num_threads()} threads, {args.repeats} repeats\n")
    print(f"{'system':<16} {'s/step (median)':>16} {'all repeats':>30}")
    for name, values in per_step.items():
        print(f"{name:<16} {median[name]:>16.4f} {', '.join(f'{v:.4f}' for v in values):>30}")
    print(f"\nours / diffusers: {median['ours'] / median['diffusers']:.3f} (goal <= 1.03); live preview every step "
          f"costs {(median['ours + preview'] / median['ours'] - 1) * 100:+.1f}% (goal < 3%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
