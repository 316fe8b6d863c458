"""lineart_anime: the pix2pix U-Net generator of ``netG.pth``, as sd-webui-controlnet runs it.

The file is a recursive pix2pix ``UnetGenerator`` (ngf 64, 8 levels, InstanceNorm without affine parameters, so the
file holds only convolutions, all with biases). Its keys nest one level per depth: level 0 is ``model.model.``,
level 1 ``model.model.1.model.``, and each deeper level adds ``3.model.``. Inside a level the down convolution is
at index 0 (outermost) or 1, the up (transposed) convolution at 3 (outermost and innermost) or 5. Here the levels
are kept in flat lists, which makes the forward pass a plain loop and lets the depth and widths come from the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modules.models.formats import load_state_dict

FILE = "netG.pth"
_LAYOUT = ("model.model.0 / model.model.3 (outermost down / up conv), then per deeper level "
           "model.model.1.model.[3.model.]*1 (down conv) and .5 (up conv; .3 at the innermost level)")


@dataclass(frozen=True)
class UnetSpec:
    # channels[i] -> channels[i + 1] is level i's down convolution; level 0 reads the image.
    channels: tuple[int, ...]
    out_channels: int

    @property
    def depth(self) -> int:
        return len(self.channels) - 1


def _level_prefix(level: int) -> str:
    return "model.model." if level == 0 else "model.model.1.model." + "3.model." * (level - 1)


def _file_key(level: int, depth: int, up: bool) -> str:
    """The file's name (without .weight/.bias) of a level's down or up convolution."""
    if not up:
        index = 0 if level == 0 else 1
    else:
        index = 3 if level in (0, depth - 1) else 5
    return f"{_level_prefix(level)}{index}"


class LineartAnimeUnet(nn.Module):
    """Image in -1..1 (N, 3, H, W; H and W multiples of 2**depth) -> drawing in -1..1 (N, 1, H, W)."""

    def __init__(self, spec: UnetSpec) -> None:
        super().__init__()
        self.spec = spec
        c, n = spec.channels, spec.depth
        self.down = nn.ModuleList(nn.Conv2d(c[i], c[i + 1], 4, stride=2, padding=1) for i in range(n))
        # Every level but the innermost feeds its up conv the deeper result concatenated with its skip input.
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(c[i + 1] * (1 if i == n - 1 else 2), spec.out_channels if i == 0 else c[i], 4,
                               stride=2, padding=1)
            for i in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.spec.depth
        skips = []  # each level's input, which its output is concatenated after
        h = x
        for i, conv in enumerate(self.down):
            skips.append(h)
            if i > 0:
                h = F.leaky_relu(h, 0.2)
            h = conv(h)
            if 0 < i < n - 1:  # neither the outermost nor the innermost normalises its down path
                h = F.instance_norm(h)
        for i in range(n - 1, -1, -1):
            h = self.up[i](F.relu(h))
            if i == 0:
                return torch.tanh(h)
            h = torch.cat([skips[i], F.instance_norm(h)], 1)
        raise AssertionError("unreachable")

    def file_state_dict_keys(self) -> dict[str, str]:
        """Our parameter name -> the file's."""
        names = {}
        for i in range(self.spec.depth):
            for up, ours in ((False, "down"), (True, "up")):
                for p in ("weight", "bias"):
                    names[f"{ours}.{i}.{p}"] = f"{_file_key(i, self.spec.depth, up)}.{p}"
        return names


def _bad(path: Path, why: str) -> ValueError:
    return ValueError(f"{path.name}: not a lineart_anime U-Net ({FILE}): {why}; expected the keys {_LAYOUT}")


def _strip_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # netG.pth was saved from nn.DataParallel: its keys may start with "module.".
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def spec_of(path: Path, sd: dict[str, torch.Tensor]) -> UnetSpec:
    """The U-Net's depth and widths, read from the down convolutions' shapes."""
    outer = sd.get("model.model.0.weight")
    if outer is None or outer.ndim != 4:
        raise _bad(path, "it has no model.model.0.weight convolution")
    channels = [int(outer.shape[1]), int(outer.shape[0])]
    level = 1
    while (w := sd.get(f"{_level_prefix(level)}1.weight")) is not None and w.ndim == 4:
        channels.append(int(w.shape[0]))
        level += 1
    if level < 2:
        raise _bad(path, "it has fewer than two levels")
    up = sd.get("model.model.3.weight")
    if up is None or up.ndim != 4:
        raise _bad(path, "it has no model.model.3.weight (outermost up convolution)")
    return UnetSpec(channels=tuple(channels), out_channels=int(up.shape[1]))


def load(path: Path) -> torch.nn.Module:
    """The U-Net of ``netG.pth`` (or a file in its layout), fp32, in eval mode on the CPU. A file of another
    network is a ValueError naming the file; an unreadable one a ModelFileError."""
    path = Path(path)
    sd = _strip_prefix(load_state_dict(path))
    model = LineartAnimeUnet(spec_of(path, sd))
    names = model.file_state_dict_keys()
    wanted = set(names.values())
    missing, unexpected = sorted(wanted - set(sd)), sorted(set(sd) - wanted)
    if missing or unexpected:
        parts = [f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}" if missing else "",
                 f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}" if unexpected
                 else ""]
        raise _bad(path, "; ".join(p for p in parts if p))
    try:
        model.load_state_dict({ours: sd[theirs].float() for ours, theirs in names.items()}, strict=True)
    except RuntimeError as e:  # a shape that does not fit the widths the down convolutions gave
        detail = re.sub(r"\s+", " ", str(e)).strip()
        raise _bad(path, f"tensor shapes do not fit ({detail[:300]})") from None
    return model.float().eval()


@torch.inference_mode()
def detect(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """The extension's lineart_anime map of an RGB uint8 HWC image (already resized to the processor resolution):
    uint8 HxW, white lines on black.

    As the extension: bicubic resize up to multiples of 256, the net on -1..1, its output back to 0..255 in
    float32, bicubic resize back, clip, truncate to uint8, then the preprocessor's inversion.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"lineart_anime: expected an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    hn, wn = 256 * int(np.ceil(h / 256.0)), 256 * int(np.ceil(w / 256.0))
    img = cv2.resize(np.ascontiguousarray(image), (wn, hn), interpolation=cv2.INTER_CUBIC)
    param = next(model.parameters())
    x = torch.from_numpy(img).to(param.device).float() / 127.5 - 1.0
    x = x.permute(2, 0, 1).unsqueeze(0).to(param.dtype)
    line = model(x)[0, 0].float() * 127.5 + 127.5
    line = cv2.resize(line.cpu().numpy(), (w, h), interpolation=cv2.INTER_CUBIC)
    return 255 - line.clip(0, 255).astype(np.uint8)
