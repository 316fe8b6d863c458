"""The original OpenPose detectors (openpose, openpose_hand, openpose_face, openpose_faceonly, openpose_full:
``body_pose_model.pth``, ``hand_pose_model.pth``, ``facenet.pth``) against controlnet_aux's (the extension's code),
loaded with the same random weights, plus hand-built maps whose people are written out here.

The hand net runs each crop at 184..736 pixels square and the face net at 384: far too slow for a test on random
people, so their pipelines are compared with cheap stand-in nets (the same stand-in in ours and the reference), and
the real nets on small inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modules.controlnet.nets import openpose as op
from modules.controlnet.nets import openpose_body as ob
from modules.controlnet.nets.pose_types import PoseResult
from modules.models.types import ModelFileError
from tests.support import tiny_openpose as tiny
from tests.support.aux_reference import reference

ref_util = reference("open_pose.util")  # first: body.py imports util's names circularly otherwise
ref_body = reference("open_pose.body")
ref_hand = reference("open_pose.hand")
ref_model = reference("open_pose.model")


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    # Gradients, stripes and noise: structure for the random nets to react to.
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) % 64) * 4], -1)
    return np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("openpose")
    return {"body": tiny.write_body(folder), "hand": tiny.write_hand(folder), "face": tiny.write_face(folder)}


@pytest.fixture(scope="module")
def nets(files) -> dict[str, nn.Module]:
    return {"body": op.load_body(files["body"]), "hand": op.load_hand(files["hand"]),
            "face": op.load_face(files["face"])}


@pytest.fixture(scope="module")
def reference_nets(files) -> dict[str, object]:
    # The reference classes load the files themselves (torch.load + util.transfer onto their module tree): this
    # also proves the fixture files are in the layout the extension reads.
    return {"body": ref_body.Body(str(files["body"])), "hand": ref_hand.Hand(str(files["hand"]))}


class _StandIn(nn.Module):
    """A cheap seeded net with the real nets' interface: BGR input (1, 3, H, W) -> maps at 1/8 (two for the body:
    PAFs, heatmaps). Smooth in space, so heatmaps have blobs and PAFs long runs."""

    def __init__(self, outputs: tuple[int, ...], seed: int, scale: float, offset: float = 0.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.outputs = outputs
        self.mix = nn.Parameter(torch.randn(16, 3, 3, 3, generator=g))
        self.head = nn.Parameter(torch.randn(sum(outputs), 16, 3, 3, generator=g) * scale / 12)
        self.offset = offset

    def forward(self, x: torch.Tensor):
        h = torch.tanh(F.conv2d(F.avg_pool2d(x, 4), self.mix, padding=1) * 4)
        maps = F.conv2d(F.avg_pool2d(h, 2), self.head, padding=1) + self.offset
        parts = torch.split(maps, list(self.outputs), dim=1)
        return parts if len(parts) > 1 else parts[0]


def _reference_body_with(model: nn.Module):
    body = ref_body.Body.__new__(ref_body.Body)  # its __init__ loads a file; the call only needs .model
    body.model = model
    return body


def _reference_hand_with(model: nn.Module):
    hand = ref_hand.Hand.__new__(ref_hand.Hand)
    hand.model = model
    return hand


# ------------------------------------------------------------------------------------------------------ the nets


def test_files_load_strict_fp32_eval(files, nets) -> None:
    for part, layers in (("body", tiny.body_layers()), ("hand", tiny.part_layers(22)),
                         ("face", tiny.part_layers(71))):
        model = nets[part]
        assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
        want = {f"{name}.{kind}" for name, *_ in layers for kind in ("weight", "bias")}
        assert set(model.state_dict()) == want  # the file's own Caffe names, nothing renamed
        sd = torch.load(files[part], weights_only=True)
        assert all(torch.equal(model.state_dict()[k], sd[k]) for k in sd)
    assert sum(p.numel() for p in nets["body"].parameters()) == 52_311_446  # the real body_pose_model.pth


def test_body_net_matches_reference(nets, reference_nets) -> None:
    x = torch.from_numpy(_image(64, 48)).float().permute(2, 0, 1)[None] / 256 - 0.5
    with torch.no_grad():
        pafs, heat = nets["body"](x)
        want_pafs, want_heat = reference_nets["body"].model(x)
    assert pafs.shape == (1, 38, 8, 6) and heat.shape == (1, 19, 8, 6)
    assert float(heat.std()) > 0.05 and float(pafs.std()) > 0.05
    torch.testing.assert_close(pafs, want_pafs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(heat, want_heat, atol=1e-5, rtol=1e-5)
    # The extension's no-ReLU list misses Mconv7_stage6_L2: its heatmaps are never negative, its PAFs are.
    assert float(heat.min()) >= 0 and float(pafs.min()) < 0


def test_hand_net_matches_reference(nets, reference_nets) -> None:
    x = torch.from_numpy(_image(48, 64, seed=1)).float().permute(2, 0, 1)[None] / 256 - 0.5
    with torch.no_grad():
        got, want = nets["hand"](x), reference_nets["hand"].model(x)
    assert got.shape == (1, 22, 6, 8) and float(got.std()) > 0.05 and float(got.min()) < 0
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _face_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The extension's FaceNet.forward written out from face.py (its module cannot be imported: torchvision)."""
    def conv(name: str, h: torch.Tensor, relu: bool = True) -> torch.Tensor:
        w = sd[f"{name}.weight"]
        h = F.conv2d(h, w, sd[f"{name}.bias"], padding=w.shape[-1] // 2)
        return F.relu(h) if relu else h

    h = x
    for block in (("conv1_1", "conv1_2"), ("conv2_1", "conv2_2"), ("conv3_1", "conv3_2", "conv3_3", "conv3_4")):
        for name in block:
            h = conv(name, h)
        h = F.max_pool2d(h, 2, 2)
    for name in ("conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1", "conv5_2", "conv5_3_CPM"):
        h = conv(name, h)
    features = h
    h = conv("conv6_2_CPM", conv("conv6_1_CPM", h), relu=False)
    for t in range(2, 7):
        h = torch.cat([h, features], 1)
        for i in range(1, 7):
            h = conv(f"Mconv{i}_stage{t}", h)
        h = conv(f"Mconv7_stage{t}", h, relu=False)
    return h


def test_face_net_layout_and_forward(files, nets) -> None:
    sd = nets["face"].state_dict()
    # Shapes read from face.py: 71 heatmaps, stage inputs 71 + 128 = 199 channels, 7x7 refinement convolutions.
    assert sd["conv6_2_CPM.weight"].shape == (71, 512, 1, 1)
    assert sd["Mconv1_stage2.weight"].shape == (128, 199, 7, 7)
    assert sd["Mconv5_stage6.weight"].shape == (128, 128, 7, 7)
    assert sd["Mconv7_stage6.weight"].shape == (71, 128, 1, 1)
    assert sd["conv5_3_CPM.weight"].shape == (128, 512, 3, 3) and len(sd) == 2 * (15 + 2 + 5 * 7)
    x = torch.from_numpy(_image(32, 40, seed=2)).float().permute(2, 0, 1)[None] / 256 - 0.5
    with torch.no_grad():
        got = nets["face"](x)
        want = _face_forward(torch.load(files["face"], weights_only=True), x)
    assert got.shape == (1, 71, 4, 5) and float(got.std()) > 0.05
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------- body decoding


def test_body_decoding_matches_reference(nets, reference_nets) -> None:
    """The real (random-weight) body net: same candidates and people as the reference's Body, bit for bit."""
    bgr = _image(128, 96, seed=3)[:, :, ::-1].copy()
    with torch.inference_mode():
        candidate, subset = ob.find_people(*ob.body_maps(nets["body"], bgr))
    with torch.no_grad():
        want_candidate, want_subset = reference_nets["body"](bgr)
    assert len(candidate) > 50 and len(subset) >= 3  # random peaks and limbs, but enough to mean something
    np.testing.assert_array_equal(candidate, want_candidate)
    np.testing.assert_array_equal(subset, want_subset)


@pytest.mark.parametrize(("h", "w", "seed"), [(128, 128, 4), (192, 64, 5), (64, 192, 6), (184, 120, 7)])
def test_body_decoding_matches_reference_on_stand_in_maps(h: int, w: int, seed: int) -> None:
    """Many seeded map sets (sizes where the net scales up, down, and not at all): same people as the reference."""
    model = _StandIn((38, 19), seed, scale=1.0)
    bgr = _image(h, w, seed=seed)[:, :, ::-1].copy()
    with torch.inference_mode():
        candidate, subset = ob.find_people(*ob.body_maps(model, bgr))
    with torch.no_grad():
        want_candidate, want_subset = _reference_body_with(model)(bgr)
    assert len(subset) >= 1
    np.testing.assert_array_equal(candidate, want_candidate.reshape(-1, 4))
    np.testing.assert_array_equal(subset, want_subset)


def _blob(shape: tuple[int, int], x: int, y: int, sigma: float, amplitude: float = 1.0) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return amplitude * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))


