"""Face restoration (GFPGAN, CodeFormer) as A1111 does it: detect faces with RetinaFace, align each onto a 512x512
template, restore it, paste it back with a soft edge, and blend the result with the original by "visibility".

Weights are the files A1111 users already have: ``models/GFPGAN/GFPGANv1.4.pth`` (any ``GFPGAN*`` file), facexlib's
detector ``detection_Resnet50_Final.pth`` (A1111 keeps it in ``models/GFPGAN``), and ``models/Codeformer/
codeformer-v0.1.0.pth``. They load through the safe loader; GFPGAN's architecture comes from spandrel, CodeFormer's
from ``spandrel_extra_arches`` (MIT, but CodeFormer's own code is under S-Lab's non-commercial licence, as in
A1111, which ships the same code). A restorer that
cannot run says why, and a request that asks for it gets that message as an error naming its field.
"""

from __future__ import annotations

import inspect
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from modules.errors import FieldError

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".pth", ".safetensors", ".ckpt")
DETECTOR_FILE = "detection_Resnet50_Final.pth"


@dataclass(frozen=True)
class FaceRestorer:
    name: str  # "GFPGAN" or "CodeFormer"
    folder: Path
    field: str  # the request field that asks for it
    detector_folders: tuple[Path, ...]

    def weights(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        prefix = "gfpgan" if self.name == "GFPGAN" else "codeformer"
        return sorted((p for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES
                       and p.name.lower().startswith(prefix)), reverse=True)  # GFPGANv1.4 before v1.3

    def detector(self) -> Path | None:
        return next((f / DETECTOR_FILE for f in self.detector_folders if (f / DETECTOR_FILE).is_file()), None)

    def reason_parts(self) -> tuple[str, Path | None] | None:
        """Why it cannot run, as (fixed phrase, folder it names), or None when it can."""
        if not self.weights():
            return f"{self.name} weights are not installed: put them in", self.folder
        if self.detector() is None:
            return f"The face detector {DETECTOR_FILE} is not installed: put it in", self.detector_folders[0]
        if self.name == "CodeFormer":
            try:
                import spandrel_extra_arches  # noqa: F401
            except ImportError:
                return ("CodeFormer needs the spandrel_extra_arches package (non-commercial licence): "
                        "pip install spandrel_extra_arches", None)
        return None

    def unavailable_reason(self) -> str | None:
        parts = self.reason_parts()
        if parts is None:
            return None
        phrase, folder = parts
        return f"{phrase} {folder}" if folder is not None else phrase


class FaceRestorers:
    """The restorers A1111 lists, in its order (CodeFormer first); models load on first use and stay loaded."""

    def __init__(self, gfpgan_dir: Path, codeformer_dir: Path, device_policy: Any = None) -> None:
        detectors = (gfpgan_dir, codeformer_dir)
        self.items = [FaceRestorer("CodeFormer", codeformer_dir, "codeformer_visibility", detectors),
                      FaceRestorer("GFPGAN", gfpgan_dir, "gfpgan_visibility", detectors)]
        self.device_policy = device_policy
        self._lock = threading.Lock()
        self._models: dict[str, Any] = {}

    @classmethod
    def from_paths(cls, paths: Any, device_policy: Any = None) -> FaceRestorers:
        # --gfpgan-models-path / --codeformer-models-path replace the folder, as in A1111
        return cls(paths.model_dirs("gfpgan")[-1], paths.model_dirs("codeformer")[-1], device_policy)

    def api_list(self) -> list[dict[str, str]]:
        return [{"name": r.name, "cmd_dir": str(r.folder)} for r in self.items]

    def status(self) -> dict[str, tuple[str, Path | None] | None]:
        """Name -> why it cannot run (shown next to its controls), or None when it can."""
        return {r.name: r.reason_parts() for r in self.items}

    def get(self, name: str) -> FaceRestorer:
        return next(r for r in self.items if r.name == name)

    def check(self, params: Any) -> None:
        """A restorer that is asked for but cannot run is an error naming its field."""
        for restorer in self.items:
            if getattr(params, restorer.field, 0) > 0:
                reason = restorer.unavailable_reason()
                if reason is not None:
                    raise FieldError(restorer.field, reason)

    def restore(self, image: Image.Image, params: Any, info: dict[str, Any]) -> Image.Image:
        """GFPGAN, then CodeFormer (A1111's order), each blended in by its visibility."""
        self.check(params)
        if params.gfpgan_visibility > 0:
            image = self.apply("GFPGAN", image, params.gfpgan_visibility)
            info["GFPGAN visibility"] = round(params.gfpgan_visibility, 3)
        if params.codeformer_visibility > 0:
            image = self.apply("CodeFormer", image, params.codeformer_visibility, params.codeformer_weight)
            info["CodeFormer visibility"] = round(params.codeformer_visibility, 3)
            info["CodeFormer weight"] = round(params.codeformer_weight, 3)
        return image

    def apply(self, name: str, image: Image.Image, visibility: float, weight: float = 0.5,
              faces: list[Any] | None = None) -> Image.Image:
        """Restore every face found in ``image`` (or the given ``faces``) with ``name``."""
        from modules.upscalers import face_align, retinaface

        restorer = self.get(name)
        reason = restorer.unavailable_reason() if faces is None else (
            None if restorer.weights() else restorer.unavailable_reason())
        if reason is not None:
            raise FieldError(restorer.field, reason)
        original = image.convert("RGB")
        with self._lock:
            if faces is None:
                detector = self._detector(restorer)
                faces = retinaface.detect_faces(detector, original, device=next(detector.parameters()).device)
            result = original
            network = self._network(restorer)
            for face in faces:
                aligned, matrix = face_align.align_face(original, np.asarray(face.landmarks))
                result = face_align.paste_face(result, self._run(restorer, network, aligned, weight), matrix)
        if visibility < 1.0:
            result = Image.blend(original, result, visibility)
        return result

    def _detector(self, restorer: FaceRestorer) -> Any:
        from modules.models.formats import load_state_dict
        from modules.upscalers import retinaface

        if "detector" not in self._models:
            path = restorer.detector()
            assert path is not None
            self._models["detector"] = retinaface.load_retinaface(load_state_dict(path)).to(self._device())
        return self._models["detector"]

    def _device(self) -> Any:
        """The GPU when there is one (``--use-cpu gfpgan`` keeps restoration on the CPU), in fp32."""
        import torch

        return self.device_policy.device_for("gfpgan") if self.device_policy is not None else torch.device("cpu")

    def _network(self, restorer: FaceRestorer) -> Any:
        from modules.models.formats import load_state_dict
        from modules.upscalers.spandrel_import import import_spandrel, install_extra_arches

        if restorer.name not in self._models:
            spandrel = import_spandrel()
            if restorer.name == "CodeFormer":
                install_extra_arches()
            descriptor = spandrel.ModelLoader().load_from_state_dict(load_state_dict(restorer.weights()[0]))
            if descriptor.purpose != "FaceSR":
                raise FieldError(restorer.field, f"{restorer.weights()[0].name} is not a face restoration model "
                                                 f"({descriptor.architecture.name})")
            self._models[restorer.name] = descriptor.model.eval().to(self._device())
        return self._models[restorer.name]

    @staticmethod
    def _run(restorer: FaceRestorer, network: Any, face: Image.Image, weight: float) -> Image.Image:
        """One aligned 512x512 face through the network, which works in [-1, 1] RGB (as GFPGAN and CodeFormer
        were trained)."""
        import torch

        x = torch.from_numpy(np.asarray(face, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
        parameter = next(network.parameters())
        x = x.to(parameter.device, parameter.dtype)
        with torch.inference_mode():
            if restorer.name == "CodeFormer":
                # spandrel_extra_arches names the fidelity "weight" (the original code, which A1111 calls: "w")
                name = "weight" if "weight" in inspect.signature(network.forward).parameters else "w"
                out = network(x, **{name: weight})[0]
            else:
                out = network(x, return_rgb=False)[0]
        out = ((out.float().clamp(-1, 1) + 1.0) * 127.5)[0].permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(np.round(out).astype(np.uint8))
