"""Tiny random Stable Diffusion checkpoints in the ORIGINAL single-file layout, with their original-format yaml.

``write_tiny_checkpoint("sd1", tmp_path, "tiny")`` writes ``tiny.safetensors`` (CompVis/LDM or SGM key layout, what
users drop into ``models/Stable-diffusion``) and ``tiny.yaml`` beside it (the schema of A1111's v1-inference.yaml,
v2-inference(-v).yaml, sd_xl_base.yaml, ...), so tests load them through the real loader.

Real block layouts, tiny widths (all multiples of 32: LDM hard-codes GroupNorm(32) and diffusers defaults to 32 groups):

* UNet: block_out_channels (32, 64, 64) [refiner: (32, 64, 64, 64)], 2 res blocks per level, time embedding 128.
* VAE: block_out_channels (32, 32, 64, 64), 2 res blocks, 4 latent channels: scale factor 8 like real SD,
  so 64x64 images <-> 8x8 latents.
* Text encoders: vocab 49408 and 77 positions (real tokenizer ids work), 2 layers, 4x MLP,
  heads = max(1, hidden // 64) = 1. CLIP-L style: hidden 32, quick_gelu. OpenCLIP style: hidden 64, gelu.

Weights are filled from a seeded generator in sorted-name order, so a (family, seed) pair always gives the same
bytes for a given torch version. ``tiny_spec`` and ``tiny_diffusers_state_dicts`` tell tests exactly what the loader
should rebuild.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tests.support import ldm_layout as L

FAMILIES = ("sd1", "sd1-inpainting", "sd2", "sd2-v", "sdxl", "sdxl-inpainting", "sdxl-refiner")

CLIP_VOCAB = 49408
CLIP_POSITIONS = 77
LINEAR_START, LINEAR_END, TIMESTEPS = 0.00085, 0.012, 1000
SDXL_TIME_EMBED_DIM = 8  # real SDXL: 256 (ConcatTimestepEmbedderND outdim)


@dataclass(frozen=True)
class TextEncoderSpec:
    """One text encoder: how the loader should build it and where it sits in the file."""

    role: str  # diffusers pipeline slot: "text_encoder" or "text_encoder_2"
    style: str  # "clip_l" (OpenAI CLIP-L layout) or "open_clip" (OpenCLIP layout)
    prefix: str  # module prefix in the original checkpoint
    hidden_size: int
    num_layers: int  # layers of the diffusers model
    projection_dim: int | None = None  # CLIPTextModelWithProjection when set
    file_extra_layers: int = 0  # SD2: the file holds one more resblock than is used (penultimate layer)
    file_text_projection: bool = False  # SD2: unused text_projection present in the file anyway

    @property
    def num_heads(self) -> int:
        return max(1, self.hidden_size // 64)

    def hf_config(self, num_layers: int | None = None) -> Any:
        from transformers import CLIPTextConfig

        return CLIPTextConfig(
            vocab_size=CLIP_VOCAB,
            hidden_size=self.hidden_size,
            intermediate_size=4 * self.hidden_size,
            num_hidden_layers=self.num_layers if num_layers is None else num_layers,
            num_attention_heads=self.num_heads,
            max_position_embeddings=CLIP_POSITIONS,
            hidden_act="quick_gelu" if self.style == "clip_l" else "gelu",
            projection_dim=self.projection_dim or self.hidden_size,
        )


@dataclass(frozen=True)
class TinySpec:
    family: str
    unet: dict[str, Any]  # UNet2DConditionModel kwargs
    vae: dict[str, Any]  # AutoencoderKL kwargs
    text_encoders: tuple[TextEncoderSpec, ...]
    original_config: dict[str, Any]  # content of <name>.yaml
    prediction_type: str = "epsilon"
    schedule_buffers: bool = True  # LDM (SD1/SD2) files carry betas/alphas_cumprod/...; SGM (SDXL) files do not
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------------
# Specs

_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[32, 32, 64, 64],
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
)
_DDCONFIG = dict(
    double_z=True,
    z_channels=4,
    resolution=256,
    in_channels=3,
    out_ch=3,
    ch=32,
    ch_mult=[1, 1, 2, 2],
    num_res_blocks=2,
    attn_resolutions=[],
    dropout=0.0,
)


def _first_stage(ldm_target: str = "ldm.models.autoencoder.AutoencoderKL") -> dict[str, Any]:
    return {
        "target": ldm_target,
        "params": {
            "embed_dim": 4,
            "monitor": "val/rec_loss",
            "ddconfig": dict(_DDCONFIG, ch_mult=list(_DDCONFIG["ch_mult"])),
            "lossconfig": {"target": "torch.nn.Identity"},
        },
    }


def _ldm_config(family: str, unet_params: dict[str, Any], cond_stage: dict[str, Any]) -> dict[str, Any]:
    inpaint = family.endswith("inpainting")
    params: dict[str, Any] = {
        "linear_start": LINEAR_START,
        "linear_end": LINEAR_END,
        "num_timesteps_cond": 1,
        "log_every_t": 200,
        "timesteps": TIMESTEPS,
        "first_stage_key": "jpg",
        "cond_stage_key": "txt",
        "image_size": 96 if family == "sd2-v" else 64,
        "channels": 4,
        "cond_stage_trainable": False,
        "conditioning_key": "hybrid" if inpaint else "crossattn",
        "monitor": "val/loss_simple_ema",
        "scale_factor": 0.18215,
        "use_ema": False,
    }
    if family == "sd2-v":
        params["parameterization"] = "v"
    if inpaint:
        params["finetune_keys"] = None
    params["unet_config"] = {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": unet_params}
    params["first_stage_config"] = _first_stage()
    params["cond_stage_config"] = cond_stage
    target = "ldm.models.diffusion.ddpm.LatentInpaintDiffusion" if inpaint else "ldm.models.diffusion.ddpm.LatentDiffusion"
    return {"model": {"base_learning_rate": 1.0e-04, "target": target, "params": params}}


def _sgm_config(network_params: dict[str, Any], embedders: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": {
            "target": "sgm.models.diffusion.DiffusionEngine",
            "params": {
                "scale_factor": 0.13025,
                "disable_first_stage_autocast": True,
                "denoiser_config": {
                    "target": "sgm.modules.diffusionmodules.denoiser.DiscreteDenoiser",
                    "params": {
                        "num_idx": TIMESTEPS,
                        "weighting_config": {"target": "sgm.modules.diffusionmodules.denoiser_weighting.EpsWeighting"},
                        "scaling_config": {"target": "sgm.modules.diffusionmodules.denoiser_scaling.EpsScaling"},
                        "discretization_config": {
                            "target": "sgm.modules.diffusionmodules.discretizer.LegacyDDPMDiscretization"
                        },
                    },
                },
                "network_config": {"target": "sgm.modules.diffusionmodules.openaimodel.UNetModel", "params": network_params},
                "conditioner_config": {"target": "sgm.modules.GeneralConditioner", "params": {"emb_models": embedders}},
                "first_stage_config": _first_stage("sgm.models.autoencoder.AutoencoderKLInferenceWrapper"),
            },
        }
    }


def _time_embedders(keys: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "is_trainable": False,
            "input_key": key,
            "target": "sgm.modules.encoders.modules.ConcatTimestepEmbedderND",
            "params": {"outdim": SDXL_TIME_EMBED_DIM},
        }
        for key in keys
    ]


def _bigg_embedder() -> dict[str, Any]:
    return {
        "is_trainable": False,
        "input_key": "txt",
        "target": "sgm.modules.encoders.modules.FrozenOpenCLIPEmbedder2",
        "params": {
            "arch": "ViT-bigG-14",
            "version": "laion2b_s39b_b160k",
            "freeze": True,
            "layer": "penultimate",
            "always_return_pooled": True,
            "legacy": False,
        },
    }


def tiny_spec(family: str) -> TinySpec:
    """Everything about one tiny family: diffusers configs, text encoders and the original yaml."""
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; expected one of {FAMILIES}")
    inpaint = family.endswith("inpainting")
    in_ch = 9 if inpaint else 4
    vae = copy.deepcopy(_VAE)
    vae["scaling_factor"] = 0.13025 if family.startswith("sdxl") else 0.18215

    if family in ("sd1", "sd1-inpainting", "sd2", "sd2-v"):
        sd2 = family.startswith("sd2")
        if sd2:
            te = TextEncoderSpec(
                "text_encoder", "open_clip", L.SD2_OPEN_CLIP_PREFIX, 64, 2, file_extra_layers=1, file_text_projection=True
            )
        else:
            te = TextEncoderSpec("text_encoder", "clip_l", L.SD1_CLIP_PREFIX, 32, 2)
        unet = dict(
            in_channels=in_ch,
            out_channels=4,
            down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            block_out_channels=[32, 64, 64],
            layers_per_block=2,
            cross_attention_dim=te.hidden_size,
            # diffusers' legacy name: for SD this is the number of heads (SD1: num_heads; SD2: channels // 32 per level)
            attention_head_dim=[1, 2, 2] if sd2 else 2,
            use_linear_projection=sd2,
            transformer_layers_per_block=1,
        )
        unet_params: dict[str, Any] = {
            "use_checkpoint": True,
            "image_size": 32,
            "in_channels": in_ch,
            "out_channels": 4,
            "model_channels": 32,
            "attention_resolutions": [2, 1],
            "num_res_blocks": 2,
            "channel_mult": [1, 2, 2],
        }
        if sd2:
            unet_params |= {"num_head_channels": 32, "use_spatial_transformer": True, "use_linear_in_transformer": True}
            cond = {
                "target": "ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder",
                "params": {"freeze": True, "layer": "penultimate"},
            }
        else:
            unet_params |= {"num_heads": 2, "use_spatial_transformer": True}
            cond = {"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder"}
        unet_params |= {"transformer_depth": 1, "context_dim": te.hidden_size, "legacy": False}
        return TinySpec(
            family,
            unet,
            vae,
            (te,),
            _ldm_config(family, unet_params, cond),
            prediction_type="v_prediction" if family == "sd2-v" else "epsilon",
        )

    if family in ("sdxl", "sdxl-inpainting"):
        te1 = TextEncoderSpec("text_encoder", "clip_l", L.SDXL_CLIP_L_PREFIX, 32, 2)
        te2 = TextEncoderSpec("text_encoder_2", "open_clip", L.SDXL_OPEN_CLIP_PREFIX, 64, 2, projection_dim=64)
        context = te1.hidden_size + te2.hidden_size
        adm = te2.projection_dim + 6 * SDXL_TIME_EMBED_DIM  # pooled bigG + (orig size, crop, target size) x 2 each
        unet = dict(
            in_channels=in_ch,
            out_channels=4,
            down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            block_out_channels=[32, 64, 64],
            layers_per_block=2,
            cross_attention_dim=context,
            attention_head_dim=[1, 2, 2],
            use_linear_projection=True,
            transformer_layers_per_block=[1, 1, 2],
            addition_embed_type="text_time",
            addition_time_embed_dim=SDXL_TIME_EMBED_DIM,
            projection_class_embeddings_input_dim=adm,
        )
        network = {
            "adm_in_channels": adm,
            "num_classes": "sequential",
            "use_checkpoint": True,
            "in_channels": in_ch,
            "out_channels": 4,
            "model_channels": 32,
            "attention_resolutions": [4, 2],
            "num_res_blocks": 2,
            "channel_mult": [1, 2, 2],
            "num_head_channels": 32,
            "use_spatial_transformer": True,
            "use_linear_in_transformer": True,
            "transformer_depth": [1, 1, 2],  # the first is unused: level 0 has no attention (as in sd_xl_base.yaml)
            "context_dim": context,
            "spatial_transformer_attn_type": "softmax-xformers",
            "legacy": False,
        }
        clip_l = {
            "is_trainable": False,
            "input_key": "txt",
            "target": "sgm.modules.encoders.modules.FrozenCLIPEmbedder",
            "params": {"layer": "hidden", "layer_idx": te1.num_layers - 1},  # penultimate, like layer_idx 11 of 12
        }
        embedders = [clip_l, _bigg_embedder()] + _time_embedders(
            ["original_size_as_tuple", "crop_coords_top_left", "target_size_as_tuple"]
        )
        return TinySpec(family, unet, vae, (te1, te2), _sgm_config(network, embedders), schedule_buffers=False)

    # sdxl-refiner: bigG only (in text_encoder_2), aesthetic-score conditioning, 4 levels
    te2 = TextEncoderSpec("text_encoder_2", "open_clip", L.SDXL_REFINER_OPEN_CLIP_PREFIX, 64, 2, projection_dim=64)
    adm = te2.projection_dim + 5 * SDXL_TIME_EMBED_DIM  # pooled + (orig size, crop) x 2 + aesthetic score
    unet = dict(
        in_channels=4,
        out_channels=4,
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        block_out_channels=[32, 64, 64, 64],
        layers_per_block=2,
        cross_attention_dim=te2.hidden_size,
        attention_head_dim=[1, 2, 2, 2],
        use_linear_projection=True,
        transformer_layers_per_block=1,
        addition_embed_type="text_time",
        addition_time_embed_dim=SDXL_TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=adm,
    )
    network = {
        "adm_in_channels": adm,
        "num_classes": "sequential",
        "use_checkpoint": True,
        "in_channels": 4,
        "out_channels": 4,
        "model_channels": 32,
        "attention_resolutions": [4, 2],
        "num_res_blocks": 2,
        "channel_mult": [1, 2, 2, 2],
        "num_head_channels": 32,
        "use_spatial_transformer": True,
        "use_linear_in_transformer": True,
        "transformer_depth": 1,
        "context_dim": [te2.hidden_size] * 4,  # sd_xl_refiner.yaml lists it per level
        "spatial_transformer_attn_type": "softmax-xformers",
        "legacy": False,
    }
    embedders = [_bigg_embedder()] + _time_embedders(["original_size_as_tuple", "crop_coords_top_left", "aesthetic_score"])
    return TinySpec(family, unet, vae, (te2,), _sgm_config(network, embedders), schedule_buffers=False)


# ---------------------------------------------------------------------------------------------------------------------
# Models and state dicts


@torch.no_grad()
def _fill_(module: nn.Module, seed: int) -> nn.Module:
    """Deterministic, well-scaled random weights, independent of the libraries' own init code."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
        if p.ndim >= 2:  # matrices, convs, embeddings: unit-variance outputs
            p.normal_(0.0, 1.0 / math.sqrt(p[0].numel()), generator=gen)
        elif name.endswith("bias"):
            p.normal_(0.0, 0.02, generator=gen)
        else:  # 1-D weights here are all norm scales
            p.normal_(1.0, 0.1, generator=gen)
    return module.eval()


