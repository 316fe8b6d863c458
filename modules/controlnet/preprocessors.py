"""Control-map preprocessors, with sd-webui-controlnet's names, UI labels, tags, sliders and list order.

The weight-free ones run here (OpenCV and numpy; OpenCV because the extension's maps are made with it, so ours
match them pixel for pixel). The weighted ones (depth, pose, soft edges, ...) run their networks from the annotator
files users put in the annotator folders (``annotators``); without the files, choosing one is a clear error naming
them (``Preprocessor.unavailable``).

Images are uint8 HWC numpy arrays: RGB, or RGBA where the alpha channel is the unit's mask (inpainting).
Pure module: numpy and OpenCV; torch only through the annotators.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from modules.controlnet.annotator_files import AnnotatorSetup

Array = np.ndarray
# (image, resolution, slider_1, slider_2, rng) -> control map
RunFunction = Callable[[Array, int, float, float, np.random.Generator], Array]


@dataclass(frozen=True)
class Slider:
    """One of a preprocessor's sliders (``processor_res``, ``threshold_a``, ``threshold_b``)."""

    label: str = "EMPTY_LABEL"
    minimum: float = 0.0
    maximum: float = 1.0
    step: float = 0.01
    value: float = 0.5
    visible: bool = True

    def api_json(self) -> dict[str, Any]:
        """The extension's ``module_detail`` slider entry."""
        return {"name": self.label, "value": self.value, "min": self.minimum, "max": self.maximum,
                "step": self.step}

    def resolve(self, given: float) -> float:
        """The extension's bound check: a value outside the slider's range (-1 = unset) is its default."""
        return self.value if given < self.minimum or given > self.maximum else given


HIDDEN = Slider(visible=False)
RESOLUTION = Slider("Resolution", 64, 2048, 8, 512)


@dataclass(frozen=True)
class Preprocessor:
    name: str  # the API's ``module`` key
    label: str  # the UI's name (also accepted as ``module``)
    tags: tuple[str, ...]
    run: RunFunction | None  # None: an annotator network makes the map (``annotator``)
    resolution: Slider = RESOLUTION
    slider_1: Slider = HIDDEN
    slider_2: Slider = HIDDEN
    priority: int = 0  # higher sorts first (the extension's ``sorting_priority``)
    accepts_mask: bool = False
    requires_mask: bool = False
    soft_in_hires: bool = False  # the extension's soft weights in a hires pass (canny, mlsd)
    annotator: str | None = None  # the ``annotators.ANNOTATORS`` entry that makes the map

    @property
    def sliders(self) -> tuple[Slider, Slider, Slider]:
        return self.resolution, self.slider_1, self.slider_2

    def unavailable(self, annotators: AnnotatorSetup) -> str | None:
        """Why this preprocessor cannot run with these annotator folders (None when it can): the files it needs
        and where they go."""
        if self.annotator is None:
            return None
        from modules.controlnet.annotators import ANNOTATORS

        return ANNOTATORS[self.annotator].missing(self.label, annotators)

    def detail(self) -> dict[str, Any]:
        """``/controlnet/module_list``'s ``module_detail`` entry."""
        return {"model_free": False, "sliders": [s.api_json() for s in self.sliders if s.visible]}

    def __call__(self, image: Array, resolution: float, slider_1: float, slider_2: float,
                 rng: np.random.Generator | None = None, annotators: AnnotatorSetup = AnnotatorSetup(),
                 pose_sink: Callable[[dict[str, Any]], None] | None = None) -> Array:
        """The control map. A pose preprocessor also hands its OpenPose JSON to ``pose_sink``."""
        if self.annotator is not None:
            from modules.controlnet.annotators import ANNOTATORS

            return ANNOTATORS[self.annotator](self.label, hwc3(image), int(resolution), float(slider_1),
                                              float(slider_2), annotators, pose_sink)
        assert self.run is not None
        image = hwc3(image) if not self.accepts_mask else image
        return self.run(image, int(resolution), float(slider_1), float(slider_2), rng or np.random.default_rng())


# ---------------------------------------------------------------------------------------------------------------------
# Image helpers (the extension's conventions)


