"""depth_midas from sd-webui-controlnet's ``dpt_hybrid-midas-501f0c75.pt``: MiDaS v3 DPT-Hybrid (a ViT-B/16 on a
BiT ResNet-50 stem, timm names under ``pretrained.model.*``; the DPT neck and head, ``pretrained.act_postprocess*``
and ``scratch.*``) renamed into transformers' DPTForDepthEstimation (``is_hybrid``).

The file's layout (isl-org/MiDaS ``DPTDepthModel(backbone="vitb_rn50_384")``):

* ``pretrained.model.{cls_token,pos_embed}``, ``pretrained.model.patch_embed.backbone.{stem,stages.<s>.blocks.<b>}``
  (weight-standardised convolutions and group norms), ``pretrained.model.patch_embed.proj``,
  ``pretrained.model.blocks.<i>.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``pretrained.model.norm``
  (and the ImageNet classifier ``pretrained.model.head``, unused and dropped);
* ``pretrained.act_postprocess{3,4}`` (readout projection, 1x1 projection; 4: a stride-2 convolution): the two
  ViT taps; the two ResNet stages pass through unchanged;
* ``scratch.layer<1..4>_rn``, ``scratch.refinenet<1..4>`` (4 the coarsest), ``scratch.output_conv.{0,2,4}``.

The ViT taps are blocks 8 and 11 of 12 (MiDaS's hooks for this backbone; not stored in the file: for another depth,
the same places, 2/3 of the way and the last). The map is made as the extension makes it: the padded image itself
(no resize), scaled to -1..1, the prediction at the image's size, min-max normalised.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modules.controlnet.nets.depth_files import bad_file, build, count_indexed, split_qkv

FILE = "dpt_hybrid-midas-501f0c75.pt"
_P = "pretrained.model."
_BIT = _P + "patch_embed.backbone."
_bad = bad_file("MiDaS DPT-Hybrid depth model", FILE,
                "pretrained.model.* (timm's hybrid ViT: cls_token, pos_embed, patch_embed.backbone.stem/stages, "
                "blocks.<i>.attn.qkv ...), pretrained.act_postprocess3/4 and scratch.* (layer<1..4>_rn, "
                "refinenet<1..4>, output_conv)")
_SIZES = (_P + "pos_embed", _P + "blocks.0.mlp.fc1.weight", _BIT + "stem.conv.weight",
          "pretrained.act_postprocess3.3.weight", "pretrained.act_postprocess4.3.weight", "scratch.layer1_rn.weight",
          "scratch.layer2_rn.weight")
_BLOCK = (("norm1", "layernorm_before"), ("norm2", "layernorm_after"), ("attn.proj", "attention.output.dense"),
          ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense"))


def _stage_blocks(sd: dict[str, torch.Tensor]) -> list[int]:
    stages = count_indexed(sd, _BIT + "stages.")
    return [count_indexed(sd, f"{_BIT}stages.{s}.blocks.") for s in range(stages)]


def taps(layers: int) -> tuple[int, int]:
    """The ViT blocks whose output the neck reads (MiDaS's hooks 8 and 11 for the 12 blocks of ViT-B)."""
    return layers * 2 // 3, layers - 1


def config_from(sd: dict[str, torch.Tensor]) -> Any:
    """The DPTConfig (hybrid, BiT backbone) whose model the file's tensors fill (sizes read from them)."""
    from transformers import BitConfig, DPTConfig

    hidden = int(sd[_P + "pos_embed"].shape[-1])
    grid = int(round((sd[_P + "pos_embed"].shape[1] - 1) ** 0.5))
    layers = count_indexed(sd, _P + "blocks.")
    depths = _stage_blocks(sd)
    if len(depths) != 3 or 0 in depths:
        raise ValueError(f"the ResNet stem has {len(depths)} stages, not 3")
    widths = [int(sd[f"{_BIT}stages.{s}.blocks.0.conv3.weight"].shape[0]) for s in range(3)]
    bit = BitConfig(global_padding="same", layer_type="bottleneck", depths=depths, hidden_sizes=widths,
                    embedding_size=int(sd[_BIT + "stem.conv.weight"].shape[0]),
                    out_features=["stage1", "stage2", "stage3"], embedding_dynamic_padding=True)
    return DPTConfig(
        is_hybrid=True, backbone_config=bit, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64), intermediate_size=int(sd[_P + "blocks.0.mlp.fc1.weight"].shape[0]),
        layer_norm_eps=1e-6, image_size=grid * 16, patch_size=16, backbone_out_indices=[0, 1, *taps(layers)],
        readout_type="project", reassemble_factors=[1, 1, 1, 0.5],
        neck_hidden_sizes=[int(sd["scratch.layer1_rn.weight"].shape[1]), int(sd["scratch.layer2_rn.weight"].shape[1]),
                           int(sd["pretrained.act_postprocess3.3.weight"].shape[0]),
                           int(sd["pretrained.act_postprocess4.3.weight"].shape[0])],
        fusion_hidden_size=int(sd["scratch.layer1_rn.weight"].shape[0]),
        backbone_featmap_shape=[1, widths[-1], grid, grid], use_batch_norm_in_fusion_residual=False)


