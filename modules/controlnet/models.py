"""ControlNet model files: the ``models/ControlNet`` folder (titles ``name [hash]`` as the extension lists them),
layout and family detection from the keys, loading through our safe reader into diffusers' ``ControlNetModel``,
and a small cache of loaded ones.

Layouts read: lllyasviel's original (``control_model.*``, e.g. ``control_v11p_sd15_canny.pth``), the same without
the prefix (thibaud's SD2.1 files), and diffusers' (``controlnet_cond_embedding.*``: the single
``diffusion_pytorch_model.safetensors`` of a diffusers ControlNet, the SDXL ones of xinsir and diffusers), xinsir's
Union/ProMax (diffusers' ``ControlNetUnionModel``) and T2I-Adapters (diffusers' files, TencentARC's originals). The
config is derived from the weights' shapes, with the attention heads of the checkpoint's own UNet (a ControlNet is
a copy of its encoder), so nothing is fetched and tiny test models load the same way.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from modules.errors import FieldError
from modules.hashing import legacy_model_hash
from modules.models.scan import walk_files
from modules.models.types import ModelFileError, UnknownModelError

log = logging.getLogger(__name__)

EXTENSIONS = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")
LDM_PREFIX = "control_model."
FAMILY_BY_CONTEXT = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
FAMILY_NAMES = {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL", "sdxl_refiner": "SDXL refiner"}


@dataclass(frozen=True)
class ControlNetFile:
    title: str  # "control_v11p_sd15_canny [d14c016b]"
    name: str  # file stem
    path: Path


class ControlNetRegistry:
    """The ControlNet files of the folders (``models/ControlNet``, ``--controlnet-dir``, the setting
    ``control_net_models_path``), in the extension's order (by file name); a name found twice keeps the first."""

    def __init__(self, dirs: Sequence[str | Path]) -> None:
        self.dirs = [Path(os.path.abspath(d)) for d in dirs]
        self._lock = threading.Lock()
        self._files: dict[str, ControlNetFile] = {}
        self.extra_dir: str | None = None  # the setting control_net_models_path, as last given
        self.refresh()

    def refresh(self, extra_dir: str | None = None) -> list[ControlNetFile]:
        """Rescan the folders (and ``extra_dir``, the setting's folder, remembered for later rescans)."""
        if extra_dir is not None:
            self.extra_dir = extra_dir or None
        dirs = list(self.dirs) + ([Path(os.path.abspath(self.extra_dir))] if self.extra_dir else [])
        found: dict[str, ControlNetFile] = {}
        for root in dirs:
            if not root.is_dir():
                continue
            files = walk_files(root, lambda n: n.lower().endswith(EXTENSIONS))
            for f in sorted(files, key=lambda f: f.path.name):
                if f.rel.split("/", 1)[0].lower() == "annotators":  # the preprocessors' model folders
                    continue
                if f.stat is None:
                    log.warning("skipping ControlNet %s: %s", f.path, f.problem)
                    continue
                stem = f.path.name.rsplit(".", 1)[0]
                if stem == "None":
                    continue
                title = f"{stem} [{legacy_model_hash(f.path)}]"
                if title not in found:
                    found[title] = ControlNetFile(title, stem, f.path)
        with self._lock:
            self._files = found
        return list(found.values())

    def titles(self) -> list[str]:
        with self._lock:
            return list(self._files)

    def find(self, model: str) -> ControlNetFile | None:
        """The extension's lookup: the exact title, else the file name (any case, without the hash), else the
        shortest name containing it."""
        with self._lock:
            files = dict(self._files)
        if model in files:
            return files[model]
        wanted = model.lower().split(" [")[0]
        by_name = {f.name.lower(): f for f in files.values()}
        if wanted in by_name:
            return by_name[wanted]
        partial = sorted((n for n in by_name if wanted and wanted in n), key=len)
        return by_name[partial[0]] if partial else None

    def resolve(self, model: str, where: str) -> ControlNetFile:
        if model in ("", "None"):
            raise FieldError(where, "no ControlNet model selected", self.titles())
        found = self.find(model)
        if found is None:  # a file added since the last scan is found without pressing Refresh
            self.refresh()
            found = self.find(model)
        if found is None:
            raise FieldError(where, f"model not found: {model}", self.titles())
        return found