def _text_model_file(spec: TextEncoderSpec) -> nn.Module:
    """The encoder as stored in the file: may hold extra layers / an unused projection (SD2).

    Built on the meta device and materialized empty (skips the library init); every parameter is then filled.
    Its non-persistent ``position_ids`` buffer is left uninitialized: it is never read from this module.
    """
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    cfg = spec.hf_config(spec.num_layers + spec.file_extra_layers)
    with_proj = spec.projection_dim is not None or spec.file_text_projection
    with torch.device("meta"):
        model = CLIPTextModelWithProjection(cfg) if with_proj else CLIPTextModel(cfg)
    return model.to_empty(device="cpu")


def _text_model_diffusers(spec: TextEncoderSpec, file_sd: dict[str, Tensor]) -> nn.Module:
    """The encoder the loader should build, with the used subset of the file encoder's weights."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    cfg = spec.hf_config()
    model = CLIPTextModelWithProjection(cfg) if spec.projection_dim is not None else CLIPTextModel(cfg)
    src = {L._strip_text_model(k): v for k, v in file_sd.items()}
    wanted = {k: src[L._strip_text_model(k) if k.startswith("text_model.") else k] for k in model.state_dict()}
    model.load_state_dict(wanted, strict=True)
    return model.eval()


def build_file_models(family: str, seed: int = 0) -> dict[str, nn.Module]:
    """Fresh unet, vae and text encoders exactly as stored in the file (keyed by their pipeline role).

    Differs from ``build_tiny_models`` only for SD2, whose file encoder has one extra layer and a text_projection.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    spec = tiny_spec(family)
    base = seed * 16  # one generator stream per component
    models: dict[str, nn.Module] = {
        "unet": _fill_(UNet2DConditionModel(**spec.unet), base),
        "vae": _fill_(AutoencoderKL(**spec.vae), base + 1),
    }
    for i, te in enumerate(spec.text_encoders):
        models[te.role] = _fill_(_text_model_file(te), base + 2 + i)
    return models


