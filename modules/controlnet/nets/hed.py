"""softedge_hed, softedge_hedsafe and scribble_hed: lllyasviel's Apache-2.0 re-implementation of HED ("Holistically-
Nested Edge Detection"), as sd-webui-controlnet runs it with ``ControlNetHED.pth``.

The network is VGG-like: five stages of 3x3 convolutions + ReLU (2, 2, 3, 3, 3 convolutions; 64, 128, 256, 512, 512
channels), a 2x2 max-pool before every stage but the first, and a 1x1 "projection" to one channel after each stage.
Its input is RGB in 0..255 minus a learnt per-channel mean (``norm``). The edge map is the sigmoid of the mean of the
five projections, each first upsampled to the input size. The file is a flat state dict (fp16 in the real download,
which is read into fp32 as the extension does).

Modes of ``detect`` (extension preprocessor -> mode):

* ``softedge_hed``     -> "soft":     sigmoid(mean) * 255, truncated to uint8;
* ``softedge_hedsafe`` -> "safe":     the same with ``safe_step`` (probability quantised to 0, 0.5, 1, 1.5 steps)
  first, so faint texture edges vanish;
* ``scribble_hed``     -> "scribble": the soft map, then (on the unpadded map) ``nms`` (Gaussian sigma 3, keep
  ridge pixels over 127), a Gaussian blur of sigma 3, and everything over 4 set to 255, the rest to 0.

None of them has a threshold slider; the extension's default processor resolution is 512.

``safe_step``, ``nms`` and ``scribble`` are shared with PiDiNet (``modules.controlnet.nets.pidinet``), whose
preprocessors apply the same post-processing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from modules.models.formats import load_state_dict

FILE = "ControlNetHED.pth"
MODES = ("soft", "safe", "scribble")
# (input channels, output channels, convolutions) of the five stages, fixed by the released weights.
STAGES = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))
_LAYOUT = ("norm (1, 3, 1, 1), block<1..5>.convs.<i>.weight/bias (3x3 convolutions: 64, 128, 256, 512, 512 "
           "channels), block<1..5>.projection.weight/bias (1x1 to one channel)")


class _Stage(nn.Module):
    """3x3 convolutions with ReLU; ``projection`` reads the stage's features out as a one-channel edge logit."""

    def __init__(self, cin: int, cout: int, convs: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(*(nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1) for i in range(convs)))
        self.projection = nn.Conv2d(cout, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for conv in self.convs:
            x = F.relu(conv(x))
        return x, self.projection(x)


class HEDNetwork(nn.Module):
    """RGB 0..255 (N, 3, H, W) -> the five stages' edge logits, at 1, 1/2, 1/4, 1/8 and 1/16 of the input size."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.Parameter(torch.zeros(1, 3, 1, 1))
        for i, (cin, cout, convs) in enumerate(STAGES, start=1):
            self.add_module(f"block{i}", _Stage(cin, cout, convs))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = x - self.norm
        logits = []
        for i in range(1, len(STAGES) + 1):
            if i > 1:
                h = F.max_pool2d(h, 2, 2)
            h, logit = getattr(self, f"block{i}")(h)
            logits.append(logit)
        return tuple(logits)


def _bad(path: Path, why: str) -> ValueError:
    return ValueError(f"{path.name}: not the HED network ({FILE}): {why}; expected the keys {_LAYOUT}")


def strip_module_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Checkpoints saved from nn.DataParallel prefix every key with "module.".
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def check_layout(path: Path, sd: dict[str, torch.Tensor], expected: dict[str, torch.Size],
                 bad: Callable[[Path, str], ValueError] | None = None) -> None:
    """Raise ``bad(path, why)`` (HED's ValueError by default; PiDiNet passes its own) when ``sd``'s keys or shapes
    are not ``expected``'s, before torch's long load_state_dict report."""
    bad = bad or _bad
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys ({', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:4])}"
                         f"{' ...' if len(unexpected) > 4 else ''})")
        raise bad(path, "; ".join(parts))
    wrong = [f"{k} is {tuple(sd[k].shape)}, expected {tuple(s)}" for k, s in expected.items() if sd[k].shape != s]
    if wrong:
        raise bad(path, f"tensor shapes do not fit ({'; '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''})")


def load(path: Path) -> torch.nn.Module:
    """The network of ``ControlNetHED.pth`` (or a file in its layout), fp32, in eval mode on the CPU. A file of
    another network is a ValueError naming the file; an unreadable one a ModelFileError."""
    path = Path(path)
    sd = strip_module_prefix(load_state_dict(path))
    model = HEDNetwork()
    check_layout(path, sd, {k: v.shape for k, v in model.state_dict().items()})
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)  # the real file is fp16
    return model.float().eval()


# ---------------------------------------------------------------------------------------------------------------------
# Post-processing (sd-webui-controlnet's annotator/util.py and its scribble preprocessors), shared with PiDiNet


def safe_step(x: np.ndarray, step: int = 2) -> np.ndarray:
    """Quantise a 0..1 probability to multiples of 1/step: floor(x * (step + 1)) / step, in float32. Weak edges
    (under 1/3 with step 2) become 0, the rest 0.5 or 1 (1.5 at exactly 1, clipped later)."""
    return (x.astype(np.float32) * float(step + 1)).astype(np.int32).astype(np.float32) / float(step)


# The four directions a ridge is looked for along: horizontal, vertical and the two diagonals.
_RIDGE_KERNELS = tuple(np.array(k, dtype=np.uint8) for k in (
    [[0, 0, 0], [1, 1, 1], [0, 0, 0]], [[0, 1, 0], [0, 1, 0], [0, 1, 0]],
    [[1, 0, 0], [0, 1, 0], [0, 0, 1]], [[0, 0, 1], [0, 1, 0], [1, 0, 0]]))


def nms(x: np.ndarray, threshold: float, sigma: float) -> np.ndarray:
    """Non-maximum suppression of a blurred map: a pixel stays when it is the maximum of its 3-pixel line in at
    least one direction and over ``threshold``; uint8 0/255."""
    blurred = cv2.GaussianBlur(x.astype(np.float32), (0, 0), sigma)
    ridge = np.zeros(blurred.shape, dtype=bool)
    for kernel in _RIDGE_KERNELS:
        ridge |= cv2.dilate(blurred, kernel=kernel) == blurred
    out = np.zeros(blurred.shape, dtype=np.uint8)
    out[ridge & (blurred > threshold)] = 255
    return out


def scribble(edge: np.ndarray) -> np.ndarray:
    """The scribble_hed / scribble_pidinet steps on an unpadded uint8 soft-edge map: thin ridges, then thick
    binary strokes (blur sigma 3, anything over 4 -> 255, the rest 0)."""
    lines = cv2.GaussianBlur(nms(edge, 127, 3.0), (0, 0), 3.0)
    return np.where(lines > 4, 255, 0).astype(np.uint8)


def check_input(name: str, image: np.ndarray, mode: str, modes: tuple[str, ...]) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name}: expected an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
    if mode not in modes:
        raise ValueError(f"{name}: unknown mode {mode!r} (one of {', '.join(modes)})")


def finish(name: str, edge: np.ndarray, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """Crop a uint8 soft/safe map to ``size`` (the image before padding) and apply the scribble steps after the
    crop, as the extension removes the padding before them (so the blur does not see the padded border)."""
    if size is not None:
        h, w = size
        if not (0 < h <= edge.shape[0] and 0 < w <= edge.shape[1]):
            raise ValueError(f"{name}: size {size} is not inside the {edge.shape[0]}x{edge.shape[1]} image")
        edge = edge[:h, :w]
    edge = np.ascontiguousarray(edge)
    return scribble(edge) if mode == "scribble" else edge


@torch.inference_mode()
def detect(model: torch.nn.Module, image: np.ndarray, mode: str = "soft",
           size: tuple[int, int] | None = None) -> np.ndarray:
    """The extension's HED map of an RGB uint8 HWC image (already resized and padded to a multiple of 64): uint8 HxW,
    white edges on black. ``mode``: "soft" (softedge_hed), "safe" (softedge_hedsafe) or "scribble" (scribble_hed).

    ``size`` (height, width) is the image before padding: when given, the map is cropped to it (and the scribble
    steps run on the cropped map, as the extension's do); without it the whole map is returned and processed."""
    check_input("HED", image, mode, MODES)
    param = next(model.parameters())
    x = torch.from_numpy(np.ascontiguousarray(image)).to(param.device).float().permute(2, 0, 1).unsqueeze(0)
    logits = [t[0, 0].float().cpu().numpy() for t in model(x.to(param.dtype))]
    h, w = image.shape[:2]
    # As the extension: each logit upsampled by OpenCV (float32), averaged in float32, sigmoid in float64.
    stacked = np.stack([cv2.resize(t, (w, h), interpolation=cv2.INTER_LINEAR) for t in logits], axis=2)
    edge = 1.0 / (1.0 + np.exp(-np.mean(stacked, axis=2).astype(np.float64)))
    if mode == "safe":
        edge = safe_step(edge)
    edge = (edge * 255.0).clip(0, 255).astype(np.uint8)
    return finish("HED", edge, mode, size)
