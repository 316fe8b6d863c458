"""dw_openpose_full: DWPose (IDEA-Research's distilled whole-body RTMPose), as sd-webui-controlnet runs it with
``yolox_l.onnx`` (the person detector) and ``dw-ll_ucoco_384.onnx`` (133 COCO-WholeBody keypoints), through
onnxruntime.

1. YOLOX: the image letterboxed into the detector's input (640x640; scaled to fit, top-left, the rest grey 114; the
   pixels as given, 0..255, no normalisation); its raw rows (one per anchor of the stride 8, 16 and 32 grids: centre
   offset in cells, log size in cells, objectness, 80 class probabilities) decoded to boxes, a class's score being
   objectness times class probability. Class by class, candidates over 0.1 go through NMS (IoU over 0.45 removed,
   areas counted with the extension's +1 pixel); of the persons (class 0) those over 0.3 are kept, best first.
   No candidate of any class: nobody. Candidates but no person kept: the whole image is one box (as the extension
   does).
2. RTMPose per box: the box grown by 1.25, widened or heightened to the model input's aspect (288x384), cut out by
   an affine warp (bilinear, black outside the image), normalised with ImageNet's mean and std (RGB, 0..255); the
   SimCC outputs' argmax per keypoint (``simcc_x`` along the width, ``simcc_y`` along the height, each split ratio
   times the input size; 2 for the released model) divided by that ratio and mapped back through the box. A
   keypoint's score is the smaller of its two maxima; where that is not positive its bin counts as -1.
3. OpenPose's 18 body points from COCO's 17 plus a neck (the mean of the shoulders, found when both shoulders score
   over 0.3), the face's 68 points (then the two body eyes appended, as the extension does: 70), the hands' 21;
   a keypoint scoring under 0.3 is not found, a part with none found is None (a body is then 18 Nones).

The image goes in as it is given (RGB), as the extension passes it. Coordinates come out as fractions of the image,
chosen so that ``fraction * size`` gives back the extension's pixel coordinates (it draws and writes DWPose's in
pixels); see ``pose_drawing.fraction_of``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from modules.controlnet.nets.pose_drawing import fraction_of
from modules.controlnet.nets.pose_types import Body, Keypoint, Person, Points, PoseResult

DETECTOR_FILE = "yolox_l.onnx"
POSE_FILE = "dw-ll_ucoco_384.onnx"
WHOLE_BODY_POINTS = 133
STRIDES = (8, 16, 32)
DEFAULT_DETECTOR_SIZE = (640, 640)  # (height, width), where the model does not fix it
DEFAULT_POSE_SIZE = (288, 384)  # (width, height), where the model does not fix it
CANDIDATE_SCORE = 0.1
NMS_IOU = 0.45
PERSON_SCORE = 0.3
KEYPOINT_SCORE = 0.3
BOX_PADDING = 1.25
LETTERBOX_GREY = 114
MEAN = np.array([123.675, 116.28, 103.53])
STD = np.array([58.395, 57.12, 57.375])

# OpenPose's 18 body points as COCO's (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles), None: the
# neck, made from the shoulders (5, 6).
_OPENPOSE_FROM_COCO = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
_FACE = slice(23, 91)
_LEFT_HAND = slice(91, 112)
_RIGHT_HAND = slice(112, 133)


@dataclass(eq=False)
class DWPose:
    """The two onnxruntime sessions and what their inputs and outputs are."""

    detector: Any  # onnxruntime.InferenceSession
    detector_input: str
    detector_output: str
    detector_size: tuple[int, int]  # (height, width)
    pose: Any
    pose_input: str
    pose_outputs: tuple[str, str]  # (simcc_x, simcc_y)
    pose_size: tuple[int, int]  # (width, height)


def load(det_path: Path, pose_path: Path) -> DWPose:
    """Both ONNX files as onnxruntime sessions (CUDA first where this onnxruntime has it, else the CPU). Raises
    FileNotFoundError for a missing file and ValueError, naming the file, for one that is not an ONNX model or whose
    inputs and outputs are not YOLOX's / RTMPose's."""
    det_path, pose_path = Path(det_path), Path(pose_path)
    detector = _session(det_path)
    det_input, det_output, det_size = _check_detector(detector, det_path)
    pose = _session(pose_path)
    pose_input, pose_outputs, pose_size = _check_pose(pose, pose_path)
    return DWPose(detector, det_input, det_output, det_size, pose, pose_input, pose_outputs, pose_size)


def _session(path: Path) -> Any:
    from modules.onnx_sessions import open_session

    return open_session(path)


def _static(dim: Any) -> Optional[int]:
    return dim if isinstance(dim, int) and dim > 0 else None


def _image_input(session: Any, path: Path, default_hw: tuple[int, int], role: str) -> tuple[str, tuple[int, int]]:
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or _static(inputs[0].shape[1]) not in (None, 3):
        found = ", ".join(f"{i.name} {i.shape}" for i in inputs) or "none"
        raise ValueError(f"{path.name} is not {role}: expected one image input of shape 1x3xHxW, found {found}")
    h, w = (_static(d) for d in inputs[0].shape[2:])
    return inputs[0].name, (h or default_hw[0], w or default_hw[1])


def _anchors(height: int, width: int) -> int:
    return sum((height // s) * (width // s) for s in STRIDES)


def _check_detector(session: Any, path: Path) -> tuple[str, str, tuple[int, int]]:
    role = "a YOLOX person detector (yolox_l.onnx)"
    name, (h, w) = _image_input(session, path, DEFAULT_DETECTOR_SIZE, role)
    if h % STRIDES[-1] or w % STRIDES[-1]:
        raise ValueError(f"{path.name} is not {role}: its input size {h}x{w} is not a multiple of {STRIDES[-1]}")
    outputs = session.get_outputs()
    shape = outputs[0].shape if outputs else []
    rows, columns = (_static(d) for d in shape[1:]) if len(shape) == 3 else (None, None)
    if len(shape) != 3 or (rows is not None and rows != _anchors(h, w)) or (columns is not None and columns < 6):
        found = ", ".join(f"{o.name} {o.shape}" for o in outputs) or "none"
        raise ValueError(f"{path.name} is not {role}: expected an output of shape 1x{_anchors(h, w)}x(5 + classes) "
                         f"for its {h}x{w} input, found {found}")
    return name, outputs[0].name, (h, w)


def _check_pose(session: Any, path: Path) -> tuple[str, tuple[str, str], tuple[int, int]]:
    role = "an RTMPose whole-body model (dw-ll_ucoco_384.onnx)"
    name, (h, w) = _image_input(session, path, DEFAULT_POSE_SIZE[::-1], role)
    outputs = session.get_outputs()
    by_name = {o.name: o for o in outputs}
    chosen = [by_name["simcc_x"], by_name["simcc_y"]] if {"simcc_x", "simcc_y"} <= by_name.keys() else outputs[:2]
    ok = len(chosen) == 2 and all(len(o.shape) == 3 for o in chosen)
    if ok:
        (kx, bins_x), (ky, bins_y) = ((_static(d) for d in o.shape[1:]) for o in chosen)
        ok = all(k in (None, WHOLE_BODY_POINTS) for k in (kx, ky))
        if ok and bins_x is not None and bins_y is not None:
            ok = bins_x % w == 0 and bins_x * h == bins_y * w  # one split ratio, a whole number of bins a pixel
    if not ok:
        found = ", ".join(f"{o.name} {o.shape}" for o in outputs) or "none"
        raise ValueError(f"{path.name} is not {role}: expected outputs simcc_x 1x{WHOLE_BODY_POINTS}x(k*{w}) and "
                         f"simcc_y 1x{WHOLE_BODY_POINTS}x(k*{h}), found {found}")
    return name, (chosen[0].name, chosen[1].name), (w, h)


# ---------------------------------------------------------------------------------------------------------------------
# Detection


def detect(model: DWPose, image: np.ndarray) -> PoseResult:
    """The people in ``image`` (RGB uint8 HxWx3, already resized and padded by the caller) with their body, hands
    and face; coordinates as fractions of its width and height."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("DWPose takes an RGB uint8 image of shape HxWx3")
    image = np.ascontiguousarray(image)  # cv2 wants contiguous pixels (a crop or a flipped view is not)
    height, width = image.shape[:2]
    boxes = person_boxes(model, image)
    if boxes is None:
        return PoseResult(people=[], height=height, width=width)
    if len(boxes) == 0:
        boxes = np.array([[0, 0, width, height]], dtype=np.float64)
    keypoints, scores = whole_body(model, image, boxes)
    people = [_openpose_person(k, s, width, height) for k, s in zip(keypoints, scores)]
    return PoseResult(people=people, height=height, width=width)


