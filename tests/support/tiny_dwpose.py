"""Tiny stand-ins for DWPose's two ONNX files, with the released models' input and output names and shapes, whose
outputs are known, so a test can work out by hand where every keypoint must land.

* ``write_detector``: ``yolox_l.onnx`` -- input ``images`` 1x3x640x640, output ``output`` 1x8400x85 (one row per
  anchor of the stride 8, 16 and 32 grids: centre offset and log size in cells, objectness, 80 class probabilities).
  All rows are zero but the ones encoding the given boxes. With ``gated`` the objectness is multiplied by how far
  the brightest value of the input's top-left 16x16 corner is above the letterbox grey (114, up to 255: 0..1), so a
  black image has no candidate at all, and a bright one only where it was letterboxed into the top-left corner.
* ``write_pose``: ``dw-ll_ucoco_384.onnx`` -- input ``input`` 1x3x384x288, outputs ``simcc_x`` 1x133x576 and
  ``simcc_y`` 1x133x768 (split ratio 2): constant vectors, keypoint k's peaked at its chosen bins with its chosen
  value (its score).
* ``write_tracking_pose``: the same names and shapes, every keypoint at the brightest column and row of the
  normalised crop (SimCC bins 2j and 2j+1 both carry crop column j's maximum over channels and rows, so the argmax
  is 2j), its score that maximum: where a bright dot is drawn, there the keypoints must come back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

DETECTOR_FILE = "yolox_l.onnx"
POSE_FILE = "dw-ll_ucoco_384.onnx"
DETECTOR_SIZE = 640
STRIDES = (8, 16, 32)
CLASSES = 80
POSE_W, POSE_H = 288, 384
SPLIT_RATIO = 2
KEYPOINTS = 133
_OPSET, _IR_VERSION = 17, 8


@dataclass(frozen=True)
class Box:
    """A detection in the detector's input pixels (the letterboxed 640x640 image)."""

    cx: float
    cy: float
    w: float
    h: float
    objectness: float
    class_id: int = 0
    class_probability: float = 1.0
    stride: int = 32  # which grid's anchor encodes it


def _anchor_offset(stride: int) -> int:
    offset = 0
    for s in STRIDES:
        if s == stride:
            return offset
        offset += (DETECTOR_SIZE // s) ** 2
    raise ValueError(f"stride {stride} is not one of {STRIDES}")


def _row(box: Box) -> tuple[int, np.ndarray]:
    """The anchor row encoding ``box`` and its 85 values (objectness in column 4)."""
    cells = DETECTOR_SIZE // box.stride
    gx, gy = int(box.cx // box.stride), int(box.cy // box.stride)
    values = np.zeros(5 + CLASSES, dtype=np.float32)
    values[0] = box.cx / box.stride - gx
    values[1] = box.cy / box.stride - gy
    values[2] = math.log(box.w / box.stride)
    values[3] = math.log(box.h / box.stride)
    values[4] = box.objectness
    values[5 + box.class_id] = box.class_probability
    return _anchor_offset(box.stride) + gy * cells + gx, values


def _save(graph, path: Path) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="tiny_dwpose")
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_detector(folder: Path, boxes: Sequence[Box], gated: bool = False, name: str = DETECTOR_FILE) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    anchors = sum((DETECTOR_SIZE // s) ** 2 for s in STRIDES)
    rows = [_row(b) for b in boxes]
    if len({r for r, _ in rows}) != len(rows):
        raise ValueError("two boxes on the same anchor")
    indices = np.array([[0, r] for r, _ in rows], dtype=np.int64).reshape(-1, 2)
    values = np.stack([v for _, v in rows]).astype(np.float32) if rows else np.zeros((0, 5 + CLASSES), np.float32)
    objectness_only = np.zeros_like(values)
    objectness_only[:, 4] = values[:, 4]
    rest = values - objectness_only
    nodes = [
        helper.make_node("ConstantOfShape", ["table_shape"], ["zeros"],
                         value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])),
        # gate: 1 for an ungated detector (brightness * 0 + 1); for a gated one how far the brightest pixel of the
        # input's top-left 16x16 corner is above the letterbox's grey 114, as a fraction of 255 - 114: 0 on a black
        # image, and 0 where the image was not letterboxed into the top-left corner
        helper.make_node("Slice", ["images", "corner_start", "corner_end"], ["corner"]),
        helper.make_node("ReduceMax", ["corner"], ["brightest"], keepdims=0),
        helper.make_node("Sub", ["brightest", "grey"], ["above_grey"]),
        helper.make_node("Relu", ["above_grey"], ["brightness_raw"]),
        helper.make_node("Div", ["brightness_raw", "full_scale"], ["brightness"]),
        helper.make_node("Mul", ["brightness", "gate_weight"], ["gate_scaled"]),
        helper.make_node("Add", ["gate_scaled", "gate_bias"], ["gate"]),
        helper.make_node("Mul", ["objectness", "gate"], ["gated_objectness"]),
        helper.make_node("Add", ["rest", "gated_objectness"], ["updates"]),
        helper.make_node("ScatterND", ["zeros", "indices", "updates"], ["output"]),
    ]
    initialisers = [
        numpy_helper.from_array(np.array([1, anchors, 5 + CLASSES], dtype=np.int64), "table_shape"),
        numpy_helper.from_array(np.array([0, 0, 0, 0], dtype=np.int64), "corner_start"),
        numpy_helper.from_array(np.array([1, 3, 16, 16], dtype=np.int64), "corner_end"),
        numpy_helper.from_array(np.array(114.0, dtype=np.float32), "grey"),
        numpy_helper.from_array(np.array(255.0 - 114.0, dtype=np.float32), "full_scale"),
        numpy_helper.from_array(np.array(1.0 if gated else 0.0, dtype=np.float32), "gate_weight"),
        numpy_helper.from_array(np.array(0.0 if gated else 1.0, dtype=np.float32), "gate_bias"),
        numpy_helper.from_array(objectness_only, "objectness"),
        numpy_helper.from_array(rest, "rest"),
        numpy_helper.from_array(indices, "indices"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_yolox",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, DETECTOR_SIZE, DETECTOR_SIZE])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, anchors, 5 + CLASSES])],
        initialisers)
    return _save(graph, Path(folder) / name)


def _pose_graph(nodes, initialisers, name: str, keypoints: int = KEYPOINTS):
    from onnx import TensorProto, helper

    return helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, POSE_H, POSE_W])],
        [helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [1, keypoints, POSE_W * SPLIT_RATIO]),
         helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [1, keypoints, POSE_H * SPLIT_RATIO])],
        initialisers)


