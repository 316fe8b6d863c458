"""DeepDanbooru's ``resnet_custom_v3`` (A1111's "Interrogate DeepBooru"), from the file A1111 users have:
``models/torch_deepdanbooru/model-resnet_custom_v3.pt`` (AUTOMATIC1111/TorchDeepDanbooru's conversion of the Keras
model: ``n_Conv_0`` ... ``n_Conv_178`` and the tag list under ``tags``), read by our safe loader.

The network is a bottleneck ResNet with TensorFlow's "same" padding written out: a 7x7/2 stem (zero pad 2, 3) and a
3x3/2 max pool (pad 0, 1 with -inf); then stages of bottleneck blocks (1x1 -> 3x3 -> 1x1, ReLU after each and after
the sum). A stage's first block has a 1x1 projection shortcut (its conv comes first in the file's numbering) and
downsamples in its 3x3 (pad 0, 1); the third stage also downsamples in the middle, in a block whose projection is
numbered after its own convs. Channels: 256, 512, 1024, 1024, 2048, 4096, then a 1x1 conv to one score per tag,
averaged over the picture, through a sigmoid. Every width is read from the file's tensors, the structure from
the stage table below. The input is 512x512 RGB in 0-1, NHWC, fitted as A1111 fits it (resize and fill).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

FILE = "model-resnet_custom_v3.pt"
SIZE = 512
# (blocks, stride of the first block) per stage; "down" marks the third stage's mid-stage downsampling block.
_STAGES: tuple[tuple[str, ...], ...] = (
    ("first1",) + ("identity",) * 2,
    ("first2",) + ("identity",) * 7,
    ("first2",) + ("identity",) * 19 + ("down",) + ("identity",) * 19,
    ("first2",) + ("identity",) * 2,
    ("first2",) + ("identity",) * 2,
)
CONVS = 179  # n_Conv_0 (stem) ... n_Conv_178 (the tag scores)


@dataclass(frozen=True)
class _Block:
    kind: str  # "first1", "first2", "identity", "down"
    convs: tuple[int, int, int]  # the 1x1, 3x3, 1x1 of the main path
    shortcut: int | None  # the projection's conv index (None: identity)


def plan() -> list[_Block]:
    """Every block with the file's conv numbers, in order."""
    blocks, index = [], 1
    for stage in _STAGES:
        for kind in stage:
            if kind.startswith("first"):
                blocks.append(_Block(kind, (index + 1, index + 2, index + 3), index))
                index += 4
            elif kind == "down":
                blocks.append(_Block(kind, (index, index + 1, index + 2), index + 3))
                index += 4
            else:
                blocks.append(_Block(kind, (index, index + 1, index + 2), None))
                index += 3
    assert index == CONVS - 1, index
    return blocks


class DeepDanbooru(torch.nn.Module):
    def __init__(self, weights: dict[str, torch.Tensor], tags: list[str]) -> None:
        super().__init__()
        self.tags = list(tags)
        self.blocks = plan()
        strides = {0: 2}
        for block in self.blocks:
            if block.kind in ("first2", "down"):
                strides[block.convs[1]] = 2
            if block.shortcut is not None:
                strides[block.shortcut] = 2 if block.kind != "first1" else 1
        for i in range(CONVS):
            weight = weights[f"n_Conv_{i}.weight"]
            out_ch, in_ch, kh, kw = weight.shape
            conv = torch.nn.Conv2d(in_ch, out_ch, (kh, kw), stride=strides.get(i, 1),
                                   bias=f"n_Conv_{i}.bias" in weights, device="meta")
            setattr(self, f"n_Conv_{i}", conv)
        if self.n_Conv_178.out_channels != len(self.tags):
            raise ValueError(f"the file scores {self.n_Conv_178.out_channels} tags but lists {len(self.tags)}")

    def conv(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"n_Conv_{i}")(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) in 0-1 -> (B, tags) probabilities."""
        x = F.relu(self.conv(0, F.pad(images.permute(0, 3, 1, 2), [2, 3, 2, 3])))
        x = F.max_pool2d(F.pad(x, [0, 1, 0, 1], value=float("-inf")), 3, 2)
        for block in self.blocks:
            first, middle, last = block.convs
            strided = block.kind in ("first2", "down")
            y = F.relu(self.conv(first, x))
            y = F.relu(self.conv(middle, F.pad(y, [0, 1, 0, 1] if strided else [1, 1, 1, 1])))
            y = self.conv(last, y)
            shortcut = self.conv(block.shortcut, x) if block.shortcut is not None else x
            x = F.relu(y + shortcut)
        scores = self.conv(178, x).mean(dim=(2, 3))
        return torch.sigmoid(scores)


def load(path: Path) -> DeepDanbooru:
    """The model in ``path``; a file of another layout is a ValueError naming what does not fit."""
    from modules.models import formats

    weights, extras = formats.load_with_extras(path)
    tags = extras.get("tags")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError(f"{path.name} has no tag list (a DeepDanbooru file keeps it under 'tags')")
    missing = [f"n_Conv_{i}.weight" for i in range(CONVS) if f"n_Conv_{i}.weight" not in weights]
    if missing:
        raise ValueError(f"{path.name} is not DeepDanbooru's resnet_custom_v3: {len(missing)} convolutions are "
                         f"missing (e.g. {missing[0]})")
    model = DeepDanbooru(weights, tags)
    try:
        model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True, assign=True)
    except RuntimeError as err:
        raise ValueError(f"{path.name} does not fit DeepDanbooru's resnet_custom_v3: {err}") from None
    return model.eval().requires_grad_(False)


def prepare(image: Image.Image) -> torch.Tensor:
    """(1, 512, 512, 3) in 0-1: the picture fitted into the square as A1111 fits it (resize and fill)."""
    from modules.processing import imageops

    fitted = imageops.resize_image(2, image.convert("RGB"), SIZE, SIZE)
    return torch.from_numpy(np.asarray(fitted, dtype=np.float32)[None] / 255.0)


@torch.inference_mode()
def predict(model: DeepDanbooru, image: Image.Image, device: str = "cpu") -> dict[str, float]:
    """Every tag's probability, ratings (``rating:*``) left out as A1111 leaves them out."""
    probabilities = model.to(device)(prepare(image).to(device))[0].float().cpu().tolist()
    return {tag: p for tag, p in zip(model.tags, probabilities) if not tag.startswith("rating:")}
