"""NormalBae (Bae et al. 2021, ``scannet.pt``): the surface-normal network of sd-webui-controlnet's "normal_bae".

An EfficientNet-B5 encoder (TensorFlow's "AdvProp" variant: "same" padding, BatchNorm eps 1e-3, SiLU), five of
whose feature maps (strides 2, 4, 8, 16 and the 2048-channel head conv at 32) feed a U-Net decoder. The decoder
predicts (normal x, y, z, concentration) at 1/8 resolution and refines it at 1/4, 1/2 and full resolution with
per-pixel MLPs over upsampled features; at inference every pixel is refined (the training-time point sampling is
not used). Module names follow the file's keys (``encoder.original_model.blocks.S.B...``, ``decoder.up1._net...``);
block kinds, kernels and widths come from the tensors, the strides from EfficientNet's stage table.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

FILE = "scannet.pt"
_STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)  # EfficientNet's seven stages (the first block of each)
_BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class _SameConv(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding: total padding from the input size, the odd pixel on the
    right/bottom (what stride-2 layers of a TF-trained EfficientNet expect)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
    return _SameConv(c_in, c_out, kernel, stride, groups=groups, bias=bias)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS)


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, reduced, 1)
        self.conv_expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.conv_expand(F.silu(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class _Block(nn.Module):
    """EfficientNet's MBConv: [1x1 expand ->] depthwise k x k -> squeeze-excite -> 1x1 project (+ skip). Without an
    expansion (the first stage) its 1x1 projection is named ``conv_pw`` and its norms ``bn1``/``bn2``."""

    def __init__(self, c_in: int, hidden: int, c_out: int, kernel: int, stride: int, se: int, expand: bool) -> None:
        super().__init__()
        self.expand = expand
        if expand:
            self.conv_pw, self.bn1 = _conv(c_in, hidden), _bn(hidden)
            self.conv_dw, self.bn2 = _conv(hidden, hidden, kernel, stride, groups=hidden), _bn(hidden)
            self.se = _SqueezeExcite(hidden, se)
            self.conv_pwl, self.bn3 = _conv(hidden, c_out), _bn(c_out)
        else:
            self.conv_dw, self.bn1 = _conv(c_in, c_in, kernel, stride, groups=c_in), _bn(c_in)
            self.se = _SqueezeExcite(c_in, se)
            self.conv_pw, self.bn2 = _conv(c_in, c_out), _bn(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.expand:
            y = F.silu(self.bn1(self.conv_pw(x)))
            y = self.se(F.silu(self.bn2(self.conv_dw(y))))
            y = self.bn3(self.conv_pwl(y))
        else:
            y = self.se(F.silu(self.bn1(self.conv_dw(x))))
            y = self.bn2(self.conv_pw(y))
        return x + y if self.skip else y


class _EfficientNet(nn.Module):
    def __init__(self, shapes: dict[str, torch.Size], prefix: str) -> None:
        super().__init__()
        stem = shapes[f"{prefix}conv_stem.weight"][0]
        self.conv_stem, self.bn1 = _conv(3, stem, 3, 2), _bn(stem)
        self.blocks = nn.Sequential()
        c_in = stem
        for s, stride in enumerate(_STAGE_STRIDES):
            stage = nn.Sequential()
            b = 0
            while f"{prefix}blocks.{s}.{b}.conv_dw.weight" in shapes:
                at = f"{prefix}blocks.{s}.{b}."
                expand = f"{at}conv_pwl.weight" in shapes
                hidden, _, kernel, _ = shapes[f"{at}conv_dw.weight"]
                c_out = shapes[f"{at}conv_pwl.weight" if expand else f"{at}conv_pw.weight"][0]
                se = shapes[f"{at}se.conv_reduce.weight"][0]
                stage.append(_Block(c_in, hidden, c_out, kernel, stride if b == 0 else 1, se, expand))
                c_in, b = c_out, b + 1
            self.blocks.append(stage)
        head = shapes[f"{prefix}conv_head.weight"][0]
        self.conv_head, self.bn2 = _conv(c_in, head), _bn(head)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The decoder's inputs: stages 0, 1, 2 and 4's outputs and the head conv's (before its norm)."""
        x = F.silu(self.bn1(self.conv_stem(x)))
        taps = []
        for s, stage in enumerate(self.blocks):
            x = stage(x)
            if s in (0, 1, 2, 4):
                taps.append(x)
        taps.append(self.conv_head(x))
        return taps


class _Encoder(nn.Module):
    def __init__(self, shapes: dict[str, torch.Size]) -> None:
        super().__init__()
        self.original_model = _EfficientNet(shapes, "encoder.original_model.")


