"""A1111's ``modules.torch_utils`` for extensions: the first parameter of a model (to read its device and dtype),
looking through wrappers such as spandrel's ``ModelDescriptor`` (``.model``), and A1111's float64 fallback."""

from __future__ import annotations

from typing import Any


def get_param(model: Any) -> Any:
    """The first parameter of ``model`` (or of ``model.model`` when it wraps a torch module); ValueError if none."""
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "parameters"):
        model = inner
    for param in model.parameters():
        return param
    raise ValueError(f"No parameters found in model {model!r}")


def float64(t: Any) -> Any:
    """torch.float64, or float32 on devices without doubles (mps, xpu), as A1111 picks it for ``t``'s device."""
    import torch

    return torch.float32 if t.device.type in ("mps", "xpu") else torch.float64