def _rename(key: str) -> str | None:
    """One original name -> transformers' (None: no place for it; the fused qkv is split separately)."""
    if key.startswith(_BIT):
        rest = key[len(_BIT):]
        if rest.startswith("stem.conv."):
            return "dpt.embeddings.backbone.bit.embedder.convolution." + rest[len("stem.conv."):]
        if rest.startswith("stem.norm."):
            return "dpt.embeddings.backbone.bit.embedder.norm." + rest[len("stem.norm."):]
        parts = rest.split(".")
        if parts[0] == "stages" and len(parts) > 3 and parts[2] == "blocks":
            return "dpt.embeddings.backbone.bit.encoder.stages." + ".".join([parts[1], "layers", *parts[3:]])
        return None
    simple = {_P + "cls_token": "dpt.embeddings.cls_token", _P + "pos_embed": "dpt.embeddings.position_embeddings",
              _P + "patch_embed.proj.weight": "dpt.embeddings.projection.weight",
              _P + "patch_embed.proj.bias": "dpt.embeddings.projection.bias",
              _P + "norm.weight": "dpt.layernorm.weight", _P + "norm.bias": "dpt.layernorm.bias"}
    if key in simple:
        return simple[key]
    if key.startswith(_P + "blocks."):
        index, rest = key[len(_P + "blocks."):].split(".", 1)
        for theirs, ours in _BLOCK:
            if rest.startswith(theirs + "."):
                return f"dpt.encoder.layer.{index}.{ours}.{rest[len(theirs) + 1:]}"
        return None
    for n in (3, 4):
        post = f"pretrained.act_postprocess{n}."
        for theirs, ours in (("0.project.0.", f"readout_projects.{n - 1}.0."), ("3.", f"layers.{n - 1}.projection."),
                             ("4.", f"layers.{n - 1}.resize.")):
            if key.startswith(post + theirs) and not (n == 3 and theirs == "4."):
                return "neck.reassemble_stage." + ours + key[len(post + theirs):]
    for i in range(1, 5):
        if key == f"scratch.layer{i}_rn.weight":
            return f"neck.convs.{i - 1}.weight"
        refine = f"scratch.refinenet{i}."
        if key.startswith(refine):
            rest = key[len(refine):].replace("out_conv", "projection")
            for u in (1, 2):
                rest = rest.replace(f"resConfUnit{u}.", f"residual_layer{u}.")
            rest = rest.replace("conv1.", "convolution1.").replace("conv2.", "convolution2.")
            return f"neck.fusion_stage.layers.{4 - i}.{rest}"
    for n in (0, 2, 4):
        if key.startswith(f"scratch.output_conv.{n}."):
            return f"head.head.{n}." + key[len(f"scratch.output_conv.{n}."):]
    return None


def convert(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The original names -> transformers' (each block's fused qkv split into query/key/value), and the keys that
    have no place (another network's)."""
    out: dict[str, torch.Tensor] = {}
    unplaced = []
    for key, value in sd.items():
        if key.startswith(_P + "head."):  # the ImageNet classifier of the timm ViT: not part of DPT
            continue
        if key.startswith(_P + "blocks.") and ".attn.qkv." in key:
            if key.endswith(".weight"):
                index = key[len(_P + "blocks."):].split(".", 1)[0]
                split_qkv(out, value, sd.get(key[:-len("weight")] + "bias"),
                          f"dpt.encoder.layer.{index}.attention.attention.", ("query", "key", "value"))
            continue
        name = _rename(key)
        if name is None:
            unplaced.append(key)
        else:
            out[name] = value
    return out, unplaced


def load(path: Path) -> Any:
    """The network of ``dpt_hybrid-midas-501f0c75.pt`` (or a file in its layout) as transformers'
    DPTForDepthEstimation, fp32, eval, on the CPU. Another network's file is a ValueError naming it."""
    from transformers import DPTForDepthEstimation

    model = build(path, _SIZES, _bad, convert, lambda sd: DPTForDepthEstimation(config_from(sd)))
    # MiDaS runs at any size (its pos_embed resized to the grid); DPTModel calls the hybrid embeddings without the
    # flag that allows it, so this instance's embeddings always resize.
    embeddings = model.dpt.embeddings
    embeddings.forward = functools.partial(type(embeddings).forward, embeddings, interpolate_pos_encoding=True)
    return model


def depth(model: Any, pixels: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in -1..1, sides multiples of 32 -> (N, H, W). DPTForDepthEstimation's own forward assumes a
    square grid for the hybrid neck; MiDaS runs any shape, so the grid is given here."""
    h, w = pixels.shape[-2:]
    out = model.dpt(pixel_values=pixels, output_hidden_states=True)
    vit = out.hidden_states[1:]  # [0] is the embeddings' output
    hidden = [*out.intermediate_activations, *(vit[i] for i in model.config.backbone_out_indices[2:])]
    return model.head(model.neck(hidden, h // 16, w // 16))


def predict(model: Any, image: np.ndarray) -> np.ndarray:
    """Relative inverse depth (near = large) of an RGB uint8 image (its sides multiples of 32, as the padded
    preprocessor image is), at the image's size, float32."""
    dev = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().to(dev)[None] / 127.5 - 1.0
    with torch.inference_mode():
        result = depth(model, x).float()
    if result.shape[-2:] != image.shape[:2]:
        result = torch.nn.functional.interpolate(result[:, None], size=image.shape[:2], mode="bilinear")[:, 0]
    return result[0].cpu().numpy()
