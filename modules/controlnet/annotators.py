"""The weighted preprocessors: which network files each needs, how they load, and how a map is made from them.

- Depth (depth_midas, depth_anything, depth_zoe) runs transformers' depth models, from either
  - a Hugging Face hub model folder (``config.json``, the weights, ``preprocessor_config.json``) in an annotator
    folder (``dpt-hybrid-midas``, ``depth-anything-large-hf``, ``zoedepth-nyu-kitti``...), through
    ``AutoModelForDepthEstimation`` and its image processor; or
  - sd-webui-controlnet's own file (``dpt_hybrid-midas-501f0c75.pt``, ``depth_anything_vitl14.pth``,
    ``ZoeD_M12_N.pt``), the network in its original code's layout, converted on load
    (``modules.controlnet.nets.midas_dpt`` / ``depth_anything`` / ``zoedepth``: config built from the tensors'
    sizes, keys renamed, fused attention split) and run with the extension's resize, normalisation and (ZoeDepth)
    padding and flip averaging. A hub folder wins when both are there.
- The others load the files users download for sd-webui-controlnet (``ControlNetHED.pth``, ``sk_model.pth``,
  ``body_pose_model.pth``, ``yolox_l.onnx``...) into our own networks (``modules.controlnet.nets``; DWPose's ONNX
  files through onnxruntime). Where they are looked for: ``annotator_files``.

One preprocessor's networks are kept loaded between uses (in CPU memory; the extension keeps them too) and brought
to the annotator device only while a map is made, so they never sit on the GPU beside a generation.
Every map is made as the extension makes it: the image's shortest side resized to the preprocessor resolution,
padded to a multiple of 64, the map made, the padding taken off.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from modules.controlnet.annotator_files import AnnotatorSetup, WeightFiles, missing_message

log = logging.getLogger(__name__)

Array = np.ndarray
PoseSink = Callable[[dict[str, Any]], None]


# ---------------------------------------------------------------------------------------------------------------------
# Depth: transformers, from hub folders or the extension's original files


@dataclass(frozen=True)
class DepthModel:
    """A depth preprocessor's model: a hub folder (the names it may have, any case) or sd-webui-controlnet's
    original single file (``file``, converted by ``modules.controlnet.nets.<net>``), and how its output becomes a
    map."""

    preprocessor: str
    folders: tuple[str, ...]
    inverse: bool = False  # ZoeDepth predicts metric depth (far = large): the map is inverted, near = white
    file: WeightFiles | None = None
    net: str = ""

    def find(self, dirs: Sequence[Path]) -> Path | None:
        wanted = {name.lower() for name in self.folders}
        for root in dirs:
            if not root.is_dir():
                continue
            for folder in sorted(root.iterdir()):
                if folder.is_dir() and folder.name.lower() in wanted and (folder / "config.json").is_file():
                    return folder
        return None

    def locate(self, dirs: Sequence[Path]) -> tuple[str, Path] | None:
        """("folder", a hub folder) or ("file", the extension's file); a folder wins (it carries its own config)."""
        folder = self.find(dirs)
        if folder is not None:
            return "folder", folder
        found = self.file.locate(dirs) if self.file is not None else None
        return ("file", found[0]) if found else None

    def missing(self, dirs: Sequence[Path]) -> str | None:
        if self.locate(dirs) is not None:
            return None
        where = str(dirs[0]) if dirs else "models/ControlNet/annotators"
        single = (f"sd-webui-controlnet's {self.file.files[0]} (in {where} or its {self.file.subdir}/ subfolder, as "
                  f"the extension's annotator/downloads has it), or " if self.file is not None else "")
        return (f"the {self.preprocessor} preprocessor needs {single}its model folder (one of: "
                f"{', '.join(self.folders)}: config.json, the weights and preprocessor_config.json, as the Hugging "
                f"Face hub has them) in {where}")


DEPTH_MODELS: dict[str, DepthModel] = {
    "depth": DepthModel("depth_midas", ("dpt-hybrid-midas", "dpt-large", "dpt-beit-large-512"),
                        file=WeightFiles(("dpt_hybrid-midas-501f0c75.pt",), "midas"), net="midas_dpt"),
    "depth_anything": DepthModel("depth_anything", ("depth-anything-large-hf", "depth-anything-base-hf",
                                                    "depth-anything-small-hf", "Depth-Anything-V2-Large-hf",
                                                    "Depth-Anything-V2-Base-hf", "Depth-Anything-V2-Small-hf"),
                                 file=WeightFiles(("depth_anything_vitl14.pth",), "depth_anything"),
                                 net="depth_anything"),
    "depth_zoe": DepthModel("depth_zoe", ("zoedepth-nyu-kitti", "zoedepth-nyu", "zoedepth-kitti"), inverse=True,
                            file=WeightFiles(("ZoeD_M12_N.pt",), "zoedepth"), net="zoedepth"),
}

# A loaded depth model: (the network, its predict: (network, RGB uint8 image) -> float depth at the image's size).
LoadedDepth = tuple[Any, Callable[[Any, Array], Array]]


def _load_depth_folder(folder: Path) -> LoadedDepth:
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    model = AutoModelForDepthEstimation.from_pretrained(folder, local_files_only=True).eval()
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)

    def predict(net: Any, image: Array) -> Array:
        import torch
        from PIL import Image

        device = next(net.parameters()).device
        inputs = processor(images=Image.fromarray(image), return_tensors="pt").to(device)
        with torch.inference_mode():
            predicted = net(**inputs).predicted_depth.float().cpu()
        return torch.nn.functional.interpolate(predicted[:, None], size=image.shape[:2], mode="bicubic",
                                               align_corners=False)[0, 0].numpy()

    return model, predict


