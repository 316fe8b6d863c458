"""DWPose (modules.controlnet.nets.dwpose) with tiny ONNX files of the real names and shapes whose outputs are known
(tests.support.tiny_dwpose): every keypoint must land where the box -> crop -> SimCC bin -> image arithmetic,
worked out here by hand, puts it; the detector's thresholds and NMS, the 133 -> OpenPose conversion and the loader's
errors as sd-webui-controlnet's DWPose has them."""

from __future__ import annotations

import numpy as np
import pytest

from modules.controlnet.nets import dwpose
from modules.controlnet.nets.pose_drawing import draw_poses, encode_json
from tests.support import tiny_dwpose as T

# COCO-WholeBody's first 17 points and OpenPose's 18, by name.
COCO = ("nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist",
        "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle")
OPENPOSE = ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip",
            "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear")
# Whole-body order after the body: 6 feet, 68 face, 21 left hand, 21 right hand.
FACE0, LEFT0, RIGHT0 = 23, 91, 112


def _bins(k: int) -> tuple[int, int]:
    return (7 * k + 20) % (T.POSE_W * T.SPLIT_RATIO), (11 * k + 30) % (T.POSE_H * T.SPLIT_RATIO)


def _scores(axis: str = "x") -> list[float]:
    """The peaks of simcc_x (or, with axis "y", of simcc_y): a keypoint's score is the smaller."""
    scores = [0.5 + k / 1000.0 for k in range(T.KEYPOINTS)]
    scores[COCO.index("r_elbow") if axis == "x" else COCO.index("l_elbow")] = 0.25
    scores[COCO.index("nose")] = 0.29  # under 0.3: not found
    scores[COCO.index("l_shoulder")] = scores[COCO.index("r_shoulder")] = float(np.float32(0.3))
    for k in range(LEFT0, LEFT0 + 21):
        scores[k] = 0.2  # the whole left hand under 0.3: no left hand
    scores[FACE0 + 5] = 0.1
    return scores


def _expected(box_input, image_hw, bin_x, bin_y):
    """Where a keypoint at SimCC bins (bin_x, bin_y) lands in the image, in pixels, for a detector box given in the
    640x640 letterbox's pixels (cx, cy, w, h): the box back in image pixels, grown by 1.25, widened or heightened to
    288:384, the crop's pixel bin/2 mapped linearly onto it."""
    cx, cy, w, h = box_input
    r = min(640 / image_hw[0], 640 / image_hw[1])
    x0, y0, x1, y1 = (cx - w / 2) / r, (cy - h / 2) / r, (cx + w / 2) / r, (cy + h / 2) / r
    bw, bh = (x1 - x0) * 1.25, (y1 - y0) * 1.25
    if bw > bh * 288 / 384:
        bh = bw * 384 / 288
    else:
        bw = bh * 288 / 384
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    return mx - bw / 2 + (bin_x / 2) * bw / 288, my - bh / 2 + (bin_y / 2) * bh / 384


