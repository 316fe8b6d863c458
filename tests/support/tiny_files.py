"""Small model files of the kinds users drop into ``embeddings/`` and ``models/VAE``, written the way their tools do.

Embeddings: A1111 ``.pt`` (``string_to_param``), the original TI repository's ``ParameterDict`` variant, diffusers
``learned_embeds.bin``, ``emb_params`` and SDXL/kohya ``clip_l``/``clip_g`` safetensors, and A1111's image
embeddings (base64 JSON in an ``sd-ti-embedding`` PNG text chunk, or zlib data hidden in the pixels' low nibbles).
Plus hostile/damaged files and standalone VAE files (original or diffusers layout, safetensors or ckpt).
"""

from __future__ import annotations

import base64
import json
import math
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from tests.support import ldm_layout as L


def vectors(n: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed))


def _dir(path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save_a1111_pt(
    path: Path,
    vec: torch.Tensor,
    *,
    name: str | None = None,
    step: int | None = None,
    sd_checkpoint: str | None = None,
    sd_checkpoint_name: str | None = None,
    parameter_dict: bool = False,
) -> Path:
    """What A1111's ``Embedding.save`` writes (``parameter_dict``: the original TI repository's ParameterDict)."""
    param: Any = torch.nn.Parameter(vec.clone())
    params: Any = torch.nn.ParameterDict({"*": param}) if parameter_dict else {"*": param}
    data = {
        "string_to_token": {"*": 265},
        "string_to_param": params,
        "name": name if name is not None else Path(path).stem,
        "step": step,
        "sd_checkpoint": sd_checkpoint,
        "sd_checkpoint_name": sd_checkpoint_name,
    }
    torch.save(data, _dir(path))
    return Path(path)


def save_diffusers_bin(path: Path, token: str, vec: torch.Tensor) -> Path:
    """diffusers/HF concepts ``learned_embeds.bin``: ``{token: (width,)}`` (1-D for a single vector)."""
    torch.save({token: vec.squeeze(0).clone() if vec.shape[0] == 1 else vec.clone()}, _dir(path))
    return Path(path)


def save_emb_params(path: Path, vec: torch.Tensor) -> Path:
    save_file({"emb_params": vec.contiguous()}, str(_dir(path)))
    return Path(path)


def save_sdxl_embedding(path: Path, clip_l: torch.Tensor, clip_g: torch.Tensor) -> Path:
    save_file({"clip_l": clip_l.contiguous(), "clip_g": clip_g.contiguous()}, str(_dir(path)))
    return Path(path)


def _tensor_json(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return {"TORCHTENSOR": obj.detach().cpu().numpy().tolist()}
    raise TypeError(type(obj).__name__)


def a1111_embedding_dict(vec: torch.Tensor, name: str, step: int | None = None) -> dict[str, Any]:
    return {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": vec},
        "name": name,
        "step": step,
        "sd_checkpoint": None,
        "sd_checkpoint_name": None,
    }


def _picture(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(17, 256, size=(height, width, 3), dtype=np.uint8)


def save_png_text_embedding(path: Path, data: dict[str, Any], size: tuple[int, int] = (32, 32)) -> Path:
    """A PNG with the embedding as base64 JSON in an ``sd-ti-embedding`` text chunk (what A1111's training saves)."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("sd-ti-embedding", base64.b64encode(json.dumps(data, default=_tensor_json).encode()).decode())
    Image.fromarray(_picture(*size, seed=1)).save(_dir(path), "PNG", pnginfo=info)
    return Path(path)


def _lcg_nibbles(count: int) -> np.ndarray:
    out = np.empty(count, dtype=np.uint8)
    seed = 0
    for i in range(count):
        seed = (1664525 * seed + 1013904223) % 2**32
        out[i] = (seed % 255) & 0x0F
    return out


def save_pixel_embedding(path: Path, data: dict[str, Any], size: tuple[int, int] = (24, 24), fmt: str = "PNG") -> Path:
    """A1111's ``insert_image_data_embed`` layout: [low nibbles | black column | picture | black column | high
    nibbles], each nibble block xored with the LCG stream. Here the blocks' high bits are all set (A1111 draws a dot
    pattern there) so that no block pixel counts as black. ``fmt`` "PNG" or "WEBP" (lossless)."""
    from PIL import Image

    payload = np.frombuffer(zlib.compress(json.dumps(data, default=_tensor_json).encode(), 9), np.uint8)
    width, height = size
    cols = math.ceil(payload.size / (height * 3))
    padded = np.zeros(height * cols * 3, dtype=np.uint8)
    padded[: payload.size] = payload
    mask = _lcg_nibbles(padded.size)
    low = ((padded & 0x0F) ^ mask) | 0x80
    high = ((padded >> 4) ^ mask) | 0x80
    black = np.zeros((height, 1, 3), dtype=np.uint8)
    canvas = np.concatenate(
        [low.reshape(height, cols, 3), black, _picture(width, height, seed=2), black, high.reshape(height, cols, 3)],
        axis=1,
    )
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(canvas).save(_dir(path), fmt, **kwargs)
    return Path(path)


def save_plain_image(path: Path, size: tuple[int, int] = (32, 32), fmt: str = "PNG") -> Path:
    """An ordinary picture (a preview), no embedded data."""
    from PIL import Image

    Image.fromarray(_picture(*size, seed=3)).save(_dir(path), fmt)
    return Path(path)


class Evil:
    """Unpickling this would run a shell command creating ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def save_malicious_pickle(path: Path, marker: Path) -> Path:
    """An embedding-looking torch file whose unpickling would run a command."""
    torch.save({"string_to_param": {"*": torch.ones(1, 4)}, "name": "evil", "payload": Evil(marker)}, _dir(path))
    return Path(path)


def save_vae_file(
    path: Path, diffusers_sd: dict[str, torch.Tensor], *, layout: str = "ldm", fmt: str = "safetensors"
) -> Path:
    """A standalone VAE file from diffusers-layout weights: ``layout`` "ldm" (``encoder.down.0...``, what
    ``vae-ft-mse-840000-ema-pruned`` has) or "diffusers"; ``fmt`` "safetensors" or "ckpt" (``{"state_dict": sd}``)."""
    sd = L.vae_to_ldm(diffusers_sd, prefix="") if layout == "ldm" else dict(diffusers_sd)
    sd = {k: v.detach().contiguous().clone() for k, v in sd.items()}
    _dir(path)
    if fmt == "safetensors":
        save_file(sd, str(path))
    else:
        torch.save({"state_dict": sd}, path)
    return Path(path)


def perturbed(state_dict: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """A different set of weights of the same shapes (a "fine-tuned" VAE); cheap and deterministic per ``seed``."""
    return {k: (v.float() * (1 + 0.03 * seed) + 0.002 * seed).to(v.dtype) for k, v in state_dict.items()}
