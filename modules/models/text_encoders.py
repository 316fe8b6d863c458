"""Standalone text-encoder files, as Forge and ComfyUI users keep them in ``models/text_encoder``: OpenAI CLIP-L
(``clip_l.safetensors``, transformers layout) and Google T5 v1.1 XXL (``t5xxl_fp16.safetensors``, transformers
``T5EncoderModel`` layout), built offline from bundled configs with every size read from the tensors.

Used by the families whose checkpoints come without their text encoders (Flux.1); SD checkpoints carry theirs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from modules.models import configs
from modules.models.types import CorruptFileError, UnknownModelError

# Prefixes under which all-in-one files and other tools nest an encoder's transformers keys.
CLIP_L_PREFIXES = ("text_encoders.clip_l.transformer.", "text_encoders.clip_l.", "transformer.", "")
T5_PREFIXES = ("text_encoders.t5xxl.transformer.", "text_encoders.t5xxl.", "transformer.", "")
CLIP_MARK = "text_model.encoder.layers.0.self_attn.q_proj.weight"
T5_MARK = "encoder.block.0.layer.0.SelfAttention.q.weight"


def _prefix_with(keys: Any, mark: str, prefixes: tuple[str, ...]) -> str | None:
    return next((p for p in prefixes if p + mark in keys), None)


def clip_prefix(keys: Any) -> str | None:
    """Where a CLIP text tower's ``text_model.*`` keys start in ``keys``, or None when there is none."""
    return _prefix_with(keys, CLIP_MARK, CLIP_L_PREFIXES)


def t5_prefix(keys: Any) -> str | None:
    """Where a T5 encoder's ``encoder.*`` keys start in ``keys``, or None when there is none."""
    return _prefix_with(keys, T5_MARK, T5_PREFIXES)


# llama.cpp's T5 encoder names (city96's t5-v1_1-xxl-encoder GGUF files) -> transformers' T5EncoderModel names
_LLAMA_T5_BLOCK = {
    "attn_q": "layer.0.SelfAttention.q", "attn_k": "layer.0.SelfAttention.k", "attn_v": "layer.0.SelfAttention.v",
    "attn_o": "layer.0.SelfAttention.o", "attn_rel_b": "layer.0.SelfAttention.relative_attention_bias",
    "attn_norm": "layer.0.layer_norm", "ffn_gate": "layer.1.DenseReluDense.wi_0",
    "ffn_up": "layer.1.DenseReluDense.wi_1", "ffn_down": "layer.1.DenseReluDense.wo", "ffn_norm": "layer.1.layer_norm",
}
_LLAMA_T5_TOP = {"token_embd": "shared", "enc.output_norm": "encoder.final_layer_norm"}


def from_llama_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A T5 encoder in llama.cpp's names (``enc.blk.0.attn_q.weight``) renamed to transformers'; other dicts as
    they are. A non-gated encoder's ``ffn_up`` is its ``wi``."""
    if "enc.blk.0.attn_q.weight" not in sd:
        return sd
    gated = "enc.blk.0.ffn_gate.weight" in sd
    out: dict[str, torch.Tensor] = {}
    for key, tensor in sd.items():
        name, _, leaf = key.rpartition(".")
        m = re.fullmatch(r"enc\.blk\.(\d+)\.(\w+)", name)
        if m is not None and m.group(2) in _LLAMA_T5_BLOCK:
            part = _LLAMA_T5_BLOCK[m.group(2)]
            if m.group(2) == "ffn_up" and not gated:
                part = "layer.1.DenseReluDense.wi"
            out[f"encoder.block.{m.group(1)}.{part}.{leaf}"] = tensor
        elif name in _LLAMA_T5_TOP:
            out[f"{_LLAMA_T5_TOP[name]}.{leaf}"] = tensor
        else:
            out[key] = tensor  # left for the builder to report as unused
    return out


def _take(sd: dict[str, torch.Tensor], prefix: str, consume: bool) -> dict[str, torch.Tensor]:
    keys = [k for k in sd if k.startswith(prefix)] if prefix else list(sd)
    return {k[len(prefix):]: (sd.pop(k) if consume else sd[k]) for k in keys}


