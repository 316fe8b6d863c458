"""Black Forest Labs' Flux.1 transformer layout (``double_blocks.*``, ``single_blocks.*``, ``img_in``...): its
sizes read from the tensors, and its keys renamed to diffusers' ``FluxTransformer2DModel``.

Every size comes from shapes, so fine-tunes with fewer blocks and tiny test files in the real layout load: width from
``img_in``, head width from the q/k norm scale, the MLP width from ``img_mlp.0``, block counts from the indices,
``guidance_in`` present (dev) or not (schnell). The renaming is a table of the two layouts' names; the only
arithmetic is splitting the fused q/k/v (and, in single blocks, q/k/v/MLP) projections, and swapping the final
modulation's (shift, scale) halves to diffusers' (scale, shift).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

BFL_MARKERS = ("double_blocks.0.img_attn.qkv.weight", "img_in.weight", "final_layer.linear.weight")

# BFL name (after the block prefix) -> diffusers name, for tensors that move without change.
_DOUBLE = {
    "img_mod.lin": "norm1.linear", "txt_mod.lin": "norm1_context.linear",
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight", "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
    "img_mlp.0": "ff.net.0.proj", "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj", "txt_mlp.2": "ff_context.net.2",
    "img_attn.proj": "attn.to_out.0", "txt_attn.proj": "attn.to_add_out",
}
_SINGLE = {
    "modulation.lin": "norm.linear", "norm.query_norm.scale": "attn.norm_q.weight",
    "norm.key_norm.scale": "attn.norm_k.weight", "linear2": "proj_out",
}
_TOP = {
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "txt_in": "context_embedder", "img_in": "x_embedder", "final_layer.linear": "proj_out",
}


DIFFUSERS_MARKERS = ("x_embedder.weight", "context_embedder.weight", "transformer_blocks.0.attn.add_q_proj.weight")


def diffusers_config(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """``FluxTransformer2DModel`` arguments for a diffusers-layout state dict's shapes (a single file saved from
    diffusers: the names are already ours)."""
    return _config(shapes, _DIFFUSERS_NAMES)


def _count(keys: Any, block: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(rf"{block}\.(\d+)\.", k))}
    return max(found) + 1 if found else 0


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """RoPE axis widths for a head width: Flux's (16, 56, 56) for 128, in the same proportion (each even) else."""
    if head_dim == 128:
        return (16, 56, 56)
    first = max(2, (head_dim // 8) // 2 * 2)
    rest = (head_dim - first) // 2 // 2 * 2
    first = head_dim - 2 * rest
    return (first, rest, rest)


# The tensors each layout's sizes are read from: (input/width, head width, output, double blocks, single blocks,
# text input, pooled input, guidance embedding).
_BFL_NAMES = ("img_in.weight", "double_blocks.0.img_attn.norm.query_norm.scale", "final_layer.linear.weight",
              "double_blocks", "single_blocks", "txt_in.weight", "vector_in.in_layer.weight",
              "guidance_in.in_layer.weight")
_DIFFUSERS_NAMES = ("x_embedder.weight", "transformer_blocks.0.attn.norm_q.weight", "proj_out.weight",
                    "transformer_blocks", "single_transformer_blocks", "context_embedder.weight",
                    "time_text_embed.text_embedder.linear_1.weight", "time_text_embed.guidance_embedder.linear_1.weight")


def transformer_config(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """``FluxTransformer2DModel`` arguments for a BFL-layout state dict's shapes."""
    return _config(shapes, _BFL_NAMES)


def _config(shapes: Mapping[str, tuple[int, ...]], names: tuple[str, ...]) -> dict[str, Any]:
    embed, head, out, double, single, text, pooled, guidance = names
    hidden, in_channels = shapes[embed]
    head_dim = shapes[head][0]
    if hidden % head_dim:
        raise ValueError(f"width {hidden} is not a multiple of the head width {head_dim}")
    out_channels = shapes[out][0]
    return {
        "patch_size": 1,
        "in_channels": int(in_channels),
        "out_channels": int(out_channels) if out_channels != in_channels else None,
        "num_layers": _count(shapes, double),
        "num_single_layers": _count(shapes, single),
        "attention_head_dim": int(head_dim),
        "num_attention_heads": int(hidden // head_dim),
        "joint_attention_dim": int(shapes[text][1]),
        "pooled_projection_dim": int(shapes[pooled][1]),
        "guidance_embeds": guidance in shapes,
        "axes_dims_rope": rope_axes(int(head_dim)),
    }


SCALE = ".scale_weight"  # ComfyUI's fp8_scaled: one scale per stored matrix, shared by the parts split from it


def _shared_scale(sd: dict[str, torch.Tensor], src: str, names: list[str], out: dict[str, torch.Tensor]) -> None:
    scale = sd.pop(src + SCALE, None)
    sd.pop(src + ".scale_input", None)
    if scale is not None:
        for name in names:
            out[name + SCALE] = scale


def _moved(sd: dict[str, torch.Tensor], src: str, dst: str, out: dict[str, torch.Tensor]) -> None:
    """``src`` (a tensor name, or a Linear's prefix with .weight/.bias) -> ``dst``."""
    if src in sd:
        out[dst] = sd.pop(src)
        return
    for suffix in (".weight", ".bias", SCALE):
        if src + suffix in sd:
            out[dst + suffix] = sd.pop(src + suffix)


def to_diffusers(sd: dict[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """BFL names -> diffusers names. Consumes ``sd`` (tensors are moved, not copied, except the split ones);
    what is left in it afterwards was not part of the layout."""
    out: dict[str, torch.Tensor] = {}
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    for src, dst in _TOP.items():
        _moved(sd, src, dst, out)
    for i in range(config["num_layers"]):
        src, dst = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        for a, b in _DOUBLE.items():
            _moved(sd, src + a, dst + b, out)
        for stream, names in (("img", ("to_q", "to_k", "to_v")), ("txt", ("add_q_proj", "add_k_proj", "add_v_proj"))):
            for suffix in (".weight", ".bias"):
                parts = torch.chunk(sd.pop(f"{src}{stream}_attn.qkv{suffix}"), 3, dim=0)
                for name, part in zip(names, parts):
                    out[f"{dst}attn.{name}{suffix}"] = part
            _shared_scale(sd, f"{src}{stream}_attn.qkv", [f"{dst}attn.{name}" for name in names], out)
    for i in range(config["num_single_layers"]):
        src, dst = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        for a, b in _SINGLE.items():
            _moved(sd, src + a, dst + b, out)
        for suffix in (".weight", ".bias"):
            fused = sd.pop(f"{src}linear1{suffix}")
            q, k, v, mlp = torch.split(fused, [hidden, hidden, hidden, fused.shape[0] - 3 * hidden], dim=0)
            for name, part in (("attn.to_q", q), ("attn.to_k", k), ("attn.to_v", v), ("proj_mlp", mlp)):
                out[f"{dst}{name}{suffix}"] = part
        _shared_scale(sd, f"{src}linear1", [f"{dst}{name}" for name in ("attn.to_q", "attn.to_k", "attn.to_v",
                                                                         "proj_mlp")], out)
    for suffix in (".weight", ".bias"):
        shift, scale = sd.pop(f"final_layer.adaLN_modulation.1{suffix}").chunk(2, dim=0)
        out[f"norm_out.linear{suffix}"] = torch.cat([scale, shift], dim=0)
    _shared_scale(sd, "final_layer.adaLN_modulation.1", ["norm_out.linear"], out)
    return out
