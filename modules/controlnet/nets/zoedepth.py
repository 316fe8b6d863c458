"""depth_zoe from sd-webui-controlnet's ``ZoeD_M12_N.pt``: ZoeDepth NYU (a MiDaS v3.1 DPT-BEiT-L/384 relative-depth
core, ``core.core.*``, and the metric-bins head) renamed into transformers' ZoeDepthForDepthEstimation.

The file is a checkpoint ``{"model": state dict}`` (the safe loader unwraps it) in isl-org/ZoeDepth's layout:

* ``core.core.pretrained.model.*``: timm's BEiT (``cls_token``, ``patch_embed.proj``, ``blocks.<i>.{norm1,
  attn.qkv,attn.q_bias,attn.v_bias,attn.relative_position_bias_table,attn.proj,norm2,mlp.fc1,mlp.fc2,gamma_1,
  gamma_2}``; the buffers ``relative_position_index`` and the unused ``fc_norm`` / ``head`` are dropped);
* ``core.core.pretrained.act_postprocess<1..4>``, ``core.core.scratch.*``: the DPT neck and relative head;
* ``conv2``, ``seed_bin_regressor``, ``seed_projector``, ``projectors.<i>``, ``attractors.<i>`` (each ``_net.0/2``),
  ``conditional_log_binomial.mlp.0/2``: the metric head (``k_idx`` / ``K_minus_1`` are constants, dropped).

What the file does not store is the extension's ``config_zoedepth.json`` (softplus bin centres, attractors of the
'inv' kind, alpha 1000, gamma 2, 'mean', temperatures 0.0212..50, NYU's 1e-3..10 m) and MiDaS's BEiT hooks (blocks
6, 12, 18, 24 of 24: a quarter of the way each). The map is made as the extension's ``ZoeDepth.infer`` makes it: the
0..1 image reflect-padded by sqrt(side / 2) * 3, resized to about 384x512 (the scale nearest 1, multiples of 32,
bilinear), normalised to -1..1, the metric depth brought back bicubically and cropped, averaged with the
horizontally flipped run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from modules.controlnet.nets.depth_files import bad_file, build, count_indexed, fit

FILE = "ZoeD_M12_N.pt"
_C = "core.core."
_P = _C + "pretrained.model."
_bad = bad_file("ZoeDepth depth model", FILE,
                "{'model': ...} with core.core.pretrained.model.* (timm's BEiT: blocks.<i>.attn.qkv, q_bias, v_bias, "
                "relative_position_bias_table ...), core.core.scratch.* and the metric head (conv2, "
                "seed_bin_regressor, seed_projector, projectors, attractors, conditional_log_binomial)")
_SIZES = (_P + "cls_token", _P + "patch_embed.proj.weight", _P + "blocks.0.mlp.fc1.weight",
          _P + "blocks.0.attn.relative_position_bias_table", _C + "scratch.layer1_rn.weight",
          "seed_bin_regressor._net.2.weight", "seed_projector._net.2.weight", "attractors.0._net.2.weight")
_DROPPED = ("relative_position_index", "k_idx", "K_minus_1")
_BLOCK = (("norm1", "layernorm_before"), ("norm2", "layernorm_after"), ("attn.proj", "attention.o_proj"),
          ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2"),
          ("attn.relative_position_bias_table", "relative_position_bias.relative_position_bias_table"))
_NET_SIZE = (384, 512)  # config_zoedepth.json's img_size, as (height, width)


def config_from(sd: dict[str, torch.Tensor]) -> Any:
    """The ZoeDepthConfig (BEiT backbone, one NYU bin configuration) whose model the file's tensors fill."""
    from transformers import BeitConfig, ZoeDepthConfig

    patch = int(sd[_P + "patch_embed.proj.weight"].shape[-1])
    hidden = int(sd[_P + "patch_embed.proj.weight"].shape[0])
    layers = count_indexed(sd, _P + "blocks.")
    # the relative position table of a g x g grid has (2g - 1)^2 + 3 rows
    grid = int(round(((sd[_P + "blocks.0.attn.relative_position_bias_table"].shape[0] - 3) ** 0.5 + 1) / 2))
    heads = int(sd[_P + "blocks.0.attn.relative_position_bias_table"].shape[1])
    backbone = BeitConfig(image_size=grid * patch, patch_size=patch, num_hidden_layers=layers, hidden_size=hidden,
                          intermediate_size=int(sd[_P + "blocks.0.mlp.fc1.weight"].shape[0]),
                          num_attention_heads=heads, use_relative_position_bias=True, reshape_hidden_states=False,
                          layer_norm_eps=1e-6,
                          out_features=[f"stage{(i + 1) * layers // 4}" for i in range(4)])
    attractors = count_indexed(sd, "attractors.")
    return ZoeDepthConfig(
        backbone_config=backbone,
        neck_hidden_sizes=[int(sd[f"{_C}pretrained.act_postprocess{i}.3.weight"].shape[0]) for i in range(1, 5)],
        fusion_hidden_size=int(sd[_C + "scratch.layer1_rn.weight"].shape[0]),
        bottleneck_features=int(sd["conv2.weight"].shape[0]) if "conv2.weight" in sd else 256,
        num_relative_features=int(sd[_C + "scratch.output_conv.2.weight"].shape[0])
        if _C + "scratch.output_conv.2.weight" in sd else 32,
        num_attractors=[int(sd[f"attractors.{i}._net.2.weight"].shape[0]) for i in range(attractors)],
        bin_embedding_dim=int(sd["seed_projector._net.2.weight"].shape[0]),
        attractor_alpha=1000, attractor_gamma=2, attractor_kind="mean", min_temp=0.0212, max_temp=50.0,
        bin_centers_type="softplus",
        bin_configurations=[{"name": "nyu", "n_bins": int(sd["seed_bin_regressor._net.2.weight"].shape[0]),
                             "min_depth": 1e-3, "max_depth": 10.0}])