def write_pose(folder: Path, bins_x: Sequence[int], bins_y: Sequence[int], peaks: Sequence[float],
               peaks_y: Optional[Sequence[float]] = None, background: float = 0.0, name: str = POSE_FILE) -> Path:
    """Keypoint k's ``simcc_x`` is ``background`` everywhere but ``peaks[k]`` at ``bins_x[k]`` (its ``simcc_y``
    likewise at ``bins_y[k]``, with ``peaks_y[k]`` where given); as many keypoints as bins given (133 for a real
    model's shape)."""
    from onnx import helper, numpy_helper

    k = len(bins_x)
    x = np.full((1, k, POSE_W * SPLIT_RATIO), background, dtype=np.float32)
    y = np.full((1, k, POSE_H * SPLIT_RATIO), background, dtype=np.float32)
    for i, (bx, by, p, py) in enumerate(zip(bins_x, bins_y, peaks, peaks_y if peaks_y is not None else peaks)):
        x[0, i, bx] = p
        y[0, i, by] = py
    nodes = [
        helper.make_node("ReduceMax", ["input"], ["any"], keepdims=0),  # the input used (times zero)
        helper.make_node("Mul", ["any", "zero"], ["nothing"]),
        helper.make_node("Add", ["table_x", "nothing"], ["simcc_x"]),
        helper.make_node("Add", ["table_y", "nothing"], ["simcc_y"]),
    ]
    initialisers = [numpy_helper.from_array(x, "table_x"), numpy_helper.from_array(y, "table_y"),
                    numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")]
    return _save(_pose_graph(nodes, initialisers, "tiny_rtmpose", k), Path(folder) / name)


def write_tracking_pose(folder: Path, name: str = POSE_FILE) -> Path:
    from onnx import helper, numpy_helper

    def spread(n: int) -> np.ndarray:  # n pixels -> 2n bins, pixel j into bins 2j and 2j+1
        m = np.zeros((n, n * SPLIT_RATIO), dtype=np.float32)
        for j in range(n):
            m[j, SPLIT_RATIO * j:SPLIT_RATIO * (j + 1)] = 1.0
        return m

    nodes = [
        helper.make_node("ReduceMax", ["input"], ["columns"], axes=[1, 2], keepdims=0),  # 1 x W
        helper.make_node("ReduceMax", ["input"], ["rows"], axes=[1, 3], keepdims=0),  # 1 x H
        helper.make_node("MatMul", ["columns", "spread_x"], ["bins_x"]),
        helper.make_node("MatMul", ["rows", "spread_y"], ["bins_y"]),
        helper.make_node("Unsqueeze", ["bins_x", "axis_1"], ["one_x"]),
        helper.make_node("Unsqueeze", ["bins_y", "axis_1"], ["one_y"]),
        helper.make_node("Tile", ["one_x", "repeats"], ["simcc_x"]),
        helper.make_node("Tile", ["one_y", "repeats"], ["simcc_y"]),
    ]
    initialisers = [
        numpy_helper.from_array(spread(POSE_W), "spread_x"),
        numpy_helper.from_array(spread(POSE_H), "spread_y"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_1"),
        numpy_helper.from_array(np.array([1, KEYPOINTS, 1], dtype=np.int64), "repeats"),
    ]
    return _save(_pose_graph(nodes, initialisers, "tiny_rtmpose_tracking"), Path(folder) / name)
