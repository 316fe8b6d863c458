"""depth_anything from sd-webui-controlnet's ``depth_anything_vitl14.pth``: Depth Anything V1 (a DINOv2 ViT,
``pretrained.*``, and a DPT head, ``depth_head.*``) renamed into transformers' DepthAnythingForDepthEstimation.

The file's layout (LiheYoung/Depth-Anything's ``DPT_DINOv2``):

* ``pretrained.{cls_token,mask_token,pos_embed,patch_embed.proj}``, ``pretrained.blocks.<i>.{norm1,attn.qkv,
  attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}``, ``pretrained.norm``: DINOv2 (ViT-L/14 in the download;
  the head count is not stored: DINOv2 uses 64-wide heads);
* ``depth_head.projects.<0..3>`` (1x1), ``depth_head.resize_layers.{0,1,3}`` (4x and 2x transposed convolutions,
  a stride-2 convolution; 2 is the identity), ``depth_head.scratch.layer<1..4>_rn``,
  ``depth_head.scratch.refinenet<1..4>`` (fusion blocks, 4 the coarsest), ``depth_head.scratch.output_conv1`` and
  ``output_conv2.{0,2}``.

V1 reads the last four blocks' patch tokens (layer-normed; no class-token readout). The map is made as the
extension makes it: the image resized so both sides are at least 518 (multiples of 14, bicubic), ImageNet-normalised,
the prediction brought back to the image's size bilinearly. (The extension also converts the RGB picture as if it
were BGR; the network is given RGB, as it was trained and as the hub-folder path gives it.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from modules.controlnet.nets.depth_files import bad_file, build, count_indexed, resize_to_multiple, split_qkv

FILE = "depth_anything_vitl14.pth"
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_bad = bad_file("Depth Anything depth model", FILE,
                "pretrained.* (DINOv2: cls_token, pos_embed, patch_embed.proj, blocks.<i>.attn.qkv ...) and "
                "depth_head.* "
                "(projects, resize_layers, scratch.layer<1..4>_rn, scratch.refinenet<1..4>, scratch.output_conv1/2)")
_SIZES = ("pretrained.pos_embed", "pretrained.patch_embed.proj.weight", "pretrained.blocks.0.mlp.fc1.weight",
          "depth_head.projects.0.weight", "depth_head.scratch.layer1_rn.weight",
          "depth_head.scratch.output_conv2.0.weight")


def config_from(sd: dict[str, torch.Tensor]) -> Any:
    """The DepthAnythingConfig whose model the file's tensors fill (sizes read from them)."""
    from transformers import DepthAnythingConfig, Dinov2Config

    patch = int(sd["pretrained.patch_embed.proj.weight"].shape[-1])
    hidden = int(sd["pretrained.patch_embed.proj.weight"].shape[0])
    grid = int(round((sd["pretrained.pos_embed"].shape[1] - 1) ** 0.5))
    layers = count_indexed(sd, "pretrained.blocks.")
    mlp = int(sd["pretrained.blocks.0.mlp.fc1.weight"].shape[0])
    backbone = Dinov2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                            mlp_ratio=max(1, mlp // hidden), image_size=grid * patch, patch_size=patch,
                            out_indices=list(range(layers - 3, layers + 1)), apply_layernorm=True,
                            reshape_hidden_states=False)
    return DepthAnythingConfig(
        backbone_config=backbone, patch_size=patch, reassemble_hidden_size=hidden,
        neck_hidden_sizes=[int(sd[f"depth_head.projects.{i}.weight"].shape[0]) for i in range(4)],
        fusion_hidden_size=int(sd["depth_head.scratch.layer1_rn.weight"].shape[0]),
        head_hidden_size=int(sd["depth_head.scratch.output_conv2.0.weight"].shape[0]),
        depth_estimation_type="relative")


_EMBEDDINGS = {"cls_token": "cls_token", "mask_token": "mask_token", "pos_embed": "position_embeddings",
               "patch_embed.proj.weight": "patch_embeddings.projection.weight",
               "patch_embed.proj.bias": "patch_embeddings.projection.bias"}