def build_clip_l(sd: dict[str, torch.Tensor], path: Path, prefix: str = "", consume: bool = False) -> Any:
    """A ``CLIPTextModel`` from transformers-layout CLIP-L text weights (sizes from the shapes)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from modules.models.loader import assign_weights, empty_module, text_encoder_config_for

    weights = {k: v for k, v in _take(sd, prefix, consume).items()
               if k.startswith("text_model.") and not k.endswith("position_ids")}
    try:
        values, _ = text_encoder_config_for("clip_l", weights)
    except KeyError as e:
        raise CorruptFileError(path, f"incomplete CLIP-L text encoder: {e} is missing") from None
    model = empty_module(lambda: CLIPTextModel(CLIPTextConfig(**values)))
    where = f"a {values['hidden_size']}-wide, {values['num_hidden_layers']}-layer CLIP-L text encoder"
    weights = {k.removeprefix("text_model."): v for k, v in weights.items()}  # CLIPTextModel's own names
    weights.pop("text_projection.weight", None)  # some files carry CLIPTextModelWithProjection's projection
    assign_weights(path, model, weights, "CLIP-L text encoder", where)
    return model


def t5_config_for(weights: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """A ``T5Config`` dict for T5 encoder weights: the bundled T5 v1.1 XXL values with the sizes of the tensors
    (GGUF blocks counted as values)."""
    from modules.models.gguf_files import shape_of

    embedding = weights.get("shared.weight", weights.get("encoder.embed_tokens.weight"))
    if embedding is None:
        raise KeyError("shared.weight")
    vocab, width = shape_of(embedding)
    bias = shape_of(weights["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"])
    q = shape_of(weights[T5_MARK])
    heads = int(bias[1])
    layers = {int(m.group(1)) for k in weights if (m := re.match(r"encoder\.block\.(\d+)\.", k))}
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in weights
    ff = shape_of(weights["encoder.block.0.layer.1.DenseReluDense.wi_0.weight" if gated
                          else "encoder.block.0.layer.1.DenseReluDense.wi.weight"])
    return {**configs.text_encoder_config("t5_xxl"),
            "vocab_size": int(vocab), "d_model": int(width),
            "num_heads": heads, "d_kv": int(q[0]) // heads, "d_ff": int(ff[0]),
            "num_layers": max(layers) + 1, "relative_attention_num_buckets": int(bias[0]),
            "feed_forward_proj": "gated-gelu" if gated else "relu"}


def build_t5(sd: dict[str, torch.Tensor], path: Path, prefix: str = "", consume: bool = False,
             storage: str = "full", dtype: torch.dtype = torch.float32) -> Any:
    """A ``T5EncoderModel`` from its transformers-layout weights (``shared.weight`` + ``encoder.*``). ``storage``
    "automatic" keeps fp8 and GGUF Linear weights as stored (``stored_weights``), "full" expands all to ``dtype``."""
    from transformers import T5Config, T5EncoderModel

    from modules.models import stored_weights
    from modules.models.loader import assign_weights, empty_module

    weights = {k: v for k, v in _take(sd, prefix, consume).items() if k.startswith(("shared.", "encoder."))}
    try:
        values = t5_config_for(weights)
    except KeyError as e:
        raise CorruptFileError(path, f"incomplete T5 text encoder: {e} is missing") from None
    # the token embedding is stored once: as shared.weight (most files) or encoder.embed_tokens.weight
    embedding = weights.pop("shared.weight", None)
    embedding = weights.pop("encoder.embed_tokens.weight", embedding)
    if embedding is not None and stored_weights.is_compact(embedding):  # expanded once, for both of its names
        embedding = stored_weights.expanded(embedding, weights.pop("shared.scale_weight", None), dtype)
    weights["shared.weight"] = weights["encoder.embed_tokens.weight"] = embedding
    model = empty_module(lambda: T5EncoderModel(T5Config(**values)))
    stored_weights.prepare(model, weights, storage, dtype)
    where = f"a {values['d_model']}-wide, {values['num_layers']}-layer T5 encoder"
    assign_weights(path, model, weights, "T5 text encoder", where)
    model.tie_weights()
    if model.encoder.embed_tokens.weight.data_ptr() != model.shared.weight.data_ptr():
        raise UnknownModelError(path, "the T5 encoder's token embedding could not be shared")
    return model