def file_state_dicts(family: str, seed: int = 0) -> dict[str, dict[str, Tensor]]:
    """Cached per process and READ-ONLY: diffusers-layout state dicts of ``build_file_models`` (float32)."""
    return _file_state_dicts(family, seed)


@functools.lru_cache(maxsize=16)
def _file_state_dicts(family: str, seed: int) -> dict[str, dict[str, Tensor]]:
    return {role: dict(m.state_dict()) for role, m in build_file_models(family, seed).items()}


def build_tiny_models(family: str, seed: int = 0) -> dict[str, nn.Module]:
    """Fresh diffusers/transformers modules a correct loader ends up with: unet, vae, text_encoder and/or text_encoder_2.

    For SD2 ``text_encoder`` has ``num_layers`` layers: the file also holds one more (unused) resblock and an unused
    text_projection, like real SD2 files (24 resblocks, 23 used).
    """
    models = build_file_models(family, seed)
    for te in tiny_spec(family).text_encoders:
        models[te.role] = _text_model_diffusers(te, models[te.role].state_dict())
    return models


def tiny_diffusers_state_dicts(family: str, seed: int = 0) -> dict[str, dict[str, Tensor]]:
    """Per component, the diffusers-layout tensors (float32) a correct loader reproduces exactly (fresh copies)."""
    spec = tiny_spec(family)
    out = {role: {k: v.clone() for k, v in sd.items()} for role, sd in file_state_dicts(family, seed).items()}
    for te in spec.text_encoders:
        if te.file_extra_layers or (te.file_text_projection and te.projection_dim is None):
            out[te.role] = _text_model_diffusers(te, out[te.role]).state_dict()
    return out