def _load_depth_file(key: str, path: Path) -> LoadedDepth:
    import importlib

    net = importlib.import_module(f"modules.controlnet.nets.{DEPTH_MODELS[key].net}")
    return net.load(path), net.predict


def _depth(key: str, loaded: LoadedDepth, image: Array) -> Array:
    """Near = white, as the extension draws it: min-max normalised (ZoeDepth: between its 2nd and 85th
    percentiles, inverted)."""
    spec = DEPTH_MODELS[key]
    model, predict = loaded
    depth = predict(model, image)
    low, high = (np.percentile(depth, 2), np.percentile(depth, 85)) if spec.inverse else (depth.min(), depth.max())
    span = float(high - low)
    depth = (depth - low) / span if span > 0 else np.zeros_like(depth)  # a flat prediction is a black map
    if spec.inverse:
        depth = 1.0 - depth
    grey = (depth * 255.0).clip(0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.stack([grey] * 3, axis=2))


# ---------------------------------------------------------------------------------------------------------------------
# The networks of sd-webui-controlnet's files


def _load_one(module: str, function: str = "load") -> Callable[[list[Path]], Any]:
    def load(paths: list[Path]) -> Any:
        import importlib

        return getattr(importlib.import_module(f"modules.controlnet.nets.{module}"), function)(*paths)

    return load


@dataclass(frozen=True)
class Network:
    """One annotator network: its files and its loader (files -> the model, in CPU memory)."""

    weights: WeightFiles
    load: Callable[[list[Path]], Any]


NETWORKS: dict[str, Network] = {
    "hed": Network(WeightFiles(("ControlNetHED.pth",), "hed"), _load_one("hed")),
    "pidinet": Network(WeightFiles(("table5_pidinet.pth",), "pidinet"), _load_one("pidinet")),
    "lineart": Network(WeightFiles(("sk_model.pth",), "lineart"), _load_one("lineart")),
    "lineart_coarse": Network(WeightFiles(("sk_model2.pth",), "lineart"), _load_one("lineart")),
    "lineart_anime": Network(WeightFiles(("netG.pth",), "lineart_anime"), _load_one("lineart_anime")),
    "mlsd": Network(WeightFiles(("mlsd_large_512_fp32.pth",), "mlsd"), _load_one("mlsd")),
    "normal_bae": Network(WeightFiles(("scannet.pt",), "normal_bae"), _load_one("normalbae")),
    "openpose_body": Network(WeightFiles(("body_pose_model.pth",), "openpose"), _load_one("openpose", "load_body")),
    "openpose_hand": Network(WeightFiles(("hand_pose_model.pth",), "openpose"), _load_one("openpose", "load_hand")),
    "openpose_face": Network(WeightFiles(("facenet.pth",), "openpose"), _load_one("openpose", "load_face")),
    "dwpose": Network(WeightFiles(("yolox_l.onnx", "dw-ll_ucoco_384.onnx"), "openpose"), _load_one("dwpose")),
}


