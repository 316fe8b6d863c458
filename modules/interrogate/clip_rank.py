"""Interrogate CLIP's second half: the picture's CLIP embedding ranked against category lists (A1111's
``interrogate/*.txt``: one phrase a line; ``name.topN.txt`` keeps N matches, else 1), as A1111 ranks them.

CLIP ViT-L/14 comes from ``models/CLIP/``: a transformers folder (``config.json`` + weights; the tokenizer is ours,
CLIP's vocabulary ships with the app) or a state dict in OpenAI's layout (``visual.*``, ``transformer.resblocks.*``,
OpenAI's own TorchScript download ``ViT-L-14.pt`` too, its tensors read without its code:
``models.torchscript_archive``), renamed to transformers' ``CLIPModel`` with the sizes of its tensors.

Ranking (A1111's): image and texts embedded and L2-normalised, ``softmax(100 * image @ texts.T)`` over a category's
phrases, its top N with their probability. The picture is prepared as CLIP's reference preprocessing does it
(shortest side to the model's size, bicubic, centre crop, CLIP's normalisation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from modules.interrogate.blip import MEAN, STD

_TOPN = re.compile(r"\.top(\d+)$")


@dataclass
class Category:
    name: str
    topn: int
    items: list[str] = field(default_factory=list)


@dataclass
class Ranker:
    model: Any  # transformers CLIPModel
    tokenizer: Any
    image_size: int
    _text_cache: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)


def categories(dirs: Sequence[Path], limit: int = 0, skip: Sequence[str] = ()) -> list[Category]:
    """The lists of ``dirs`` (a later folder's file replaces an earlier one of the same name), sorted by name;
    ``limit`` > 0 keeps that many lines of each (A1111's ``interrogate_clip_dict_limit``)."""
    files: dict[str, Path] = {}
    for root in dirs:
        if root.is_dir():
            for path in sorted(root.glob("*.txt")):
                files[path.stem] = path
    out = []
    for stem, path in sorted(files.items()):
        match = _TOPN.search(stem)
        name, topn = (stem[:match.start()], int(match.group(1))) if match else (stem, 1)
        if name in skip:
            continue
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
        items = [line for line in lines if line]
        out.append(Category(name, topn, items[:limit] if limit > 0 else items))
    return out


def find(dirs: Sequence[Path]) -> Path | None:
    """A transformers CLIP folder, else an OpenAI-layout weights file, in ``dirs``."""
    for root in dirs:
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            config = folder / "config.json"
            if config.is_file() and '"clip"' in config.read_text(errors="replace"):
                return folder
    for root in dirs:
        if root.is_dir():
            for path in sorted(root.iterdir()):
                if path.is_file() and path.suffix.lower() in (".safetensors", ".bin", ".pt", ".pth") \
                        and _may_be_openai_clip(path):
                    return path
    return None


def _may_be_openai_clip(path: Path) -> bool:
    """A safetensors file by its header (a text encoder such as clip_l beside it is not one); pickles by loading."""
    if path.suffix.lower() != ".safetensors":
        return True
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            return "visual.conv1.weight" in handle.keys()
    except Exception:  # unreadable: not offered
        return False


def _openai_to_transformers(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """OpenAI's CLIP state dict -> transformers' names, and the sizes of its config."""
    out: dict[str, torch.Tensor] = {}
    tower_layers: dict[str, int] = {}
    for tower, src, dst in (("text", "transformer.resblocks.", "text_model.encoder.layers."),
                            ("vision", "visual.transformer.resblocks.", "vision_model.encoder.layers.")):
        indices = {int(m.group(1)) for k in sd if (m := re.match(re.escape(src) + r"(\d+)\.", k))}
        tower_layers[tower] = len(indices)
        for i in sorted(indices):
            a, b = f"{src}{i}.", f"{dst}{i}."
            q, k, v = sd[a + "attn.in_proj_weight"].chunk(3)
            qb, kb, vb = sd[a + "attn.in_proj_bias"].chunk(3)
            for name, w, bias in (("q", q, qb), ("k", k, kb), ("v", v, vb)):
                out[f"{b}self_attn.{name}_proj.weight"], out[f"{b}self_attn.{name}_proj.bias"] = w, bias
            for theirs, ours in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"),
                                 ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2"), ("ln_2", "layer_norm2")):
                for suffix in ("weight", "bias"):
                    out[f"{b}{ours}.{suffix}"] = sd[f"{a}{theirs}.{suffix}"]
    out["text_model.embeddings.token_embedding.weight"] = sd["token_embedding.weight"]
    out["text_model.embeddings.position_embedding.weight"] = sd["positional_embedding"]
    for suffix in ("weight", "bias"):
        out[f"text_model.final_layer_norm.{suffix}"] = sd[f"ln_final.{suffix}"]
        out[f"vision_model.pre_layrnorm.{suffix}"] = sd[f"visual.ln_pre.{suffix}"]
        out[f"vision_model.post_layernorm.{suffix}"] = sd[f"visual.ln_post.{suffix}"]
    out["text_projection.weight"] = sd["text_projection"].t().contiguous()
    out["visual_projection.weight"] = sd["visual.proj"].t().contiguous()
    out["vision_model.embeddings.class_embedding"] = sd["visual.class_embedding"]
    out["vision_model.embeddings.patch_embedding.weight"] = sd["visual.conv1.weight"]
    out["vision_model.embeddings.position_embedding.weight"] = sd["visual.positional_embedding"]
    out["logit_scale"] = sd["logit_scale"].reshape(())
    text_width, vision_width = int(sd["ln_final.weight"].shape[0]), int(sd["visual.ln_pre.weight"].shape[0])
    patch = int(sd["visual.conv1.weight"].shape[-1])
    grid = int(round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5))
    def tower(width: int, ff_key: str, layers: int) -> dict[str, int]:
        return {"hidden_size": width, "intermediate_size": int(sd[ff_key].shape[0]), "num_hidden_layers": layers,
                "num_attention_heads": max(1, width // 64)}

    config = {
        "projection_dim": int(sd["text_projection"].shape[1]),
        "text_config": {**tower(text_width, "transformer.resblocks.0.mlp.c_fc.weight", tower_layers["text"]),
                        "vocab_size": int(sd["token_embedding.weight"].shape[0]),
                        "max_position_embeddings": int(sd["positional_embedding"].shape[0])},
        "vision_config": {**tower(vision_width, "visual.transformer.resblocks.0.mlp.c_fc.weight",
                                  tower_layers["vision"]), "image_size": grid * patch, "patch_size": patch},
    }
    return out, config


def load(path: Path) -> Ranker:
    from transformers import CLIPConfig, CLIPModel

    from modules.models import configs, formats
    from modules.models.loader import assign_weights, empty_module

    tokenizer = configs.load_tokenizer()
    if path.is_dir():
        model = CLIPModel.from_pretrained(path, local_files_only=True).eval()
        return Ranker(model, tokenizer, int(model.config.vision_config.image_size))
    from modules.models import torchscript_archive

    if formats.sniff_format(path) == "zip-pickle" and torchscript_archive.is_torchscript(path):
        sd = torchscript_archive.state_dict(path)  # OpenAI's download: its tensors, not its code
    else:
        sd = formats.load_state_dict(path)
    if "visual.conv1.weight" not in sd or "transformer.resblocks.0.attn.in_proj_weight" not in sd:
        raise ValueError(f"{path.name} is not a CLIP model in OpenAI's layout (visual.conv1, transformer.resblocks)")
    weights, values = _openai_to_transformers(sd)
    config = CLIPConfig(**values)
    model = empty_module(lambda: CLIPModel(config))
    expected = model.state_dict()
    weights = {k: v.float() for k, v in weights.items()}
    for key in expected:  # buffers transformers fills itself (position ids)
        if key not in weights and key.endswith("position_ids"):
            weights[key] = expected[key] if expected[key].device.type != "meta" else \
                torch.arange(expected[key].shape[-1]).expand(expected[key].shape)
    assign_weights(path, model, weights, "CLIP", "a CLIP model in OpenAI's layout")
    return Ranker(model.eval().requires_grad_(False), tokenizer, int(config.vision_config.image_size))


def pixels(image: Image.Image, size: int) -> torch.Tensor:
    rgb = image.convert("RGB")
    scale = size / min(rgb.size)
    resized = rgb.resize((max(size, round(rgb.width * scale)), max(size, round(rgb.height * scale))),
                         Image.Resampling.BICUBIC)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    cropped = resized.crop((left, top, left + size, top + size))
    array = (np.asarray(cropped, dtype=np.float32) / 255.0 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return torch.from_numpy(array.transpose(2, 0, 1)[None].copy())


@torch.inference_mode()
def image_features(ranker: Ranker, image: Image.Image) -> torch.Tensor:
    device = next(ranker.model.parameters()).device
    features = ranker.model.get_image_features(pixel_values=pixels(image, ranker.image_size).to(device))
    features = getattr(features, "pooler_output", features)
    return features / features.norm(dim=-1, keepdim=True)


@torch.inference_mode()
def text_features(ranker: Ranker, texts: Sequence[str]) -> torch.Tensor:
    """The phrases' normalised embeddings; a list's are kept for the loaded model's life (a folder of pictures
    ranks the same lists again and again; A1111 encodes them for every picture)."""
    key = "\n".join(texts)
    if key not in ranker._text_cache:
        ids = ranker.tokenizer(list(texts), padding="max_length", max_length=77, truncation=True,
                               return_tensors="pt").input_ids
        features = ranker.model.get_text_features(input_ids=ids.to(next(ranker.model.parameters()).device))
        features = getattr(features, "pooler_output", features)
        ranker._text_cache[key] = features / features.norm(dim=-1, keepdim=True)
    return ranker._text_cache[key]


def rank(ranker: Ranker, image: torch.Tensor, texts: Sequence[str], top: int) -> list[tuple[str, float]]:
    """A1111's ranking: each phrase's softmax probability (0-100) against the picture, the best ``top``."""
    top = min(top, len(texts))
    if top <= 0:
        return []
    similarity = (100.0 * image @ text_features(ranker, texts).T).softmax(dim=-1)[0].float().cpu()
    probabilities, indices = similarity.topk(top)
    return [(texts[int(i)], float(p) * 100) for p, i in zip(probabilities, indices)]