_BLOCK = (("norm1.", "norm1."), ("norm2.", "norm2."), ("mlp.fc1.", "mlp.fc1."), ("mlp.fc2.", "mlp.fc2."),
          ("attn.proj.", "attention.o_proj."), ("ls1.gamma", "layer_scale1.lambda1"),
          ("ls2.gamma", "layer_scale2.lambda1"))
_HEAD = (("scratch.output_conv1.", "head.conv1."), ("scratch.output_conv2.0.", "head.conv2."),
         ("scratch.output_conv2.2.", "head.conv3."))


def _rename(key: str) -> str | None:
    """One original name -> transformers' (None: no place for it; the fused qkv is split separately)."""
    if key.startswith("pretrained."):
        rest = key[len("pretrained."):]
        if rest in _EMBEDDINGS:
            return "backbone.embeddings." + _EMBEDDINGS[rest]
        if rest.startswith("norm."):
            return "backbone.layernorm." + rest[len("norm."):]
        if rest.startswith("blocks."):
            index, rest = rest[len("blocks."):].split(".", 1)
            for theirs, ours in _BLOCK:
                if rest.startswith(theirs):
                    return f"backbone.encoder.layer.{index}.{ours}{rest[len(theirs):]}"
        return None
    if not key.startswith("depth_head."):
        return None
    rest = key[len("depth_head."):]
    for theirs, ours in _HEAD:
        if rest.startswith(theirs):
            return ours + rest[len(theirs):]
    for i in range(4):
        for theirs, ours in ((f"projects.{i}.", f"neck.reassemble_stage.layers.{i}.projection."),
                             (f"resize_layers.{i}.", f"neck.reassemble_stage.layers.{i}.resize."),
                             (f"scratch.layer{i + 1}_rn.", f"neck.convs.{i}.")):
            if rest.startswith(theirs):
                return ours + rest[len(theirs):]
        refine = f"scratch.refinenet{i + 1}."
        if rest.startswith(refine):  # refinenet4 (the coarsest) is transformers' first fusion layer
            part = rest[len(refine):].replace("out_conv.", "projection.")
            for u in (1, 2):
                part = part.replace(f"resConfUnit{u}.", f"residual_layer{u}.")
            part = part.replace("conv1.", "convolution1.").replace("conv2.", "convolution2.")
            return f"neck.fusion_stage.layers.{3 - i}.{part}"
    return None


def convert(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The original names -> transformers' (each block's fused qkv split into q/k/v), and the keys that have no
    place (another network's, or a V2 / ViT-g variant's)."""
    out: dict[str, torch.Tensor] = {}
    unplaced = []
    for key, value in sd.items():
        if key.startswith("pretrained.blocks.") and ".attn.qkv." in key:
            if key.endswith(".weight"):
                index = key[len("pretrained.blocks."):].split(".", 1)[0]
                split_qkv(out, value, sd.get(key[:-len("weight")] + "bias"),
                          f"backbone.encoder.layer.{index}.attention.")
            continue
        name = _rename(key)
        if name is None:
            unplaced.append(key)
        else:
            out[name] = value
    return out, unplaced


def load(path: Path) -> Any:
    """The network of ``depth_anything_vitl14.pth`` (or a file in its layout, any ViT size) as transformers'
    DepthAnythingForDepthEstimation, fp32, eval, on the CPU. Another network's file is a ValueError naming it."""
    from transformers import DepthAnythingForDepthEstimation

    # the mask token is for training (masked patches); a file without it loses nothing
    return build(path, _SIZES, _bad, convert, lambda sd: DepthAnythingForDepthEstimation(config_from(sd)),
                 optional=("backbone.embeddings.mask_token",))


def predict(model: Any, image: np.ndarray) -> np.ndarray:
    """Relative depth (near = large) of an RGB uint8 image, at the image's size (float32)."""
    h, w = image.shape[:2]
    x = resize_to_multiple(image.astype(np.float32) / 255.0, 518, 14, "lower_bound")
    x = (x - np.array(_MEAN, np.float32)) / np.array(_STD, np.float32)
    device = next(model.parameters()).device
    pixels = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].float().to(device)
    with torch.inference_mode():
        depth = model(pixel_values=pixels).predicted_depth.float()
    depth = torch.nn.functional.interpolate(depth[:, None], size=(h, w), mode="bilinear", align_corners=False)
    return depth[0, 0].cpu().numpy()