class _Loaded:
    """The networks of the preprocessor used last (others are dropped when another one runs)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.models: dict[tuple[str, tuple[Path, ...]], Any] = {}

    def get(self, keys: Sequence[tuple[str, tuple[Path, ...]]], load: Callable[[str, tuple[Path, ...]], Any]
            ) -> list[Any]:
        kept = {k: self.models[k] for k in keys if k in self.models}
        self.models = kept  # what this preprocessor does not use goes before its own networks load
        for key in keys:
            if key not in self.models:
                self.models[key] = load(*key)
        return [self.models[k] for k in keys]


_LOADED = _Loaded()


class _OnDevice:
    """The torch networks on the annotator device while a map is made, back in CPU memory afterwards."""

    def __init__(self, models: list[Any], device: str) -> None:
        self.models, self.device = models, device

    def __enter__(self) -> list[Any]:
        if self.device != "cpu":
            for m in self.models:
                if hasattr(m, "to"):
                    m.to(self.device)
        return self.models

    def __exit__(self, *_: Any) -> None:
        if self.device != "cpu":
            for m in self.models:
                if hasattr(m, "to"):
                    m.to("cpu")
            from modules.models.devices import torch_gc

            torch_gc()


# A run function: (its models, the padded image, slider 1, slider 2, the pose sink) -> the map at the padded size.
RunFunction = Callable[[list[Any], Array, float, float, "PoseSink | None"], Array]


@dataclass(frozen=True)
class Annotator:
    """A weighted preprocessor: the networks it runs (keys of NETWORKS, or one depth folder) and how."""

    networks: tuple[str, ...]
    run: RunFunction
    after_unpad: Callable[[Array], Array] | None = None  # steps the extension applies to the unpadded map
    depth: str | None = None  # a DEPTH_MODELS key instead of networks

    def missing(self, label: str, setup: AnnotatorSetup) -> str | None:
        if self.depth is not None:
            return DEPTH_MODELS[self.depth].missing(setup.dirs)
        return missing_message(label, [NETWORKS[key].weights for key in self.networks], setup.dirs)

    def _model_keys(self, setup: AnnotatorSetup) -> list[tuple[str, tuple[Path, ...]]]:
        if self.depth is not None:
            found = DEPTH_MODELS[self.depth].locate(setup.dirs)
            return [(f"depth-{found[0]}:{self.depth}", (found[1],))] if found is not None else []
        keys = []
        for key in self.networks:
            paths = NETWORKS[key].weights.locate(setup.dirs)
            if paths is None:
                return []
            keys.append((key, tuple(paths)))
        return keys

    def __call__(self, label: str, image: Array, resolution: int, slider_1: float, slider_2: float,
                 setup: AnnotatorSetup, pose_sink: PoseSink | None = None) -> Array:
        from modules.controlnet.preprocessors import resize_with_pad

        keys = self._model_keys(setup)
        if not keys:
            raise ValueError(self.missing(label, setup))
        from modules.models.types import ModelFileError

        with _LOADED.lock:
            try:
                models = _LOADED.get(keys, _load_model)
            except ModelFileError as err:  # a damaged or unsafe file: the user's to replace (ValueError: the wrong one)
                raise ValueError(f"the {label} preprocessor cannot use its file: {err}") from None
            img, unpad = resize_with_pad(image, resolution)
            with _OnDevice([m[0] if isinstance(m, tuple) else m for m in models], setup.device):
                detected = self.run(models, img, slider_1, slider_2, pose_sink)
        detected = unpad(detected)
        return _grey_to_rgb(self.after_unpad(detected) if self.after_unpad is not None else detected)


def _load_model(key: str, paths: tuple[Path, ...]) -> Any:
    log.info("loading the ControlNet preprocessor model %s from %s", key, ", ".join(str(p) for p in paths))
    if key.startswith("depth-folder:"):
        return _load_depth_folder(paths[0])
    if key.startswith("depth-file:"):
        return _load_depth_file(key.split(":", 1)[1], paths[0])
    return NETWORKS[key].load(list(paths))


# ---------------------------------------------------------------------------------------------------------------------
# How each preprocessor makes its map from its networks' output


def _grey_to_rgb(x: Array) -> Array:
    return np.ascontiguousarray(np.stack([x] * 3, axis=2)) if x.ndim == 2 else x


def _net(module: str, **options: Any) -> RunFunction:
    def run(models: list[Any], image: Array, s1: float, s2: float, _sink: PoseSink | None) -> Array:
        import importlib

        return importlib.import_module(f"modules.controlnet.nets.{module}").detect(models[0], image, **options)

    return run


def _mlsd(models: list[Any], image: Array, value_threshold: float, distance_threshold: float,
          _sink: PoseSink | None) -> Array:
    from modules.controlnet.nets import mlsd

    return mlsd.detect(models[0], image, value_threshold, distance_threshold)


def _scribble(edges: Array) -> Array:
    """scribble_hed / scribble_pidinet: the soft edges thinned (non-maximum suppression), blurred and binarised,
    after the padding is off (the blur at the padding's edge would differ)."""
    from modules.controlnet.nets.hed import scribble

    return scribble(edges)


def _depth_run(key: str) -> RunFunction:
    def run(models: list[Any], image: Array, s1: float, s2: float, _sink: PoseSink | None) -> Array:
        return _depth(key, models[0], image)

    return run


def _pose(body: bool, hand: bool, face: bool, dw: bool = False) -> RunFunction:
    """A pose preprocessor: people found (OpenPose, or DWPose's whole body), drawn with the parts it draws; the
    OpenPose JSON goes to the sink (the extension's ``poses`` in /controlnet/detect)."""
    def run(models: list[Any], image: Array, _s1: float, _s2: float, sink: PoseSink | None) -> Array:
        from modules.controlnet.nets import pose_drawing

        if dw:
            from modules.controlnet.nets import dwpose

            found = dwpose.detect(models[0], image)
        else:
            from modules.controlnet.nets import openpose

            hand_model = models[1] if hand else None
            face_model = models[-1] if face else None
            found = openpose.detect(models[0], image, hand_model=hand_model, face_model=face_model)
        if sink is not None:
            sink(pose_drawing.encode_json(found, pixels=dw))  # the extension writes DWPose's JSON in pixels
        return pose_drawing.draw_poses(found, draw_body=body, draw_hand=hand, draw_face=face)

    return run


def _pose_networks(hand: bool, face: bool) -> tuple[str, ...]:
    return ("openpose_body", *(("openpose_hand",) if hand else ()), *(("openpose_face",) if face else ()))


ANNOTATORS: dict[str, Annotator] = {
    **{key: Annotator((), _depth_run(key), depth=key) for key in DEPTH_MODELS},
    "hed": Annotator(("hed",), _net("hed", mode="soft")),
    "hed_safe": Annotator(("hed",), _net("hed", mode="safe")),
    "scribble_hed": Annotator(("hed",), _net("hed", mode="soft"), after_unpad=_scribble),
    "pidinet": Annotator(("pidinet",), _net("pidinet", mode="soft")),
    "pidinet_safe": Annotator(("pidinet",), _net("pidinet", mode="safe")),
    "pidinet_scribble": Annotator(("pidinet",), _net("pidinet", mode="soft"), after_unpad=_scribble),
    "pidinet_sketch": Annotator(("pidinet",), _net("pidinet", mode="sketch")),
    # (the lineart networks' detect already inverts the map, as the extension's processor does)
    "lineart": Annotator(("lineart",), _net("lineart")),
    "lineart_coarse": Annotator(("lineart_coarse",), _net("lineart")),
    "lineart_anime": Annotator(("lineart_anime",), _net("lineart_anime")),
    "mlsd": Annotator(("mlsd",), _mlsd),
    "normal_bae": Annotator(("normal_bae",), _net("normalbae")),
    "openpose": Annotator(_pose_networks(False, False), _pose(True, False, False)),
    "openpose_hand": Annotator(_pose_networks(True, False), _pose(True, True, False)),
    "openpose_face": Annotator(_pose_networks(False, True), _pose(True, False, True)),
    "openpose_faceonly": Annotator(_pose_networks(False, True), _pose(False, False, True)),
    "openpose_full": Annotator(_pose_networks(True, True), _pose(True, True, True)),
    "dw_openpose_full": Annotator(("dwpose",), _pose(True, True, True, dw=True)),
}