def hwc3(image: Array) -> Array:
    """Grey, grey+alpha, RGB or RGBA uint8 -> RGB; alpha composites over white (the extension's ``HWC3``)."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit image, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels == 3:
        return image
    if channels == 1:
        return np.concatenate([image] * 3, axis=2)
    if channels == 2:
        image = np.concatenate([image[:, :, :1]] * 3 + [image[:, :, 1:]], axis=2)
    color = image[:, :, :3].astype(np.float32)
    alpha = image[:, :, 3:4].astype(np.float32) / 255.0
    return (color * alpha + 255.0 * (1.0 - alpha)).clip(0, 255).astype(np.uint8)


def _pad64(x: int) -> int:
    return int(np.ceil(float(x) / 64.0) * 64 - x)


def resize_with_pad(image: Array, resolution: int) -> tuple[Array, Callable[[Array], Array]]:
    """Shortest side to ``resolution`` (cubic up, area down), edge-padded to a multiple of 64; returns the image
    and the function that takes the padding off a map made from it."""
    import cv2

    h_raw, w_raw = image.shape[:2]
    k = float(resolution) / float(min(h_raw, w_raw))
    interpolation = cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA
    h, w = int(np.round(h_raw * k)), int(np.round(w_raw * k))
    resized = cv2.resize(image, (w, h), interpolation=interpolation)
    if resized.ndim == 2:
        resized = resized[:, :, None]
    padded = np.pad(resized, [[0, _pad64(h)], [0, _pad64(w)], [0, 0]], mode="edge")
    return np.ascontiguousarray(padded), lambda x: np.ascontiguousarray(x[:h, :w])


def _gray_to_rgb(x: Array) -> Array:
    return np.ascontiguousarray(np.stack([x] * 3, axis=2)) if x.ndim == 2 else x


# ---------------------------------------------------------------------------------------------------------------------
# The weight-free preprocessors


def _identity(image: Array, *_: Any) -> Array:
    return image


def _canny(image: Array, resolution: int, low: float, high: float, _: Any) -> Array:
    import cv2

    img, unpad = resize_with_pad(image, resolution)
    return _gray_to_rgb(unpad(cv2.Canny(img, int(low), int(high))))


def _invert(image: Array, *_: Any) -> Array:
    return 255 - image


def _blur_gaussian(image: Array, resolution: int, sigma: float, *_: Any) -> Array:
    import cv2

    img, unpad = resize_with_pad(image, resolution)
    return cv2.GaussianBlur(unpad(img), (0, 0), float(sigma))


def _threshold(image: Array, resolution: int, level: float, *_: Any) -> Array:
    img, unpad = resize_with_pad(image, resolution)
    out = np.zeros_like(img, dtype=np.uint8)
    out[np.min(img, axis=2) > level] = 255
    return unpad(out)


def _scribble_xdog(image: Array, resolution: int, level: float, *_: Any) -> Array:
    import cv2

    img, unpad = resize_with_pad(image, resolution)
    g1 = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.5)
    g2 = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 5.0)
    dog = (255 - np.min(g2 - g1, axis=2)).clip(0, 255).astype(np.uint8)
    out = np.zeros_like(img, dtype=np.uint8)
    out[2 * (255 - dog) > level] = 255
    return unpad(out)


def _lineart_standard(image: Array, resolution: int, *_: Any) -> Array:
    import cv2

    img, unpad = resize_with_pad(image, resolution)
    x = img.astype(np.float32)
    g = cv2.GaussianBlur(x, (0, 0), 6.0)
    intensity = np.min(g - x, axis=2).clip(0, 255)
    strong = intensity[intensity > 8]
    intensity /= max(16.0, float(np.median(strong)) if strong.size else 16.0)
    intensity *= 127
    return _gray_to_rgb(unpad(intensity.clip(0, 255).astype(np.uint8)))


def _noise_disk(h: int, w: int, f: int, rng: np.random.Generator) -> Array:
    import cv2

    noise = rng.uniform(low=0, high=1, size=((h // f) + 2, (w // f) + 2))
    noise = cv2.resize(noise, (w + 2 * f, h + 2 * f), interpolation=cv2.INTER_CUBIC)[f:f + h, f:f + w]
    noise -= np.min(noise)
    noise /= max(float(np.max(noise)), 1e-12)
    return noise[:, :, None]


def _shuffle(image: Array, resolution: int, _a: float, _b: float, rng: np.random.Generator) -> Array:
    """Content shuffle: the image warped by a smooth random flow (seeded by the job)."""
    import cv2

    img, unpad = resize_with_pad(image, resolution)
    img = unpad(img)
    h, w = img.shape[:2]
    flow = np.concatenate([_noise_disk(h, w, 256, rng) * float(w - 1),
                           _noise_disk(h, w, 256, rng) * float(h - 1)], axis=2).astype(np.float32)
    return cv2.remap(img, flow, None, cv2.INTER_LINEAR)


def _color(image: Array, resolution: int, *_: Any) -> Array:
    """The T2I-Adapter colour grid: shortest side to ``resolution``, then 64x64-pixel cells of average colour."""
    import cv2

    h_raw, w_raw = image.shape[:2]
    k = float(resolution) / float(min(h_raw, w_raw))
    img = cv2.resize(image, (int(round(w_raw * k)), int(round(h_raw * k))),
                     interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(w // 64, 1), max(h // 64, 1)), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def _tile_resample(image: Array, _res: int, rate: float, *_: Any) -> Array:
    import cv2

    if rate < 1.1:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, (int(w / rate), int(h / rate)), interpolation=cv2.INTER_AREA)


def _recolor(space: str) -> RunFunction:
    def run(image: Array, _res: int, gamma: float, *_: Any) -> Array:
        import cv2

        code, channel = (cv2.COLOR_BGR2LAB, 0) if space == "luminance" else (cv2.COLOR_BGR2HSV, 2)
        value = cv2.cvtColor(image, code)[:, :, channel].astype(np.float32) / 255.0
        value = (value ** gamma * 255.0).clip(0, 255).astype(np.uint8)
        return _gray_to_rgb(value)

    return run


def _inpaint(image: Array, *_: Any) -> Array:
    """Inpainting keeps the image and its mask (RGBA); the mask says what to repaint."""
    if image.ndim != 3 or image.shape[2] != 4:
        raise ValueError("inpainting preprocessors need a mask (an image with its mask)")
    return image


_CANNY_THRESHOLDS = (Slider("Low Threshold", 1, 255, 1, 100), Slider("High Threshold", 1, 255, 1, 200))
_GAMMA = Slider("Gamma Correction", 0.1, 2.0, 0.001, 1.0)
_VARIATION = Slider("Variation", 3.0, 32.0, 1.0, 8.0)


def _weighted(name: str, label: str, tags: tuple[str, ...], priority: int = 0, slider_1: Slider = HIDDEN,
              slider_2: Slider = HIDDEN, soft_in_hires: bool = False) -> Preprocessor:
    """A preprocessor whose map an annotator network makes (``annotators.ANNOTATORS[name]``)."""
    return Preprocessor(name, label, tags, None, RESOLUTION, slider_1, slider_2, priority,
                        soft_in_hires=soft_in_hires, annotator=name)


_ALL: tuple[Preprocessor, ...] = (
    Preprocessor("none", "none", ("InstructP2P",), _identity, priority=10),
    Preprocessor("canny", "canny", ("Canny",), _canny, RESOLUTION, *_CANNY_THRESHOLDS, priority=100,
                 soft_in_hires=True),
    Preprocessor("invert", "invert (from white bg & black line)", ("Canny", "Lineart", "Scribble", "MLSD"), _invert,
                 HIDDEN, priority=20),
    Preprocessor("blur_gaussian", "blur_gaussian", ("Tile",), _blur_gaussian,
                 slider_1=Slider("Sigma", 0.01, 64.0, 0.01, 9.0)),
    Preprocessor("threshold", "threshold", (), _threshold, slider_1=Slider("Binarization Threshold", 0, 255, 0.01, 127)),
    Preprocessor("scribble_xdog", "scribble_xdog", ("Scribble", "SparseCtrl"), _scribble_xdog,
                 slider_1=Slider("XDoG Threshold", 1, 64, 0.01, 32)),
    Preprocessor("lineart_standard", "lineart_standard (from white bg & black line)", ("Lineart",),
                 _lineart_standard, priority=100),
    Preprocessor("shuffle", "shuffle", ("Shuffle",), _shuffle, Slider(value=512, visible=False)),
    Preprocessor("color", "t2ia_color_grid", ("T2I-Adapter",), _color),
    Preprocessor("tile_resample", "tile_resample", ("Tile",), _tile_resample,
                 slider_1=Slider("Down Sampling Rate", 1.0, 8.0, 0.01, 1.0), priority=100),
    Preprocessor("tile_colorfix", "tile_colorfix", ("Tile",), _identity, slider_1=_VARIATION),
    Preprocessor("tile_colorfix+sharp", "tile_colorfix+sharp", ("Tile",), _identity, slider_1=_VARIATION,
                 slider_2=Slider("Sharpness", 0.0, 2.0, 0.01, 1.0)),
    Preprocessor("recolor_luminance", "recolor_luminance", ("Recolor",), _recolor("luminance"), slider_1=_GAMMA,
                 priority=100),
    Preprocessor("recolor_intensity", "recolor_intensity", ("Recolor",), _recolor("intensity"), slider_1=_GAMMA),
    Preprocessor("inpaint", "inpaint_global_harmonious", ("Inpaint",), _inpaint, HIDDEN, accepts_mask=True,
                 requires_mask=True),
    Preprocessor("inpaint_only", "inpaint_only", ("Inpaint",), _inpaint, HIDDEN, priority=100, accepts_mask=True,
                 requires_mask=True),
    # Weighted: an annotator network makes the map. (The extension's legacy preprocessors without a resolution
    # slider still show its default one: kept.)
    _weighted("depth", "depth_midas", ("Depth",), 100),
    _weighted("depth_zoe", "depth_zoe", ("Depth",)),
    _weighted("depth_anything", "depth_anything", ("Depth",)),
    _weighted("openpose", "openpose", ("OpenPose",)),
    _weighted("openpose_face", "openpose_face", ("OpenPose",)),
    _weighted("openpose_faceonly", "openpose_faceonly", ("OpenPose",)),
    _weighted("openpose_full", "openpose_full", ("OpenPose",), 100),
    _weighted("openpose_hand", "openpose_hand", ("OpenPose",)),
    _weighted("dw_openpose_full", "dw_openpose_full", ("OpenPose",)),
    _weighted("lineart", "lineart_realistic", ("Lineart",)),
    _weighted("lineart_coarse", "lineart_coarse", ("Lineart",)),
    _weighted("lineart_anime", "lineart_anime", ("Lineart",)),
    _weighted("hed", "softedge_hed", ("SoftEdge",)),
    _weighted("hed_safe", "softedge_hedsafe", ("SoftEdge",)),
    _weighted("pidinet", "softedge_pidinet", ("SoftEdge",), 100),
    _weighted("pidinet_safe", "softedge_pidisafe", ("SoftEdge",)),
    _weighted("scribble_hed", "scribble_hed", ("Scribble", "SparseCtrl")),
    _weighted("pidinet_scribble", "scribble_pidinet", ("Scribble", "SparseCtrl"), 100),
    _weighted("pidinet_sketch", "t2ia_sketch_pidi", ("T2I-Adapter",)),
    _weighted("mlsd", "mlsd", ("MLSD",), 100, Slider("MLSD Value Threshold", 0.01, 2.0, 0.01, 0.1),
              Slider("MLSD Distance Threshold", 0.01, 20.0, 0.01, 0.1), soft_in_hires=True),
    _weighted("normal_bae", "normal_bae", ("NormalMap",), 100),
)

_BY_KEY: dict[str, Preprocessor] = {**{p.name: p for p in _ALL}, **{p.label: p for p in _ALL}}


def find(module: str) -> Preprocessor | None:
    """The preprocessor ``module`` names (its key or its UI label, as the extension matches)."""
    return _BY_KEY.get(module)


def ordered() -> list[Preprocessor]:
    """The extension's list order: "none" first, then by priority (high first), then label, descending."""
    rest = [p for p in _ALL if p.name != "none"]
    rest.sort(key=lambda p: str(p.priority).zfill(8) + p.label, reverse=True)
    return [_BY_KEY["none"], *rest]