def _paint_limb(paf: np.ndarray, channels: tuple[int, int], a: tuple[int, int], b: tuple[int, int]) -> None:
    """A unit vector from a to b on every pixel within 1.5 of the segment."""
    (ax, ay), (bx, by) = a, b
    length = np.hypot(bx - ax, by - ay)
    ux, uy = (bx - ax) / length, (by - ay) / length
    yy, xx = np.mgrid[0:paf.shape[0], 0:paf.shape[1]]
    along = np.clip(((xx - ax) * ux + (yy - ay) * uy) / length, 0, 1)
    near = np.hypot(xx - (ax + along * (bx - ax)), yy - (ay + along * (by - ay))) <= 1.5
    paf[near, channels[0]], paf[near, channels[1]] = ux, uy


# Person A: all 18 parts (x, y); B: five; C: three (dropped: fewer than 4 parts).
PERSON_A = [(50, 30), (50, 50), (35, 50), (30, 70), (28, 90), (65, 50), (70, 70), (72, 90), (42, 100), (41, 130),
            (40, 160), (58, 100), (59, 130), (60, 160), (46, 26), (54, 26), (42, 28), (58, 28)]
PERSON_B = {1: (150, 50), 2: (135, 50), 3: (130, 72), 0: (150, 30), 8: (142, 100)}
PERSON_C = {1: (150, 150), 5: (165, 150), 6: (170, 172)}
DRAWN_LIMBS = 17  # the limbs the pose drawing has; the two ear-shoulder ones are not painted


