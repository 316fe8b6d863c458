"""Flux LoRA files in the layouts people train and share, rewritten to the diffusers module names of our
``FluxTransformer2DModel`` so the one LoRA matcher (``modules.models.lora``) applies them:

* kohya / sd-scripts: ``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`` (BFL module names, underscored);
* BFL / ComfyUI: ``diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight`` (or ``lora_down``/``lora_up``);
* diffusers / ai-toolkit: ``transformer.transformer_blocks.0.attn.to_q.lora_A.weight`` (already our names).

BFL fuses q/k/v (and, in single blocks, q/k/v and the MLP input) into one linear where diffusers has several; a LoRA
on the fused layer is ``up @ down`` with ``up``'s rows in the fused order, so each part is the LoRA with the matching
rows of ``up`` and the same ``down`` (and alpha). The final modulation's row halves are swapped, as its weight is.
Text-encoder keys (``lora_te1_`` CLIP-L, ``lora_te2_``) are left as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from modules.models.families.flux_layout import _DOUBLE, _SINGLE, _TOP

_PREFIXES = ("diffusion_model.", "model.diffusion_model.", "transformer.", "unet.")
_PARTS = {  # file part -> (our part, is the up factor)
    "lora_down.weight": ("lora_A.weight", False), "lora_A.weight": ("lora_A.weight", False),
    "lora_up.weight": ("lora_B.weight", True), "lora_B.weight": ("lora_B.weight", True),
    "alpha": ("alpha", False),
}


def _pieces(config: Mapping[str, Any]) -> dict[str, list[tuple[str, slice | None, bool]]]:
    """BFL linear name -> [(diffusers name, rows of the fused output or None, swap the halves)]."""
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    thirds = [slice(0, hidden), slice(hidden, 2 * hidden), slice(2 * hidden, 3 * hidden)]
    out: dict[str, list[tuple[str, slice | None, bool]]] = {}
    linear = lambda name: not name.endswith(("scale", ".weight"))  # noqa: E731  (norm scales are not linears)
    for bfl, ours in _TOP.items():
        out[bfl] = [(ours, None, False)]
    out["final_layer.adaLN_modulation.1"] = [("norm_out.linear", None, True)]
    for i in range(config["num_layers"]):
        for bfl, ours in _DOUBLE.items():
            if linear(bfl):
                out[f"double_blocks.{i}.{bfl}"] = [(f"transformer_blocks.{i}.{ours}", None, False)]
        out[f"double_blocks.{i}.img_attn.qkv"] = [(f"transformer_blocks.{i}.attn.to_{x}", s, False)
                                                  for x, s in zip("qkv", thirds)]
        out[f"double_blocks.{i}.txt_attn.qkv"] = [(f"transformer_blocks.{i}.attn.add_{x}_proj", s, False)
                                                  for x, s in zip("qkv", thirds)]
    for i in range(config["num_single_layers"]):
        for bfl, ours in _SINGLE.items():
            if linear(bfl):
                out[f"single_blocks.{i}.{bfl}"] = [(f"single_transformer_blocks.{i}.{ours}", None, False)]
        out[f"single_blocks.{i}.linear1"] = [
            *[(f"single_transformer_blocks.{i}.attn.to_{x}", s, False) for x, s in zip("qkv", thirds)],
            (f"single_transformer_blocks.{i}.proj_mlp", slice(3 * hidden, None), False)]
    return out


def _split(key: str, kohya: Mapping[str, str]) -> tuple[str, str, bool] | None:
    """(module name, part, is the name BFL's) of one tensor name, or None for keys not of the transformer."""
    first, dot, rest = key.partition(".")
    if first.startswith("lora_unet_") and dot:
        name = first[len("lora_unet_"):]
        return (kohya[name], rest, True) if name in kohya else (name, rest, False)
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            body = key[len(prefix):]
            for part in sorted(_PARTS, key=len, reverse=True):
                if body.endswith("." + part):
                    module = body[: -len(part) - 1]
                    return module, part, bool(re.match(r"(double_blocks|single_blocks|final_layer|img_in|txt_in|"
                                                       r"time_in|vector_in|guidance_in)\b", module))
    return None


def to_diffusers(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The LoRA with its transformer layers under ``unet.<diffusers name>.lora_A/lora_B/alpha``; other keys as
    they were (a key of no known layer stays, and the matcher reports it)."""
    pieces = _pieces(config)
    kohya = {name.replace(".", "_"): name for name in pieces}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        split = _split(key, kohya)
        if split is None or split[1] not in _PARTS:
            out[key] = tensor
            continue
        module, part, is_bfl = split
        ours, is_up = _PARTS[part]
        if not is_bfl:
            out[f"unet.{module}.{ours}"] = tensor
            continue
        if module not in pieces:
            out[key] = tensor
            continue
        for name, rows, swap in pieces[module]:
            value = tensor
            if is_up and rows is not None:
                value = tensor[rows]
            if is_up and swap:
                shift, scale = tensor.chunk(2, dim=0)
                value = torch.cat([scale, shift], dim=0)
            out[f"unet.{name}.{ours}"] = value
    return out