def person_boxes(model: DWPose, image: np.ndarray) -> Optional[np.ndarray]:
    """The persons' boxes (n x 4: x0, y0, x1, y1 in image pixels, best first); None where the detector found no
    candidate of any class (an empty array: candidates, but no person)."""
    size_h, size_w = model.detector_size
    ratio = min(size_h / image.shape[0], size_w / image.shape[1])
    fitted_w, fitted_h = int(image.shape[1] * ratio), int(image.shape[0] * ratio)
    letterboxed = np.full((size_h, size_w, 3), LETTERBOX_GREY, dtype=np.uint8)
    letterboxed[:fitted_h, :fitted_w] = cv2.resize(image, (fitted_w, fitted_h), interpolation=cv2.INTER_LINEAR)
    batch = np.ascontiguousarray(letterboxed.transpose(2, 0, 1)[None], dtype=np.float32)
    raw = model.detector.run([model.detector_output], {model.detector_input: batch})[0]
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim != 3 or raw.shape[1] != _anchors(size_h, size_w) or raw.shape[2] < 6:
        raise ValueError(f"the DWPose detector gave an output of shape {raw.shape}, expected "
                         f"1x{_anchors(size_h, size_w)}x(5 + classes)")
    boxes, scores = _decode(raw[0], size_h, size_w)
    boxes /= ratio  # back to image pixels (in float32, as the extension)
    candidates = scores > CANDIDATE_SCORE
    if not candidates.any():
        return None
    persons = candidates[:, 0]
    kept = _nms(boxes[persons], scores[persons, 0], NMS_IOU)
    found_boxes = boxes[persons][kept].astype(np.float64)
    found_scores = scores[persons, 0][kept].astype(np.float64)  # the extension compares these in float64
    return found_boxes[found_scores > PERSON_SCORE]


