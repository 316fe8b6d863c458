"""M-LSD (large, ``mlsd_large_512_fp32.pth``): the straight-line detector of sd-webui-controlnet's "mlsd".

The network: a MobileNetV2 trunk (the first 14 feature layers, on RGB plus a constant fourth channel) and a
top-down decoder joining its stride-2/4/8/16 features, ending in a half-resolution "TP map": channel 0 the line
centres' logits, channels 1-4 each centre's displacement to the segment's two ends. Module names follow the file's
keys (``backbone.features.N...``, ``block15`` ... ``block23``), so the state dict loads as it is.

Decoding, as the extension: centres are the 3x3 local maxima of the sigmoid map, the 200 best kept; a centre whose
score is over the value threshold and whose segment is longer than the distance threshold (both in TP-map
pixels) becomes a segment, scaled by 2 to image pixels and drawn 1 px wide, white on black.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

FILE = "mlsd_large_512_fp32.pth"
TOP_K = 200

# MobileNetV2's inverted-residual stages used by M-LSD large: (expansion, channels, repeats, first stride)
_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))
_TAPS = (1, 3, 6, 10, 13)  # the feature layers the decoder reads (strides 2, 4, 8, 16, 16)


class _ConvBNReLU6(nn.Sequential):
    """conv -> BN -> ReLU6; a stride-2 one pads only right and bottom by one pixel (TensorFlow's "same")."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        padding = 0 if stride == 2 else (kernel - 1) // 2
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride, padding, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU6())
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            x = F.pad(x, (0, 1, 0, 1))
        return super().forward(x)


class _InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        layers: list[nn.Module] = [_ConvBNReLU6(c_in, hidden, kernel=1)] if expansion != 1 else []
        layers += [_ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class _Trunk(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [_ConvBNReLU6(4, 32, stride=2)]
        c_in = 32
        for expansion, c_out, repeats, stride in _STAGES:
            for i in range(repeats):
                layers.append(_InvertedResidual(c_in, c_out, stride if i == 0 else 1, expansion))
                c_in = c_out
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                taps.append(x)
        return taps


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, padding: int = 0, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=padding, dilation=dilation), nn.BatchNorm2d(c_out),
                         nn.ReLU())


class _Join(nn.Module):
    """1x1-projects a skip feature (``conv2``) and the deeper map (``conv1``, upsampled x2 unless at the same
    stride) and concatenates them, skip first."""

    def __init__(self, c_skip: int, c_deep: int, upscale: bool = True) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(c_deep, 64, 1)
        self.conv2 = _conv_bn_relu(c_skip, 64, 1)
        self.upscale = upscale

    def forward(self, skip: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        deep = self.conv1(deep)
        if self.upscale:
            deep = F.interpolate(deep, scale_factor=2.0, mode="bilinear", align_corners=True)
        return torch.cat((self.conv2(skip), deep), dim=1)


class _Refine(nn.Module):
    def __init__(self, c_in: int = 128, c_out: int = 64) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(c_in, c_in, 3, padding=1)
        self.conv2 = _conv_bn_relu(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x) + x)


class _Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(64, 64, 3, padding=5, dilation=5)
        self.conv2 = _conv_bn_relu(64, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(self.conv1(x)))


class MLSDLarge(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = _Trunk()
        self.block15, self.block16 = _Join(64, 96, upscale=False), _Refine()
        self.block17, self.block18 = _Join(32, 64), _Refine()
        self.block19, self.block20 = _Join(24, 64), _Refine()
        self.block21, self.block22 = _Join(16, 64), _Refine()
        self.block23 = _Head()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 4, H, W) in [-1, 1] -> the (1, 9, H/2, W/2) TP map (the head's last 9 of 16 channels)."""
        c1, c2, c3, c4, c5 = self.backbone(x)
        x = self.block16(self.block15(c4, c5))
        x = self.block18(self.block17(c3, x))
        x = self.block20(self.block19(c2, x))
        x = self.block22(self.block21(c1, x))
        return self.block23(x)[:, 7:]


def load(path: Path) -> MLSDLarge:
    from modules.controlnet.nets.hed import check_layout
    from modules.models.formats import load_state_dict

    path = Path(path)
    state = {k.removeprefix("module."): v for k, v in load_state_dict(path).items()}
    model = MLSDLarge()
    check_layout(path, state, {k: v.shape for k, v in model.state_dict().items()},
                 lambda p, why: ValueError(f"{p.name}: not the M-LSD large line detector ({FILE}): {why}; expected "
                                           "backbone.features.0-13 (MobileNetV2) and block15-block23"))
    model.load_state_dict(state, strict=True)
    return model.float().eval()


def segments(tp_map: torch.Tensor, value_threshold: float, distance_threshold: float) -> np.ndarray:
    """The (N, 4) segments ``x0, y0, x1, y1`` in image pixels (twice the TP map's) of a (1, 9, h, w) TP map."""
    centre = torch.sigmoid(tp_map[:, 0])  # (1, h, w)
    peaks = centre * (F.max_pool2d(centre, 3, stride=1, padding=1) == centre).float()
    scores, indices = torch.topk(peaks.reshape(-1), min(TOP_K, peaks.numel()))
    width = tp_map.shape[3]
    ys, xs = (indices // width).cpu().numpy(), (indices % width).cpu().numpy()
    scores = scores.cpu().numpy()
    offsets = tp_map[0, 1:5].permute(1, 2, 0).cpu().numpy()  # (h, w, 4): start dx, dy, end dx, dy
    lengths = np.sqrt(np.sum((offsets[:, :, :2] - offsets[:, :, 2:]) ** 2, axis=-1))  # float32, as the extension
    found = []
    for y, x, score in zip(ys, xs, scores):
        dx0, dy0, dx1, dy1 = offsets[y, x]
        if score > value_threshold and lengths[y, x] > distance_threshold:
            found.append((x + dx0, y + dy0, x + dx1, y + dy1))
    return 2 * np.asarray(found, dtype=np.float64).reshape(-1, 4)


def detect(model: MLSDLarge, image: np.ndarray, value_threshold: float, distance_threshold: float) -> np.ndarray:
    """The HxW uint8 line map of an RGB uint8 image (the net runs at the image's own size, as the extension's)."""
    import cv2

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"mlsd needs an RGB uint8 image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    x = np.concatenate([image.astype(np.float32), np.ones((height, width, 1), np.float32)], axis=2)
    x = torch.from_numpy(x.transpose(2, 0, 1)[None] / 127.5 - 1.0).float()
    device = next(model.parameters()).device
    with torch.inference_mode():
        lines = segments(model(x.to(device)), value_threshold, distance_threshold)
    out = np.zeros((height, width), np.uint8)
    for x0, y0, x1, y1 in lines:
        cv2.line(out, (int(x0), int(y0)), (int(x1), int(y1)), 255, 1)
    return out
