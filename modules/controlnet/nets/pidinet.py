"""softedge_pidinet, softedge_pidisafe, scribble_pidinet (and t2ia_sketch_pidi): PiDiNet ("Pixel Difference
Networks for Efficient Edge Detection", Su et al. 2021), as sd-webui-controlnet runs it with ``table5_pidinet.pth``.

The released network is the paper's table-5 model: the "carv4" arrangement of pixel-difference convolutions, 60
base channels, a dilation module (CDCM) of 24 channels and spatial attention (CSAM) on each of its four stages. Its
16 depthwise layers cycle through central (cd), angular (ad) and radial (rd) differences and a vanilla
convolution (cv). Each difference convolution is a fixed linear function of its 3x3 weights, so ``load`` turns it
into a vanilla convolution once (cd, ad: 3x3; rd: 5x5), the same maths the extension evaluates on every call. Only
the fused output, the sigmoid of the 1x1 classifier over the four upsampled side maps, is used.

The file is a training checkpoint: ``{"epoch", "state_dict"}`` with ``module.``-prefixed keys (nn.DataParallel);
the widths are read from it. The network takes BGR in 0..1 (the extension flips the RGB input).

Modes of ``detect`` (extension preprocessor -> mode):

* ``softedge_pidinet``  -> "soft":     probability * 255, truncated to uint8;
* ``softedge_pidisafe`` -> "safe":     ``safe_step`` first (0, 0.5, 1 steps), so faint edges vanish;
* ``scribble_pidinet``  -> "scribble": the soft map, then (on the unpadded map) the same nms (sigma 3, > 127),
  blur (sigma 3) and > 4 binarisation as scribble_hed;
* ``t2ia_sketch_pidi``  -> "sketch":   probability > 0.5 -> 255, else 0 (the T2I-Adapter sketch input).

None of them has a threshold slider; the extension hides their resolution slider and uses the unit's processor
resolution, 512 by default.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from modules.controlnet.nets.hed import check_layout, check_input, finish, safe_step, strip_module_prefix
from modules.models.formats import load_state_dict

FILE = "table5_pidinet.pth"
MODES = ("soft", "safe", "scribble", "sketch")
# The 16 depthwise layers in order; "carv4" gives layer i the difference PDC_CYCLE[i % 4].
LAYERS = ("init_block", *(f"block{s}_{b}" for s, n in ((1, 3), (2, 4), (3, 4), (4, 4)) for b in range(1, n + 1)))
PDC_CYCLE = ("cd", "ad", "rd", "cv")
_LAYOUT = ("init_block.weight (3x3, 3 -> C), block<s>_<b>.conv1/conv2 (+ shortcut in block2_1, block3_1, block4_1), "
           "dilations.<0..3>.conv1/conv2_<1..4>, attentions.<0..3>.conv1/conv2, conv_reduces.<0..3>.conv, classifier; "
           "with or without a module. prefix")

# Angular difference: each tap minus its clockwise neighbour (row-major 3x3 indices).
_AD_NEIGHBOUR = (3, 0, 1, 6, 4, 2, 7, 8, 5)
# Radial difference: taps 1..8 of the 3x3 kernel (row-major) go, in order, to the outer ring of a 5x5 kernel and,
# negated, to the inner ring; the centre stays zero.
_RD_OUTER = (0, 2, 4, 10, 14, 20, 22, 24)
_RD_INNER = (6, 7, 8, 11, 13, 16, 17, 18)


def pdc_of(layer: str) -> str:
    return PDC_CYCLE[LAYERS.index(layer) % len(PDC_CYCLE)]


def to_vanilla(pdc: str, weight: torch.Tensor) -> torch.Tensor:
    """A pixel-difference convolution's 3x3 weights as the vanilla kernel computing the same thing (padding 1 for
    3x3, 2 for rd's 5x5)."""
    out_c, in_c = weight.shape[:2]
    flat = weight.reshape(out_c, in_c, 9)
    if pdc == "cv":
        return weight.clone()
    if pdc == "cd":  # sum_k w_k (x_k - x_centre): the centre tap loses the kernel's sum
        kernel = flat.clone()
        kernel[:, :, 4] -= flat.sum(dim=2)
        return kernel.reshape(out_c, in_c, 3, 3)
    if pdc == "ad":
        return (flat - flat[:, :, list(_AD_NEIGHBOUR)]).reshape(out_c, in_c, 3, 3)
    if pdc == "rd":  # w_k (x_outer_k - x_inner_k) over a 5x5 window
        kernel = flat.new_zeros(out_c, in_c, 25)
        kernel[:, :, list(_RD_OUTER)] = flat[:, :, 1:]
        kernel[:, :, list(_RD_INNER)] = -flat[:, :, 1:]
        return kernel.reshape(out_c, in_c, 5, 5)
    raise ValueError(f"unknown pixel-difference convolution {pdc!r}")