def _decode(raw: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """YOLOX's rows -> (boxes x0, y0, x1, y1 in input pixels, class scores), both float32."""
    cells, strides = [], []
    for s in STRIDES:
        ys, xs = np.mgrid[0:height // s, 0:width // s]
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strides.append(np.full((cells[-1].shape[0], 1), s))
    cell = np.concatenate(cells)
    stride = np.concatenate(strides)
    # The extension writes these back into its float32 array: computed wider, then rounded to float32.
    centre = ((raw[:, :2] + cell) * stride).astype(np.float32)
    size = (np.exp(raw[:, 2:4]) * stride).astype(np.float32)
    scores = raw[:, 4:5] * raw[:, 5:]
    half = size / 2.0
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    return boxes, scores


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Indices kept by greedy NMS, best first; overlap counted with pixel-inclusive (+1) areas."""
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = scores.argsort()[::-1]
    kept = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(int(best))
        overlap_w = np.maximum(0.0, np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest]) + 1)
        overlap_h = np.maximum(0.0, np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest]) + 1)
        inter = overlap_w * overlap_h
        order = rest[inter / (areas[best] + areas[rest] - inter) <= iou]
    return kept


# ---------------------------------------------------------------------------------------------------------------------
# Whole-body keypoints


def whole_body(model: DWPose, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RTMPose in each box: (n x 133 x 2 keypoints in image pixels, n x 133 scores)."""
    in_w, in_h = model.pose_size
    all_points, all_scores = [], []
    for box in np.asarray(boxes, dtype=np.float64):
        centre, scale = _box_centre_scale(box, in_w / in_h)
        crop = cv2.warpAffine(image, _crop_matrix(centre, scale, in_w, in_h), (in_w, in_h), flags=cv2.INTER_LINEAR)
        batch = ((crop - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)
        simcc_x, simcc_y = model.pose.run(list(model.pose_outputs), {model.pose_input: batch})
        points, scores = _simcc_argmax(np.asarray(simcc_x)[0], np.asarray(simcc_y)[0], in_w, in_h)
        # Bins -> input pixels -> image pixels, in the extension's order of operations.
        all_points.append(points / np.array([in_w, in_h]) * scale + centre - scale / 2)
        all_scores.append(scores)
    return np.array(all_points), np.array(all_scores)


def _box_centre_scale(box: np.ndarray, aspect: float) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, x1, y1 = box
    centre = np.array([x0 + x1, y0 + y1]) * 0.5
    w, h = np.array([x1 - x0, y1 - y0]) * BOX_PADDING
    scale = np.array([w, w / aspect]) if w > h * aspect else np.array([h * aspect, h])
    return centre, scale


def _crop_matrix(centre: np.ndarray, scale: np.ndarray, in_w: int, in_h: int) -> np.ndarray:
    """The affine map from the image to the model input: three point pairs (the centre, the point half the scaled
    width above it, and that one turned 90 degrees about it) in float32, solved by cv2 as the extension's are."""
    src = np.zeros((3, 2), dtype=np.float32)
    src[0] = centre
    src[1] = centre + np.array([0.0, -0.5 * scale[0]])
    dst = np.zeros((3, 2), dtype=np.float32)
    dst[0] = (in_w * 0.5, in_h * 0.5)
    dst[1] = (in_w * 0.5, in_h * 0.5 - in_w * 0.5)
    for points in (src, dst):
        up = points[0] - points[1]
        points[2] = points[1] + np.array([-up[1], up[0]], dtype=np.float32)
    return cv2.getAffineTransform(src, dst)


def _simcc_argmax(simcc_x: np.ndarray, simcc_y: np.ndarray, in_w: int, in_h: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """SimCC vectors (K x bins) -> (K x 2 positions in input pixels, K scores)."""
    if (simcc_x.ndim != 2 or simcc_y.ndim != 2 or simcc_x.shape[0] != WHOLE_BODY_POINTS
            or simcc_y.shape[0] != WHOLE_BODY_POINTS or simcc_x.shape[1] * in_h != simcc_y.shape[1] * in_w):
        raise ValueError(f"the DWPose pose model gave SimCC outputs of shapes {simcc_x.shape} and {simcc_y.shape}, "
                         f"expected {WHOLE_BODY_POINTS} x (k*{in_w}) and {WHOLE_BODY_POINTS} x (k*{in_h})")
    split_ratio = simcc_x.shape[1] / in_w  # a Python float: 2.0 for the released model
    bins = np.stack([simcc_x.argmax(axis=1), simcc_y.argmax(axis=1)], axis=-1).astype(np.float32)
    scores = np.minimum(simcc_x.max(axis=1), simcc_y.max(axis=1))
    bins[scores <= 0.0] = -1
    return bins / split_ratio, scores


# ---------------------------------------------------------------------------------------------------------------------
# 133 whole-body points -> OpenPose


def _openpose_person(points: np.ndarray, scores: np.ndarray, width: int, height: int) -> Person:
    """One person's 133 keypoints (image pixels) and scores as OpenPose's body, hands and face."""
    neck_xy = np.mean(points[[5, 6]], axis=0)
    # Scores are compared as float64 (the extension's array is), not as the model's float32.
    neck_score = 1.0 if float(scores[5]) > KEYPOINT_SCORE and float(scores[6]) > KEYPOINT_SCORE else 0.0
    body_xy = [neck_xy if c is None else points[c] for c in _OPENPOSE_FROM_COCO]
    body_scores = [neck_score if c is None else scores[c] for c in _OPENPOSE_FROM_COCO]
    body = _part(body_xy, body_scores, width, height) or [None] * len(_OPENPOSE_FROM_COCO)
    face = _part(points[_FACE], scores[_FACE], width, height)
    if face is not None:
        face += [body[14], body[15]]  # the extension pads DWPose's 68 face points to OpenPose's 70 with the eyes
    return Person(
        body=Body(keypoints=body, total_score=float(sum(k.score for k in body if k is not None)),
                  total_parts=len(body)),
        left_hand=_part(points[_LEFT_HAND], scores[_LEFT_HAND], width, height),
        right_hand=_part(points[_RIGHT_HAND], scores[_RIGHT_HAND], width, height),
        face=face,
    )


def _part(points: Any, scores: Any, width: int, height: int) -> Optional[Points]:
    found: Points = [Keypoint(fraction_of(float(xy[0]), width), fraction_of(float(xy[1]), height), float(s), i)
                     if float(s) >= KEYPOINT_SCORE else None
                     for i, (xy, s) in enumerate(zip(points, scores))]
    return None if all(k is None for k in found) else found
