"""Checkpoint switching: load two checkpoints alternately ``--switches`` times; resident memory must not grow (A1111
and Forge leak on every switch; goal: under 5%), and with ``--keep 2`` (A1111's ``sd_checkpoints_limit``) a switch
back is near-instant.

    venv/bin/python tests/benchmarks/switch.py [--switches 20] [--keep 1] [--family sd1]

Two checkpoints of ``--family`` (tiny random weights in the real single-file layout) are loaded through the real
model manager and loader. Prints the seconds of each switch and resident memory after it, then the growth from the
second switch (both models seen once) to the last.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psutil  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--keep", type=int, default=1)
    parser.add_argument("--family", default="sd1")
    args = parser.parse_args(argv)

    from modules.hashing import HashCache
    from modules.models.devices import DevicePolicy
    from modules.models.manager import ModelManager
    from modules.models.registry import CheckpointRegistry
    from tests.support.tiny_checkpoints import write_tiny_checkpoint

    root = Path(tempfile.mkdtemp(prefix="switch-"))
    for seed, name in enumerate(("alpha", "beta"), start=1):
        write_tiny_checkpoint(args.family, root, name, seed=seed)
    registry = CheckpointRegistry([root], HashCache(None))
    registry.refresh()
    manager = ModelManager(registry, DevicePolicy.cpu(), hashing=False, keep_loaded=lambda: args.keep)
    process = psutil.Process(os.getpid())
    rows = []
    for number in range(args.switches + 1):
        name = ("alpha", "beta")[number % 2]
        started = time.perf_counter()
        manager.ensure(name)
        seconds = time.perf_counter() - started
        gc.collect()
        rows.append((number, name, seconds, process.memory_info().rss / 2**20))
    print(f"{'switch':>6} {'to':>6} {'seconds':>8} {'RSS MiB':>8}")
    for number, name, seconds, rss in rows:
        print(f"{number:>6} {name:>6} {seconds:>8.3f} {rss:>8.1f}")
    base, last = rows[2][3], rows[-1][3]
    later = [r[2] for r in rows[2:]]
    print(f"\n{args.family}, keep {args.keep}: median switch {statistics.median(later):.3f} s after both were "
          f"loaded once; RSS {base:.1f} -> {last:.1f} MiB ({(last - base) / base * 100:+.1f}%, goal < 5%)")
    return 0 if (last - base) / base < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
