"""Family detection from key names and shapes only ("stripped" state dicts, real full-size layouts on meta)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pytest
import torch

from modules.models.detect import detect_kind, guess_sd2_v_prediction
from modules.models.types import ModelKind, UnknownModelError
from tests.support import ldm_layout as L

# Full-size diffusers configs of the real models (diffusers' own repos), to write their original layouts on meta.
VAE = dict(down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
           block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4)
SD1_UNET = dict(block_out_channels=[320, 640, 1280, 1280], attention_head_dim=8, cross_attention_dim=768)
SD2_UNET = dict(block_out_channels=[320, 640, 1280, 1280], attention_head_dim=[5, 10, 20, 20],
                use_linear_projection=True, cross_attention_dim=1024)
SDXL_UNET = dict(block_out_channels=[320, 640, 1280],
                 down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                 up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                 transformer_layers_per_block=[1, 2, 10], attention_head_dim=[5, 10, 20], cross_attention_dim=2048,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816, use_linear_projection=True)
REFINER_UNET = dict(block_out_channels=[384, 768, 1536, 1536],
                    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                    transformer_layers_per_block=4, attention_head_dim=[6, 12, 24, 24], cross_attention_dim=1280,
                    addition_embed_type="text_time", addition_time_embed_dim=256,
                    projection_class_embeddings_input_dim=2560, use_linear_projection=True)
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              hidden_act="quick_gelu")
VIT_H = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
             hidden_act="gelu", projection_dim=1024)  # as in the SD2 file: 24 resblocks + text_projection
BIGG = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
            hidden_act="gelu", projection_dim=1280)

FULL_SIZE: dict[str, tuple[dict[str, Any], tuple[tuple[str, dict[str, Any], str], ...]]] = {
    "sd1": (SD1_UNET, (("clip_l", CLIP_L, L.SD1_CLIP_PREFIX),)),
    "sd2": (SD2_UNET, (("open_clip", VIT_H, L.SD2_OPEN_CLIP_PREFIX),)),
    "sdxl": (SDXL_UNET, (("clip_l", CLIP_L, L.SDXL_CLIP_L_PREFIX), ("open_clip", BIGG, L.SDXL_OPEN_CLIP_PREFIX))),
    "sdxl_refiner": (REFINER_UNET, (("open_clip", BIGG, L.SDXL_REFINER_OPEN_CLIP_PREFIX),)),
}


def full_size_meta_state_dict(family: str, in_channels: int = 4) -> dict[str, torch.Tensor]:
    """The original single-file layout of a real full-size model, as meta tensors (no memory, about a second)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    unet_kw, towers = FULL_SIZE[family]
    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_kw, in_channels=in_channels)
        vae = AutoencoderKL(**VAE)
    sd = {**L.unet_to_ldm(unet.state_dict(), unet.config), **L.vae_to_ldm(vae.state_dict())}
    for style, cfg, prefix in towers:
        config = CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, **cfg)
        with torch.device("meta"):
            te = CLIPTextModelWithProjection(config) if "projection_dim" in cfg else CLIPTextModel(config)
        if style == "clip_l":
            sd.update(L.clip_l_to_ldm(te.state_dict(), prefix))
        else:
            sd.update(L.open_clip_to_ldm(te.state_dict(), prefix, logit_scale=L.OPEN_CLIP_LOGIT_SCALE))
    return sd


@lru_cache(maxsize=None)
def _shapes(family: str) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in full_size_meta_state_dict(family).items()}


def shapes(family: str, **changes: tuple[int, ...] | None) -> dict[str, tuple[int, ...]]:
    """A stripped state dict (name -> shape) of a real model, with some entries changed (None removes)."""
    out = dict(_shapes(family))
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"


@pytest.mark.parametrize(
    "family, kind",
    [
        ("sd1", ModelKind("sd1")),
        ("sd2", ModelKind("sd2")),  # v-prediction is not visible in keys: the loader decides
        ("sdxl", ModelKind("sdxl")),
        ("sdxl_refiner", ModelKind("sdxl_refiner")),
    ],
)
def test_real_layouts(family: str, kind: ModelKind) -> None:
    assert detect_kind(_shapes(family)) == kind


def test_real_key_counts() -> None:
    sd1 = _shapes("sd1")
    assert sum(k.startswith("model.diffusion_model.") for k in sd1) == 686
    assert sum(k.startswith("first_stage_model.") for k in sd1) == 248
    assert sum(k.startswith("cond_stage_model.") for k in sd1) == 197


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_inpainting_variants(family: str) -> None:
    s = dict(_shapes(family))
    out_ch = s[CONV_IN][0]
    s[CONV_IN] = (out_ch, 9, 3, 3)
    kind = detect_kind(s)
    assert kind.family == family and kind.inpainting and kind.in_channels == 9 and kind.label.endswith("inpainting")


