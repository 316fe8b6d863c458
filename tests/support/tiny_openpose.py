"""Random-weight OpenPose files in the real key layouts, under the names users download.

* ``body_pose_model.pth``: Caffe names ``conv1_1`` ... ``conv4_2``, ``conv4_3_CPM``, ``conv4_4_CPM``, stage 1
  ``conv5_<1-5>_CPM_L<1,2>``, stages 2-6 ``Mconv<1-7>_stage<t>_L<1,2>`` (L1: 38 PAF channels, L2: 19 heatmaps).
* ``hand_pose_model.pth`` / ``facenet.pth``: ``conv1_1`` ... ``conv5_2``, ``conv5_3_CPM``, ``conv6_<1,2>_CPM``,
  ``Mconv<1-7>_stage<t>`` with 22 / 71 heatmaps.

The architecture is fixed (the extension builds exactly these layers), so the files are real size: ~210, ~147 and
~154 MB. The key lists are written out here from the layouts, not taken from our loader, so a loader bug cannot hide
behind a matching bug in the fixture. Saved with ``torch.save`` as plain dicts, like the originals.
"""

from __future__ import annotations

from pathlib import Path

import torch

# (name, in, out, kernel) of the VGG front both nets share.
_FRONT = [("conv1_1", 3, 64, 3), ("conv1_2", 64, 64, 3), ("conv2_1", 64, 128, 3), ("conv2_2", 128, 128, 3),
          ("conv3_1", 128, 256, 3), ("conv3_2", 256, 256, 3), ("conv3_3", 256, 256, 3), ("conv3_4", 256, 256, 3),
          ("conv4_1", 256, 512, 3), ("conv4_2", 512, 512, 3)]


def _stages(suffix: str, first_in: int, out: int) -> list[tuple[str, int, int, int]]:
    layers = []
    for t in range(2, 7):
        layers.append((f"Mconv1_stage{t}{suffix}", first_in, 128, 7))
        layers += [(f"Mconv{i}_stage{t}{suffix}", 128, 128, 7) for i in (2, 3, 4, 5)]
        layers += [(f"Mconv6_stage{t}{suffix}", 128, 128, 1), (f"Mconv7_stage{t}{suffix}", 128, out, 1)]
    return layers


def body_layers() -> list[tuple[str, int, int, int]]:
    layers = _FRONT + [("conv4_3_CPM", 512, 256, 3), ("conv4_4_CPM", 256, 128, 3)]
    for branch, out in (("L1", 38), ("L2", 19)):
        layers += [(f"conv5_1_CPM_{branch}", 128, 128, 3), (f"conv5_2_CPM_{branch}", 128, 128, 3),
                   (f"conv5_3_CPM_{branch}", 128, 128, 3), (f"conv5_4_CPM_{branch}", 128, 512, 1),
                   (f"conv5_5_CPM_{branch}", 512, out, 1)]
        layers += _stages(f"_{branch}", 128 + 38 + 19, out)
    return layers


def part_layers(parts: int) -> list[tuple[str, int, int, int]]:
    """The hand (22) / face (71) net."""
    layers = _FRONT + [("conv4_3", 512, 512, 3), ("conv4_4", 512, 512, 3), ("conv5_1", 512, 512, 3),
                       ("conv5_2", 512, 512, 3), ("conv5_3_CPM", 512, 128, 3), ("conv6_1_CPM", 128, 512, 1),
                       ("conv6_2_CPM", 512, parts, 1)]
    return layers + _stages("", 128 + parts, parts)


def state_dict(layers: list[tuple[str, int, int, int]], seed: int = 0, gain: float = 1.45,
               bias: float = 0.05) -> dict[str, torch.Tensor]:
    """Seeded weights: He-like, the gain tuned so the activations neither die nor blow up through the ~30 layers
    (the body net then finds a handful of random people in a 128 x 96 image), small random biases."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for name, c_in, c_out, k in layers:
        sd[f"{name}.weight"] = torch.randn((c_out, c_in, k, k), generator=g) * (gain / (c_in * k * k) ** 0.5)
        sd[f"{name}.bias"] = torch.randn(c_out, generator=g) * bias
    return sd


def _write(folder: Path, name: str, sd: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    torch.save(sd, path)
    return path


def write_body(folder: Path, name: str = "body_pose_model.pth", *, seed: int = 0) -> Path:
    return _write(folder, name, state_dict(body_layers(), seed))


def write_hand(folder: Path, name: str = "hand_pose_model.pth", *, seed: int = 1) -> Path:
    return _write(folder, name, state_dict(part_layers(22), seed))


def write_face(folder: Path, name: str = "facenet.pth", *, seed: int = 2) -> Path:
    return _write(folder, name, state_dict(part_layers(71), seed))
