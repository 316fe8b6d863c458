"""Tiny BLIP and CLIP models in the layouts Interrogate CLIP reads: Salesforce's BLIP caption checkpoint
(``{"model": {"visual_encoder.*", "text_decoder.*"}}``) with a small BERT vocabulary, CLIP as a transformers
folder and as a state dict in OpenAI's layout. Written from transformers models (returned as the references)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

WORDS = ["a", "picture", "of", "cat", "dog", "red", "blue", "sitting", "on", "the", "table", "with", "hat", "in",
         "garden", "tree", "car", "house", "big", "small"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_vocab(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vocab.txt"
    path.write_text("\n".join(SPECIALS + WORDS) + "\n", encoding="utf-8")
    return path


def blip(seed: int = 0) -> Any:
    from transformers import BlipConfig, BlipForConditionalGeneration

    torch.manual_seed(seed)
    vocab = len(SPECIALS) + len(WORDS) + 2  # + [DEC], [ENC]
    config = BlipConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 1,
                       "image_size": 32, "patch_size": 16},
        text_config={"vocab_size": vocab, "hidden_size": 32, "encoder_hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 1, "num_attention_heads": 1, "max_position_embeddings": 64,
                     "bos_token_id": vocab - 2, "sep_token_id": SPECIALS.index("[SEP]"), "pad_token_id": 0})
    return BlipForConditionalGeneration(config).eval()


def blip_salesforce(model: Any) -> dict[str, torch.Tensor]:
    """transformers' BLIP names -> Salesforce's."""
    out = {}
    renames = (("vision_model.embeddings.class_embedding", "visual_encoder.cls_token"),
               ("vision_model.embeddings.position_embedding", "visual_encoder.pos_embed"),
               ("vision_model.embeddings.patch_embedding.", "visual_encoder.patch_embed.proj."),
               ("vision_model.post_layernorm.", "visual_encoder.norm."),
               ("vision_model.encoder.layers.", "visual_encoder.blocks."))
    for key, value in model.state_dict().items():
        for old, new in renames:
            key = key.replace(old, new)
        key = key.replace(".self_attn.projection.", ".attn.proj.").replace(".self_attn.", ".attn.")
        key = key.replace(".layer_norm1.", ".norm1.").replace(".layer_norm2.", ".norm2.")
        out[key] = value.clone()
    return out


def write_blip(folder: Path, model: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model_base_caption_capfilt_large.pth"
    torch.save({"model": blip_salesforce(model), "epoch": 1}, str(path))
    write_vocab(folder)
    return path


def clip(seed: int = 0) -> Any:
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 1,
                     "vocab_size": 49408, "max_position_embeddings": 77},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 1,
                       "image_size": 32, "patch_size": 16},
        projection_dim=16)
    return CLIPModel(config).eval()


def clip_openai(model: Any) -> dict[str, torch.Tensor]:
    """transformers' CLIPModel -> OpenAI's state dict layout."""
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for tower, src, dst in (("text", "text_model.encoder.layers.", "transformer.resblocks."),
                            ("vision", "vision_model.encoder.layers.", "visual.transformer.resblocks.")):
        layers = {int(k[len(src):].split(".")[0]) for k in sd if k.startswith(src)}
        for i in layers:
            a, b = f"{src}{i}.", f"{dst}{i}."
            out[b + "attn.in_proj_weight"] = torch.cat([sd[a + f"self_attn.{n}_proj.weight"] for n in "qkv"])
            out[b + "attn.in_proj_bias"] = torch.cat([sd[a + f"self_attn.{n}_proj.bias"] for n in "qkv"])
            for ours, theirs in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"),
                                 ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"), ("layer_norm2", "ln_2")):
                for suffix in ("weight", "bias"):
                    out[f"{b}{theirs}.{suffix}"] = sd[f"{a}{ours}.{suffix}"]
    out["token_embedding.weight"] = sd["text_model.embeddings.token_embedding.weight"]
    out["positional_embedding"] = sd["text_model.embeddings.position_embedding.weight"]
    for suffix in ("weight", "bias"):
        out[f"ln_final.{suffix}"] = sd[f"text_model.final_layer_norm.{suffix}"]
        out[f"visual.ln_pre.{suffix}"] = sd[f"vision_model.pre_layrnorm.{suffix}"]
        out[f"visual.ln_post.{suffix}"] = sd[f"vision_model.post_layernorm.{suffix}"]
    out["text_projection"] = sd["text_projection.weight"].t().contiguous()
    out["visual.proj"] = sd["visual_projection.weight"].t().contiguous()
    out["visual.class_embedding"] = sd["vision_model.embeddings.class_embedding"]
    out["visual.conv1.weight"] = sd["vision_model.embeddings.patch_embedding.weight"]
    out["visual.positional_embedding"] = sd["vision_model.embeddings.position_embedding.weight"]
    out["logit_scale"] = sd["logit_scale"].reshape(())
    return {k: v.clone().contiguous() for k, v in out.items()}
