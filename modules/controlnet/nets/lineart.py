"""lineart_realistic and lineart_coarse: the sketch generator of "Informative Drawings" (Chan et al.), as
sd-webui-controlnet runs it with ``sk_model.pth`` (realistic) and ``sk_model2.pth`` (coarse).

The network is a CycleGAN-style ResNet generator: a 7x7 stem, stride-2 downsamplings, residual blocks, transposed
upsamplings and a 7x7 head with a sigmoid; every normalisation is an ``InstanceNorm2d`` without affine parameters, so
the file holds only convolutions. Module names and Sequential indices follow the file's keys (``model0.1.weight``,
``model2.<i>.conv_block.5.weight``...), so its state dict loads as is; the widths and block counts are read from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from modules.models.formats import load_state_dict

FILES = ("sk_model.pth", "sk_model2.pth")
_LAYOUT = ("model0.1 (7x7 stem), model1.<3k> (downsampling convs), model2.<i>.conv_block.1/5 (residual blocks), "
           "model3.<3k> (transposed convs), model4.1 (7x7 head)")


@dataclass(frozen=True)
class GeneratorSpec:
    in_channels: int
    out_channels: int
    width: int  # channels of the stem; each downsampling doubles them
    downsamplings: int
    residual_blocks: int


class _Residual(nn.Module):
    # Index layout of the file's ``conv_block``: pad, conv(1), norm, relu, pad, conv(5), norm.
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class LineartGenerator(nn.Module):
    """Image in 0..1 (N, 3, H, W; H and W multiples of 2**downsamplings) -> line intensity in 0..1 (N, 1, H, W)."""

    def __init__(self, spec: GeneratorSpec) -> None:
        super().__init__()
        self.spec = spec
        w = spec.width
        self.model0 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(spec.in_channels, w, 7), nn.InstanceNorm2d(w),
                                    nn.ReLU())
        down: list[nn.Module] = []
        for i in range(spec.downsamplings):
            c = w << i
            down += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * c), nn.ReLU()]
        self.model1 = nn.Sequential(*down)
        deep = w << spec.downsamplings
        self.model2 = nn.Sequential(*(_Residual(deep) for _ in range(spec.residual_blocks)))
        up: list[nn.Module] = []
        for i in range(spec.downsamplings, 0, -1):
            c = w << i
            up += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1),
                   nn.InstanceNorm2d(c // 2), nn.ReLU()]
        self.model3 = nn.Sequential(*up)
        self.model4 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(w, spec.out_channels, 7), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model4(self.model3(self.model2(self.model1(self.model0(x)))))


def _count(keys: set[str], pattern: str, step: int = 1) -> int:
    """How many consecutive indices 0, step, 2*step... the pattern's ``{}`` takes in the keys."""
    n = 0
    while pattern.format(step * n) in keys:
        n += 1
    return n


def _bad(path: Path, why: str) -> ValueError:
    return ValueError(f"{path.name}: not a lineart generator ({' / '.join(FILES)}): {why}; expected the keys "
                      f"{_LAYOUT}")


def spec_of(path: Path, sd: dict[str, torch.Tensor]) -> GeneratorSpec:
    """The generator's sizes, read from the state dict's shapes."""
    stem = sd.get("model0.1.weight")
    head = sd.get("model4.1.weight")
    if stem is None or head is None or stem.ndim != 4 or head.ndim != 4:
        raise _bad(path, "it has no model0.1.weight / model4.1.weight convolution")
    keys = set(sd)
    # The downsampling convs sit at Sequential indices 0, 3, 6... (conv, norm, relu).
    downs, ups = _count(keys, "model1.{}.weight", 3), _count(keys, "model3.{}.weight", 3)
    if downs != ups:
        raise _bad(path, f"{downs} downsampling but {ups} upsampling layers")
    return GeneratorSpec(in_channels=int(stem.shape[1]), out_channels=int(head.shape[0]), width=int(stem.shape[0]),
                         downsamplings=downs, residual_blocks=_count(keys, "model2.{}.conv_block.1.weight"))


def _strip_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Checkpoints saved from nn.DataParallel prefix every key with "module.".
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def load(path: Path) -> torch.nn.Module:
    """The generator of ``sk_model.pth`` / ``sk_model2.pth`` (or a file in their layout), fp32, in eval mode on
    the CPU. A file of another network is a ValueError naming the file; an unreadable one a ModelFileError."""
    path = Path(path)
    sd = _strip_prefix(load_state_dict(path))
    spec = spec_of(path, sd)
    model = LineartGenerator(spec)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(sd)), sorted(set(sd) - expected)
    if missing or unexpected:
        parts = [f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}" if missing else "",
                 f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}" if unexpected else ""]
        raise _bad(path, "; ".join(p for p in parts if p))
    try:
        model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    except RuntimeError as e:  # a shape that does not fit the widths the stem and head gave
        detail = re.sub(r"\s+", " ", str(e)).strip()
        raise _bad(path, f"tensor shapes do not fit ({detail[:300]})") from None
    return model.float().eval()


@torch.inference_mode()
def detect(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """The extension's lineart map of an RGB uint8 HWC image (already resized and padded to a multiple of 64):
    uint8 HxW, white lines on black (its preprocessors invert the generator's dark-on-white drawing)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"lineart: expected an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
    param = next(model.parameters())
    x = torch.from_numpy(np.ascontiguousarray(image)).to(param.device).float() / 255.0
    x = x.permute(2, 0, 1).unsqueeze(0).to(param.dtype)
    line = model(x)[0, 0].float().cpu().numpy()
    # As the extension: scale in float32, clip, truncate to uint8, then invert.
    line = (line * 255.0).clip(0, 255).astype(np.uint8)
    return 255 - line
