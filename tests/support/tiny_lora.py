"""Small LoRA files written the way kohya-ss sd-scripts / LyCORIS and diffusers/peft write them.

``kohya_lora({"lora_unet_...": weight_shape, ...})`` gives random ``lora_down``/``lora_up``/``alpha`` tensors whose
product has ``weight_shape``: a Linear ``(out, in)`` gets ``down (r, in)``, ``up (out, r)``; a Conv2d
``(out, in, kh, kw)`` gets LoCon factors ``down (r, in, kh, kw)``, ``up (out, r, 1, 1)``. ``expected_delta`` is the
merge written out by hand (``alpha / rank * up @ down``), independent of the code under test.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file


def lora_factors(weight_shape: tuple[int, ...], rank: int, generator: torch.Generator,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    out_dim, in_dim = weight_shape[0], weight_shape[1]
    if len(weight_shape) == 4:
        down = torch.randn(rank, in_dim, *weight_shape[2:], generator=generator)
        up = torch.randn(out_dim, rank, 1, 1, generator=generator)
    else:
        down = torch.randn(rank, in_dim, generator=generator)
        up = torch.randn(out_dim, rank, generator=generator)
    return (up * 0.1).to(dtype), (down * 0.1).to(dtype)


def kohya_lora(layers: Mapping[str, tuple[int, ...]], rank: int = 4, alpha: float | None = 2.0, seed: int = 0,
               dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """``{kohya_name: weight_shape}`` -> a kohya state dict (``.lora_down.weight``, ``.lora_up.weight``, ``.alpha``)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for name, shape in layers.items():
        up, down = lora_factors(tuple(shape), rank, g, dtype)
        sd[f"{name}.lora_down.weight"] = down
        sd[f"{name}.lora_up.weight"] = up
        if alpha is not None:
            sd[f"{name}.alpha"] = torch.tensor(float(alpha), dtype=dtype)
    return sd


def expected_delta(sd: Mapping[str, torch.Tensor], name: str, weight_shape: tuple[int, ...]) -> torch.Tensor:
    """alpha / rank * up @ down for one layer, by hand, in float32 and the weight's shape."""
    up = sd[f"{name}.lora_up.weight"].float()
    down = sd[f"{name}.lora_down.weight"].float()
    rank = down.shape[0]
    alpha = float(sd[f"{name}.alpha"]) if f"{name}.alpha" in sd else float(rank)
    product = up.reshape(up.shape[0], rank) @ down.reshape(rank, -1)
    return (alpha / rank) * product.reshape(weight_shape)


def to_peft(sd: Mapping[str, torch.Tensor], names: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """Rename a kohya dict to diffusers/peft keys: ``names`` maps kohya name -> ``unet.<module>`` etc."""
    out: dict[str, torch.Tensor] = {}
    for kohya, dotted in names.items():
        out[f"{dotted}.lora_A.weight"] = sd[f"{kohya}.lora_down.weight"]
        out[f"{dotted}.lora_B.weight"] = sd[f"{kohya}.lora_up.weight"]
        if f"{kohya}.alpha" in sd:
            out[f"{dotted}.alpha"] = sd[f"{kohya}.alpha"]
    return out


def write_lora(directory: Path, name: str, sd: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None,
               fmt: str = "safetensors") -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.{fmt}"
    tensors = {k: v.contiguous() for k, v in sd.items()}
    if fmt == "safetensors":
        save_file(tensors, str(path), metadata=metadata)
    else:
        torch.save(tensors, path)
    return path


def module(root: Any, dotted: str) -> Any:
    return root.get_submodule(dotted)