def _hand_built_maps(people: list[dict[int, tuple[int, int]]], size: int = 200) -> tuple[np.ndarray, np.ndarray]:
    heat = np.zeros((size, size, 19))
    paf = np.zeros((size, size, 38))
    for person in people:
        for part, (x, y) in person.items():
            heat[:, :, part] += _blob((size, size), x, y, sigma=2.0)
        for (part_a, part_b), channels in list(zip(ob.LIMBS, ob.LIMB_PAFS))[:DRAWN_LIMBS]:
            if part_a in person and part_b in person:
                _paint_limb(paf, channels, person[part_a], person[part_b])
    return heat, paf


def test_body_decoding_on_hand_built_maps() -> None:
    heat, paf = _hand_built_maps([dict(enumerate(PERSON_A)), PERSON_B, PERSON_C])
    candidate, subset = ob.find_people(heat, paf)
    assert len(candidate) == 18 + 5 + 3  # every blob is one peak, nothing else
    assert len(subset) == 2  # C has only three parts
    people = sorted(subset, key=lambda row: candidate[int(row[1]), 0])  # by the neck's x: A then B
    found = [{part: tuple(candidate[int(i), :2].astype(int)) for part, i in enumerate(row[:18]) if i >= 0}
             for row in people]
    assert found[0] == dict(enumerate(PERSON_A))
    assert found[1] == PERSON_B
    # Score: every part's peak (1.0) plus every limb's mean PAF projection (1.0, no length penalty here).
    assert people[0][19] == 18 and people[0][18] == pytest.approx(18 + 17, abs=1e-6)
    assert people[1][19] == 5 and people[1][18] == pytest.approx(5 + 4, abs=1e-6)


