"""Tell the Stable Diffusion family of a checkpoint from its key names and tensor shapes alone.

Works on the original CompVis/LDM (SD1/SD2) and Stability generative-models (SDXL) key layouts, the ones users drop
into ``models/Stable-diffusion``. Only names and shapes are read, so detection runs on "stripped" state dicts in tests.

The text encoder's key layout decides the family, and the UNet's cross-attention width must agree with it:
SD1 = OpenAI CLIP-L (context 768), SD2 = OpenCLIP ViT-H (1024), SDXL base = CLIP-L + OpenCLIP bigG (768 + 1280 = 2048),
SDXL refiner = bigG alone (1280). Checking the agreement rather than the absolute numbers lets tiny test models through.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modules.models.types import ModelKind, UnknownModelError

Shapes = Mapping[str, tuple[int, ...]]

UNET = "model.diffusion_model."
UNET_CONV_IN = UNET + "input_blocks.0.0.weight"
SD1_TE = ("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer.embeddings.")
SD1_TOKEN_EMB = (
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
    "cond_stage_model.transformer.embeddings.token_embedding.weight",  # older transformers layout
)
SD2_TE = "cond_stage_model.model."
SDXL_L = "conditioner.embedders.0.transformer."
SDXL_L_TOKEN_EMB = SDXL_L + "text_model.embeddings.token_embedding.weight"
SDXL_G = "conditioner.embedders.1.model."
REFINER_G = "conditioner.embedders.0.model."

# Checkpoints trained for v-prediction on SDXL carry an empty marker tensor "v_pred" (ComfyUI/Forge convention).
V_PRED_MARKER = "v_pred"

# Layouts we recognise but cannot build: named in the error so the user knows what the file is.
_FOREIGN_LAYOUTS: tuple[tuple[str, str], ...] = (
    ("lora_unet_", "a LoRA (put it in models/Lora)"),
    ("lora_te", "a LoRA (put it in models/Lora)"),
    ("string_to_param", "a textual-inversion embedding (put it in embeddings/)"),
    ("emb_params", "a textual-inversion embedding (put it in embeddings/)"),
    ("control_model.", "a ControlNet model"),
    ("double_blocks.", "a Flux model"),
    ("model.diffusion_model.double_blocks.", "a Flux model"),
    ("joint_blocks.", "a Stable Diffusion 3 model"),
    ("model.diffusion_model.joint_blocks.", "a Stable Diffusion 3 model"),
    ("down_blocks.", "a model in diffusers layout (a single-file checkpoint is expected)"),
    ("encoder.down.", "a standalone VAE (put it in models/VAE)"),
    ("first_stage_model.", "VAE weights without a UNet"),
)


def _summary(keys: Mapping[str, Any]) -> str:
    """The most common top-level key prefixes, e.g. ``lora_unet_down (120), lora_te_text (40)``."""
    counts = Counter(re.split(r"[._]", k, maxsplit=2)[0] if k else "" for k in keys)
    shown = ", ".join(f"{p or '<empty>'} ({n})" for p, n in counts.most_common(5))
    return f"{len(keys)} tensors; top-level names: {shown}" if keys else "no tensors"


def _unknown(keys: Mapping[str, Any], reason: str, path: str | Path = "checkpoint") -> UnknownModelError:
    found = _summary(keys)
    for prefix, what in _FOREIGN_LAYOUTS:
        if any(k.startswith(prefix) for k in keys):
            return UnknownModelError(path, f"{reason}; this looks like {what} ({found})")
    return UnknownModelError(path, f"{reason} ({found})")


def _has_prefix(keys: Mapping[str, Any], prefix: str | tuple[str, ...]) -> bool:
    return any(k.startswith(prefix) for k in keys)


def _context_dim(shapes: Shapes) -> int | None:
    """Cross-attention width of the UNet: input width of the first attn2 key projection."""
    for key, shape in shapes.items():
        if key.startswith(UNET) and key.endswith("attn2.to_k.weight") and len(shape) == 2:
            return int(shape[1])
    return None


def _width(shapes: Shapes, *keys: str) -> int | None:
    for key in keys:
        shape = shapes.get(key)
        if shape is not None and len(shape) == 2:
            return int(shape[1])
    return None


def _text_family(shapes: Shapes) -> tuple[str, int | None] | None:
    """(family, text context width) from the text-encoder layout, or None when there is no text encoder."""
    if _has_prefix(shapes, SDXL_G) and _has_prefix(shapes, SDXL_L):
        width_l = _width(shapes, SDXL_L_TOKEN_EMB)
        width_g = _width(shapes, SDXL_G + "token_embedding.weight")
        return "sdxl", (width_l + width_g) if width_l and width_g else None
    if _has_prefix(shapes, REFINER_G) and not _has_prefix(shapes, "conditioner.embedders.1."):
        return "sdxl_refiner", _width(shapes, REFINER_G + "token_embedding.weight")
    if _has_prefix(shapes, SD2_TE + "transformer.resblocks.") or SD2_TE + "token_embedding.weight" in shapes:
        return "sd2", _width(shapes, SD2_TE + "token_embedding.weight")
    if _has_prefix(shapes, SD1_TE):
        return "sd1", _width(shapes, *SD1_TOKEN_EMB)
    return None


# Only used when a checkpoint has a UNet but no text encoder: the real models' context widths.
_FAMILY_BY_CONTEXT = {768: "sd1", 1024: "sd2", 2048: "sdxl", 1280: "sdxl_refiner"}


def detect_kind(keys_and_shapes: Shapes, path: str | Path = "checkpoint") -> ModelKind:
    """Family, inpainting and (where the keys tell) prediction type of a checkpoint.

    SD2 v-prediction cannot be seen in the keys: this returns ``epsilon`` for SD2 and the loader decides with the yaml
    beside the checkpoint or ``guess_sd2_v_prediction``. Raises UnknownModelError, naming what was found, otherwise.
    """
    shapes = keys_and_shapes
    conv_in = shapes.get(UNET_CONV_IN)
    if conv_in is None or len(conv_in) != 4:
        raise _unknown(shapes, "not a Stable Diffusion checkpoint: no UNet (model.diffusion_model.*) found", path)
    context = _context_dim(shapes)
    text = _text_family(shapes)
    if text is None:
        if context not in _FAMILY_BY_CONTEXT:
            raise _unknown(shapes, "not a Stable Diffusion checkpoint: no text encoder weights found", path)
        family = _FAMILY_BY_CONTEXT[context]
    else:
        family, text_width = text
        if context is not None and text_width is not None and context != text_width:
            raise _unknown(
                shapes,
                f"the UNet expects {context}-wide text embeddings but the {family} text encoder gives {text_width}",
                path,
            )

    in_channels = int(conv_in[1])
    if in_channels == 8:
        raise UnknownModelError(path, "instruct-pix2pix models (8-channel UNet input) are not supported yet")
    if in_channels not in (4, 9):
        raise UnknownModelError(
            path, f"UNet with {in_channels} input channels (depth, upscaler or other variant) is not supported"
        )
    if family == "sdxl_refiner" and in_channels == 9:
        raise UnknownModelError(path, "SDXL refiner inpainting models are not supported")
    if family in ("sdxl", "sdxl_refiner") and f"{UNET}label_emb.0.0.weight" not in shapes:
        raise _unknown(shapes, "SDXL text encoders but no label_emb (vector conditioning) in the UNet", path)

    prediction = "v_prediction" if V_PRED_MARKER in shapes else "epsilon"
    return ModelKind(family=family, prediction=prediction, inpainting=in_channels == 9, in_channels=in_channels)


def guess_sd2_v_prediction(unet: Any) -> bool:
    """A1111's heuristic for SD2 checkpoints without a yaml: does the UNet predict v rather than noise?

    At t=999 the input is almost pure noise, so an epsilon model outputs roughly its input, while a v model outputs
    roughly minus it: mean(out - x) falls below -1 only for v. The context is constant, so its length does not
    matter (attention over identical tokens); 77 tokens as a real prompt has.
    """
    import torch

    param = next(unet.parameters())
    device, dtype = param.device, param.dtype
    cfg = unet.config
    x = torch.ones((1, cfg.in_channels, 8, 8), device=device, dtype=dtype) * 0.5
    context = torch.ones((1, 77, cfg.cross_attention_dim), device=device, dtype=dtype) * 0.5
    t = torch.tensor([999], device=device)
    with torch.no_grad():
        out = unet(x, t, encoder_hidden_states=context).sample
    # out.device: with offloaded weights the UNet runs elsewhere than where its parameters rest
    diff = (out.float() - x[:, : out.shape[1]].to(out.device).float()).mean().item()
    return diff < -1
