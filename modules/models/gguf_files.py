"""GGUF weight files (city96's Flux transformers and T5 encoders: ``flux1-dev-Q8_0.gguf``, ``-Q4_K_S.gguf``...):
read with the ``gguf`` package through diffusers' GGUF loader, every quantized tensor dequantized by diffusers'
block functions (Q8_0, Q5/Q4_0/1, the K-quants, BF16) to float32. The file is parsed as data (no code runs from
it); anything unreadable is a CorruptFileError naming the file.

Dequantized at load, a GGUF model takes the memory of its compute dtype: the file's size is saved on disk, not yet
in memory (diffusers' on-the-fly GGUFLinear would keep the blocks resident).
"""

from __future__ import annotations

from pathlib import Path

import torch

from modules.models.types import CorruptFileError

def _quantized_shape(byte_shape: tuple[int, ...], type_size: int, block_size: int) -> tuple[int, ...]:
    """A row of ``n`` bytes holds ``n / type_size`` blocks of ``block_size`` values (the GGUF block layout)."""
    return (*byte_shape[:-1], byte_shape[-1] // type_size * block_size)


def dequantize(tensor: torch.Tensor) -> torch.Tensor:
    """A diffusers GGUFParameter (raw blocks) -> its float32 values; plain tensors come back as they are."""
    quant_type = getattr(tensor, "quant_type", None)
    if quant_type is None:
        return tensor
    from diffusers.quantizers.gguf.utils import GGML_QUANT_SIZES, dequantize_functions

    block_size, type_size = GGML_QUANT_SIZES[quant_type]
    raw = tensor.as_tensor().view(torch.uint8)
    blocks = raw.reshape(raw.numel() // type_size, type_size)
    values = dequantize_functions[quant_type](blocks, block_size, type_size, dtype=torch.float32)
    return values.reshape(_quantized_shape(tuple(raw.shape), type_size, block_size)).to(torch.float32)


def load(path: Path) -> dict[str, torch.Tensor]:
    try:
        from diffusers.models.model_loading_utils import load_gguf_checkpoint
    except ImportError as err:  # pragma: no cover - gguf is a requirement
        raise CorruptFileError(path, f"GGUF files need the 'gguf' package ({err})") from None
    try:
        raw = load_gguf_checkpoint(str(path))
        tensors = {name: dequantize(tensor) for name, tensor in raw.items()}
    except (ImportError, MemoryError):
        raise
    except Exception as err:  # the reader's own errors: struct, value, index, numpy's
        raise CorruptFileError(path, f"damaged or unsupported GGUF file ({type(err).__name__}: {err})") from None
    if not tensors:
        raise CorruptFileError(path, "the GGUF file holds no tensors")
    return tensors


def tensor_names(path: Path) -> list[str]:
    """The tensor names of a GGUF file, without reading its data (an empty list when it cannot be read)."""
    try:
        from gguf import GGUFReader

        return [t.name for t in GGUFReader(str(path)).tensors]
    except Exception:  # a file that is not GGUF, or damaged: it has no role to offer
        return []
