"""BLIP captions for Interrogate CLIP, from the files A1111 users have: Salesforce's
``models/BLIP/model_base_caption_capfilt_large.pth`` (its ``visual_encoder.*`` / ``text_decoder.*`` layout, read
by our weights-only loader and renamed to transformers' ``BlipForConditionalGeneration``, whose sizes are read
from the tensors), or a transformers folder (``config.json`` + weights + tokenizer) in ``models/BLIP/``.

The tokenizer is BERT's uncased WordPiece vocabulary with BLIP's ``[DEC]`` and ``[ENC]`` added: the folder's own,
else a ``vocab.txt`` in ``models/BLIP/`` (or its ``bert-base-uncased/``), else the Hugging Face cache's
``bert-base-uncased`` that A1111 downloaded (read offline). A caption is generated as A1111 asks BLIP for one:
the picture at the model's size (bicubic, CLIP's normalisation), the prompt "a picture of ", beam search with
``interrogate_clip_num_beams`` and the min/max lengths, the prompt taken off the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

FILE = "model_base_caption_capfilt_large.pth"
PROMPT = "a picture of "
MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors", ".bin")
# Salesforce's vision names -> transformers' (the text decoder's names are the same in both)
_VISION_RENAMES = ((r"^visual_encoder\.", "vision_model.encoder."), (r"\.blocks\.", ".layers."),
                   (r"\.attn\.proj\.", ".self_attn.projection."), (r"\.attn\.", ".self_attn."),
                   (r"\.norm1\.", ".layer_norm1."), (r"\.norm2\.", ".layer_norm2."),
                   (r"^vision_model\.encoder\.norm\.", "vision_model.post_layernorm."),
                   (r"^vision_model\.encoder\.patch_embed\.proj\.", "vision_model.embeddings.patch_embedding."),
                   (r"^vision_model\.encoder\.pos_embed$", "vision_model.embeddings.position_embedding"),
                   (r"^vision_model\.encoder\.cls_token$", "vision_model.embeddings.class_embedding"))


@dataclass
class Captioner:
    model: Any  # BlipForConditionalGeneration
    tokenizer: Any  # BertTokenizer with [DEC] / [ENC]
    image_size: int


def to_transformers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Salesforce's caption-model names -> transformers'; the momentum and ITM parts it may carry are dropped."""
    out = {}
    for key, value in sd.items():
        if key.startswith("visual_encoder."):
            for pattern, new in _VISION_RENAMES:
                key = re.sub(pattern, new, key)
            out[key] = value
        elif key.startswith("text_decoder."):
            out[key] = value
    return out


