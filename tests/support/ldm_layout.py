"""Reverse converter: diffusers/transformers state dicts -> original CompVis/LDM (and SGM) single-file key layout.

diffusers only converts LDM -> diffusers. Tests need the other direction to write realistic single-file checkpoints
(what users download into ``models/Stable-diffusion``) from tiny random diffusers models. Every function here is
strict: a key it does not know raises ``KeyError``, so a silently dropped tensor cannot hide a layout bug.

Key counts for a real SD1.5 file: 686 UNet, 248 VAE, 197 CLIP-L text encoder (196 tensors + ``position_ids``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

# Where each component lives inside an original single-file checkpoint.
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_CLIP_PREFIX = "cond_stage_model.transformer."  # OpenAI CLIP-L (HF layout below "text_model.")
SD2_OPEN_CLIP_PREFIX = "cond_stage_model.model."  # OpenCLIP ViT-H
SDXL_CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."  # OpenCLIP ViT-bigG
SDXL_REFINER_OPEN_CLIP_PREFIX = "conditioner.embedders.0.model."

# OpenCLIP's initial logit scale, ln(1/0.07); real SD2/SDXL files carry it as a 0-dim tensor.
OPEN_CLIP_LOGIT_SCALE = 2.6592600345611572

_UNET_RESNET_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTN_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _cfg(config: Any, name: str) -> Any:
    return config[name] if isinstance(config, Mapping) else getattr(config, name)


def _unet_prefix_map(config: Any) -> dict[str, tuple[str, str]]:
    """diffusers module prefix -> (LDM module prefix, kind); kind "resnet" renames the resnet leaf modules."""
    layers = _cfg(config, "layers_per_block")
    if not isinstance(layers, int):
        raise ValueError("LDM layout needs one layers_per_block for every level (num_res_blocks)")
    up_types = list(_cfg(config, "up_block_types"))
    levels = len(_cfg(config, "block_out_channels"))
    m: dict[str, tuple[str, str]] = {
        "conv_in.": ("input_blocks.0.0.", "same"),
        "time_embedding.linear_1.": ("time_embed.0.", "same"),
        "time_embedding.linear_2.": ("time_embed.2.", "same"),
        # SDXL "text_time" and SD-upscaler style "projection" embeddings both live in label_emb.0
        "add_embedding.linear_1.": ("label_emb.0.0.", "same"),
        "add_embedding.linear_2.": ("label_emb.0.2.", "same"),
        "class_embedding.linear_1.": ("label_emb.0.0.", "same"),
        "class_embedding.linear_2.": ("label_emb.0.2.", "same"),
        "conv_norm_out.": ("out.0.", "same"),
        "conv_out.": ("out.2.", "same"),
        "mid_block.resnets.0.": ("middle_block.0.", "resnet"),
        "mid_block.attentions.0.": ("middle_block.1.", "same"),
        "mid_block.resnets.1.": ("middle_block.2.", "resnet"),
    }
    # input_blocks: [conv_in] then per level `layers` x [ResBlock, (SpatialTransformer)], then [Downsample] if not last
    for b in range(levels):
        first = 1 + b * (layers + 1)
        for j in range(layers):
            m[f"down_blocks.{b}.resnets.{j}."] = (f"input_blocks.{first + j}.0.", "resnet")
            m[f"down_blocks.{b}.attentions.{j}."] = (f"input_blocks.{first + j}.1.", "same")
        if b < levels - 1:
            m[f"down_blocks.{b}.downsamplers.0.conv."] = (f"input_blocks.{first + layers}.0.op.", "same")
    # output_blocks: per level `layers + 1` x [ResBlock, (SpatialTransformer), (Upsample on the last one)]
    for b in range(levels):
        first = b * (layers + 1)
        for j in range(layers + 1):
            m[f"up_blocks.{b}.resnets.{j}."] = (f"output_blocks.{first + j}.0.", "resnet")
            m[f"up_blocks.{b}.attentions.{j}."] = (f"output_blocks.{first + j}.1.", "same")
        if b < levels - 1:
            slot = 2 if up_types[b].startswith("CrossAttn") else 1
            m[f"up_blocks.{b}.upsamplers.0.conv."] = (f"output_blocks.{first + layers}.{slot}.conv.", "same")
    return m


def unet_to_ldm(state_dict: Mapping[str, Tensor], unet_config: Any, prefix: str = UNET_PREFIX) -> dict[str, Tensor]:
    """UNet2DConditionModel state dict -> ``model.diffusion_model.*`` keys (openaimodel.UNetModel layout).

    ``unet_config`` is the diffusers config (dict or FrozenDict/config object). Attention (SpatialTransformer)
    sub-keys are identical in both layouts, including linear vs 1x1-conv ``proj_in``/``proj_out`` shapes.
    """
    return remap_prefixes(state_dict, _unet_prefix_map(unet_config), prefix, "unet_to_ldm")


def remap_prefixes(state_dict: Mapping[str, Tensor], table: Mapping[str, tuple[str, str]], prefix: str,
                   what: str) -> dict[str, Tensor]:
    """Rename keys by the longest matching diffusers prefix of ``table`` (-> (LDM prefix, kind)); kind "resnet"
    renames the resnet leaf modules. A key without a place raises ``KeyError``."""
    by_len = sorted(table, key=len, reverse=True)
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        src = next((p for p in by_len if key.startswith(p)), None)
        if src is None:
            raise KeyError(f"{what}: no LDM place for {key!r}")
        dst, kind = table[src]
        rest = key[len(src):]
        if kind == "resnet":
            leaf, _, tail = rest.partition(".")
            if leaf not in _UNET_RESNET_NAMES:
                raise KeyError(f"{what}: unknown resnet tensor {key!r}")
            rest = f"{_UNET_RESNET_NAMES[leaf]}.{tail}"
        out[prefix + dst + rest] = value
    return out


_VAE_RE = re.compile(
    r"^(?P<part>encoder|decoder)\.(?:"
    r"(?P<blocks>down_blocks|up_blocks)\.(?P<i>\d+)\.(?:resnets\.(?P<j>\d+)\.(?P<rleaf>.+)|(?:down|up)samplers\.0\.conv\.(?P<sleaf>.+))"
    r"|mid_block\.(?:resnets\.(?P<mj>\d+)\.(?P<mleaf>.+)|attentions\.0\.(?P<aleaf>.+))"
    r"|conv_norm_out\.(?P<nleaf>.+)"
    r"|(?P<same>conv_in\..+|conv_out\..+))$"
)


def vae_to_ldm(state_dict: Mapping[str, Tensor], prefix: str = VAE_PREFIX) -> dict[str, Tensor]:
    """AutoencoderKL state dict -> ``first_stage_model.*`` keys.

    Decoder levels are numbered in reverse in LDM (``up.0`` is the full-resolution level); the mid-block attention
    uses 1x1 convolutions there, so its q/k/v/proj_out weights become ``[C, C, 1, 1]``.
    """
    ups = {int(m.group(1)) for k in state_dict if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k))}
    n_up = max(ups) + 1 if ups else 0
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith(("quant_conv.", "post_quant_conv.")):
            out[prefix + key] = value
            continue
        m = _VAE_RE.match(key)
        if m is None:
            raise KeyError(f"vae_to_ldm: no LDM place for {key!r}")
        part = m["part"]
        if m["blocks"]:
            i = int(m["i"])
            level, word = (i, "down") if m["blocks"] == "down_blocks" else (n_up - 1 - i, "up")
            if m["j"] is not None:
                leaf = m["rleaf"].replace("conv_shortcut.", "nin_shortcut.")
                new = f"{part}.{word}.{level}.block.{m['j']}.{leaf}"
            else:
                new = f"{part}.{word}.{level}.{'downsample' if word == 'down' else 'upsample'}.conv.{m['sleaf']}"
        elif m["mj"] is not None:
            new = f"{part}.mid.block_{int(m['mj']) + 1}.{m['mleaf']}"
        elif m["aleaf"] is not None:
            module, _, param = m["aleaf"].rpartition(".")
            if module not in _VAE_ATTN_NAMES:
                raise KeyError(f"vae_to_ldm: unknown attention tensor {key!r}")
            new = f"{part}.mid.attn_1.{_VAE_ATTN_NAMES[module]}.{param}"
            if value.ndim == 2:  # linear -> 1x1 conv
                value = value[:, :, None, None]
        elif m["nleaf"] is not None:
            new = f"{part}.norm_out.{m['nleaf']}"
        else:
            new = f"{part}.{m['same']}"
        out[prefix + new] = value
    return out


def _strip_text_model(key: str) -> str:
    # transformers 5 CLIPTextModel names have no "text_model." (CLIPTextModelWithProjection still has it)
    return key[len("text_model."):] if key.startswith("text_model.") else key


def clip_l_to_ldm(state_dict: Mapping[str, Tensor], prefix: str = SD1_CLIP_PREFIX) -> dict[str, Tensor]:
    """OpenAI CLIP text model (HF layout) -> ``<prefix>text_model.*``.

    ``prefix`` is the embedder's module ("cond_stage_model.transformer." for SD1, "conditioner.embedders.0.transformer."
    for SDXL); a prefix already ending in "text_model." is taken as is. Real files also carry the int64
    ``embeddings.position_ids`` buffer ([1, 77]); it is added when the state dict lacks it (non-persistent in transformers).
    """
    base = prefix if prefix.endswith("text_model.") else prefix + "text_model."
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        name = _strip_text_model(key)
        if not name.startswith(("embeddings.", "encoder.layers.", "final_layer_norm.")):
            raise KeyError(f"clip_l_to_ldm: not a CLIP text-model tensor {key!r}")
        out[base + name] = value
    pos_key = base + "embeddings.position_ids"
    if pos_key not in out:
        n_pos = out[base + "embeddings.position_embedding.weight"].shape[0]
        out[pos_key] = torch.arange(n_pos, dtype=torch.int64, device="cpu")[None]
    return out


_OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
_OPEN_CLIP_TOP = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}


def open_clip_to_ldm(
    state_dict: Mapping[str, Tensor], prefix: str, logit_scale: float | None = None
) -> dict[str, Tensor]:
    """HF CLIP text model (with or without projection) -> OpenCLIP text-tower layout under ``prefix``.

    q/k/v projections are concatenated into ``transformer.resblocks.N.attn.in_proj_{weight,bias}``; the HF
    ``text_projection.weight`` ([proj, hidden]) becomes OpenCLIP's ``text_projection`` ([hidden, proj]) parameter.
    ``logit_scale`` (a 0-dim tensor in real files) is written when given. ``position_ids`` has no OpenCLIP twin.
    """
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, Tensor]] = {}
    for key, value in state_dict.items():
        name = _strip_text_model(key)
        if name == "embeddings.position_ids":
            continue
        if name in _OPEN_CLIP_TOP:
            out[prefix + _OPEN_CLIP_TOP[name]] = value
            continue
        if name == "text_projection.weight":
            out[prefix + "text_projection"] = value.t().contiguous()
            continue
        m = re.match(r"^encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$", name)
        if m is None:
            raise KeyError(f"open_clip_to_ldm: no OpenCLIP place for {key!r}")
        n, module, param = int(m[1]), m[2], m[3]
        qm = re.match(r"^self_attn\.([qkv])_proj$", module)
        if qm:
            qkv.setdefault((n, param), {})[qm[1]] = value
        elif module in _OPEN_CLIP_LAYER:
            out[f"{prefix}transformer.resblocks.{n}.{_OPEN_CLIP_LAYER[module]}.{param}"] = value
        else:
            raise KeyError(f"open_clip_to_ldm: unknown layer tensor {key!r}")
    for (n, param), parts in sorted(qkv.items()):
        if set(parts) != {"q", "k", "v"}:
            raise KeyError(f"open_clip_to_ldm: layer {n} {param} lacks one of q/k/v")
        out[f"{prefix}transformer.resblocks.{n}.attn.in_proj_{param}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    if logit_scale is not None:
        out[prefix + "logit_scale"] = torch.tensor(logit_scale, dtype=torch.float32)
    return out


def ddpm_schedule_buffers(linear_start: float, linear_end: float, timesteps: int = 1000) -> dict[str, Tensor]:
    """The 12 noise-schedule buffers LDM's ``DDPM`` registers and real SD1/SD2 files carry (float32, [timesteps]).

    "linear" schedule: betas = linspace(sqrt(start), sqrt(end))**2, computed in float64 like LDM.
    """
    betas = torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64) ** 2
    alphas = 1.0 - betas
    ac = torch.cumprod(alphas, dim=0)
    ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
    bufs = {
        "betas": betas,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": ac_prev,
        "sqrt_alphas_cumprod": ac.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - ac).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - ac).log(),
        "sqrt_recip_alphas_cumprod": (1.0 / ac).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / ac - 1.0).sqrt(),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": post_var.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * ac_prev.sqrt() / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - ac_prev) * alphas.sqrt() / (1.0 - ac),
    }
    return {k: v.to(torch.float32) for k, v in bufs.items()}
