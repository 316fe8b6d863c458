"""Bundled configuration files, so that loading a checkpoint never fetches anything.

* ``*.yaml``: the original LDM / generative-models configs of each family (as A1111 ships them).
* ``text_encoders/*.json``: transformers ``CLIPTextConfig`` of the three text towers SD uses.
* ``tokenizer/``: CLIP BPE vocabulary (see ``make_tokenizer_files.py`` and ``tokenizer/LICENSE``).
* ``t5_tokenizer/tokenizer.json``: T5 v1.1's Unigram tokenizer for Flux (see ``make_t5_tokenizer.py``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from modules.models.types import ModelKind

CONFIGS_DIR = Path(__file__).resolve().parent
TOKENIZER_DIR = CONFIGS_DIR / "tokenizer"
TEXT_ENCODERS_DIR = CONFIGS_DIR / "text_encoders"
T5_TOKENIZER_FILE = CONFIGS_DIR / "t5_tokenizer" / "tokenizer.json"

# SD1 pads prompts with <|endoftext|>; OpenCLIP (SD2, SDXL's bigG) pads with "!" (id 0).
PAD_EOS = "<|endoftext|>"
PAD_OPENCLIP = "!"

# Text tower names used by the loader -> bundled config file.
TEXT_ENCODER_FILES = {
    "clip_l": "clip_vit_l14.json",
    "openclip_h": "openclip_vit_h14.json",
    "openclip_bigg": "openclip_vit_bigg14.json",
    "t5_xxl": "t5_v1_1_xxl.json",
}


def bundled_yaml(kind: ModelKind) -> Path:
    """The bundled original config of a model family (prediction and inpainting variants included)."""
    if kind.family == "sd1":
        name = "v1-inpainting-inference.yaml" if kind.inpainting else "v1-inference.yaml"
    elif kind.family == "sd2":
        if kind.inpainting:
            name = "v2-inpainting-inference.yaml"
        else:
            name = "v2-inference-v.yaml" if kind.prediction == "v_prediction" else "v2-inference.yaml"
    elif kind.family == "sdxl":
        name = "sd_xl_inpaint.yaml" if kind.inpainting else "sd_xl_base.yaml"
    else:
        name = "sd_xl_refiner.yaml"
    return CONFIGS_DIR / name


@lru_cache(maxsize=None)
def _text_encoder_config(name: str) -> tuple[tuple[str, Any], ...]:
    data = json.loads((TEXT_ENCODERS_DIR / TEXT_ENCODER_FILES[name]).read_text(encoding="utf-8"))
    return tuple((k, v) for k, v in data.items() if not k.startswith("_"))


def text_encoder_config(name: str) -> dict[str, Any]:
    """A fresh copy of a bundled text-encoder config dict (``clip_l``, ``openclip_h``, ``openclip_bigg``: a
    ``CLIPTextConfig``; ``t5_xxl``: a ``T5Config``)."""
    return dict(_text_encoder_config(name))


def load_tokenizer(pad_token: str = PAD_EOS) -> Any:
    """A transformers CLIPTokenizer from the bundled vocabulary; ``pad_token="!"`` for OpenCLIP encoders."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR), pad_token=pad_token, local_files_only=True)


@lru_cache(maxsize=1)
def load_t5_tokenizer() -> Any:
    """A transformers T5TokenizerFast from the bundled ``tokenizer.json`` (pad ``<pad>`` 0, end ``</s>`` 1)."""
    from transformers import T5TokenizerFast

    return T5TokenizerFast(tokenizer_file=str(T5_TOKENIZER_FILE), pad_token="<pad>", eos_token="</s>",
                           unk_token="<unk>", extra_ids=0)