def _rename(key: str) -> str | None:
    """One original name -> transformers' (None: no place for it; the fused qkv is split separately)."""
    beit = "backbone.beit."
    simple = {_P + "cls_token": beit + "embeddings.cls_token",
              _P + "patch_embed.proj.weight": beit + "embeddings.patch_embeddings.projection.weight",
              _P + "patch_embed.proj.bias": beit + "embeddings.patch_embeddings.projection.bias"}
    if key in simple:
        return simple[key]
    if key.startswith(_P + "blocks."):
        index, rest = key[len(_P + "blocks."):].split(".", 1)
        if rest in ("gamma_1", "gamma_2"):
            return f"{beit}layers.{index}.lambda_{rest[-1]}"
        for theirs, ours in _BLOCK:
            if rest.startswith(theirs + ".") or rest == theirs:
                return f"{beit}layers.{index}.{ours}{rest[len(theirs):]}"
        return None
    for n in range(1, 5):
        post = f"{_C}pretrained.act_postprocess{n}."
        for theirs, ours in (("0.project.0.", f"readout_projects.{n - 1}.0."), ("3.", f"layers.{n - 1}.projection."),
                             ("4.", f"layers.{n - 1}.resize.")):
            if key.startswith(post + theirs) and not (n == 3 and theirs == "4."):
                return "neck.reassemble_stage." + ours + key[len(post + theirs):]
    scratch = _C + "scratch."
    for i in range(1, 5):
        if key == f"{scratch}layer{i}_rn.weight":
            return f"neck.convs.{i - 1}.weight"
        refine = f"{scratch}refinenet{i}."
        if key.startswith(refine):
            rest = key[len(refine):].replace("out_conv", "projection")
            for u in (1, 2):
                rest = rest.replace(f"resConfUnit{u}.", f"residual_layer{u}.")
            rest = rest.replace("conv1.", "convolution1.").replace("conv2.", "convolution2.")
            return f"neck.fusion_stage.layers.{4 - i}.{rest}"
    for theirs, ours in (("0", "conv1"), ("2", "conv2"), ("4", "conv3")):
        if key.startswith(f"{scratch}output_conv.{theirs}."):
            return f"relative_head.{ours}." + key.rsplit(".", 1)[1]
    if key.startswith("conv2."):
        return "metric_head." + key
    head = key.split(".")
    if head[0] in ("seed_bin_regressor", "seed_projector") and len(head) == 4 and head[1] == "_net":
        return f"metric_head.{head[0]}.conv{1 if head[2] == '0' else 2}.{head[3]}" if head[2] in "02" else None
    if head[0] in ("projectors", "attractors") and len(head) == 5 and head[2] == "_net" and head[3] in ("0", "2"):
        return f"metric_head.{head[0]}.{head[1]}.conv{1 if head[3] == '0' else 2}.{head[4]}"
    if key.startswith("conditional_log_binomial.mlp."):
        return "metric_head." + key
    return None


