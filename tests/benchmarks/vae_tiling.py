"""VAE tiling: peak memory and seconds of decoding one large latent whole and in tiles, with an SD-sized VAE
(SD1.5's AutoencoderKL shape, 84 M parameters, random weights), on the CPU in fp32.

    venv/bin/python tests/benchmarks/vae_tiling.py [--size 1024] [--threads N]

Peak resident memory is measured per decode (Linux lets a process reset its high-water mark). How close a tiled
decode is to a whole one is a test (``tests/test_vae_tiling.py``), not a figure here: these weights are random.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from tests.benchmarks.full_size_sd15 import PeakRSS, gib  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from diffusers import AutoencoderKL

    from modules.processing.sampling import vae_tiles

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512],
                        layers_per_block=2, latent_channels=4, sample_size=512).eval()
    with torch.no_grad():
        for p in vae.parameters():
            p.normal_(0, 0.02)
    latent = torch.randn(1, 4, args.size // 8, args.size // 8)
    peak = PeakRSS()
    results = {}
    for name, tiled in (("whole", False), ("tiles", True)):
        peak.start()
        started = time.perf_counter()
        with torch.inference_mode(), vae_tiles(vae, tiled):
            image = vae.decode(latent, return_dict=False)[0]
        results[name] = (time.perf_counter() - started, peak.peak(), image)
    print(f"{args.size}x{args.size}, SD-sized VAE ({sum(p.numel() for p in vae.parameters()) / 1e6:.0f} M), CPU fp32, "
          f"{torch.get_num_threads()} threads\n")
    print(f"{'decode':<8} {'seconds':>8} {'peak RSS':>10}")
    for name, (seconds, rss, _) in results.items():
        print(f"{name:<8} {seconds:>8.1f} {gib(rss):>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