class _Block(nn.Module):
    """Depthwise (converted) difference convolution, ReLU, 1x1 mix, residual; the first block of stages 2-4 pools
    by 2 and projects the residual with a 1x1 ``shortcut``."""

    def __init__(self, pdc: str, cin: int, cout: int, downsample: bool) -> None:
        super().__init__()
        self.downsample = downsample
        k = 5 if pdc == "rd" else 3
        self.conv1 = nn.Conv2d(cin, cin, k, padding=k // 2, groups=cin, bias=False)
        self.conv2 = nn.Conv2d(cin, cout, 1, bias=False)
        if downsample:
            self.shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample:
            x = F.max_pool2d(x, 2, 2)
        y = self.conv2(F.relu(self.conv1(x)))
        return y + (self.shortcut(x) if self.downsample else x)


class _Dilation(nn.Module):
    """CDCM: ReLU, 1x1 to the dilation width, then the sum of four 3x3 convolutions dilated 5, 7, 9 and 11."""

    def __init__(self, cin: int, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1)
        for i, d in enumerate((5, 7, 9, 11), start=1):
            self.add_module(f"conv2_{i}", nn.Conv2d(width, width, 3, padding=d, dilation=d, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.relu(x))
        return self.conv2_1(x) + self.conv2_2(x) + self.conv2_3(x) + self.conv2_4(x)


class _Attention(nn.Module):
    """CSAM: the input scaled by a one-channel sigmoid mask made from its ReLU (1x1 to 4 channels, then 3x3)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, 4, 1)
        self.conv2 = nn.Conv2d(4, 1, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv2(self.conv1(F.relu(x))))


class _Reduce(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PiDiNetwork(nn.Module):
    """BGR 0..1 (N, 3, H, W; H and W multiples of 8) -> fused edge probability (N, 1, H, W). Holds the converted
    (vanilla) kernels; ``base`` is the first stage's channels (C, 2C, 4C, 4C), ``dilation_width`` the CDCM's."""

    def __init__(self, base: int = 60, dilation_width: int = 24) -> None:
        super().__init__()
        self.init_block = nn.Conv2d(3, base, 3, padding=1, bias=False)  # layer 0 is cd: a 3x3 kernel
        stage_widths = (base, 2 * base, 4 * base, 4 * base)
        cin = base
        for layer in LAYERS[1:]:
            stage, index = (int(n) for n in layer[len("block"):].split("_"))
            cout = stage_widths[stage - 1]
            self.add_module(layer, _Block(pdc_of(layer), cin, cout, downsample=index == 1 and stage > 1))
            cin = cout
        self.dilations = nn.ModuleList(_Dilation(c, dilation_width) for c in stage_widths)
        self.attentions = nn.ModuleList(_Attention(dilation_width) for _ in stage_widths)
        self.conv_reduces = nn.ModuleList(_Reduce(dilation_width) for _ in stage_widths)
        self.classifier = nn.Conv2d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        h = self.init_block(x)
        stages = []
        for stage in range(1, 5):
            for layer in (n for n in LAYERS[1:] if n.startswith(f"block{stage}_")):
                h = getattr(self, layer)(h)
            stages.append(h)
        sides = [F.interpolate(reduce(attend(dilate(s))), size, mode="bilinear", align_corners=False)
                 for s, dilate, attend, reduce in zip(stages, self.dilations, self.attentions, self.conv_reduces)]
        return torch.sigmoid(self.classifier(torch.cat(sides, dim=1)))


def _bad(path: Path, why: str) -> ValueError:
    return ValueError(f"{path.name}: not the PiDiNet network ({FILE}): {why}; expected the keys {_LAYOUT}")


def _file_shapes(model: PiDiNetwork) -> dict[str, torch.Size]:
    """The shapes the checkpoint holds: the model's, except that rd layers are stored as 3x3 difference weights."""
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    for layer in LAYERS[1:]:
        if pdc_of(layer) == "rd":
            key = f"{layer}.conv1.weight"
            shapes[key] = torch.Size((*shapes[key][:2], 3, 3))
    return shapes


def convert(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict (difference weights, no prefix) -> ``PiDiNetwork``'s (vanilla kernels), fp32."""
    out = {k: v.float() for k, v in sd.items()}
    for layer in LAYERS:
        key = "init_block.weight" if layer == "init_block" else f"{layer}.conv1.weight"
        out[key] = to_vanilla(pdc_of(layer), out[key])
    return out


def load(path: Path) -> torch.nn.Module:
    """The network of ``table5_pidinet.pth`` (or a file in its layout), its difference convolutions converted, fp32,
    in eval mode on the CPU. A file of another network is a ValueError naming the file; an unreadable one a
    ModelFileError."""
    path = Path(path)
    sd = strip_module_prefix(load_state_dict(path))
    stem, dil = sd.get("init_block.weight"), sd.get("dilations.0.conv1.weight")
    if stem is None or dil is None or stem.ndim != 4 or dil.ndim != 4:
        raise _bad(path, "it has no init_block.weight / dilations.0.conv1.weight convolution")
    model = PiDiNetwork(base=int(stem.shape[0]), dilation_width=int(dil.shape[0]))
    check_layout(path, sd, _file_shapes(model), _bad)
    model.load_state_dict(convert(sd), strict=True)
    return model.float().eval()


@torch.inference_mode()
def detect(model: torch.nn.Module, image: np.ndarray, mode: str = "soft",
           size: tuple[int, int] | None = None) -> np.ndarray:
    """The extension's PiDiNet map of an RGB uint8 HWC image (already resized and padded to a multiple of 64): uint8
    HxW, white edges on black. ``mode``: "soft" (softedge_pidinet), "safe" (softedge_pidisafe), "scribble"
    (scribble_pidinet) or "sketch" (t2ia_sketch_pidi).

    ``size`` (height, width) is the image before padding: when given, the map is cropped to it (and the scribble
    steps run on the cropped map, as the extension's do); without it the whole map is returned and processed."""
    check_input("PiDiNet", image, mode, MODES)
    param = next(model.parameters())
    bgr = np.ascontiguousarray(image[:, :, ::-1])  # trained on OpenCV-read (BGR) images
    x = (torch.from_numpy(bgr).to(param.device).float() / 255.0).permute(2, 0, 1).unsqueeze(0)
    edge = model(x.to(param.dtype))[0, 0].float().cpu().numpy()
    if mode == "sketch":
        edge = (edge > 0.5).astype(np.float32)
    elif mode == "safe":
        edge = safe_step(edge)
    edge = (edge * 255.0).clip(0, 255).astype(np.uint8)
    return finish("PiDiNet", edge, mode, size)
