"""The original OpenPose detectors (CMU; the PyTorch port sd-webui-controlnet ships in ``annotator/openpose``) for the
preprocessors openpose, openpose_hand, openpose_face, openpose_faceonly and openpose_full.

* ``body_pose_model.pth``: the body net, a VGG-19 front (to conv4_2, then conv4_3_CPM / conv4_4_CPM) and six
  two-branch stages: L1 predicts 38 PAF channels (19 limbs x (x, y)), L2 19 heatmaps (18 parts + background).
* ``hand_pose_model.pth`` / ``facenet.pth``: the same single-branch network (VGG to conv5_3_CPM, six stages) with 22
  (21 hand points + background) or 71 (70 face points + background) heatmaps.

The files keep the Caffe layer names (``conv1_1.weight``, ``Mconv7_stage6_L2.bias``...); our nets register their
convolutions under exactly those names, so a file loads strictly as it is. Every convolution is followed by a ReLU
but each stage's prediction; except that, as in the extension (its no-ReLU list names ``Mconv7_stage6_L1`` twice and
never ``Mconv7_stage6_L2``), the body's final heatmap prediction has one too.

``detect`` runs what the extension's ``OpenposeDetector.detect_poses`` does: the body on the whole image (in BGR, as
there), then per person a hand crop from each shoulder-elbow-wrist chain and a face crop from the nose, eyes and ears.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter, label
from torch import nn

from modules.controlnet.nets import openpose_body as ob
from modules.controlnet.nets.pose_types import Body, Keypoint, Person, Points, PoseResult
from modules.models.formats import load_state_dict

FILES = ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth")

Layer = Optional[tuple[str, int, int, int]]  # (name, in, out, kernel), stride 1, "same" padding; None: a 2x2 max pool

_VGG_FRONT: list[Layer] = [
    ("conv1_1", 3, 64, 3), ("conv1_2", 64, 64, 3), None,
    ("conv2_1", 64, 128, 3), ("conv2_2", 128, 128, 3), None,
    ("conv3_1", 128, 256, 3), ("conv3_2", 256, 256, 3), ("conv3_3", 256, 256, 3), ("conv3_4", 256, 256, 3), None,
    ("conv4_1", 256, 512, 3), ("conv4_2", 512, 512, 3),
]
BODY_PAFS, BODY_HEATMAPS, HAND_HEATMAPS, FACE_HEATMAPS = 38, 19, 22, 71
FEATURES = 128  # channels of the front's output, concatenated to every stage's input


def _refine_stage(suffix: str, in_channels: int, out_channels: int) -> list[Layer]:
    # Stages 2-6: five 7x7 convolutions, a 1x1, and the 1x1 prediction.
    return ([(f"Mconv1_{suffix}", in_channels, 128, 7)] + [(f"Mconv{i}_{suffix}", 128, 128, 7) for i in range(2, 6)]
            + [(f"Mconv6_{suffix}", 128, 128, 1), (f"Mconv7_{suffix}", 128, out_channels, 1)])


class _NamedConvs(nn.Module):
    """Convolutions registered under the file's key names; ``_run`` applies a chain of them, each followed by a ReLU
    except those named in ``linear``."""

    def __init__(self, chains: dict[str, list[Layer]], linear: set[str]) -> None:
        super().__init__()
        self.chains = chains
        self.linear = linear
        for layers in chains.values():
            for layer in layers:
                if layer is not None:
                    name, c_in, c_out, k = layer
                    self.add_module(name, nn.Conv2d(c_in, c_out, k, padding=k // 2))

    def _run(self, chain: str, x: torch.Tensor) -> torch.Tensor:
        for layer in self.chains[chain]:
            if layer is None:
                x = F.max_pool2d(x, 2, 2)
                continue
            x = getattr(self, layer[0])(x)
            if layer[0] not in self.linear:
                x = F.relu(x)
        return x


class BodyPoseNet(_NamedConvs):
    """BGR image (N, 3, H, W) in -0.5..0.5 -> (PAFs (N, 38, H/8, W/8), heatmaps (N, 19, H/8, W/8))."""

    def __init__(self) -> None:
        chains: dict[str, list[Layer]] = {
            "front": _VGG_FRONT + [("conv4_3_CPM", 512, 256, 3), ("conv4_4_CPM", 256, FEATURES, 3)]}
        for branch, out in (("L1", BODY_PAFS), ("L2", BODY_HEATMAPS)):
            chains[f"stage1_{branch}"] = [(f"conv5_{i}_CPM_{branch}", 128, 128, 3) for i in (1, 2, 3)] + [
                (f"conv5_4_CPM_{branch}", 128, 512, 1), (f"conv5_5_CPM_{branch}", 512, out, 1)]
            for t in range(2, 7):
                chains[f"stage{t}_{branch}"] = _refine_stage(f"stage{t}_{branch}", BODY_PAFS + BODY_HEATMAPS + FEATURES,
                                                             out)
        linear = {"conv5_5_CPM_L1", "conv5_5_CPM_L2"} | {f"Mconv7_stage{t}_L1" for t in range(2, 7)} | {
            f"Mconv7_stage{t}_L2" for t in range(2, 6)}  # not stage 6's L2: the extension's ReLU stays
        super().__init__(chains, linear)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self._run("front", x)
        pafs, heatmaps = self._run("stage1_L1", features), self._run("stage1_L2", features)
        for t in range(2, 7):
            joined = torch.cat([pafs, heatmaps, features], 1)
            pafs, heatmaps = self._run(f"stage{t}_L1", joined), self._run(f"stage{t}_L2", joined)
        return pafs, heatmaps


class PartNet(_NamedConvs):
    """The hand (22 heatmaps) and face (71) net: BGR image (N, 3, H, W) in -0.5..0.5 -> the last stage's heatmaps
    (N, parts, H/8, W/8)."""

    def __init__(self, parts: int) -> None:
        front = _VGG_FRONT + [("conv4_3", 512, 512, 3), ("conv4_4", 512, 512, 3), ("conv5_1", 512, 512, 3),
                              ("conv5_2", 512, 512, 3), ("conv5_3_CPM", 512, FEATURES, 3)]
        chains: dict[str, list[Layer]] = {
            "front": front, "stage1": [("conv6_1_CPM", FEATURES, 512, 1), ("conv6_2_CPM", 512, parts, 1)]}
        for t in range(2, 7):
            chains[f"stage{t}"] = _refine_stage(f"stage{t}", parts + FEATURES, parts)
        super().__init__(chains, {"conv6_2_CPM"} | {f"Mconv7_stage{t}" for t in range(2, 7)})
        self.parts = parts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self._run("front", x)
        heatmaps = self._run("stage1", features)
        for t in range(2, 7):
            heatmaps = self._run(f"stage{t}", torch.cat([heatmaps, features], 1))
        return heatmaps


# ----------------------------------------------------------------------------------------------------------- loading

_TREE_PREFIX = re.compile(r"^model\d+(_\d+)?\.")  # the extension's module tree (model0.conv1_1.weight...)


def _file_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # The originals are bare Caffe names; also take a DataParallel "module." prefix or a state dict saved from the
    # extension's own module tree.
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    if sd and all(_TREE_PREFIX.match(k) for k in sd):
        sd = {_TREE_PREFIX.sub("", k): v for k, v in sd.items()}
    return sd


def _listed(names: list[str]) -> str:
    return ", ".join(names[:4]) + (f" ... ({len(names)} in all)" if len(names) > 4 else "")


def _load(path: str | Path, model: nn.Module, what: str) -> nn.Module:
    path = Path(path)
    sd = _file_keys(load_state_dict(path))
    expected = model.state_dict()

    def bad(why: str) -> ValueError:
        return ValueError(f"{path.name}: not {what}: {why}; expected the OpenPose Caffe layer names "
                          f"({_listed(list(expected))})")

    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        raise bad("; ".join(p for p in (f"missing {_listed(missing)}" if missing else "",
                                        f"unexpected {_listed(unexpected)}" if unexpected else "") if p))
    wrong = [f"{k} {tuple(sd[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if tuple(sd[k].shape) != tuple(v.shape)]
    if wrong:
        raise bad(f"tensor shapes differ: {_listed(wrong)}")
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model.float().eval()


def load_body(path: str | Path) -> BodyPoseNet:
    """``body_pose_model.pth`` (or a file in its layout): fp32, eval, on the CPU. Another network's file is a
    ValueError naming the file; an unreadable or unsafe one a ModelFileError."""
    return _load(path, BodyPoseNet(), "the OpenPose body model (body_pose_model.pth: 19 heatmaps, 38 PAFs)")


def load_hand(path: str | Path) -> PartNet:
    """``hand_pose_model.pth``: fp32, eval, on the CPU (errors as ``load_body``)."""
    return _load(path, PartNet(HAND_HEATMAPS), "the OpenPose hand model (hand_pose_model.pth: 22 heatmaps)")


def load_face(path: str | Path) -> PartNet:
    """``facenet.pth``: fp32, eval, on the CPU (errors as ``load_body``)."""
    return _load(path, PartNet(FACE_HEATMAPS), "the OpenPose face model (facenet.pth: 71 heatmaps)")


# ------------------------------------------------------------------------------------------------------------- hands

HAND_SCALES = (0.5, 1.0, 1.5, 2.0)  # of 368 pixels: the crop is run at 184, 368, 552 and 736 pixels square
HAND_MAP = 128  # the averaged heatmaps' size
HAND_THRESHOLD = 0.05
HAND_POINTS = 21
RATIO_WRIST_ELBOW = 0.33
MIN_BOX = 20  # pixels: smaller hand or face boxes are skipped


def hand_heatmaps(model: nn.Module, crop: np.ndarray) -> np.ndarray:
    """The hand net's heatmaps (128, 128, 22), float64, averaged over the four scales of the BGR crop (blurred first
    with sigma 0.8)."""
    blurred = cv2.GaussianBlur(crop, (0, 0), 0.8)
    param = next(model.parameters())
    average: Optional[np.ndarray] = None
    for scale in HAND_SCALES:
        side = scale * ob.BOX_SIZE
        img = ob.resize(blurred, side, side)
        out = model(ob.net_input(ob.pad_to_stride(img), param))
        heat = ob.to_image_size(out, img.shape[0], img.shape[1], HAND_MAP, HAND_MAP)
        if average is None:
            average = np.zeros(heat.shape)
        average += heat / len(HAND_SCALES)  # divided in fp32, summed in fp64, as there
    assert average is not None
    return average


def hand_peaks(heat: np.ndarray, height: int, width: int) -> np.ndarray:
    """(21, 2) int x, y in a height x width crop from averaged hand heatmaps: per point, the strongest blob (8-connected
    region of the sigma-3 smoothed map above 0.05, by the sum of its raw values) and the raw maximum within it
    (outside it the map counts as 0); (0, 0) where the smoothed map never passes the threshold."""
    peaks = np.zeros((HAND_POINTS, 2), dtype=np.int64)
    for part in range(HAND_POINTS):
        raw = heat[:, :, part]
        binary = gaussian_filter(raw, sigma=3) > HAND_THRESHOLD
        if not binary.any():
            continue
        y, x = blob_peak(raw, binary)
        peaks[part] = (int(float(x) * float(width) / float(HAND_MAP)), int(float(y) * float(height) / float(HAND_MAP)))
    return peaks


def blob_peak(raw: np.ndarray, binary: np.ndarray) -> tuple[int, int]:
    """(y, x) of the first raw maximum (row-major) within the 8-connected region of ``binary`` whose raw values sum
    highest, the map counting as 0 outside it (so an all-negative region gives its first 0 outside)."""
    regions, count = label(binary, structure=np.ones((3, 3), dtype=bool))  # skimage's connectivity=2 there
    best = 1 + int(np.argmax([np.sum(raw[regions == i]) for i in range(1, count + 1)]))
    y, x = np.unravel_index(np.argmax(np.where(regions == best, raw, 0.0)), raw.shape)
    return int(y), int(x)


def hand_boxes(points: list[Optional[np.ndarray]], height: int, width: int) -> list[tuple[int, int, int, bool]]:
    """(x, y, side, is_left) square crops of the hands (left first) from the body's pixel keypoints, as OpenPose's
    handDetector: centred a third of the forearm beyond the wrist, 1.5 x max(forearm, 0.9 x upper arm) wide, moved
    inside the image's top-left and shrunk to its bottom-right; under 20 pixels skipped."""
    boxes = []
    for shoulder, elbow, wrist, is_left in ((5, 6, 7, True), (2, 3, 4, False)):
        if points[shoulder] is None or points[elbow] is None or points[wrist] is None:
            continue
        x1, y1 = points[shoulder][:2]
        x2, y2 = points[elbow][:2]
        x3, y3 = points[wrist][:2]
        x = x3 + RATIO_WRIST_ELBOW * (x3 - x2)
        y = y3 + RATIO_WRIST_ELBOW * (y3 - y2)
        forearm = np.sqrt((x3 - x2) ** 2 + (y3 - y2) ** 2)
        upper_arm = np.sqrt((x2 - x1) ** 2 + (y2 - y1) ** 2)
        side = 1.5 * max(forearm, 0.9 * upper_arm)
        x, y = max(x - side / 2, 0), max(y - side / 2, 0)
        side = min(width - x if x + side > width else side, height - y if y + side > height else side)
        if side >= MIN_BOX:
            boxes.append((int(x), int(y), int(side), is_left))
    return boxes


