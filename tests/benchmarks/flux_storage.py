"""Flux weight storage on the CPU (issue 19): the same Flux-width transformer (3072 wide, reduced depth, random
weights) written as users download it in bf16, fp8 (``float8_e4m3fn``) and city96's GGUF Q8_0, each loaded through
our loader with the weights kept as stored (Forge's "Diffusion in Low Bits": Automatic) and expanded at load
("Full precision"). Prints, per file and choice, the transformer's resident bytes and the seconds per step of our
txt2img, ``(T(high steps) - T(low steps)) / (high - low)`` (prompt encoding and decoding cancel), median of
``--repeats``. On the CPU everything computes in fp32, so the kept layers pay their expansion at each step; on a
GPU that expansion is a fraction of the matmul (run this there with ``--device cuda`` when one is lent).

    venv/bin/python tests/benchmarks/flux_storage.py [--size 256] [--steps 1 3] [--repeats 3] [--double 1]
                                                     [--single 2] [--t5-layers 1] [--threads N]
    venv/bin/python tests/benchmarks/flux_storage.py --dry-run   # tiny shapes: checks the script in seconds
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

MIB = 1024 ** 2


def write_files(args: argparse.Namespace, folder: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """The transformer as bf16, fp8 and GGUF Q8_0 files, and the split clip_l / t5xxl / ae beside them."""
    from gguf import GGMLQuantizationType
    from safetensors.torch import save_file

    from tests.benchmarks.flux_speed import build
    from tests.support import tiny_flux

    tiny = build(args)
    split = tiny_flux.write_split(folder / "models", tiny, dtype=torch.bfloat16)
    bfl = tiny_flux.transformer_to_bfl(tiny.transformer)
    fp8 = folder / "flux1-dev-fp8.safetensors"
    save_file({k: v.to(torch.float8_e4m3fn) if v.ndim == 2 else v.to(torch.bfloat16) for k, v in bfl.items()},
              str(fp8))
    q8 = folder / "flux1-dev-Q8_0.gguf"
    tiny_flux.write_gguf(q8, bfl, only=GGMLQuantizationType.Q8_0)
    transformers = {"bf16": split["transformer"], "fp8": fp8, "Q8_0": q8}
    return transformers, {k: split[k] for k in ("clip_l", "t5", "vae")}


def step_seconds(model, folder: Path, size: int, steps: tuple[int, int], repeats: int) -> float:
    from tests.support.engine import default_settings, run_txt2img

    settings = default_settings(samples_save=False, grid_save=False)

    def run(n: int) -> float:
        started = time.perf_counter()
        run_txt2img(model, folder, settings=settings, prompt="a lighthouse", width=size, height=size, steps=n,
                    seed=1, cfg_scale=1.0, sampler_name="Euler", distilled_cfg_scale=3.5)
        return time.perf_counter() - started

    run(1)  # warm-up
    low, high = steps
    return statistics.median((run(high) - run(low)) / (high - low) for _ in range(repeats))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, nargs=2, default=[1, 3])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--double", type=int, default=1)
    parser.add_argument("--single", type=int, default=2)
    parser.add_argument("--t5-layers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dry_run:
        args.size, args.steps, args.repeats = 64, (1, 2), 1

    from modules.models import loader

    folder = Path(tempfile.mkdtemp(prefix="flux-storage-"))
    transformers, parts = write_files(args, folder)
    part_files = [parts["clip_l"], parts["t5"], parts["vae"]]
    print(f"flux_storage: {args.double} double + {args.single} single blocks, {args.size}x{args.size}, "
          f"threads {torch.get_num_threads()}")
    for label, path in transformers.items():
        for choice in ("Automatic", "Full precision"):
            model = loader.load_checkpoint(path, parts=part_files, storage=choice)
            resident = model.extra["weight_bytes"]["unet"]
            kept = model.extra["kept_layers"]["transformer"] or "none"
            seconds = step_seconds(model, folder, args.size, tuple(args.steps), args.repeats)
            print(f"  {label:5s} {choice:15s}: transformer {resident / MIB:8.1f} MiB resident "
                  f"(kept as stored: {kept}), {seconds:.3f} s/step")
            del model
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
