"""A tiny stand-in for a WD14 tagger folder (``model.onnx`` + ``selected_tags.csv``) with the released models'
interface: one NHWC float input ``input`` of 1xSxSx3 (BGR, 0-255) and one output of a probability per tag. Its
scores are known in closed form: ``sigmoid(mean_bgr @ weights + bias)``, the input's per-channel mean (so a
test can work the padding out by hand) through one linear layer."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

_OPSET, _IR_VERSION = 17, 8


def write(folder: Path, tags: Sequence[tuple[str, int]], weights: np.ndarray, bias: np.ndarray,
          size: int = 32, input_name: str = "input") -> Path:
    """``tags``: (name, category) in output order; ``weights`` (3, len(tags)) over (B, G, R) means."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "selected_tags.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["tag_id", "name", "category", "count"])
        for i, (name, category) in enumerate(tags):
            writer.writerow([1000 + i, name, category, 10 * (len(tags) - i)])
    count = len(tags)
    nodes = [
        helper.make_node("ReduceMean", [input_name], ["mean"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["mean", "weights"], ["logits"]),
        helper.make_node("Add", ["logits", "bias"], ["raw"]),
        helper.make_node("Sigmoid", ["raw"], ["predictions_sigmoid"]),
    ]
    initialisers = [numpy_helper.from_array(weights.astype(np.float32), "weights"),
                    numpy_helper.from_array(bias.astype(np.float32), "bias")]
    graph = helper.make_graph(
        nodes, "tiny_wd14", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, size, size, 3])],
        [helper.make_tensor_value_info("predictions_sigmoid", TensorProto.FLOAT, [1, count])], initialisers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="tiny_wd14")
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "model.onnx"))
    return folder


def expected_scores(mean_bgr: Sequence[float], weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(np.asarray(mean_bgr, dtype=np.float64) @ weights + bias)))
