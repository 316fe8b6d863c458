"""The weighted preprocessors that a well-kept library runs: depth_midas (DPT), depth_anything (Depth Anything) and
depth_zoe (ZoeDepth), all through transformers' ``AutoModelForDepthEstimation``.

Their weights are the model folders of the Hugging Face hub (``config.json``, the weights, and
``preprocessor_config.json``), which users put under ``models/ControlNet/annotators/`` (for example
``annotators/dpt-hybrid-midas``, ``annotators/depth-anything-large-hf``, ``annotators/zoedepth-nyu-kitti``); nothing
is downloaded. sd-webui-controlnet's own files (``dpt_hybrid-midas-501f0c75.pt``...) are those networks in their
original code's layout, which these classes do not read. The maps are normalised as the extension normalises them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

ANNOTATOR_FOLDER = "annotators"  # under each ControlNet models folder


@dataclass(frozen=True)
class DepthModel:
    """A preprocessor's model folder: the names it may have (any case) and how its output becomes a map."""

    preprocessor: str
    folders: tuple[str, ...]
    inverse: bool = False  # ZoeDepth predicts metric depth (far = large): the map is inverted, near = white

    def find(self, dirs: Sequence[Path]) -> Path | None:
        wanted = {name.lower() for name in self.folders}
        for root in dirs:
            if not root.is_dir():
                continue
            for folder in sorted(root.iterdir()):
                if folder.is_dir() and folder.name.lower() in wanted and (folder / "config.json").is_file():
                    return folder
        return None

    def missing(self, dirs: Sequence[Path]) -> str | None:
        if self.find(dirs) is not None:
            return None
        where = ", ".join(str(d) for d in dirs) or f"models/ControlNet/{ANNOTATOR_FOLDER}"
        return (f"the {self.preprocessor} preprocessor needs its model folder (one of: {', '.join(self.folders)}: "
                f"config.json, the weights and preprocessor_config.json, as the Hugging Face hub has them) in "
                f"{where}")


DEPTH_MODELS: dict[str, DepthModel] = {
    "depth": DepthModel("depth_midas", ("dpt-hybrid-midas", "dpt-large", "dpt-beit-large-512")),
    "depth_anything": DepthModel("depth_anything", ("depth-anything-large-hf", "depth-anything-base-hf",
                                                    "depth-anything-small-hf", "Depth-Anything-V2-Large-hf",
                                                    "Depth-Anything-V2-Base-hf", "Depth-Anything-V2-Small-hf")),
    "depth_zoe": DepthModel("depth_zoe", ("zoedepth-nyu-kitti", "zoedepth-nyu", "zoedepth-kitti"), inverse=True),
}


class _Loaded:
    """The one depth model kept loaded (the extension unloads preprocessors between uses too)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.folder: Path | None = None
        self.model: Any = None
        self.processor: Any = None

    def get(self, folder: Path) -> tuple[Any, Any]:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        if self.folder != folder:
            self.model = AutoModelForDepthEstimation.from_pretrained(folder, local_files_only=True).eval()
            self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
            self.folder = folder
        return self.model, self.processor


_LOADED = _Loaded()


def annotator_dirs(controlnet_dirs: Sequence[Path]) -> list[Path]:
    """Where the annotators' folders are: ``annotators/`` in each ControlNet models folder."""
    return [Path(d) / ANNOTATOR_FOLDER for d in controlnet_dirs]


def depth_map(key: str, image: np.ndarray, dirs: Sequence[Path]) -> np.ndarray:
    """The depth map of an RGB uint8 image at its own size: near = white, as the extension draws it (min-max
    normalised; ZoeDepth between its 2nd and 85th percentiles, inverted)."""
    import torch
    from PIL import Image

    spec = DEPTH_MODELS[key]
    folder = spec.find(dirs)
    if folder is None:
        raise ValueError(spec.missing(dirs))
    with _LOADED.lock:
        model, processor = _LOADED.get(folder)
        inputs = processor(images=Image.fromarray(image), return_tensors="pt")
        with torch.inference_mode():
            predicted = model(**inputs).predicted_depth
    depth = torch.nn.functional.interpolate(predicted[:, None].float(), size=image.shape[:2], mode="bicubic",
                                            align_corners=False)[0, 0].numpy()
    low, high = (np.percentile(depth, 2), np.percentile(depth, 85)) if spec.inverse else (depth.min(), depth.max())
    span = float(high - low)
    depth = (depth - low) / span if span > 0 else np.zeros_like(depth)  # a flat prediction is a black map
    if spec.inverse:
        depth = 1.0 - depth
    grey = (depth * 255.0).clip(0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.stack([grey] * 3, axis=2))