@functools.lru_cache(maxsize=32)
def _cached_ldm_state_dict(family: str, seed: int, dtype: torch.dtype) -> dict[str, Tensor]:
    spec = tiny_spec(family)
    parts = file_state_dicts(family, seed)
    sd: dict[str, Tensor] = {}
    sd.update(L.unet_to_ldm(parts["unet"], spec.unet))
    sd.update(L.vae_to_ldm(parts["vae"]))
    for te in spec.text_encoders:
        if te.style == "clip_l":
            sd.update(L.clip_l_to_ldm(parts[te.role], te.prefix))
        else:
            sd.update(L.open_clip_to_ldm(parts[te.role], te.prefix, logit_scale=L.OPEN_CLIP_LOGIT_SCALE))
    # float tensors take `dtype`; ints (position_ids) stay as they are. Copies: the cached parts stay untouched.
    out = {k: (v.detach().to(dtype, copy=True) if v.is_floating_point() else v.clone()).contiguous() for k, v in sd.items()}
    if spec.schedule_buffers:  # LDM DDPM buffers + LitEma counters, as real SD1/SD2 files carry (kept float32)
        out.update(L.ddpm_schedule_buffers(LINEAR_START, LINEAR_END, TIMESTEPS))
        out["model_ema.decay"] = torch.tensor(0.9999, dtype=torch.float32)
        out["model_ema.num_updates"] = torch.tensor(0, dtype=torch.int32)
    return out