# -------------------------------------------------------------------------------------------------------------- face

FACE_INPUT = 384
FACE_THRESHOLD = 0.05


def face_heatmaps(model: nn.Module, crop: np.ndarray) -> np.ndarray:
    """The face net's heatmaps (71, h, w) float32 of a BGR crop h x w: the net at 384 x 384, its last stage
    interpolated bilinearly (align_corners) back to the crop's size."""
    param = next(model.parameters())
    img = ob.resize(crop, FACE_INPUT, FACE_INPUT)
    out = model(ob.net_input(img, param)).float()
    return F.interpolate(out, crop.shape[:2], mode="bilinear", align_corners=True)[0].cpu().numpy()


def face_peaks(heat: np.ndarray) -> np.ndarray:
    """(n, 2) int x, y: the first maximum (row-major) of each heatmap whose maximum passes 0.05; the others are left
    out, as the extension does (so n <= 71 and the indices shift), the background channel included."""
    peaks = []
    for part in heat:
        if part.max() > FACE_THRESHOLD:
            y, x = np.unravel_index(np.argmax(part), part.shape)
            peaks.append((int(x), int(y)))
    return np.array(peaks, dtype=np.int64).reshape(-1, 2)


def face_box(points: list[Optional[np.ndarray]], height: int, width: int) -> Optional[tuple[int, int, int]]:
    """(x, y, side) of the face crop from the nose and whichever eyes and ears were found (Lvmin's rule in the
    extension): half-side = max(3 x eye offset, 1.5 x ear offset) in the larger axis, moved inside the top-left.
    The bottom-right clamp tests the half side, as the extension does, so a crop may run past the image (numpy then
    cuts it short and it is not square). None without a nose and any eye or ear, or when under 20 pixels."""
    nose = points[0]
    if nose is None or all(points[i] is None for i in (14, 15, 16, 17)):
        return None
    x0, y0 = nose[:2]
    half = 0.0
    for i, factor in ((14, 3.0), (15, 3.0), (16, 1.5), (17, 1.5)):
        if points[i] is not None:
            x1, y1 = points[i][:2]
            half = max(half, max(abs(x0 - x1), abs(y0 - y1)) * factor)
    x, y = max(x0 - half, 0), max(y0 - half, 0)
    side = min(width - x if x + half > width else half * 2, height - y if y + half > height else half * 2)
    if side < MIN_BOX:
        return None
    return int(x), int(y), int(side)


