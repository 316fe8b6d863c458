"""Run a Real-ESRGAN ncnn model with the ncnn runtime itself: the reference our converted weights are checked against."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def run_ncnn(folder: Path, stem: str, x: np.ndarray) -> np.ndarray:
    """Output (C, H*s, W*s) of the ncnn model ``stem`` for the input ``x`` (C, H, W) in [0, 1]."""
    import ncnn

    net = ncnn.Net()
    net.load_param(str(folder / f"{stem}.param"))
    net.load_model(str(folder / f"{stem}.bin"))
    extractor = net.create_extractor()
    data = np.ascontiguousarray(x, dtype=np.float32)  # ncnn.Mat borrows this buffer: keep it alive until extract
    mat = ncnn.Mat(data)
    extractor.input("data", mat)
    _, out = extractor.extract("output")
    result = np.array(out)
    del mat, data
    return result