def test_body_limb_without_its_paf_splits_the_person() -> None:
    # A's neck-hip limbs drawn backwards: each leg (hip, knee, ankle) becomes a 3-part person, dropped.
    heat, paf = _hand_built_maps([dict(enumerate(PERSON_A))])
    for limb in (6, 9):
        a, b = ob.LIMBS[limb]
        paf[:, :, list(ob.LIMB_PAFS[limb])] = 0
        _paint_limb(paf, ob.LIMB_PAFS[limb], PERSON_A[b], PERSON_A[a])
    candidate, subset = ob.find_people(heat, paf)
    parts = sorted(sorted(int(p) for p, i in enumerate(row[:18]) if i >= 0) for row in subset)
    assert parts == [[0, 1, 2, 3, 4, 5, 6, 7, 14, 15, 16, 17]]
    assert len(candidate) == 18


def test_body_limb_ties_go_to_the_first_peak() -> None:
    # One neck, two right shoulders left and right of it, each with a perfect PAF (both limbs score exactly 0.9):
    # the first peak in row-major order (x 35) wins; only it leads on to the elbow and wrist, so only then is there
    # a person (neck, shoulder, elbow, wrist); the other choice would leave two pieces too small to keep.
    person = {1: (50, 50), 2: (35, 50), 3: (35, 70), 4: (35, 90)}
    heat, paf = _hand_built_maps([person])
    heat[:, :, 2] += _blob(heat.shape[:2], 65, 50, sigma=2.0)
    _paint_limb(paf, ob.LIMB_PAFS[0], (50, 50), (65, 50))
    paf[49:52, 49:52, list(ob.LIMB_PAFS[0])] = 0  # the two fields meet at the neck: blank it for both (9 of 10)
    candidate, subset = ob.find_people(heat, paf)
    assert len(subset) == 1 and subset[0][19] == 4
    assert tuple(candidate[int(subset[0][2]), :2]) == (35, 50)


def test_limb_score_length_penalty() -> None:
    # A vertical PAF of 0.5 from (10, 5) to (10, 85): mean projection 0.5, minus the penalty for limbs longer than
    # half the image height: 0.5 + min(0.5 * H / 80 - 1, 0); a limb scoring <= 0 is no limb.
    paf_x, paf_y = np.zeros((100, 30)), np.zeros((100, 30))
    paf_y[:, 10] = 0.5
    a, b = np.array([[10.0, 5, 1, 0]]), np.array([[10.0, 85, 1, 1]])
    for height, want in ((200, 0.5), (100, 0.125)):
        got = ob.score_limb(a, b, paf_x, paf_y, height)
        assert got.shape == (1, 5) and got[0, 2] == pytest.approx(want)
        assert list(got[0, [0, 1, 3, 4]]) == [0, 1, 0, 0]
    assert len(ob.score_limb(a, b, paf_x, paf_y, 60)) == 0  # 0.5 + (30 / 80 - 1) < 0: too long for this image
    assert len(ob.score_limb(b, a, paf_x, paf_y, 200)) == 0  # the field points the other way
    paf_y[45:60, 10] = 0  # the samples at y 49 and 58 lose the field: 8 of 10 is not more than 80 %
    assert len(ob.score_limb(a, b, paf_x, paf_y, 200)) == 0


# ------------------------------------------------------------------------------------------------ hand and face


@pytest.mark.parametrize(("side", "seed"), [(24, 8), (57, 9), (130, 10)])
def test_hand_decoding_matches_reference(side: int, seed: int) -> None:
    model = _StandIn((22,), seed, scale=0.4, offset=0.05)
    crop = _image(side, side, seed=seed)[:, :, ::-1].copy()
    with torch.inference_mode():
        heat = op.hand_heatmaps(model, crop)
    got = op.hand_peaks(heat, side, side)
    with torch.no_grad():
        want = _reference_hand_with(model)(crop)
    assert heat.shape == (128, 128, 22) and got.shape == (21, 2)
    assert (got > 0).any(axis=1).sum() >= 10  # most points found: the comparison is not of zeros
    np.testing.assert_array_equal(got, want)