def module_list(alias_names: bool = False) -> list[str]:
    return [p.label if alias_names else p.name for p in ordered()]


def module_detail(alias_names: bool = False) -> dict[str, dict[str, Any]]:
    return {(p.label if alias_names else p.name): p.detail() for p in ordered()}


@dataclass(frozen=True)
class ControlType:
    """One of the UI's control-type filters ("Canny", "Depth", ...): its preprocessors and models."""

    name: str
    modules: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    default_module: str = "none"
    default_model: str = "None"

    def api_json(self) -> dict[str, Any]:
        return {"module_list": self.modules, "model_list": self.models, "default_option": self.default_module,
                "default_model": self.default_model}


_TAG_ALIASES = {"instructp2p": ["ip2p"], "segmentation": ["seg"], "normalmap": ["normal"],
                "t2i-adapter": ["t2i_adapter", "t2iadapter", "t2ia"], "ip-adapter": ["ip_adapter", "ipadapter"],
                "openpose": ["openpose", "densepose"], "instant-id": ["instant_id", "instantid"],
                "scribble": ["sketch"], "tile": ["blur"]}
_UNION_TAGS = {"openpose", "depth", "softedge", "canny", "lineart", "mlsd", "normalmap", "tile", "inpaint"}


def control_type_names() -> list[str]:
    return ["All", *sorted({t for p in _ALL for t in p.tags})]


def control_type(name: str, model_titles: list[str]) -> ControlType:
    """A control type's preprocessors and the models whose names match it (the extension's filter: the type's
    name or an alias in the file name; "union" models match every type a union model serves)."""
    if name == "All":
        return ControlType(name, [p.label for p in ordered()], ["None", *model_titles])
    modules = [p.label for p in ordered() if name in p.tags or p.name == "none"]
    pattern = name.lower()
    filters = {pattern, *_TAG_ALIASES.get(pattern, [])} | ({"union"} if pattern in _UNION_TAGS else set())
    models = ["None", *[m for m in model_titles if any(f in m.lower() for f in filters)]]
    default_module = modules[1] if len(modules) > 1 else modules[0]
    default_model = "None"
    if len(models) > 1:
        default_model = next((m for m in models[1:] if "11" in m.split("[")[0]), models[1])
    return ControlType(name, modules, models, default_module, default_model)