def tiny_ldm_state_dict(family: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """The whole original-layout single-file state dict for ``family`` (a fresh copy: safe to modify)."""
    return {k: v.clone() for k, v in _cached_ldm_state_dict(family, seed, dtype).items()}


def write_original_config(spec: TinySpec, path: Path) -> Path:
    import yaml

    header = f"# Tiny random test model ({spec.family}); original LDM/SGM config schema.\n"
    path.write_text(header + yaml.safe_dump(spec.original_config, sort_keys=False), encoding="utf-8")
    return path


def write_tiny_checkpoint(
    family: str,
    directory: Path,
    name: str,
    seed: int = 0,
    fmt: str = "safetensors",
    dtype: torch.dtype = torch.float32,
    *,
    with_yaml: bool = True,
) -> Path:
    """Write ``<directory>/<name>.<fmt>`` (+ ``<name>.yaml`` unless ``with_yaml`` is False); return the weights path.

    ``fmt`` "safetensors" or "ckpt" (a zip pickle of ``{"state_dict": sd}``, as torch.save writes it).
    """
    if fmt not in ("safetensors", "ckpt"):
        raise ValueError(f"fmt must be 'safetensors' or 'ckpt', not {fmt!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sd = _cached_ldm_state_dict(family, seed, dtype)  # read only: no copy needed
    path = directory / f"{name}.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path), metadata={"format": "pt"})
    else:
        torch.save({"state_dict": sd}, path)
    if with_yaml:
        write_original_config(tiny_spec(family), directory / f"{name}.yaml")
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Full-size SD1.5 shapes (meta device: no memory, no time)

SD15_UNET = dict(
    in_channels=4,
    out_channels=4,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    block_out_channels=[320, 640, 1280, 1280],
    layers_per_block=2,
    cross_attention_dim=768,
    attention_head_dim=8,
)
SD15_VAE = dict(_VAE, block_out_channels=[128, 256, 512, 512], scaling_factor=0.18215)
SD15_CLIP = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                 max_position_embeddings=CLIP_POSITIONS, vocab_size=CLIP_VOCAB, hidden_act="quick_gelu")


def sd15_meta_ldm_components() -> dict[str, dict[str, Tensor]]:
    """Original-layout SD1.5 state dicts per component, as meta tensors: {"unet", "vae", "text_encoder"}."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET)
        vae = AutoencoderKL(**SD15_VAE)
        te = CLIPTextModel(CLIPTextConfig(**SD15_CLIP))
    return {
        "unet": L.unet_to_ldm(unet.state_dict(), unet.config),
        "vae": L.vae_to_ldm(vae.state_dict()),
        "text_encoder": L.clip_l_to_ldm(te.state_dict(), L.SD1_CLIP_PREFIX),
    }