def test_hand_peaks_on_hand_built_maps() -> None:
    heat = np.zeros((128, 128, 22))
    heat[:, :, 0] = _blob((128, 128), 40, 60, sigma=3)
    # Point 1: a sharp high blob and a wide low one; the blob with the larger sum wins, not the higher peak.
    heat[:, :, 1] = _blob((128, 128), 20, 20, sigma=1, amplitude=0.9) + _blob((128, 128), 100, 90, 6, 0.5)
    heat[:, :, 3] = 0.01  # never above the threshold: not found
    peaks = op.hand_peaks(heat, 64, 96)  # a crop 64 high, 96 wide: x * 96 / 128, y * 64 / 128, truncated
    assert peaks[0].tolist() == [30, 30]
    assert peaks[1].tolist() == [75, 45]
    assert peaks[3].tolist() == [0, 0]


def test_blob_peak_regions_are_8_connected() -> None:
    raw = np.zeros((16, 16))
    binary = np.zeros((16, 16), dtype=bool)
    raw[0:3, 0:3] = 1.0  # sum 9 ...
    raw[3, 3] = 5.0  # ... joined by a corner only: one region of sum 14, its maximum here
    raw[10:14, 10:14] = 0.8  # sum 12.8: would win were the corner not a connection
    binary[raw > 0] = True
    assert op.blob_peak(raw, binary) == (3, 3)
    raw[3, 3] = 3.0  # now 12 < 12.8: the square wins, at its first (row-major) maximum
    assert op.blob_peak(raw, binary) == (10, 10)


def test_face_peaks_on_hand_built_maps() -> None:
    heat = np.full((71, 30, 40), 0.01, dtype=np.float32)
    heat[0, 5, 7] = 0.9
    heat[2, 12, 30] = heat[2, 20, 3] = 0.5  # a tie: the first in row-major order
    heat[70, 29, 39] = 0.06  # the background channel counts too, as in the extension
    heat[4, 3, 3] = 0.05  # not above the threshold
    assert op.face_peaks(heat).tolist() == [[7, 5], [30, 12], [39, 29]]
    assert op.face_peaks(heat[3:4]).shape == (0, 2)


def test_crop_points_as_the_extension() -> None:
    # Crop coordinates + the crop's corner, over the image size; a 0 (also "not found") becomes -1 first.
    points = op._crop_points(np.array([[3, 4], [0, 9], [5, 0]]), 10, 20, height=100, width=50)
    f = np.float32
    assert [(p.x, p.y) for p in points] == [(f(13) / f(50), f(24) / f(100)), (f(-1) / f(50), f(29) / f(100)),
                                            (f(15) / f(50), f(-1) / f(100))]


def _body_points(points: dict[int, tuple[float, float]]) -> list:
    return [None if i not in points else np.array([*points[i], 1.0, i]) for i in range(18)]


def test_hand_boxes_by_formula() -> None:
    # Left arm straight down: shoulder (100, 50), elbow (100, 90), wrist (100, 120). Forearm 30, upper arm 40:
    # side 1.5 * max(30, 36) = 54, centre (100, 120 + 0.33 * 30) = (100, 129.9), corner (73, 102.9).
    left = {5: (100.0, 50.0), 6: (100.0, 90.0), 7: (100.0, 120.0)}
    assert op.hand_boxes(_body_points(left), 300, 300) == [(73, 102, 54, True)]
    # The same arm in an image 140 high: the box is cut to the image's bottom, 140 - 102.9 = 37.1.
    assert op.hand_boxes(_body_points(left), 140, 300) == [(73, 102, 37, True)]
    # Right arm at the top-left corner: moved inside (x, y = 0) without shrinking; a short arm is skipped.
    right = {2: (10.0, 10.0), 3: (5.0, 8.0), 4: (2.0, 4.0)}  # side 1.5 * max(5, 0.9 * 5.39) = 7.5 < 20
    assert op.hand_boxes(_body_points({**left, **right}), 300, 300) == [(73, 102, 54, True)]
    right = {2: (40.0, 40.0), 3: (20.0, 30.0), 4: (5.0, 10.0)}  # forearm 25: side 37.5, corner (-18.7, -15.35)
    assert op.hand_boxes(_body_points(right), 300, 300) == [(0, 0, 37, False)]
    assert op.hand_boxes(_body_points({5: (1.0, 1.0), 6: (1.0, 50.0)}), 300, 300) == []  # no wrist