# ---------------------------------------------------------------------------------------------------------------------
# Layout detection and conversion


def layout_of(keys: Mapping[str, Any], path: Path) -> str:
    """"ldm" (lllyasviel's, prefixed or not) or "diffusers"; anything else is a clear error."""
    if any(k.startswith(LDM_PREFIX) for k in keys):
        return "ldm"
    if "input_hint_block.0.weight" in keys and any(k.startswith("zero_convs.") for k in keys):
        return "ldm"
    union = any(k.startswith(("task_embedding", "transformer_layes.")) for k in keys)
    if union and any(k.startswith("controlnet_cond_embedding.") for k in keys):
        return "union"
    if union:
        raise UnknownModelError(path, "a ControlNet Union model in a layout other than diffusers', which this build "
                                      "does not read yet")
    if any(k.startswith("controlnet_cond_embedding.") for k in keys):
        return "diffusers"
    if any(k.startswith("adapter.body.") for k in keys):
        return "t2i"  # diffusers' T2IAdapter
    if any(k.startswith("body.0.block1.") for k in keys) and "conv_in.weight" in keys:
        if any(".skep." in k for k in keys):
            raise UnknownModelError(path, "a T2I CoAdapter/skip-convolution adapter, which this build does not run")
        return "t2i-original"  # TencentARC's t2iadapter_*_sd14v1.pth / sd15v2
    if any(k.startswith(("style_embedding", "ln_pre.")) for k in keys):
        raise UnknownModelError(path, "a T2I style adapter, which this build does not run yet")
    if any(k.startswith(("lora_controlnet", "lllite_")) for k in keys):
        raise UnknownModelError(path, "a Control-LoRA / ControlLLLite model, which this build does not run yet")
    if any(k.startswith(("model.diffusion_model.", "first_stage_model.")) for k in keys):
        raise UnknownModelError(path, "a Stable Diffusion checkpoint, not a ControlNet (put it in "
                                      "models/Stable-diffusion)")
    raise UnknownModelError(path, "not a ControlNet model (no control_model.*, input_hint_block or "
                                  "controlnet_cond_embedding weights)")


T2I_RES_BLOCKS = 2  # every released TencentARC adapter: two resnet blocks a level


