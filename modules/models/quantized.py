"""Weights stored in 8-bit floats, as Flux users download them: plain fp8 (``float8_e4m3fn``, ``float8_e5m2``:
``flux1-dev-fp8.safetensors``, ``t5xxl_fp8_e4m3fn.safetensors``) and ComfyUI's ``*_fp8_scaled`` files, where each
linear weight has a per-tensor ``<name>.scale_weight`` (the real weight is ``weight * scale_weight``), an optional
``<name>.scale_input``, and an empty ``scaled_fp8`` marker.

Linear layers may keep them as stored (``stored_weights``); everything else becomes ordinary tensors of the compute
dtype (bf16/fp16 on CUDA, fp32 on the CPU), tensor by tensor, so at most one weight exists twice at a time.
"""

from __future__ import annotations

import torch

FP8_DTYPES = tuple(d for d in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None),
                               getattr(torch, "float8_e4m3fnuz", None), getattr(torch, "float8_e5m2fnuz", None)) if d)
SCALE_SUFFIX = ".scale_weight"
MARKERS = ("scaled_fp8",)


def is_fp8(tensor: torch.Tensor) -> bool:
    return tensor.dtype in FP8_DTYPES


def has_fp8(sd: dict[str, torch.Tensor]) -> bool:
    return any(is_fp8(t) for t in sd.values())


def expand_fp8(weight: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """An fp8 weight's values in ``dtype`` (times its per-tensor scale): at load, and in a layer that keeps it."""
    values = weight.to(dtype)
    return values * scale.to(dtype) if scale is not None else values


def dequantize_fp8(sd: dict[str, torch.Tensor], dtype: torch.dtype, prefix: str = "") -> None:
    """In place, for the keys under ``prefix``: every fp8 tensor becomes ``dtype``, multiplied by its
    ``scale_weight`` where the file has one; the scales, input scales and the marker are removed."""
    keys = [k for k in sd if k.startswith(prefix)]
    for key in [k for k in keys if k.endswith(SCALE_SUFFIX)]:
        weight_key = key[: -len(SCALE_SUFFIX)] + ".weight"
        scale = sd.pop(key)
        if weight_key in sd:
            sd[weight_key] = expand_fp8(sd[weight_key], scale, dtype)
    for key in [k for k in keys if k.endswith(".scale_input") or k.split(".")[-1] in MARKERS]:
        del sd[key]
    for key in [k for k in keys if k in sd and is_fp8(sd[k])]:
        sd[key] = sd[key].to(dtype)