@pytest.fixture(scope="module")
def constant_pose(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pose")
    bins = [_bins(k) for k in range(T.KEYPOINTS)]
    return T.write_pose(folder, [b[0] for b in bins], [b[1] for b in bins], _scores("x"), _scores("y"))


def body_found(person) -> int:
    return sum(k is not None for k in person.body.keypoints)


def _model(tmp_path, boxes, pose_path, gated=False):
    return dwpose.load(T.write_detector(tmp_path, boxes, gated=gated), pose_path)


def _close(point, expected_px, hw, tol=2e-3):
    assert point is not None
    assert point.x * hw[1] == pytest.approx(expected_px[0], abs=tol)
    assert point.y * hw[0] == pytest.approx(expected_px[1], abs=tol)


def test_keypoints_land_where_the_box_and_bins_put_them(tmp_path, constant_pose):
    box = (330.0, 250.0, 180.0, 300.0)
    model = _model(tmp_path, [T.Box(*box, objectness=0.9, stride=16)], constant_pose)
    hw = (512, 768)  # wider than tall: letterboxed at 640/768
    result = dwpose.detect(model, np.full((*hw, 3), 90, dtype=np.uint8))
    assert (result.height, result.width) == hw and len(result.people) == 1
    person = result.people[0]
    scores = [min(x, y) for x, y in zip(_scores("x"), _scores("y"))]
    assert body_found(person) == 18 - 3  # the nose and the two elbows (one axis each) under 0.3

    body = person.body.keypoints
    assert len(body) == 18
    for i, name in enumerate(OPENPOSE):
        if name == "neck":
            continue
        k = COCO.index(name)
        if scores[k] < 0.3:
            assert body[i] is None, name
            continue
        _close(body[i], _expected(box, hw, *_bins(k)), hw)
        assert body[i].score == pytest.approx(scores[k], abs=1e-6) and body[i].id == i
    assert body[OPENPOSE.index("nose")] is None
    # The neck: the shoulders' midpoint, found (score 1) as both shoulders score over 0.3 -- compared in float64,
    # so float32's 0.3 (0.30000001) counts.
    ls, rs = (_expected(box, hw, *_bins(COCO.index(n))) for n in ("l_shoulder", "r_shoulder"))
    _close(body[1], ((ls[0] + rs[0]) / 2, (ls[1] + rs[1]) / 2), hw)
    assert body[1].score == 1.0
    assert person.body.total_parts == 18
    assert person.body.total_score == pytest.approx(sum(k.score for k in body if k is not None))

    assert person.left_hand is None
    assert len(person.right_hand) == 21
    for j, point in enumerate(person.right_hand):
        _close(point, _expected(box, hw, *_bins(RIGHT0 + j)), hw)
    # The face: DWPose's 68, then the body's two eyes (as the extension pads it to OpenPose's 70).
    assert len(person.face) == 70
    assert person.face[5] is None
    for j in (0, 1, 40, 67):
        _close(person.face[j], _expected(box, hw, *_bins(FACE0 + j)), hw)
    assert person.face[68] == body[14] and person.face[69] == body[15]

    # The extension's JSON for DWPose is in pixels; ours with pixels=True gives the same numbers.
    data = encode_json(result, pixels=True)
    r_wrist = data["people"][0]["pose_keypoints_2d"][3 * 4:3 * 4 + 3]
    assert r_wrist[:2] == pytest.approx(_expected(box, hw, *_bins(COCO.index("r_wrist"))), abs=2e-3)
    assert draw_poses(result).any()


def test_shoulders_under_the_threshold_leave_no_neck(tmp_path):
    bins = [_bins(k) for k in range(T.KEYPOINTS)]
    scores = [0.9] * T.KEYPOINTS
    scores[COCO.index("r_shoulder")] = 0.3  # float32 0.3 is found itself, but 0.29 is not...
    scores[COCO.index("l_shoulder")] = 0.29  # ...and the neck needs both over 0.3
    pose = T.write_pose(tmp_path / "p", [b[0] for b in bins], [b[1] for b in bins], scores)
    model = _model(tmp_path, [T.Box(320, 320, 200, 400, objectness=0.95)], pose)
    body = dwpose.detect(model, np.full((640, 640, 3), 50, np.uint8)).people[0].body.keypoints
    assert body[1] is None and body[OPENPOSE.index("l_shoulder")] is None
    assert body[OPENPOSE.index("r_shoulder")] is not None


def _iou(a, b):
    """Pixel-inclusive IoU of (cx, cy, w, h) boxes, as YOLOX's NMS counts it."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0) + 1)
    ih = max(0.0, min(ay1, by1) - max(ay0, by0) + 1)
    inter = iw * ih
    return inter / ((a[2] + 1) * (a[3] + 1) + (b[2] + 1) * (b[3] + 1) - inter)


def test_detector_thresholds_and_nms(tmp_path, constant_pose):
    a = (200.0, 300.0, 160.0, 400.0)
    b = (258.0, 300.0, 160.0, 400.0)  # overlaps a by just over 0.45: suppressed
    c = (470.0, 300.0, 160.0, 400.0)
    d = (560.0, 90.0, 60.0, 60.0)  # a person scoring 0.25: a candidate (over 0.1) but not kept (under 0.3)
    e = (420.0, 520.0, 100.0, 100.0)  # class 3, however confident: not a person
    g = (533.0, 300.0, 160.0, 400.0)  # overlaps c by just under 0.45: kept
    h = (100.0, 560.0, 10.0, 10.0)
    i = (104.0, 560.0, 10.0, 10.0)  # over 0.45 with h counting areas pixel-inclusive (+1), under without
    assert 0.45 < _iou(a, b) < 0.5 and 0.42 < _iou(c, g) < 0.45 and _iou(h, i) > 0.45
    assert 4 * 10 / (200 - 60) < 0.45  # i against h without the +1: 60 / 140
    boxes = [T.Box(*a, objectness=0.9), T.Box(*b, objectness=0.95, class_probability=0.84, stride=16),  # 0.798
             T.Box(*c, objectness=0.7, stride=16), T.Box(*d, objectness=0.25, stride=8),
             T.Box(*e, objectness=0.99, class_id=3), T.Box(*g, objectness=0.6, stride=8),
             T.Box(*h, objectness=0.5, stride=8), T.Box(*i, objectness=0.45, stride=8)]
    model = _model(tmp_path, boxes, constant_pose)
    hw = (640, 640)
    people = dwpose.detect(model, np.full((*hw, 3), 128, np.uint8)).people
    assert len(people) == 4
    r_wrist = OPENPOSE.index("r_wrist")
    # Best first: a (0.9), c (0.7), g (0.6), h (0.5); b went to NMS under a, i under h.
    for person, box in zip(people, (a, c, g, h)):
        _close(person.body.keypoints[r_wrist], _expected(box, hw, *_bins(COCO.index("r_wrist"))), hw)
    boxes_found = dwpose.person_boxes(model, np.full((*hw, 3), 128, np.uint8))
    np.testing.assert_allclose(boxes_found[0], [120, 100, 280, 500], atol=1e-3)


def test_bright_dot_is_found_in_the_crop(tmp_path):
    """The tracking pose model puts every keypoint at the crop's brightest column and row; its score is that
    normalised value -- for pure red, (255 - 123.675) / 58.395 (the image goes in RGB, normalised per channel)."""
    model = _model(tmp_path, [T.Box(300, 260, 260, 330, objectness=0.9)], T.write_tracking_pose(tmp_path / "t"))
    hw = (512, 512)  # scaled by 1.25 into the detector's 640x640
    image = np.zeros((*hw, 3), np.uint8)
    image[200:205, 300:305] = (255, 0, 0)
    person = dwpose.detect(model, image).people[0]
    points = [k for k in person.body.keypoints + person.right_hand + person.left_hand if k is not None]
    assert len(points) == 18 + 21 + 21
    for k in points:
        assert 299.5 <= k.x * 512 <= 305 and 199.5 <= k.y * 512 <= 205
        assert k.score == pytest.approx((255 - 123.675) / 58.395, rel=1e-6) or k is person.body.keypoints[1]
    assert person.body.keypoints[1].score == 1.0  # the neck's score is 1 (found) or 0
    # Out of the box, the dot is not seen: the crop is all black (its score negative, so nothing is found).
    image = np.zeros((*hw, 3), np.uint8)
    image[5:10, 5:10] = 255
    person = dwpose.detect(model, image).people[0]
    assert person.body.keypoints == [None] * 18 and person.face is None and person.left_hand is None


def test_no_person_is_an_empty_result_and_a_black_map(tmp_path, constant_pose):
    model = _model(tmp_path, [T.Box(320, 320, 200, 400, objectness=0.9)], constant_pose, gated=True)
    black = np.zeros((448, 576, 3), np.uint8)
    result = dwpose.detect(model, black)  # the gated detector sees nothing on black
    assert result.people == [] and (result.height, result.width) == (448, 576)
    drawn = draw_poses(result)
    assert drawn.shape == (448, 576, 3) and not drawn.any()
    assert encode_json(result)["people"] == []
    # Candidates at 0.1 or under are none at all.
    faint = _model(tmp_path / "faint", [T.Box(320, 320, 200, 400, objectness=0.1),
                                        T.Box(100, 100, 50, 50, objectness=0.09, class_id=7)], constant_pose)
    assert dwpose.detect(faint, np.full((448, 576, 3), 255, np.uint8)).people == []
    # White is seen, as the image is letterboxed into the detector input's top-left corner (the gate looks there).
    assert len(dwpose.detect(model, np.full((448, 576, 3), 255, np.uint8)).people) == 1
    assert len(dwpose.detect(model, np.full((300, 900, 3), 255, np.uint8)).people) == 1


def test_candidates_but_no_person_use_the_whole_image(tmp_path, constant_pose):
    """As the extension: a candidate of some class over 0.1 but no person over 0.3 -> RTMPose runs on the whole
    image as one box."""
    model = _model(tmp_path, [T.Box(320, 320, 200, 200, objectness=0.15, class_id=2),
                              T.Box(100, 100, 50, 50, objectness=0.2, stride=16)], constant_pose)
    hw = (384, 640)
    people = dwpose.detect(model, np.full((*hw, 3), 30, np.uint8)).people
    assert len(people) == 1
    whole = (320.0, 192.0, 640.0, 384.0)  # the whole image in letterbox pixels (ratio 1)
    r_wrist = OPENPOSE.index("r_wrist")
    _close(people[0].body.keypoints[r_wrist], _expected(whole, hw, *_bins(COCO.index("r_wrist"))), hw)


def test_bad_files_are_clear_errors(tmp_path, constant_pose):
    det = T.write_detector(tmp_path, [T.Box(320, 320, 200, 400, objectness=0.9)])
    garbage = tmp_path / "garbage" / T.DETECTOR_FILE
    garbage.parent.mkdir()
    garbage.write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match=r"yolox_l\.onnx is not a valid ONNX model"):
        dwpose.load(garbage, constant_pose)
    with pytest.raises(FileNotFoundError, match="dw-ll_ucoco_384.onnx"):
        dwpose.load(det, tmp_path / "missing" / T.POSE_FILE)
    # The files swapped: each names the file and what it should have been.
    with pytest.raises(ValueError, match=r"dw-ll_ucoco_384\.onnx is not a YOLOX person detector"):
        dwpose.load(constant_pose, det)
    with pytest.raises(ValueError, match=r"yolox_l\.onnx is not an RTMPose whole-body model"):
        dwpose.load(det, det)
    body_only = T.write_pose(tmp_path / "p17", [10] * 17, [10] * 17, [0.9] * 17)
    with pytest.raises(ValueError, match="133"):
        dwpose.load(det, body_only)
    model = dwpose.load(det, constant_pose)
    with pytest.raises(ValueError, match="RGB uint8"):
        dwpose.detect(model, np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        dwpose.detect(model, np.zeros((64, 64, 3), np.float32))