class _UpSample(nn.Module):
    """Upsample to the skip feature's size (bilinear, corners aligned), concatenate, two conv-BN-LeakyReLUs."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self._net = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.LeakyReLU(),
                                  nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.LeakyReLU())

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        return self._net(torch.cat([x, skip], dim=1))


def _mlp(c_in: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(c_in, 128, 1), nn.ReLU(), nn.Conv1d(128, 128, 1), nn.ReLU(),
                         nn.Conv1d(128, 128, 1), nn.ReLU(), nn.Conv1d(128, 4, 1))


def _normalized(out: torch.Tensor) -> torch.Tensor:
    """Unit normals and a positive concentration (ELU + 1 + 0.01)."""
    normal, kappa = out[:, :3], out[:, 3:]
    norm = torch.sqrt((normal ** 2).sum(dim=1, keepdim=True)) + 1e-10
    return torch.cat([normal / norm, F.elu(kappa) + 1.01], dim=1)


class _Decoder(nn.Module):
    def __init__(self, widths: tuple[int, int, int, int, int]) -> None:
        super().__init__()
        s2, s4, s8, s16, head = widths  # the skip features' widths at strides 2, 4, 8 and 16, and the head's
        self.conv2 = nn.Conv2d(head, head, 1)
        self.up1 = _UpSample(head + s16, 1024)
        self.up2 = _UpSample(1024 + s8, 512)
        self.up3 = _UpSample(512 + s4, 256)
        self.up4 = _UpSample(256 + s2, 128)
        self.out_conv_res8 = nn.Conv2d(512, 4, 3, padding=1)
        self.out_conv_res4, self.out_conv_res2, self.out_conv_res1 = _mlp(512 + 4), _mlp(256 + 4), _mlp(128 + 4)

    @staticmethod
    def _refine(mlp: nn.Sequential, features: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=True)

        x = torch.cat([up(features), up(coarse)], dim=1)
        b, c, h, w = x.shape
        return _normalized(mlp(x.view(b, c, -1))).view(b, 4, h, w)

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        s2, s4, s8, s16, s32 = taps
        d1 = self.up1(self.conv2(s32), s16)
        d2 = self.up2(d1, s8)
        d3 = self.up3(d2, s4)
        d4 = self.up4(d3, s2)
        out = _normalized(self.out_conv_res8(d2))
        out = self._refine(self.out_conv_res4, d2, out)
        out = self._refine(self.out_conv_res2, d3, out)
        return self._refine(self.out_conv_res1, d4, out)


class NormalBae(nn.Module):
    def __init__(self, shapes: dict[str, torch.Size]) -> None:
        super().__init__()
        self.encoder = _Encoder(shapes)
        stages = self.encoder.original_model.blocks
        widths = [stages[s][-1].bn3.num_features if stages[s][-1].expand else stages[s][-1].bn2.num_features
                  for s in (0, 1, 2, 4)]
        self.decoder = _Decoder((*widths, self.encoder.original_model.conv_head.out_channels))  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) normalised RGB -> (1, 4, H, W): unit normal and concentration."""
        return self.decoder(self.encoder.original_model(x))


def load(path: Path) -> NormalBae:
    from modules.controlnet.nets.hed import check_layout
    from modules.models.formats import load_state_dict

    path = Path(path)
    state = {k.removeprefix("module."): v for k, v in load_state_dict(path).items()}
    shapes = {k: v.shape for k, v in state.items()}
    try:
        model = NormalBae(shapes)
    except (KeyError, IndexError) as err:
        raise ValueError(f"{path.name}: not the NormalBae surface-normal model ({FILE}): no {err} tensor; expected "
                         "encoder.original_model.* (EfficientNet-B5) and decoder.*") from None
    check_layout(path, state, {k: v.shape for k, v in model.state_dict().items()},
                 lambda p, why: ValueError(f"{p.name}: not the NormalBae surface-normal model ({FILE}): {why}"))
    model.load_state_dict(state, strict=True)
    return model.float().eval()


def detect(model: NormalBae, image: np.ndarray) -> np.ndarray:
    """The HxWx3 uint8 normal map of an RGB uint8 image: (normal + 1) / 2 as RGB, as the extension draws it."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"normal_bae needs an RGB uint8 image, got {image.dtype} {image.shape}")
    device = next(model.parameters()).device
    x = torch.from_numpy(image).float().to(device).permute(2, 0, 1)[None] / 255.0
    mean = torch.tensor(_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(_STD, device=device).view(1, 3, 1, 1)
    with torch.inference_mode():
        normal = model((x - mean) / std)[:, :3]
    normal = ((normal + 1) * 0.5).clip(0, 1)[0].permute(1, 2, 0).cpu().numpy()
    return (normal * 255.0).clip(0, 255).astype(np.uint8)
