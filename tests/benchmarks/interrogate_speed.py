"""img2text on the CPU (issue 20): seconds per caption and peak memory of Interrogate DeepBooru with a full-size
random-weight ``model-resnet_custom_v3.pt`` (the released layout: 179 convolutions, 9176 tags), loaded through our
safe loader as A1111 users' file is. Loading is timed apart from captioning; the median of ``--repeats`` captions.

    venv/bin/python tests/benchmarks/interrogate_speed.py [--repeats 3] [--threads N]
    venv/bin/python tests/benchmarks/interrogate_speed.py --dry-run   # a width-divided model: seconds
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    import numpy as np
    import torch
    from PIL import Image

    from modules.interrogate import deepbooru
    from modules.interrogate.service import Interrogator
    from tests.support import tiny_deepbooru

    if args.threads:
        torch.set_num_threads(args.threads)
    divisor, tag_count = (32, 50) if args.dry_run else (1, 9176)
    folder = Path(tempfile.mkdtemp(prefix="interrogate-speed-")) / "torch_deepdanbooru"
    tiny_deepbooru.write(folder / deepbooru.FILE, [f"tag_{i}" for i in range(tag_count)], divisor=divisor)
    size_mib = (folder / deepbooru.FILE).stat().st_size / 1024 ** 2
    started = time.perf_counter()
    model = deepbooru.load(folder / deepbooru.FILE)
    load_s = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters())
    picture = Image.fromarray(np.random.RandomState(0).randint(0, 255, (768, 512, 3)).astype(np.uint8))
    service = Interrogator([], deepbooru_dirs=[folder])
    settings = {"interrogate_keep_models_in_memory": True}
    service.interrogate(picture, "deepdanbooru", settings)  # warm-up (and the service's own load)
    times = []
    for _ in range(max(1, args.repeats)):
        started = time.perf_counter()
        service.interrogate(picture, "deepdanbooru", settings)
        times.append(time.perf_counter() - started)
    print(f"interrogate_speed: DeepBooru resnet_custom_v3 ({params / 1e6:.1f} M parameters, file {size_mib:.0f} MiB), "
          f"threads {torch.get_num_threads()}")
    print(f"  load {load_s:.2f} s, caption {statistics.median(times):.2f} s (median of {len(times)})")
    print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