def convert(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The original names -> transformers' (BEiT's fused qkv split; its key has no bias, q and v have theirs), and
    the keys that have no place (another network's)."""
    out: dict[str, torch.Tensor] = {}
    unplaced = []
    for key, value in sd.items():
        if any(key.endswith(d) for d in _DROPPED) or key.startswith((_P + "fc_norm.", _P + "head.", _P + "norm.")):
            continue
        if key.startswith(_P + "blocks.") and ".attn." in key and key.rsplit(".", 1)[-1] in ("q_bias", "v_bias"):
            index = key[len(_P + "blocks."):].split(".", 1)[0]
            out[f"backbone.beit.layers.{index}.attention.{key[-6]}_proj.bias"] = value
            continue
        if key.startswith(_P + "blocks.") and key.endswith(".attn.qkv.weight"):
            index = key[len(_P + "blocks."):].split(".", 1)[0]
            for name, w in zip(("q", "k", "v"), value.chunk(3, dim=0)):
                out[f"backbone.beit.layers.{index}.attention.{name}_proj.weight"] = w
            continue
        name = _rename(key)
        if name is None:
            unplaced.append(key)
        else:
            out[name] = value
    return out, unplaced


def load(path: Path) -> Any:
    """The network of ``ZoeD_M12_N.pt`` (or a file in its layout) as transformers' ZoeDepthForDepthEstimation,
    fp32, eval, on the CPU. Another network's file is a ValueError naming it."""
    from transformers import ZoeDepthForDepthEstimation

    return build(path, _SIZES, _bad, convert, lambda sd: ZoeDepthForDepthEstimation(config_from(sd)))


def _metric(model: Any, x: torch.Tensor) -> torch.Tensor:
    """One padded run: (1, 3, H, W) in 0..1 -> metric depth (1, 1, H, W) with the padding cropped."""
    h, w = x.shape[-2:]
    pad_h, pad_w = int(np.sqrt(h / 2) * 3), int(np.sqrt(w / 2) * 3)
    padded = F.pad(x, [pad_w, pad_w, pad_h, pad_h], mode="reflect")
    nh, nw = fit(padded.shape[2], padded.shape[3], *_NET_SIZE, 32, "minimal")
    net_in = F.interpolate(padded, (nh, nw), mode="bilinear", align_corners=True)
    depth = model(pixel_values=(net_in - 0.5) / 0.5).predicted_depth[:, None]
    depth = F.interpolate(depth, size=padded.shape[-2:], mode="bicubic", align_corners=False)
    return depth[:, :, pad_h:pad_h + h, pad_w:pad_w + w]


def predict(model: Any, image: np.ndarray) -> np.ndarray:
    """Metric depth (far = large) of an RGB uint8 image, at the image's size, float32: the extension's infer (the
    padded run averaged with the flipped one)."""
    dev = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().to(dev)[None] / 255.0
    with torch.inference_mode():
        depth = (_metric(model, x) + torch.flip(_metric(model, torch.flip(x, dims=[3])), dims=[3])) / 2
    return depth[0, 0].float().cpu().numpy()
