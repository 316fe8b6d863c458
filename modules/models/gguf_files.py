"""GGUF weight files (city96's Flux transformers and T5 encoders: ``flux1-dev-Q8_0.gguf``, ``-Q4_K_S.gguf``...):
read with the ``gguf`` package through diffusers' GGUF loader and dequantized by diffusers' block functions (Q8_0,
Q5/Q4_0/1, the K-quants, BF16) to float32. The file is parsed as data (no code runs from it); anything unreadable is
a CorruptFileError naming the file.

``load(keep_quantized=True)`` keeps the quantized tensors as diffusers' ``GGUFParameter`` (their raw blocks, a
torch.Tensor whose ``.shape`` is the byte shape: ``shape_of`` gives the real one), so a family can keep them resident
(``stored_weights``); BF16 tensors are expanded either way.
"""

from __future__ import annotations

from pathlib import Path

import torch

from modules.models.types import CorruptFileError

def _quantized_shape(byte_shape: tuple[int, ...], type_size: int, block_size: int) -> tuple[int, ...]:
    """A row of ``n`` bytes holds ``n / type_size`` blocks of ``block_size`` values (the GGUF block layout)."""
    return (*byte_shape[:-1], byte_shape[-1] // type_size * block_size)


def is_quantized(tensor: torch.Tensor) -> bool:
    return getattr(tensor, "quant_type", None) is not None


def shape_of(tensor: torch.Tensor) -> tuple[int, ...]:
    """The tensor's real shape: a GGUFParameter's ``.shape`` counts bytes, its ``quant_shape`` values."""
    return tuple(getattr(tensor, "quant_shape", None) or tensor.shape)


def raw_blocks(tensor: torch.Tensor) -> torch.Tensor:
    """A GGUFParameter's bytes as a plain uint8 tensor (what a layer keeps resident)."""
    return tensor.as_tensor().view(torch.uint8)


def dequantize_raw(raw: torch.Tensor, quant_type: int) -> torch.Tensor:
    """Raw GGUF blocks (uint8, rows of blocks) of ``quant_type`` -> their float32 values."""
    from diffusers.quantizers.gguf.utils import GGML_QUANT_SIZES, dequantize_functions

    block_size, type_size = GGML_QUANT_SIZES[quant_type]
    blocks = raw.reshape(raw.numel() // type_size, type_size)
    values = dequantize_functions[quant_type](blocks, block_size, type_size, dtype=torch.float32)
    return values.reshape(_quantized_shape(tuple(raw.shape), type_size, block_size)).to(torch.float32)


def dequantize(tensor: torch.Tensor) -> torch.Tensor:
    """A diffusers GGUFParameter (raw blocks) -> its float32 values; plain tensors come back as they are."""
    if not is_quantized(tensor):
        return tensor
    return dequantize_raw(raw_blocks(tensor), tensor.quant_type)


def _expand_plain(tensor: torch.Tensor) -> torch.Tensor:
    """BF16 (and any unquantized type diffusers wraps) become ordinary tensors; quantized blocks stay."""
    from gguf import GGMLQuantizationType

    if is_quantized(tensor) and tensor.quant_type in (GGMLQuantizationType.BF16, GGMLQuantizationType.F16,
                                                      GGMLQuantizationType.F32):
        return dequantize(tensor)
    return tensor


def load(path: Path, keep_quantized: bool = False) -> dict[str, torch.Tensor]:
    try:
        from diffusers.models.model_loading_utils import load_gguf_checkpoint
    except ImportError as err:  # pragma: no cover - gguf is a requirement
        raise CorruptFileError(path, f"GGUF files need the 'gguf' package ({err})") from None
    try:
        raw = load_gguf_checkpoint(str(path))
        expand = _expand_plain if keep_quantized else dequantize
        tensors = {name: expand(tensor) for name, tensor in raw.items()}
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