# ------------------------------------------------------------------------------------------------------------ detect


def _crop_points(peaks: np.ndarray, x: int, y: int, height: int, width: int) -> Points:
    # As the extension, in fp32: a coordinate of 0 in the crop (also what "not found" gives) becomes -1 before the
    # division, so it lands just outside the image, where the drawing skips it.
    p = peaks.astype(np.float32)
    xs = np.where(p[:, 0] < 1e-6, -1, p[:, 0] + x) / float(width)
    ys = np.where(p[:, 1] < 1e-6, -1, p[:, 1] + y) / float(height)
    return [Keypoint(x=float(a), y=float(b)) for a, b in zip(xs.tolist(), ys.tolist())]


@torch.inference_mode()
def detect(body_model: nn.Module, image: np.ndarray, hand_model: Optional[nn.Module] = None,
           face_model: Optional[nn.Module] = None) -> PoseResult:
    """Every person in an RGB uint8 HWC image (already resized and padded by the caller), as the extension's
    ``detect_poses``: bodies, plus hands when a hand model is given and faces when a face model is given.

    Body keypoints keep the candidate's score and id; total_parts is an int (a float there). Each model runs on its
    own device."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"openpose: expected an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
    bgr = np.ascontiguousarray(image[:, :, ::-1])  # the extension's nets see BGR
    height, width = bgr.shape[:2]
    candidate, subset = ob.find_people(*ob.body_maps(body_model, bgr))
    people = []
    for row in subset:
        points = [None if i < 0 else candidate[i] for i in row[:ob.PARTS].astype(int)]
        left = right = face = None
        if hand_model is not None:
            for x, y, side, is_left in hand_boxes(points, height, width):
                crop = bgr[y:y + side, x:x + side]
                found = _crop_points(hand_peaks(hand_heatmaps(hand_model, crop), *crop.shape[:2]), x, y, height,
                                     width)
                if is_left:
                    left = found
                else:
                    right = found
        if face_model is not None:
            box = face_box(points, height, width)
            if box is not None:
                x, y, side = box
                peaks = face_peaks(face_heatmaps(face_model, bgr[y:y + side, x:x + side]))
                face = _crop_points(peaks, x, y, height, width) if len(peaks) else None
        keypoints = [None if p is None else Keypoint(x=float(p[0]) / float(width), y=float(p[1]) / float(height),
                                                     score=float(p[2]), id=int(p[3])) for p in points]
        people.append(Person(body=Body(keypoints, total_score=float(row[-2]), total_parts=int(row[-1])),
                             left_hand=left, right_hand=right, face=face))
    return PoseResult(people=people, height=height, width=width)
