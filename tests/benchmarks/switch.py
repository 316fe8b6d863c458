"""Checkpoint switching: load two checkpoints alternately ``--switches`` times; resident memory must not grow (A1111
and Forge leak on every switch; goal: under 5%), and with ``--keep 2`` (A1111's ``sd_checkpoints_limit``) a switch
back is near-instant.

    venv/bin/python tests/benchmarks/switch.py [--switches 20] [--keep 1] [--family sd1] [--full-size [--out DIR]]

Two checkpoints of ``--family`` (tiny random weights in the real single-file layout) are loaded through the real
model manager and loader. ``--full-size`` writes two full-size SD1.5-shaped fp16 files instead (~2 GiB each, different
random weights, ``full_size_sd15.write_checkpoint``; ~4 GiB each once loaded in CPU fp32), into a temp folder deleted
at the end, or into ``--out``, where they are kept and reused by the next run. The page cache stays warm, so a load
measures the loader, not the disk. Prints the seconds of each switch and resident memory after it, then the growth
from the second switch (both models seen once) to the last; exit status 1 when it is 5% or more.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psutil  # noqa: E402

NAMES = ("alpha", "beta")


def write_checkpoints(root: Path, family: str, full_size: bool) -> None:
    """``alpha`` and ``beta`` in ``root`` (the one folder the registry scans), from different seeds."""
    if not full_size:
        from tests.support.tiny_checkpoints import write_tiny_checkpoint

        for seed, name in enumerate(NAMES, start=1):
            write_tiny_checkpoint(family, root, name, seed=seed)
        return
    from tests.benchmarks.full_size_sd15 import write_checkpoint

    for seed, name in enumerate(NAMES, start=1):
        target = root / f"{name}.safetensors"
        if target.exists():  # kept in --out by an earlier run: saves ~10 s of writing each
            print(f"{target}: reused", flush=True)
            continue
        started = time.perf_counter()
        written = write_checkpoint(root, seed=seed, drop_cache=False)
        # write_checkpoint always uses one file name: rename, so the second does not replace the first
        written["path"].rename(target)
        print(f"{target}: {written['file_bytes'] / 2**30:.2f} GiB written in {time.perf_counter() - started:.0f} s",
              flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--keep", type=int, default=1)
    parser.add_argument("--family", default="sd1")
    parser.add_argument("--full-size", action="store_true", help="two full-size SD1.5 fp16 checkpoints (~2 GiB each)")
    parser.add_argument("--out", type=Path, default=None, help="with --full-size: keep (and reuse) them in DIR")
    args = parser.parse_args(argv)
    if args.full_size and args.family != "sd1":
        parser.error("--full-size writes SD1.5 checkpoints: --family must be sd1")
    if args.out is not None and not args.full_size:
        parser.error("--out needs --full-size (tiny checkpoints take a moment to write)")

    from modules.hashing import HashCache
    from modules.models.devices import DevicePolicy
    from modules.models.manager import ModelManager
    from modules.models.registry import CheckpointRegistry

    if args.out is not None:
        root, temporary = args.out, False
        root.mkdir(parents=True, exist_ok=True)
    else:
        root, temporary = Path(tempfile.mkdtemp(prefix="switch-")), True
    try:
        write_checkpoints(root, args.family, args.full_size)
        registry = CheckpointRegistry([root], HashCache(None))
        registry.refresh()
        manager = ModelManager(registry, DevicePolicy.cpu(), hashing=False, keep_loaded=lambda: args.keep)
        process = psutil.Process(os.getpid())
        rows: list[tuple[int, str, float, float]] = []  # switch, to, seconds, RSS MiB
        for number in range(args.switches + 1):
            name = NAMES[number % 2]
            started = time.perf_counter()
            manager.ensure(name, reuse_previous=True)  # what a plain job or a UI switch does
            seconds = time.perf_counter() - started
            gc.collect()
            rows.append((number, name, seconds, process.memory_info().rss / 2**20))
            if args.full_size:  # a full-size switch takes seconds: show progress
                print(f"switch {number} to {name}: {seconds:.2f} s", file=sys.stderr, flush=True)
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
    print(f"{'switch':>6} {'to':>6} {'seconds':>8} {'RSS MiB':>8}")
    for number, name, seconds, rss in rows:
        print(f"{number:>6} {name:>6} {seconds:>8.3f} {rss:>8.1f}")
    base, last = rows[2][3], rows[-1][3]
    later = [r[2] for r in rows[2:]]
    size = "full-size sd1 (fp16 file, CPU fp32)" if args.full_size else args.family
    print(f"\n{size}, keep {args.keep}: median switch {statistics.median(later):.3f} s (mean "
          f"{statistics.mean(later):.3f} s) after both were loaded once; RSS {base:.1f} -> {last:.1f} MiB "
          f"({(last - base) / base * 100:+.1f}%, goal < 5%)")
    return 0 if (last - base) / base < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
