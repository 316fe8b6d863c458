"""onnxruntime sessions for the ONNX files users download (DWPose's, WD14 taggers'): the GPU's provider when
onnxruntime has one and the task may use it, else the CPU's; an unreadable graph is a ValueError naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def open_session(path: Path, *, gpu: bool = True) -> Any:
    import onnxruntime as ort

    if not path.is_file():
        raise FileNotFoundError(f"ONNX model file not found: {path}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: released models make onnxruntime warn about unused initialisers
    providers = ["CPUExecutionProvider"]
    if gpu and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types for unreadable or invalid graphs
        raise ValueError(f"{path.name} is not a valid ONNX model ({path}): {error}") from error