def test_face_box_by_formula() -> None:
    # Nose (100, 100), an eye 8 right and 2 up (3 x 8 = 24), an ear 20 left (1.5 x 20 = 30): half side 30.
    points = {0: (100.0, 100.0), 14: (108.0, 98.0), 17: (80.0, 101.0)}
    assert op.face_box(_body_points(points), 300, 300) == (70, 70, 60)
    # Near the right edge: the clamp tests x + half (not the side) against the width, so at width 260 the crop
    # (220..280) runs past the image, as in the extension; at 245 it is cut to 245 - 220.
    near_edge = _body_points({0: (250.0, 100.0), 16: (230.0, 100.0)})
    assert op.face_box(near_edge, 300, 260) == (220, 70, 60)
    assert op.face_box(near_edge, 300, 245) == (220, 70, 25)
    assert op.face_box(_body_points({0: (100.0, 100.0), 15: (103.0, 100.0)}), 300, 300) is None  # side 18 < 20
    assert op.face_box(_body_points({0: (100.0, 100.0)}), 300, 300) is None  # no eye or ear
    assert op.face_box(_body_points({14: (1.0, 1.0), 15: (9.0, 1.0)}), 300, 300) is None  # no nose


def test_boxes_match_reference_on_random_bodies() -> None:
    rng = np.random.default_rng(11)
    image = np.zeros((160, 200, 3), np.uint8)
    hands = faces = 0
    for _ in range(300):
        present = rng.random(18) < 0.8
        xy = rng.uniform(-5, 215, (18, 2))
        points = [np.array([x, y, 0.5, i]) if keep else None for i, ((x, y), keep) in enumerate(zip(xy, present))]
        body = ref_body.BodyResult([None if p is None else ref_body.Keypoint(p[0], p[1]) for p in points], 0, 0)
        want_hands = ref_util.handDetect(body, image)
        assert op.hand_boxes(points, 160, 200) == want_hands
        want_face = ref_util.faceDetect(body, image)
        assert op.face_box(points, 160, 200) == want_face
        hands += len(want_hands)
        faces += want_face is not None
    assert hands > 100 and faces > 50


# ------------------------------------------------------------------------------------------------------ detect


def _reference_detect(body_model: nn.Module, hand_model: nn.Module, face_model: nn.Module, image: np.ndarray):
    """controlnet_aux's OpenposeDetector.detect_poses (its module imports torchvision) on the reference classes;
    the face step as the extension's Face: 384 x 384, bilinear back to the crop, the first maximum above 0.05."""
    bgr = image[:, :, ::-1].copy()
    H, W = bgr.shape[:2]
    body_est, hand_est = _reference_body_with(body_model), _reference_hand_with(hand_model)
    candidate, subset = body_est(bgr)
    people = []
    for body in body_est.format_body_result(candidate, subset):
        hands = {True: None, False: None}
        for x, y, w, is_left in ref_util.handDetect(body, bgr):
            peaks = hand_est(bgr[y:y + w, x:x + w]).astype(np.float32)
            peaks[:, 0] = np.where(peaks[:, 0] < 1e-6, -1, peaks[:, 0] + x) / float(W)
            peaks[:, 1] = np.where(peaks[:, 1] < 1e-6, -1, peaks[:, 1] + y) / float(H)
            hands[is_left] = [(float(px), float(py)) for px, py in peaks]
        face = None
        box = ref_util.faceDetect(body, bgr)
        if box is not None:
            x, y, w = box
            crop = bgr[y:y + w, x:x + w]
            data = torch.from_numpy(ref_util.smart_resize(crop, (384, 384))).permute(2, 0, 1) / 256.0 - 0.5
            maps = F.interpolate(face_model(data[None]), crop.shape[:2], mode="bilinear", align_corners=True)[0]
            peaks = []
            for part in maps.numpy():
                positions = np.where(part > 0.05)
                if len(positions[0]):
                    best = np.argmax(part[positions])
                    peaks.append([positions[1][best], positions[0][best]])
            if peaks:
                p = np.array(peaks).astype(np.float32)
                p[:, 0] = np.where(p[:, 0] < 1e-6, -1, p[:, 0] + x) / float(W)
                p[:, 1] = np.where(p[:, 1] < 1e-6, -1, p[:, 1] + y) / float(H)
                face = [(float(px), float(py)) for px, py in p]
        keypoints = [None if k is None else (k.x / float(W), k.y / float(H), k.score, k.id) for k in body.keypoints]
        people.append((keypoints, body.total_score, body.total_parts, hands[True], hands[False], face))
    return people


