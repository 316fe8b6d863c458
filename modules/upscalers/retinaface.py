"""RetinaFace (ResNet-50), the face detector A1111 uses through facexlib, without torchvision.

The module layout and parameter names are facexlib's, so its ``detection_Resnet50_Final.pth`` (which A1111 puts in
``models/GFPGAN``) loads as it is. Detection returns boxes, scores and the five landmarks (eyes, nose, mouth corners)
that face alignment needs. NMS is done here in numpy (torchvision's is what breaks on these machines).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCE = (0.1, 0.2)
MEAN_BGR = (104.0, 117.0, 123.0)


def _conv_bn(inp: int, oup: int, kernel: int, leaky: float | None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(inp, oup, kernel, 1, kernel // 2, bias=False), nn.BatchNorm2d(oup)]
    if leaky is not None:
        layers.append(nn.LeakyReLU(negative_slope=leaky, inplace=True))
    return nn.Sequential(*layers)


class _Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck, with its parameter names."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + identity)


class _ResNet50Body(nn.Module):
    """ResNet-50 returning layer2, layer3 and layer4 (facexlib's IntermediateLayerGetter over torchvision's)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.inplanes = 64
        self.layer1 = self._layer(64, 3, 1)
        self.layer2 = self._layer(128, 4, 2)
        self.layer3 = self._layer(256, 6, 2)
        self.layer4 = self._layer(512, 3, 2)

    def _layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                                   nn.BatchNorm2d(planes * 4))
        layers = [_Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [_Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        c2 = self.layer2(self.layer1(x))
        c3 = self.layer3(c2)
        return [c2, c3, self.layer4(c3)]


class _FPN(nn.Module):
    def __init__(self, in_channels: tuple[int, int, int], out: int) -> None:
        super().__init__()
        self.output1 = _conv_bn(in_channels[0], out, 1, 0.0)
        self.output2 = _conv_bn(in_channels[1], out, 1, 0.0)
        self.output3 = _conv_bn(in_channels[2], out, 1, 0.0)
        self.merge1 = _conv_bn(out, out, 3, 0.0)
        self.merge2 = _conv_bn(out, out, 3, 0.0)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        o1, o2, o3 = self.output1(features[0]), self.output2(features[1]), self.output3(features[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[-2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[-2:], mode="nearest"))
        return [o1, o2, o3]


class _SSH(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv3X3 = _conv_bn(channels, channels // 2, 3, None)
        self.conv5X5_1 = _conv_bn(channels, channels // 4, 3, 0.0)
        self.conv5X5_2 = _conv_bn(channels // 4, channels // 4, 3, None)
        self.conv7X7_2 = _conv_bn(channels // 4, channels // 4, 3, 0.0)
        self.conv7x7_3 = _conv_bn(channels // 4, channels // 4, 3, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c5_1 = self.conv5X5_1(x)
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(c5_1), self.conv7x7_3(self.conv7X7_2(c5_1))], 1))


class _Head(nn.Module):
    def __init__(self, channels: int, per_anchor: int, anchors: int = 2) -> None:
        super().__init__()
        self.per_anchor = per_anchor
        self.conv1x1 = nn.Conv2d(channels, anchors * per_anchor, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1).contiguous()
        return out.view(out.shape[0], -1, self.per_anchor)


class RetinaFace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = _ResNet50Body()
        self.fpn = _FPN((512, 1024, 2048), 256)
        self.ssh1, self.ssh2, self.ssh3 = _SSH(256), _SSH(256), _SSH(256)
        self.ClassHead = nn.ModuleList([_Head(256, 2) for _ in range(3)])
        self.BboxHead = nn.ModuleList([_Head(256, 4) for _ in range(3)])
        self.LandmarkHead = nn.ModuleList([_Head(256, 10) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.fpn(self.body(x))
        features = [self.ssh1(features[0]), self.ssh2(features[1]), self.ssh3(features[2])]
        boxes = torch.cat([h(f) for h, f in zip(self.BboxHead, features)], 1)
        scores = torch.cat([h(f) for h, f in zip(self.ClassHead, features)], 1).softmax(-1)
        landmarks = torch.cat([h(f) for h, f in zip(self.LandmarkHead, features)], 1)
        return boxes, scores, landmarks


def load_retinaface(state_dict: dict[str, torch.Tensor]) -> RetinaFace:
    """A RetinaFace from facexlib's weights (a ``module.`` prefix from DataParallel training is dropped)."""
    cleaned = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}
    model = RetinaFace()
    model.load_state_dict(cleaned, strict=True)
    return model.eval()


def priors(height: int, width: int) -> np.ndarray:
    """Anchor boxes (cx, cy, w, h), relative to the image, in the order the heads emit them."""
    out = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        for i, j in itertools.product(range(math.ceil(height / step)), range(math.ceil(width / step))):
            for size in sizes:
                out.append(((j + 0.5) * step / width, (i + 0.5) * step / height, size / width, size / height))
    return np.asarray(out, dtype=np.float32)


def decode(loc: np.ndarray, landmarks: np.ndarray, anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box regressions -> (x1, y1, x2, y2) and landmark regressions -> 5 (x, y), relative to the image."""
    centre = anchors[:, :2] + loc[:, :2] * VARIANCE[0] * anchors[:, 2:]
    size = anchors[:, 2:] * np.exp(loc[:, 2:] * VARIANCE[1])
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    points = np.stack([anchors[:, :2] + landmarks[:, 2 * k:2 * k + 2] * VARIANCE[0] * anchors[:, 2:]
                       for k in range(5)], axis=1)
    return boxes, points


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    order = np.argsort(-scores)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        x1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        iou = inter / np.maximum(area(boxes[i]) + area(boxes[rest]) - inter, 1e-9)
        order = rest[iou <= threshold]
    return keep


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray  # (5, 2) pixels: left eye, right eye, nose, left and right mouth corner


@torch.inference_mode()
def detect_faces(model: RetinaFace, image: Image.Image, threshold: float = 0.8, nms_threshold: float = 0.4,
                 device: torch.device | str = "cpu") -> list[Face]:
    """Faces in ``image``, best first (facexlib's preprocessing: BGR minus the channel means, no scaling)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    bgr = rgb[:, :, ::-1] - np.asarray(MEAN_BGR, dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None].to(device)
    loc, conf, landms = (t[0].float().cpu().numpy() for t in model(x))
    height, width = rgb.shape[:2]
    boxes, points = decode(loc, landms, priors(height, width))
    scores = conf[:, 1]
    chosen = np.nonzero(scores > threshold)[0]
    if chosen.size == 0:
        return []
    scale = np.asarray([width, height], dtype=np.float32)
    boxes = boxes[chosen] * np.tile(scale, 2)
    points = points[chosen] * scale
    scores = scores[chosen]
    return [Face(tuple(float(v) for v in boxes[i]), float(scores[i]), points[i])
            for i in nms(boxes, scores, nms_threshold)]