def t2i_to_diffusers(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """TencentARC's original full adapter (``body.{level * 2 + j}.block1``, ``in_conv`` on a level's first
    block, pixel-unshuffled ``conv_in``) -> diffusers' ``T2IAdapter`` names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.startswith("conv_in."):
            out["adapter." + key] = value
            continue
        part = key.split(".")
        index, rest = int(part[1]), ".".join(part[2:])
        level, block = divmod(index, T2I_RES_BLOCKS)
        if rest.startswith("in_conv."):
            out[f"adapter.body.{level}.{rest}"] = value
        else:
            out[f"adapter.body.{level}.resnets.{block}.{rest}"] = value
    return out


def t2i_config(sd: Mapping[str, torch.Tensor], base_family: str, path: Path) -> dict[str, Any]:
    """A ``T2IAdapter`` config from its weights and the checkpoint's family (the SDXL adapter has the SD one's
    layout with a 16x pixel unshuffle: SDXL's first UNet level is at 1/8 resolution but its features start at 1/16)."""
    levels = _count(sd, "adapter.body.", 2)
    channels = [int(sd[f"adapter.body.{i}.resnets.0.block1.weight"].shape[0]) for i in range(levels)]
    light = any(".out_conv." in k for k in sd)
    xl = base_family.startswith("sdxl")
    factor = 16 if xl else 8
    pixels = int(sd["adapter.conv_in.weight"].shape[1])
    in_channels, rest = divmod(pixels, factor * factor)
    if rest or in_channels not in (1, 3):
        other = "SD1.x/SD2.x" if xl else "SDXL"
        raise UnknownModelError(path, f"a T2I-Adapter made for {other} (its input has {pixels} channels)")
    if light:
        channels = [int(sd[f"adapter.body.{i}.out_conv.weight"].shape[0]) for i in range(levels)]
    return {"in_channels": in_channels, "channels": channels, "num_res_blocks": _count(sd, "adapter.body.0.resnets.", 4),
            "downscale_factor": factor,
            "adapter_type": "light_adapter" if light else "full_adapter_xl" if xl else "full_adapter"}


def _ldm_layers_per_block(sd: Mapping[str, torch.Tensor]) -> int:
    """From the first downsampling op: input_blocks 1..n are a level's layers, then its op."""
    ops = sorted(int(k.split(".")[1]) for k in sd if k.startswith("input_blocks.") and ".0.op.weight" in k)
    if ops:
        return ops[0] - 1
    blocks = {int(k.split(".")[1]) for k in sd if k.startswith("input_blocks.")}
    return max(blocks) if blocks else 2


def to_diffusers(sd: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """The ControlNet's weights in diffusers' names, whatever the file's layout."""
    layout = layout_of(sd, path)
    if layout in ("diffusers", "union", "t2i"):
        return sd
    if layout == "t2i-original":
        return t2i_to_diffusers(sd)
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    inner = {k[len(LDM_PREFIX):]: v for k, v in sd.items() if k.startswith(LDM_PREFIX)} or sd
    converted = convert_controlnet_checkpoint(inner, {"layers_per_block": _ldm_layers_per_block(inner)})
    for ldm, ours in (("label_emb.0.0", "add_embedding.linear_1"), ("label_emb.0.2", "add_embedding.linear_2")):
        for leaf in ("weight", "bias"):  # SDXL vector conditioning, which diffusers' converter leaves out
            if f"{ldm}.{leaf}" in inner:
                converted[f"{ours}.{leaf}"] = inner[f"{ldm}.{leaf}"]
    return {k: v for k, v in converted.items() if v is not None}


def _count(sd: Mapping[str, Any], prefix: str, index_at: int) -> int:
    found = {int(k.split(".")[index_at]) for k in sd if k.startswith(prefix) and k.split(".")[index_at].isdigit()}
    return max(found) + 1 if found else 0


def config_from_weights(sd: Mapping[str, torch.Tensor], unet_config: Mapping[str, Any]) -> dict[str, Any]:
    """A ``ControlNetModel`` config from diffusers-named weights; heads (not visible in weights) from the UNet's
    config for levels of the UNet's widths, else 64 channels a head (SD2/SDXL)."""
    levels = _count(sd, "down_blocks.", 1)
    channels = [int(sd[f"down_blocks.{i}.resnets.0.conv1.weight"].shape[0]) for i in range(levels)]
    layers = _count(sd, "down_blocks.0.resnets.", 3)
    has_attn = [any(k.startswith(f"down_blocks.{i}.attentions.") for k in sd) for i in range(levels)]
    transformer_layers = [_count(sd, f"down_blocks.{i}.attentions.0.transformer_blocks.", 5) or 1
                          for i in range(levels)]
    context = next(int(v.shape[1]) for k, v in sd.items() if k.endswith("attn2.to_k.weight"))
    proj = next((v for k, v in sd.items() if k.endswith("attentions.0.proj_in.weight")), None)
    unet_heads = unet_config.get("num_attention_heads") or unet_config.get("attention_head_dim")
    unet_channels = list(unet_config.get("block_out_channels", []))
    heads: list[int] = []
    for i, width in enumerate(channels):
        if isinstance(unet_heads, int) and channels == unet_channels:
            heads.append(unet_heads)
        elif isinstance(unet_heads, (list, tuple)) and i < len(unet_heads) and unet_channels[i:i + 1] == [width]:
            heads.append(int(unet_heads[i]))
        else:
            heads.append(max(width // 64, 1))
    cond_blocks = _count(sd, "controlnet_cond_embedding.blocks.", 2)
    embedding_channels = [int(sd["controlnet_cond_embedding.conv_in.weight"].shape[0])]
    embedding_channels += [int(sd[f"controlnet_cond_embedding.blocks.{j}.weight"].shape[0])
                           for j in range(1, cond_blocks, 2)]
    config: dict[str, Any] = {
        "in_channels": int(sd["conv_in.weight"].shape[1]),
        "conditioning_channels": int(sd["controlnet_cond_embedding.conv_in.weight"].shape[1]),
        "conditioning_embedding_out_channels": tuple(embedding_channels),
        "block_out_channels": tuple(channels),
        "layers_per_block": layers,
        "down_block_types": tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in has_attn),
        "cross_attention_dim": context,
        "attention_head_dim": heads[0] if len(set(heads)) == 1 and isinstance(unet_heads, int) else tuple(heads),
        "use_linear_projection": proj is not None and proj.ndim == 2,
        "transformer_layers_per_block": tuple(transformer_layers),
        "norm_num_groups": int(unet_config.get("norm_num_groups", 32)),
        "mid_block_type": "UNetMidBlock2DCrossAttn" if any(k.startswith("mid_block.attentions.") for k in sd)
        else "UNetMidBlock2D",
    }
    if "task_embedding" in sd:  # Union/ProMax: the control types' embeddings and the fusing transformer
        del config["mid_block_type"]  # always the cross-attention one (not a parameter of the Union model)
        task = sd["task_embedding"]
        config.update(num_control_type=int(task.shape[0]), num_trans_channel=int(task.shape[1]),
                      num_trans_head=8 if int(task.shape[1]) % 8 == 0 else 1,
                      num_trans_layer=_count(sd, "transformer_layes.", 1) or 1,
                      num_proj_channel=int(sd["spatial_ch_projs.weight"].shape[0]))
    if "add_embedding.linear_1.weight" in sd:
        config.update(addition_embed_type="text_time",
                      addition_time_embed_dim=int(unet_config.get("addition_time_embed_dim") or 256),
                      projection_class_embeddings_input_dim=int(sd["add_embedding.linear_1.weight"].shape[1]))
    return config


def family_of(sd: Mapping[str, torch.Tensor]) -> str:
    """"sd1", "sd2" or "sdxl": by the real models' context widths, else by structure (SDXL has the vector
    embedding, SD2 linear attention projections, SD1 convolutions), which also tells tiny test models apart."""
    context = next((int(v.shape[1]) for k, v in sd.items() if k.endswith("attn2.to_k.weight")), 0)
    if context in FAMILY_BY_CONTEXT:
        return FAMILY_BY_CONTEXT[context]
    if "add_embedding.linear_1.weight" in sd:
        return "sdxl"
    proj = next((v for k, v in sd.items() if k.endswith("proj_in.weight")), None)
    return "sd2" if proj is not None and proj.ndim == 2 else "sd1"


def check_fits(config: Mapping[str, Any], unet_config: Mapping[str, Any], family: str, base_family: str,
               title: str, where: str) -> None:
    """A ControlNet made for another family than the checkpoint is a clear error (not a shape error mid-step)."""
    same = (int(config["cross_attention_dim"]) == int(unet_config.get("cross_attention_dim") or 0)
            and tuple(config["block_out_channels"]) == tuple(unet_config.get("block_out_channels", ()))[
                :len(config["block_out_channels"])]
            and ("addition_embed_type" in config) == (unet_config.get("addition_embed_type") == "text_time"))
    if not same:
        made_for = FAMILY_NAMES.get(family, "another model family")
        raise FieldError(where, f"ControlNet {title} is made for {made_for}; the loaded checkpoint is "
                                f"{FAMILY_NAMES.get(base_family, base_family)}. Choose a ControlNet of its family")


# ---------------------------------------------------------------------------------------------------------------------
# Loading and caching


@dataclass
class LoadedControlNet:
    title: str
    family: str
    net: Any  # diffusers ControlNetModel (or ControlNetUnionModel)
    device: torch.device
    dtype: torch.dtype
    offloaded: bool = False  # weights in CPU memory, brought to ``device`` layer by layer

    @property
    def is_adapter(self) -> bool:
        """A T2I-Adapter: features from the hint alone, added inside the UNet's down blocks."""
        return self.net.__class__.__name__ == "T2IAdapter"

    @property
    def union_types(self) -> int:
        """How many control types a Union model knows (0: not a Union model)."""
        return int(getattr(self.net.config, "num_control_type", 0) or 0) if self.net.__class__.__name__ == \
            "ControlNetUnionModel" else 0


class ControlNetCache:
    """Loaded ControlNets, at most ``limit`` (the setting ``control_net_model_cache_size``), least recently used
    dropped first. Keyed by file, modification time and the base model's config, device and dtype."""

    def __init__(self, limit: int = 2) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[Any, ...], LoadedControlNet] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, file: ControlNetFile, unet: Any, base_family: str, device: torch.device, dtype: torch.dtype,
            where: str, limit: int | None = None, offload: bool = False) -> LoadedControlNet:
        """The loaded ControlNet; ``offload``: its weights stay in CPU memory and come to ``device`` layer by
        layer (the checkpoint's ``--lowvram``, or the unit's Low VRAM)."""
        stat = file.path.stat()
        unet_config = dict(unet.config)
        key = (str(file.path), stat.st_mtime_ns, stat.st_size, repr(sorted(unet_config.items())), str(device),
               str(dtype), offload)
        with self._lock:
            if limit is not None:
                self.limit = max(1, int(limit))
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit
        loaded = load(file, unet_config, base_family, device, dtype, where, offload)
        with self._lock:
            self._entries[key] = loaded
            while len(self._entries) > self.limit:
                self._entries.popitem(last=False)
        return loaded

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def load(file: ControlNetFile, unet_config: Mapping[str, Any], base_family: str, device: torch.device,
         dtype: torch.dtype, where: str, offload: bool = False) -> LoadedControlNet:
    """Read, convert, check against the checkpoint's UNet and build the ControlNet (offline)."""
    from diffusers import ControlNetModel, ControlNetUnionModel, T2IAdapter

    from modules.models import formats
    from modules.models.loader import assign_weights, empty_module

    try:
        sd = formats.load_state_dict(file.path)
        weights = to_diffusers(sd, file.path)
        adapter = any(k.startswith("adapter.body.") for k in weights)
        if adapter:
            family = base_family
            config = t2i_config(weights, base_family, file.path)
        else:
            family = family_of(weights)
            config = config_from_weights(weights, unet_config)
    except ModelFileError as err:
        raise FieldError(where, str(err)) from None
    except (KeyError, StopIteration, IndexError) as err:
        raise FieldError(where, f"{file.title} is not a ControlNet this build can read (missing {err})") from None
    if adapter:
        kind: Any = T2IAdapter
        if list(config["channels"][:len(unet_config.get("block_out_channels", ()))]) != \
                list(unet_config.get("block_out_channels", ()))[:len(config["channels"])]:
            raise FieldError(where, f"T2I-Adapter {file.title} does not fit the loaded checkpoint's UNet "
                                    f"(features of {config['channels']} channels for levels of "
                                    f"{list(unet_config.get('block_out_channels', ()))})")
    else:
        check_fits(config, unet_config, family, base_family, file.title, where)
        kind = ControlNetUnionModel if "num_control_type" in config else ControlNetModel
    net = empty_module(lambda: kind(**config))
    try:
        what = "T2I-Adapter" if adapter else "ControlNet"
        shape = config.get("block_out_channels", config.get("channels"))
        unused = assign_weights(file.path, net, weights, what, f"a {what} of {list(shape)} channels")
    except ModelFileError as err:
        raise FieldError(where, str(err)) from None
    if unused:
        log.info("ControlNet %s: %d tensors not used", file.title, unused)
    net.eval().requires_grad_(False)
    if offload:  # as the memory mode does for the UNet: leaf-level group offloading, prefetched on CUDA
        from diffusers.hooks import apply_group_offloading

        torch.nn.Module.to(net, device="cpu", dtype=dtype)
        stream = device.type == "cuda"
        apply_group_offloading(net, onload_device=device, offload_device=torch.device("cpu"),
                               offload_type="leaf_level", use_stream=stream, non_blocking=stream)
    else:
        torch.nn.Module.to(net, device=device, dtype=dtype)
    return LoadedControlNet(file.title, family, net, device, dtype, offloaded=offload)