def test_detect_matches_reference_pipeline(nets) -> None:
    """openpose_full on the real random body net, with stand-in hand and face nets: every person, hand and face."""
    hand_model = _StandIn((22,), 12, scale=0.4, offset=0.05)
    face_model = _StandIn((71,), 13, scale=0.4, offset=0.03)
    image = _image(96, 64, seed=1)
    with torch.no_grad():
        want = _reference_detect(nets["body"], hand_model, face_model, image)
    got = op.detect(nets["body"], image, hand_model=hand_model, face_model=face_model)
    assert (got.height, got.width) == (96, 64)
    assert len(got.people) == len(want) >= 3
    assert sum(h is not None for p in want for h in p[3:5]) >= 2 and sum(p[5] is not None for p in want) >= 2

    def pairs(points):
        return None if points is None else [(k.x, k.y) for k in points]

    for person, (keypoints, score, parts, left, right, face) in zip(got.people, want):
        assert [None if k is None else (k.x, k.y, k.score, k.id) for k in person.body.keypoints] == keypoints
        assert person.body.total_score == score and person.body.total_parts == parts
        assert pairs(person.left_hand) == left and pairs(person.right_hand) == right
        assert pairs(person.face) == face
        assert person.left_hand is None or len(person.left_hand) == 21
    # Without hand and face models only the bodies: the same ones.
    bodies = op.detect(nets["body"], image)
    assert [p.body for p in bodies.people] == [p.body for p in got.people]
    assert all(p.left_hand is None and p.right_hand is None and p.face is None for p in bodies.people)


def test_detect_without_peaks_finds_nobody() -> None:
    model = _StandIn((38, 19), 14, scale=0.0, offset=0.0)  # all-zero maps
    got = op.detect(model, _image(64, 128), hand_model=model, face_model=model)
    assert got == PoseResult(people=[], height=64, width=128)


def test_detect_rejects_a_non_rgb_image(nets) -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        op.detect(nets["body"], np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        op.detect(nets["body"], np.zeros((64, 64, 3), np.float32))


# ---------------------------------------------------------------------------------------------------- bad files


def test_a_file_of_another_net_is_a_clear_error(files, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"hand_pose_model\.pth: not the OpenPose body model.*missing conv4_3_CPM"):
        op.load_body(files["hand"])
    # The face file has the hand net's names with 71 instead of 22 heatmaps: the shapes say so.
    with pytest.raises(ValueError, match=r"facenet\.pth: not the OpenPose hand model.*shapes differ.*conv6_2_CPM"):
        op.load_hand(files["face"])
    with pytest.raises(ValueError, match=r"body_pose_model\.pth: not the OpenPose face model"):
        op.load_face(files["body"])
    other = tmp_path / "sk_model.pth"
    torch.save({"model0.1.weight": torch.zeros(4, 3, 7, 7)}, other)
    with pytest.raises(ValueError, match=r"sk_model\.pth: not the OpenPose body model.*expected.*conv1_1\.weight"):
        op.load_body(other)


def test_unreadable_files_are_model_file_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "body_pose_model.pth"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(ModelFileError):
        op.load_body(garbage)
    with pytest.raises(ModelFileError):
        op.load_hand(tmp_path / "missing.pth")


def test_the_extension_module_tree_layout_loads(files, tmp_path: Path) -> None:
    # A state dict saved from the extension's own module (model0.conv1_1.weight, model1_0...) is the same net.
    tree = ref_model.handpose_model()
    tree.load_state_dict(ref_util.transfer(tree, torch.load(files["hand"], weights_only=True)))
    path = tmp_path / "hand_pose_model.pth"
    torch.save(tree.state_dict(), path)
    assert next(iter(tree.state_dict())).startswith("model1_0.")
    loaded = op.load_hand(path)
    x = torch.rand(1, 3, 16, 16) - 0.5
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), tree.eval()(x), atol=1e-5, rtol=1e-5)
