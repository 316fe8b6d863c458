"""Tiny ControlNets for the tiny test checkpoints, written in the layouts users download.

* ``ldm``: lllyasviel's original layout (``control_model.*``, as in ``control_v11p_sd15_canny.pth``), converted
  here from the diffusers model by our own reverse mapping;
* ``ldm-bare``: the same keys without the prefix (thibaud's SD2.1 ControlNets);
* ``diffusers``: a diffusers ControlNet's ``diffusion_pytorch_model.safetensors`` as a single file;
* ``union``: xinsir's ControlNet Union/ProMax (diffusers layout, eight control types).

The ControlNet copies the tiny UNet's encoder (as real ones copy SD's), with random, non-zero weights (real zero
convolutions start at zero; random ones make the effect visible in a two-step test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tests.support import ldm_layout as L
from tests.support.tiny_checkpoints import _fill_, tiny_spec

LAYOUTS = ("ldm", "ldm-bare", "diffusers", "union")
UNION_TYPES = 8  # ProMax: OpenPose, Depth, Soft Edge, Hard Edge, Normal Map, Segmentation, Tile, Inpaint
# Four embedding levels: lllyasviel's hint block has 7 convolutions (0, 2, ..., 12) and the last at index 14.
EMBEDDING_CHANNELS = (4, 8, 8, 16)


def controlnet_config(family: str) -> dict[str, Any]:
    unet = tiny_spec(family).unet
    keys = ("block_out_channels", "layers_per_block", "cross_attention_dim", "attention_head_dim",
            "use_linear_projection", "transformer_layers_per_block", "addition_embed_type",
            "addition_time_embed_dim", "projection_class_embeddings_input_dim")
    config = {k: unet[k] for k in keys if k in unet}
    config["down_block_types"] = list(unet["down_block_types"])
    config["in_channels"] = 4
    config["conditioning_embedding_out_channels"] = EMBEDDING_CHANNELS
    return config


def build_tiny_controlnet(family: str, seed: int = 1, union: bool = False) -> Any:
    from diffusers import ControlNetModel, ControlNetUnionModel

    if union:
        width = controlnet_config(family)["block_out_channels"][0]
        return _fill_(ControlNetUnionModel(**controlnet_config(family), num_control_type=UNION_TYPES,
                                           num_trans_channel=width, num_trans_head=8, num_proj_channel=width), seed)
    return _fill_(ControlNetModel(**controlnet_config(family)), seed)


def controlnet_to_ldm(state_dict: dict[str, Tensor], config: dict[str, Any], prefix: str = "control_model.") \
        -> dict[str, Tensor]:
    """diffusers ControlNetModel keys -> lllyasviel's ``ControlNet`` (cldm) keys."""
    unet_like = dict(config, up_block_types=["UpBlock2D"] * len(config["block_out_channels"]))
    table = {k: v for k, v in L._unet_prefix_map(unet_like).items() if not k.startswith("up_blocks.")}
    embedding = len(config["conditioning_embedding_out_channels"])
    table["controlnet_cond_embedding.conv_in."] = ("input_hint_block.0.", "same")
    for j in range(2 * (embedding - 1)):
        table[f"controlnet_cond_embedding.blocks.{j}."] = (f"input_hint_block.{2 * (j + 1)}.", "same")
    table["controlnet_cond_embedding.conv_out."] = (f"input_hint_block.{2 * (2 * (embedding - 1) + 1)}.", "same")
    for i in range(len({k.split(".")[1] for k in state_dict if k.startswith("controlnet_down_blocks.")})):
        table[f"controlnet_down_blocks.{i}."] = (f"zero_convs.{i}.0.", "same")
    table["controlnet_mid_block."] = ("middle_block_out.0.", "same")
    out = L.remap_prefixes(state_dict, table, prefix, "controlnet_to_ldm")
    return {k: v.contiguous() for k, v in out.items()}


def tiny_controlnet_state_dict(family: str, layout: str = "ldm", seed: int = 1) -> dict[str, Tensor]:
    net = build_tiny_controlnet(family, seed, union=layout == "union")
    sd = {k: v.detach().clone() for k, v in net.state_dict().items()}
    if layout in ("diffusers", "union"):
        return sd
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}")
    return controlnet_to_ldm(sd, controlnet_config(family), prefix="control_model." if layout == "ldm" else "")


def write_tiny_controlnet(directory: Path, name: str, family: str = "sd1", layout: str = "ldm", seed: int = 1,
                          fmt: str = "safetensors") -> Path:
    """``<directory>/<name>.<fmt>``: "safetensors" or "pth" (a zip pickle of ``{"state_dict": ...}``, as
    lllyasviel's files are)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sd = tiny_controlnet_state_dict(family, layout, seed)
    path = directory / f"{name}.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save(sd, path)  # lllyasviel's .pth files hold the bare state dict
    return path


def build_tiny_t2i_adapter(family: str = "sd1", seed: int = 3, light: bool = False) -> Any:
    """A T2I-Adapter whose feature levels match the tiny UNet's (TencentARC's full adapter, or the light one of
    the colour adapter)."""
    from diffusers import T2IAdapter

    channels = list(tiny_spec(family).unet["block_out_channels"])
    xl = family.startswith("sdxl")
    kind = "light_adapter" if light else "full_adapter_xl" if xl else "full_adapter"
    return _fill_(T2IAdapter(in_channels=3, channels=channels, num_res_blocks=2, downscale_factor=16 if xl else 8,
                             adapter_type=kind), seed)


def t2i_to_original(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """diffusers' full T2IAdapter keys -> TencentARC's original ones (``body.{level * 2 + block}``)."""
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        part = key.split(".")
        if part[1] == "conv_in":
            out[".".join(part[1:])] = value
        elif part[3] == "in_conv":
            out[f"body.{int(part[2]) * 2}.{'.'.join(part[3:])}"] = value
        else:  # adapter.body.L.resnets.J.rest
            out[f"body.{int(part[2]) * 2 + int(part[4])}.{'.'.join(part[5:])}"] = value
    return out


def write_tiny_t2i_adapter(directory: Path, name: str, family: str = "sd1", layout: str = "diffusers",
                           seed: int = 3) -> Path:
    """``layout`` "diffusers" (a diffusers T2IAdapter as one .safetensors) or "original" (TencentARC's
    ``t2iadapter_*_sd14v1.pth``: a bare state dict)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().clone().contiguous() for k, v in build_tiny_t2i_adapter(family, seed).state_dict().items()}
    if layout == "original":
        path = directory / f"{name}.pth"
        torch.save(t2i_to_original(sd), path)
        return path
    from safetensors.torch import save_file

    path = directory / f"{name}.safetensors"
    save_file(sd, str(path))
    return path


def write_tiny_depth_anything(directory: Path, name: str = "depth-anything-small-hf", seed: int = 4) -> Path:
    """A tiny Depth Anything model folder as the Hugging Face hub lays it out (config.json, model.safetensors,
    preprocessor_config.json), for the depth_anything preprocessor."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessorPil

    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            image_size=56, patch_size=14, out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8)
    torch.manual_seed(seed)
    folder = Path(directory) / name
    DepthAnythingForDepthEstimation(config).eval().save_pretrained(folder)
    DPTImageProcessorPil(size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
                         do_pad=False, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                         resample=3).save_pretrained(folder)
    return folder
