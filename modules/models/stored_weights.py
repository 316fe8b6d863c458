"""Linear layers that keep their weights in memory as the file stores them: GGUF blocks (city96's Q8_0, Q4_K...) or
8-bit floats (with ComfyUI's per-tensor ``scale_weight``), expanded to the compute dtype for each call. A Flux
transformer stored in Q8_0 then takes about a quarter of its fp32 size (half its bf16 size) wherever it rests.

The expansion is the one the loader does when it dequantizes at load (``gguf_files.dequantize_raw``,
``quantized.expand_fp8``, then the compute dtype), so a layer computes exactly what the dequantized layer computes.
LoRA on such a layer is applied each call in the same arithmetic as a merge (``lora_deltas``), never merged into
the stored weight (GGUF blocks cannot take it; fp8 would lose it).

What is kept is decided by the weight-storage choice (``weight_storage``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from modules.models import gguf_files, quantized

_CAST_TO = {"float8-e4m3fn": torch.float8_e4m3fn, "float8-e5m2": torch.float8_e5m2}
# Layers a cast to 8 bits leaves in the compute dtype: diffusers' layerwise-casting defaults (embeddings, norms and
# the output projection are the precision-sensitive ones).
_CAST_SKIP = ("pos_embed", "patch_embed", "norm", "^proj_in$", "^proj_out$")


def is_compact(tensor: torch.Tensor) -> bool:
    """Stored in fewer bits than it computes in: GGUF blocks or 8-bit floats."""
    return gguf_files.is_quantized(tensor) or quantized.is_fp8(tensor)


class StoredLinear(torch.nn.Module):
    """``nn.Linear`` with the weight kept as stored: ``qweight`` holds its bytes (uint8, so moving the module to
    another dtype leaves it alone), ``scale`` an fp8 file's per-tensor scale."""

    def __init__(self, in_features: int, out_features: int, bias: bool, raw_shape: tuple[int, ...],
                 quant_type: int | None = None, fp8_dtype: torch.dtype | None = None, scaled: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight_shape = (out_features, in_features)
        self.quant_type, self.fp8_dtype = quant_type, fp8_dtype
        self.register_buffer("qweight", torch.empty(raw_shape, dtype=torch.uint8, device="meta"))
        self.register_buffer("scale", torch.empty((), device="meta") if scaled else None)
        self.bias = torch.nn.Parameter(torch.empty(out_features, device="meta"), requires_grad=False) if bias \
            else None
        self.lora_deltas: list[tuple[Any, float]] = []  # (LoRA layer with .updown(device), multiplier x scale)
        # one float that follows the module's dtype and device (Module.to, offloading): ``weight``'s stand-in
        self.register_buffer("dtype_probe", torch.full((1,), float("nan")), persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        """A stand-in with the weight's shape, the compute dtype and the device, for library code that reads a
        layer's dtype (transformers' T5 casts to ``wo.weight.dtype``). Its values are NaN, not the weight's:
        ``weight_values`` expands the real one."""
        return self.dtype_probe.expand(self.weight_shape)

    @property
    def stored_as(self) -> str:
        if self.quant_type is not None:
            from gguf import GGMLQuantizationType

            return GGMLQuantizationType(self.quant_type).name
        return str(self.fp8_dtype).replace("torch.", "") + ("_scaled" if self.scale is not None else "")

    def weight_values(self, dtype: torch.dtype) -> torch.Tensor:
        """The weight in ``dtype``, as the loader would have expanded it, LoRA deltas added as a merge adds them."""
        if self.quant_type is not None:
            weight = gguf_files.dequantize_raw(self.qweight, self.quant_type).to(dtype)
        else:
            weight = quantized.expand_fp8(self.qweight.view(self.fp8_dtype), self.scale, dtype)
        if self.lora_deltas:
            total = None
            for layer, factor in self.lora_deltas:
                delta = layer.updown(weight.device) * factor
                total = delta if total is None else total + delta
            weight = (weight.to(torch.float32) + total).to(dtype)
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.weight_values(x.dtype), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, stored as {self.stored_as}"


def _stored(weight: torch.Tensor, linear: torch.nn.Linear, scaled: bool) -> tuple[StoredLinear, torch.Tensor]:
    if gguf_files.is_quantized(weight):
        layer = StoredLinear(linear.in_features, linear.out_features, linear.bias is not None,
                             tuple(weight.shape), quant_type=int(weight.quant_type))
        return layer, gguf_files.raw_blocks(weight)
    raw = weight.contiguous().view(torch.uint8)
    layer = StoredLinear(linear.in_features, linear.out_features, linear.bias is not None, tuple(raw.shape),
                         fp8_dtype=weight.dtype, scaled=scaled)
    return layer, raw


def _replace(model: torch.nn.Module, name: str, layer: torch.nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)


def store_linears(model: torch.nn.Module, weights: dict[str, torch.Tensor], mode: str) -> int:
    """Before ``weights`` are assigned to ``model`` (an empty module): each Linear whose weight is to stay compact
    becomes a StoredLinear, its weight (and scale) renamed to ``qweight`` (``scale``) in ``weights``. Returns how
    many layers were replaced.

    ``mode`` (``weight_storage.storage_mode``): "automatic" keeps what the file stores compactly; a float8 name
    also stores the other Linear weights in it (except diffusers' precision-sensitive layers); "full" keeps
    nothing."""
    if mode == "full":
        return 0
    cast = _CAST_TO.get(mode)
    replaced = 0
    for name, module in list(model.named_modules()):
        if type(module) is not torch.nn.Linear:
            continue
        weight = weights.get(name + ".weight")
        if weight is None or gguf_files.shape_of(weight) != tuple(module.weight.shape):
            continue  # assign_weights names what is missing or does not fit
        scale = weights.get(name + quantized.SCALE_SUFFIX)
        if scale is not None and not quantized.is_fp8(weight):
            continue  # a scale on anything but fp8 is no layout we know: expand_rest applies it
        if not is_compact(weight):
            if cast is None or not weight.is_floating_point() or any(re.search(p, name) for p in _CAST_SKIP):
                continue
            weight = weight.to(cast)
        weights.pop(name + quantized.SCALE_SUFFIX, None)
        layer, raw = _stored(weight, module, scaled=scale is not None)
        _replace(model, name, layer)
        del weights[name + ".weight"]
        weights[name + ".qweight"] = raw
        if scale is not None:
            weights[name + ".scale"] = scale.reshape(()).to(torch.float32)
        weights.pop(name + ".scale_input", None)
        replaced += 1
    return replaced


def expanded(tensor: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """One compact tensor's values in ``dtype`` (``scale``: an fp8 file's scale_weight for it)."""
    if gguf_files.is_quantized(tensor):
        return gguf_files.dequantize(tensor).to(dtype)
    return quantized.expand_fp8(tensor, scale, dtype) if quantized.is_fp8(tensor) else tensor


def expand_rest(weights: dict[str, torch.Tensor], dtype: torch.dtype, prefix: str = "") -> None:
    """In place, for the keys under ``prefix``: what no StoredLinear keeps (embeddings, norms, layers left in the
    compute dtype) becomes ordinary tensors of ``dtype``: GGUF blocks dequantized, fp8 expanded with its scale,
    markers dropped."""
    for key in [k for k, v in weights.items() if k.startswith(prefix) and gguf_files.is_quantized(v)]:
        weights[key] = expanded(weights[key], None, dtype)
    quantized.dequantize_fp8(weights, dtype, prefix)


def prepare(model: torch.nn.Module, weights: dict[str, torch.Tensor], mode: str, dtype: torch.dtype) -> int:
    """``store_linears`` then ``expand_rest``: ``weights`` then fit ``model`` for ``assign_weights``."""
    replaced = store_linears(model, weights, mode)
    expand_rest(weights, dtype)
    return replaced


def logical_shapes(weights: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """Every tensor's real shape (GGUF blocks counted as values)."""
    return {k: gguf_files.shape_of(v) for k, v in weights.items()}


def stored_bytes(module: torch.nn.Module, dtype: torch.dtype) -> int:
    """Bytes ``module`` takes once its floating tensors are in ``dtype``: kept weights at their stored size."""
    total = 0
    for tensor in (*module.parameters(), *module.buffers()):
        size = dtype.itemsize if tensor.is_floating_point() else tensor.element_size()
        total += tensor.numel() * size
    return total


def kept_layers(module: torch.nn.Module) -> dict[str, int]:
    """How many layers keep each stored form ("Q8_0": 40, "float8_e4m3fn": 12...)."""
    counts: dict[str, int] = {}
    for layer in module.modules():
        if isinstance(layer, StoredLinear):
            counts[layer.stored_as] = counts.get(layer.stored_as, 0) + 1
    return counts