def test_instruct_pix2pix_and_other_channel_counts_are_refused() -> None:
    s = dict(_shapes("sd1"))
    s[CONV_IN] = (320, 8, 3, 3)
    with pytest.raises(UnknownModelError, match="instruct-pix2pix"):
        detect_kind(s)
    s[CONV_IN] = (320, 5, 3, 3)  # depth-to-image
    with pytest.raises(UnknownModelError, match="5 input channels"):
        detect_kind(s)
    r = dict(_shapes("sdxl_refiner"))
    r[CONV_IN] = (384, 9, 3, 3)
    with pytest.raises(UnknownModelError, match="refiner inpainting"):
        detect_kind(r)


def test_older_sd1_text_encoder_layout() -> None:
    """Early SD1 files name CLIP tensors without "text_model." (older transformers)."""
    s = {k.replace("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer."): v
         for k, v in _shapes("sd1").items()}
    assert detect_kind(s) == ModelKind("sd1")


def test_v_pred_marker_key() -> None:
    s = dict(_shapes("sdxl"))
    s["v_pred"] = ()
    assert detect_kind(s) == ModelKind("sdxl", prediction="v_prediction")


def test_context_width_must_match_text_encoder() -> None:
    s = dict(_shapes("sd1"))
    for k in [k for k in s if k.endswith("attn2.to_k.weight")]:
        s[k] = (s[k][0], 1024)
    with pytest.raises(UnknownModelError, match="1024-wide text embeddings but the sd1 text encoder gives 768"):
        detect_kind(s)


def test_unet_without_text_encoder_falls_back_on_context_width() -> None:
    for family in ("sd1", "sd2", "sdxl", "sdxl_refiner"):
        s = {k: v for k, v in _shapes(family).items() if not k.startswith(("cond_stage_model.", "conditioner."))}
        assert detect_kind(s).family == family


def test_sdxl_without_label_emb_is_unknown() -> None:
    s = {k: v for k, v in _shapes("sdxl").items() if "label_emb" not in k}
    with pytest.raises(UnknownModelError, match="label_emb"):
        detect_kind(s)


def test_tiny_layouts() -> None:
    """Tiny models have other widths; what matters is that the text encoder and the UNet agree."""
    sd1_tiny = {
        CONV_IN: (32, 4, 3, 3),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (32, 32),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (49408, 32),
    }
    assert detect_kind(sd1_tiny) == ModelKind("sd1")
    sdxl_tiny = {
        CONV_IN: (32, 9, 3, 3),
        "model.diffusion_model.label_emb.0.0.weight": (128, 112),
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (64, 96),
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (49408, 32),
        "conditioner.embedders.1.model.token_embedding.weight": (49408, 64),
    }
    assert detect_kind(sdxl_tiny) == ModelKind("sdxl", inpainting=True, in_channels=9)


@pytest.mark.parametrize(
    "keys, what",
    [
        ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320)}, "LoRA"),
        ({"string_to_param.*": (2, 768)}, "textual-inversion"),
        ({"encoder.down.0.block.0.conv1.weight": (128, 3, 3, 3)}, "standalone VAE"),
        ({"double_blocks.0.img_attn.qkv.weight": (9216, 3072)}, "Flux"),
        ({"down_blocks.0.resnets.0.conv1.weight": (320, 320, 3, 3)}, "diffusers layout"),
        ({"bert.embeddings.word_embeddings.weight": (30522, 768)}, "no UNet"),
        ({}, "no tensors"),
    ],
)
def test_non_sd_weights_are_unknown_and_say_what_was_found(keys: dict, what: str) -> None:
    with pytest.raises(UnknownModelError, match=what) as err:
        detect_kind(keys, "weights.safetensors")
    assert str(err.value).startswith("weights.safetensors:")
    assert err.value.kind == "unknown-family"


def _probe_unet(bias: float) -> Any:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1, cross_attention_dim=32,
        attention_head_dim=2, norm_num_groups=32, sample_size=8,
    ).eval()
    with torch.no_grad():  # output = bias everywhere, whatever the input
        unet.conv_out.weight.zero_()
        unet.conv_out.bias.fill_(bias)
    return unet


def test_sd2_v_prediction_heuristic() -> None:
    # x = 0.5: an output of -2 gives mean(out - x) = -2.5 < -1 (v); an output of 0.5 gives 0 (epsilon)
    assert guess_sd2_v_prediction(_probe_unet(-2.0)) is True
    assert guess_sd2_v_prediction(_probe_unet(0.5)) is False
    assert guess_sd2_v_prediction(_probe_unet(-0.4)) is False  # -0.9 is not below -1
