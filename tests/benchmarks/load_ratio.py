"""Model load against reading the same tensors with plain ``safetensors``: a full-size SD1.5-shaped fp16 checkpoint
(2 GB, random weights, the original single-file layout), warm page cache for both so the disk is not measured
(issue 10 goal: ours at most 1.5x the plain read).

    venv/bin/python tests/benchmarks/load_ratio.py [--repeats 3] [--out DIR] [--keep]

"Plain read" is ``safetensors.torch.load_file(path)`` with every tensor copied into memory as stored (fp16;
``load_file`` alone only maps the file). Ours is
``load_checkpoint(path, DevicePolicy.cpu())``: family detection, bundled config, the diffusers UNet, VAE and text
encoder built and filled, in fp32 as the CPU runs them (the fp16->fp32 cast is work plain reading does not do,
so a second ratio against ``load_file`` plus that cast is printed too), and in fp16 as a GPU run loads it (the same
bytes as the file: the like-for-like ratio). Median of ``--repeats`` alternating runs.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    from safetensors.torch import load_file

    from modules.models.devices import DevicePolicy
    from modules.models.loader import load_checkpoint
    from tests.benchmarks.full_size_sd15 import write_checkpoint

    import accelerate  # noqa: F401 - imported before timing: the figure is the file's, not Python's imports
    import diffusers.loaders.single_file_utils  # noqa: F401

    out = args.out or Path(tempfile.mkdtemp(prefix="load-ratio-"))
    out.mkdir(parents=True, exist_ok=True)
    written = write_checkpoint(out, seed=0, drop_cache=False)
    path = written["path"]
    print(f"{path.name}: {written['file_bytes'] / 2**30:.2f} GiB, written in {written['write_s']:.0f} s", flush=True)
    load_file(str(path))  # warm the page cache
    half = DevicePolicy(device=torch.device("cpu"), dtype=torch.float16, vae_dtype=torch.float16)
    plain, cast, ours, ours_half = [], [], [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        # load_file maps the file: a copy of every tensor makes the bytes really read into memory, as a model's are
        tensors = {k: v.clone() for k, v in load_file(str(path)).items()}
        plain.append(time.perf_counter() - started)
        started = time.perf_counter()
        converted = {k: v.float() for k, v in tensors.items()}
        cast.append(plain[-1] + time.perf_counter() - started)
        del tensors, converted
        gc.collect()
        started = time.perf_counter()
        model = load_checkpoint(path, DevicePolicy.cpu())
        ours.append(time.perf_counter() - started)
        del model
        gc.collect()
        started = time.perf_counter()
        model = load_checkpoint(path, half)  # what a GPU run does (fp16), on the CPU: same bytes, no cast
        ours_half.append(time.perf_counter() - started)
        del model
        gc.collect()
    p, c, o, h = (statistics.median(x) for x in (plain, cast, ours, ours_half))
    print(f"\n{'read':<36} {'s (median)':>10}   runs")
    for name, values in (("safetensors load_file + copy (fp16)", plain), ("load_file + cast to fp32", cast),
                         ("ours: load_checkpoint, CPU fp32", ours), ("ours: load_checkpoint, fp16", ours_half)):
        print(f"{name:<36} {statistics.median(values):>10.2f}   {', '.join(f'{v:.2f}' for v in values)}")
    print(f"\nours fp16 / plain read: {h / p:.2f}x (goal <= 1.5x); ours fp32 / plain read: {o / p:.2f}x, "
          f"/ (read + fp32 cast): {o / c:.2f}x; {torch.get_num_threads()} threads")
    if not args.keep:
        path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