def config_for(sd: dict[str, torch.Tensor], token_ids: dict[str, int] | None = None) -> Any:
    """A ``BlipConfig`` with the sizes of the (transformers-named) tensors; ``token_ids``: the decoder's
    ``bos_token_id`` / ``sep_token_id`` / ``pad_token_id`` in the vocabulary it reads."""
    from transformers import BlipConfig

    patch = sd["vision_model.embeddings.patch_embedding.weight"]
    positions = int(sd["vision_model.embeddings.position_embedding"].shape[1])
    width, patch_size = int(patch.shape[0]), int(patch.shape[-1])
    grid = int(round((positions - 1) ** 0.5))
    vision_layers = 1 + max(int(m.group(1)) for k in sd
                            if (m := re.match(r"vision_model\.encoder\.layers\.(\d+)\.", k)))
    text_layers = 1 + max(int(m.group(1)) for k in sd
                          if (m := re.match(r"text_decoder\.bert\.encoder\.layer\.(\d+)\.", k)))
    words = sd["text_decoder.bert.embeddings.word_embeddings.weight"]
    text_width = int(words.shape[1])
    ff = int(sd["text_decoder.bert.encoder.layer.0.intermediate.dense.weight"].shape[0])
    vision_ff = int(sd["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0])
    heads = max(1, width // 64)
    return BlipConfig(
        vision_config={"hidden_size": width, "intermediate_size": vision_ff, "num_hidden_layers": vision_layers,
                       "num_attention_heads": heads, "image_size": grid * patch_size, "patch_size": patch_size},
        text_config={"vocab_size": int(words.shape[0]), "hidden_size": text_width, "encoder_hidden_size": width,
                     "intermediate_size": ff, "num_hidden_layers": text_layers,
                     "num_attention_heads": max(1, text_width // 64),
                     "max_position_embeddings": int(
                         sd["text_decoder.bert.embeddings.position_embeddings.weight"].shape[0]),
                     **(token_ids or {})},
    )


def find(dirs: Sequence[Path]) -> Path | None:
    """The BLIP weights: ``model_base_caption_capfilt_large.pth`` first, else a transformers folder."""
    for root in dirs:
        if (root / FILE).is_file():
            return root / FILE
    for root in dirs:
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if (folder / "config.json").is_file() and '"blip"' in (folder / "config.json").read_text(errors="replace"):
                return folder
    return None


# where A1111's BertTokenizer.from_pretrained("bert-base-uncased") gets it; not offered for download (no SHA-256
# published for this address by a project we can cite), named in the message instead
BERT_VOCAB_URL = "https://huggingface.co/google-bert/bert-base-uncased/resolve/main/vocab.txt"


def tokenizer_for(dirs: Sequence[Path], folder: Path | None = None) -> Any:
    """BERT uncased + [DEC] (BLIP's bos) + [ENC]; FileNotFoundError naming where vocab.txt goes."""
    from transformers import BertTokenizer

    candidates = [folder / "vocab.txt"] if folder is not None else []
    candidates += [d / name for d in dirs for name in ("vocab.txt", "bert-base-uncased/vocab.txt")]
    vocab = next((p for p in candidates if p.is_file()), None)
    if vocab is None:
        vocab = _cached_bert_vocab()
    if vocab is None:
        where = dirs[0] if dirs else Path("models/BLIP")
        raise FileNotFoundError(f"BLIP needs BERT's uncased vocabulary: put bert-base-uncased's vocab.txt (from "
                                f"{BERT_VOCAB_URL}) in {where}")
    tokenizer = BertTokenizer(str(vocab), do_lower_case=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


def _cached_bert_vocab() -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        for repo in ("bert-base-uncased", "google-bert/bert-base-uncased"):
            found = try_to_load_from_cache(repo, "vocab.txt")
            if isinstance(found, str):
                return Path(found)
    except Exception:  # no cache, or an unreadable one: the message says where to put the file
        return None
    return None


def load(path: Path, dirs: Sequence[Path]) -> Captioner:
    """The captioner in ``path`` (Salesforce's file or a transformers folder); ValueError for another layout."""
    from transformers import BlipForConditionalGeneration

    from modules.models import formats
    from modules.models.loader import assign_weights, empty_module

    if path.is_dir():
        model = BlipForConditionalGeneration.from_pretrained(path, local_files_only=True).eval()
        return Captioner(model, tokenizer_for(dirs, path), int(model.config.vision_config.image_size))
    weights = to_transformers(formats.load_state_dict(path))  # Salesforce's {"model": ...} is unwrapped there
    if "vision_model.embeddings.patch_embedding.weight" not in weights:
        raise ValueError(f"{path.name} is not a BLIP caption model (no visual_encoder.patch_embed)")
    tokenizer = tokenizer_for(dirs)
    # the decoder starts from [DEC] and stops at [SEP]: their ids in this vocabulary (30522 and 102 in BERT's)
    config = config_for(weights, {"bos_token_id": tokenizer.bos_token_id, "sep_token_id": tokenizer.sep_token_id,
                                  "pad_token_id": tokenizer.pad_token_id})
    model = empty_module(lambda: BlipForConditionalGeneration(config))
    expected = set(model.state_dict())
    weights = {k: v.float() for k, v in weights.items() if k in expected}
    if "text_decoder.cls.predictions.decoder.weight" in expected and \
            "text_decoder.cls.predictions.decoder.weight" not in weights:  # tied to the word embeddings
        weights["text_decoder.cls.predictions.decoder.weight"] = \
            weights["text_decoder.bert.embeddings.word_embeddings.weight"]
    assign_weights(path, model, weights, "BLIP", "a BLIP caption model")
    if len(tokenizer) != config.text_config.vocab_size:
        raise ValueError(f"the vocabulary has {len(tokenizer)} tokens but {path.name} reads "
                         f"{config.text_config.vocab_size}")
    return Captioner(model.eval().requires_grad_(False), tokenizer, int(config.vision_config.image_size))


def pixels(image: Image.Image, size: int) -> torch.Tensor:
    """(1, 3, size, size): resized (bicubic, not cropped), in CLIP's normalisation, as A1111 feeds BLIP."""
    rgb = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    array = (np.asarray(rgb, dtype=np.float32) / 255.0 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return torch.from_numpy(array.transpose(2, 0, 1)[None].copy())


@torch.inference_mode()
def caption(captioner: Captioner, image: Image.Image, num_beams: int = 1, min_length: int = 24,
            max_length: int = 48) -> str:
    device = next(captioner.model.parameters()).device
    prompt = captioner.tokenizer([PROMPT.strip()], return_tensors="pt").input_ids.to(device)
    out = captioner.model.generate(pixel_values=pixels(image, captioner.image_size).to(device), input_ids=prompt,
                                   num_beams=max(1, int(num_beams)), min_length=int(min_length),
                                   max_length=int(max_length), do_sample=False, repetition_penalty=1.0)
    text = captioner.tokenizer.decode(out[0], skip_special_tokens=True)
    return text[len(PROMPT):] if text.startswith(PROMPT) else text.removeprefix(PROMPT.strip()).strip()
