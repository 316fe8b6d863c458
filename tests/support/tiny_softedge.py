"""Random-weight soft-edge annotator files in the layouts users download, under the names they download them as.

* ``ControlNetHED.pth`` (lllyasviel/Annotators): a flat state dict saved with ``torch.save``, fp16 (the real file is
  29 MB for its 14.7M parameters), keys ``norm``, ``block<1..5>.convs.<i>.*``, ``block<1..5>.projection.*``;
* ``table5_pidinet.pth``: PiDiNet's training checkpoint, ``{"epoch": ..., "state_dict": {"module.<key>": ...}}``
  (saved from nn.DataParallel), fp32, the pixel-difference layers' raw 3x3 weights.

Both architectures have fixed widths and are small, so the files are full size. The weights are seeded and scaled
so that the maps have a spread of values (not saturated at 0 or 255): the soft, safe, scribble and sketch modes then
all have something to decide. The layouts are written out here, not taken from our networks, so a wrong key or
shape in ours fails the strict load.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

HED_FILE = "ControlNetHED.pth"
PIDINET_FILE = "table5_pidinet.pth"

HED_STAGES = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))
PIDINET_BASE, PIDINET_DILATION = 60, 24
SIDE_GAIN = 80.0


def hed_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"norm": (1, 3, 1, 1)}
    for i, (cin, cout, convs) in enumerate(HED_STAGES, start=1):
        for j in range(convs):
            shapes[f"block{i}.convs.{j}.weight"] = (cout, cin if j == 0 else cout, 3, 3)
            shapes[f"block{i}.convs.{j}.bias"] = (cout,)
        shapes[f"block{i}.projection.weight"] = (1, cout, 1, 1)
        shapes[f"block{i}.projection.bias"] = (1,)
    return shapes


def pidinet_shapes(base: int = PIDINET_BASE, dil: int = PIDINET_DILATION) -> dict[str, tuple[int, ...]]:
    """The checkpoint's keys (without ``module.``) in its order: every pixel-difference kernel is 3x3."""
    shapes: dict[str, tuple[int, ...]] = {"init_block.weight": (base, 3, 3, 3)}
    widths = (base, 2 * base, 4 * base, 4 * base)
    cin = base
    for stage, blocks in enumerate((3, 4, 4, 4), start=1):
        cout = widths[stage - 1]
        for b in range(1, blocks + 1):
            name = f"block{stage}_{b}"
            if stage > 1 and b == 1:
                shapes[f"{name}.shortcut.weight"] = (cout, cin, 1, 1)
                shapes[f"{name}.shortcut.bias"] = (cout,)
            shapes[f"{name}.conv1.weight"] = (cin, 1, 3, 3)
            shapes[f"{name}.conv2.weight"] = (cout, cin, 1, 1)
            cin = cout
    for i in range(4):
        shapes[f"conv_reduces.{i}.conv.weight"] = (1, dil, 1, 1)
        shapes[f"conv_reduces.{i}.conv.bias"] = (1,)
    for i in range(4):
        shapes[f"attentions.{i}.conv1.weight"] = (4, dil, 1, 1)
        shapes[f"attentions.{i}.conv1.bias"] = (4,)
        shapes[f"attentions.{i}.conv2.weight"] = (1, 4, 3, 3)
    for i, c in enumerate(widths):
        shapes[f"dilations.{i}.conv1.weight"] = (dil, c, 1, 1)
        shapes[f"dilations.{i}.conv1.bias"] = (dil,)
        for j in range(1, 5):
            shapes[f"dilations.{i}.conv2_{j}.weight"] = (dil, dil, 3, 3)
    shapes["classifier.weight"] = (1, 4, 1, 1)
    shapes["classifier.bias"] = (1,)
    return shapes


def _fan_in(shape: tuple[int, ...]) -> int:
    return math.prod(shape[1:]) if len(shape) > 1 else 1


def hed_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """He-scaled 3x3 convolutions (activations stay at the 0..255 input's scale), projections scaled down so the
    mean logit is a few units either side of zero."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for key, shape in hed_shapes().items():
        if key == "norm":
            t = torch.tensor([123.7, 116.8, 103.9]).reshape(shape) + torch.randn(shape, generator=g)
        elif key.endswith(".bias"):
            t = torch.randn(shape, generator=g) * (1.0 if ".convs." in key else 0.5)
        elif ".projection." in key:
            t = torch.randn(shape, generator=g) * (0.07 / math.sqrt(_fan_in(shape)))
        else:
            t = torch.randn(shape, generator=g) * math.sqrt(2.0 / _fan_in(shape))
        sd[key] = t.half()
    return sd


def pidinet_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Uniform He-like weights; the classifier averages the four side maps (its real initialisation) with a
    seeded offset, so the fused probability straddles 0.5."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for key, shape in pidinet_shapes().items():
        bound = 1.0 / math.sqrt(_fan_in(shape))  # torch's default: activations grow slowly over 16 residual blocks
        if key == "classifier.weight":
            t = torch.full(shape, 0.25) + 0.05 * torch.randn(shape, generator=g)
        elif key.endswith(".bias"):
            t = 0.1 * torch.randn(shape, generator=g)
        else:
            t = (torch.rand(shape, generator=g) * 2 - 1) * bound
            if key.startswith("conv_reduces."):  # the side maps come out small: scaled to logits of a few units
                t = t * SIDE_GAIN
        sd[key] = t.float()
    return sd


def write_hed(folder: Path, seed: int = 0, name: str = HED_FILE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    torch.save(hed_state_dict(seed), path)
    return path


def write_pidinet(folder: Path, seed: int = 0, name: str = PIDINET_FILE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    state = {f"module.{k}": v for k, v in pidinet_state_dict(seed).items()}
    torch.save({"epoch": 13, "state_dict": state}, path)
    return path
