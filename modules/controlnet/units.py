"""One ControlNet unit: the extension's API dict -> typed values, and the unit's infotext form.

The extension's leniency is kept: legacy aliases (``input_image``, ``guidance``, ``lowvram``, ``mask_image``), enum
fields as their names or as ints, resize-mode aliases, ``processor_res``/``threshold_a``/``threshold_b`` outside the
preprocessor's slider (-1 = unset) falling back to its default, unknown fields ignored. Everything else that cannot
be used is a ``FieldError`` naming the unit and the field, raised before the job is queued.

One difference, listed in the README: a unit dict without ``enabled`` is enabled (Forge and the extension before
2024; clients that send a model and an image mean it), where today's extension would silently skip it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from modules.controlnet import preprocessors
from modules.errors import FieldError


class ResizeMode(str, Enum):
    RESIZE = "Just Resize"
    INNER_FIT = "Crop and Resize"
    OUTER_FIT = "Resize and Fill"


class ControlMode(str, Enum):
    BALANCED = "Balanced"
    PROMPT = "My prompt is more important"
    CONTROL = "ControlNet is more important"


class HiresOption(str, Enum):
    BOTH = "Both"
    LOW_RES_ONLY = "Low res only"
    HIGH_RES_ONLY = "High res only"


class UnionType(str, Enum):
    """The control type a Union/ProMax ControlNet is told (xinsir's order: the index is the model's type id)."""

    OPENPOSE = "OpenPose"
    DEPTH = "Depth"
    SOFT_EDGE = "Soft Edge"
    HARD_EDGE = "Hard Edge"
    NORMAL_MAP = "Normal Map"
    SEGMENTATION = "Segmentation"
    TILE = "Tile"
    INPAINT = "Inpaint"
    UNKNOWN = "Unknown"

    @classmethod
    def of_tag(cls, tag: str) -> UnionType:
        """The extension's mapping of a control type (a preprocessor tag) to a union type."""
        tag = tag.lower()
        for names, kind in ((("openpose",), cls.OPENPOSE), (("depth",), cls.DEPTH),
                            (("scribble", "softedge"), cls.SOFT_EDGE), (("canny", "lineart", "mlsd"), cls.HARD_EDGE),
                            (("normalmap",), cls.NORMAL_MAP), (("segmentation",), cls.SEGMENTATION),
                            (("tile", "blur"), cls.TILE), (("inpaint",), cls.INPAINT)):
            if tag in names:
                return kind
        return cls.UNKNOWN


_RESIZE_ALIASES = {"Inner Fit (Scale to Fit)": "Crop and Resize", "Outer Fit (Shrink to Fit)": "Resize and Fill",
                   "Scale to Fit (Inner Fit)": "Crop and Resize", "Envelope (Outer Fit)": "Resize and Fill"}
_LEGACY_ALIASES = {"guidance": "guidance_end", "lowvram": "low_vram", "input_image": "image"}
MAX_UNITS = 10  # the extension's largest control_net_unit_count
SCRIPT_TITLE = "controlnet"  # the always-on script's name in /sdapi/v1/scripts and alwayson_scripts

# Decodes one base64 image (plain or data URI) for the named field: the API's decoder.
Decoder = Callable[[str, str], Any]


@dataclass(frozen=True)
class ControlUnit:
    """A unit as processing uses it. ``image``/``mask`` are PIL images (or None); ``where`` names the unit in
    errors (``alwayson_scripts.ControlNet.args.0``)."""

    enabled: bool = True
    module: str = "none"
    model: str = "None"
    weight: float = 1.0
    image: Any = None
    mask: Any = None
    resize_mode: ResizeMode = ResizeMode.INNER_FIT
    low_vram: bool = False
    processor_res: float = -1
    threshold_a: float = -1
    threshold_b: float = -1
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False
    control_mode: ControlMode = ControlMode.BALANCED
    hr_option: HiresOption = HiresOption.BOTH
    save_detected_map: bool = True
    advanced_weighting: tuple[float, ...] | None = None
    effective_region_mask: Any = None
    union_control_type: UnionType = UnionType.UNKNOWN
    where: str = field(default="controlnet_units.0", compare=False)

    @property
    def preprocessor(self) -> preprocessors.Preprocessor:
        found = preprocessors.find(self.module)
        assert found is not None  # checked by ``parse_unit``
        return found

    @property
    def union_type(self) -> UnionType:
        """The type for a union model: the unit's, else the one its preprocessor's control type implies."""
        if self.union_control_type != UnionType.UNKNOWN:
            return self.union_control_type
        for tag in self.preprocessor.tags:
            kind = UnionType.of_tag(tag)
            if kind != UnionType.UNKNOWN:
                return kind
        return UnionType.UNKNOWN

    @property
    def active(self) -> bool:
        """Takes part in the job: enabled with a weight (a weight 0 unit changes nothing, so it is not run)."""
        return self.enabled and (self.weight > 0 or bool(self.advanced_weighting and any(self.advanced_weighting)))

    def with_defaults(self) -> ControlUnit:
        """``processor_res``/``threshold_a``/``threshold_b`` outside the preprocessor's sliders -> their defaults."""
        res, s1, s2 = self.preprocessor.sliders
        return replace(self, processor_res=res.resolve(self.processor_res), threshold_a=s1.resolve(self.threshold_a),
                       threshold_b=s2.resolve(self.threshold_b))

    # -- infotext -------------------------------------------------------------------------------------------
    def infotext(self) -> str:
        """``Module: canny, Model: ..., Weight: 1.0, ...``: the extension's ``ControlNet N`` value."""
        values = {"Module": self.module, "Model": self.model, "Weight": self.weight,
                  "Resize Mode": self.resize_mode.value, "Processor Res": self.processor_res,
                  "Threshold A": self.threshold_a, "Threshold B": self.threshold_b,
                  "Guidance Start": self.guidance_start, "Guidance End": self.guidance_end,
                  "Pixel Perfect": self.pixel_perfect, "Control Mode": self.control_mode.value}
        return ", ".join(f"{k}: {v}" for k, v in values.items())


INFOTEXT_FIELDS = ("module", "model", "weight", "resize_mode", "processor_res", "threshold_a", "threshold_b",
                   "guidance_start", "guidance_end", "pixel_perfect", "control_mode")


def parse_infotext(text: str) -> dict[str, Any]:
    """A ``ControlNet N`` infotext value -> unit fields (the extension's reading: ``True``/``False``, ints,
    floats, else text)."""
    out: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, raw = part.partition(":")
        if not sep:
            continue
        name = "_".join(w.lower() for w in key.strip().split(" "))
        if name not in INFOTEXT_FIELDS:
            continue
        out[name] = _infotext_value(raw.strip())
    return out


def _infotext_value(raw: str) -> Any:
    if raw in ("True", "False"):
        return raw == "True"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


# ---------------------------------------------------------------------------------------------------------------------
# Parsing the API's unit dicts


def _enum(kind: type[Enum], value: Any, where: str, ints: Sequence[Enum]) -> Any:
    if isinstance(value, kind):
        return value
    if isinstance(value, bool):
        raise FieldError(where, f"expected one of {[e.value for e in kind]}, got {value!r}")
    if isinstance(value, int):
        if kind is ResizeMode and value >= len(ints):  # the extension: 3 (latent) and above are Just Resize
            return ResizeMode.RESIZE
        if 0 <= value < len(ints):
            return ints[value]
        raise FieldError(where, f"{value} is not one of 0..{len(ints) - 1}")
    if isinstance(value, str):
        text = _RESIZE_ALIASES.get(value, value) if kind is ResizeMode else value
        for member in kind:
            if member.value.lower() == text.lower() or member.name.lower() == text.lower():
                return member
    raise FieldError(where, f"unknown value {value!r}", [e.value for e in kind])


def _number(values: Mapping[str, Any], key: str, where: str, default: float, low: float | None = None,
            high: float | None = None, integer: bool = False) -> float:
    value = values.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(f"{where}.{key}", f"must be a number, not {type(value).__name__} {value!r:.40}")
    if value != value:  # NaN
        raise FieldError(f"{where}.{key}", "must be a number, not NaN")
    if (low is not None and value < low) or (high is not None and value > high):
        raise FieldError(f"{where}.{key}", f"{value} is outside {low}..{high}")
    if not integer:
        return float(value)
    if not float(value).is_integer():
        raise FieldError(f"{where}.{key}", f"must be a whole number, not {value}")
    return int(value)


def _flag(values: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = values.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise FieldError(f"{where}.{key}", f"must be true or false, not {value!r:.40}")


def _images(values: Mapping[str, Any], where: str, decode: Decoder | None) -> tuple[Any, Any]:
    """The unit's image and mask from any of the extension's shapes: ``image`` (base64), ``image`` +
    ``mask``, ``{"image", "mask"}``, ``[image, mask]`` or ``[{"image", "mask"}]``."""
    image, mask = values.get("image"), values.get("mask")
    if isinstance(image, (list, tuple)):
        if len(image) == 1 and isinstance(image[0], Mapping):
            image = image[0]
        elif len(image) == 2 and not isinstance(image[0], Mapping):
            image, mask = image
        else:
            raise FieldError(f"{where}.image", "expected one image (or an [image, mask] pair); a unit takes one "
                                               "control image")
    if isinstance(image, Mapping):
        image, mask = image.get("image"), image.get("mask", mask)
    return _decoded(image, f"{where}.image", decode), _decoded(mask, f"{where}.mask", decode)


def _decoded(value: Any, where: str, decode: Decoder | None) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        if decode is None:
            raise FieldError(where, "a base64 image is not accepted here")
        return decode(value, where)
    if isinstance(value, np.ndarray):
        from PIL import Image

        array = value if value.dtype == np.uint8 else np.clip(value, 0, 255).astype(np.uint8)
        return Image.fromarray(array)
    if hasattr(value, "convert") and hasattr(value, "size"):  # a PIL image (the UI's)
        return value
    raise FieldError(where, f"expected a base64 image, not {type(value).__name__}")


def parse_unit(values: Any, where: str, decode: Decoder | None = None) -> ControlUnit:
    """One unit from the extension's dict (or a ``ControlUnit``)."""
    if isinstance(values, ControlUnit):
        return replace(values, where=where)
    if hasattr(values, "to_dict") and callable(values.to_dict):  # webuiapi's ControlNetUnit passed as an object
        values = values.to_dict()
    if not isinstance(values, Mapping):
        raise FieldError(where, f"expected a ControlNet unit (an object), not {type(values).__name__}")
    values = dict(values)
    for alias, key in _LEGACY_ALIASES.items():
        if alias in values:
            if key in values:
                raise FieldError(f"{where}.{alias}", f"give either '{alias}' or '{key}', not both")
            values[key] = values.pop(alias)
    if values.get("mask_image") is not None:
        if values.get("mask") is not None:
            raise FieldError(f"{where}.mask_image", "give either 'mask' or 'mask_image', not both")
        values["mask"] = values["mask_image"]
    module = values.get("module") or "none"
    if not isinstance(module, str) or preprocessors.find(module) is None:
        raise FieldError(f"{where}.module", f"module({module}) not found in supported modules",
                         preprocessors.module_list())
    model = values.get("model")
    model = "None" if model is None or model == "" else model
    if not isinstance(model, str):
        raise FieldError(f"{where}.model", f"expected a model title, not {type(model).__name__}")
    start = _number(values, "guidance_start", where, 0.0, 0.0, 1.0)
    end = _number(values, "guidance_end", where, 1.0, 0.0, 1.0)
    if start > end:
        raise FieldError(f"{where}.guidance_start", f"guidance_start({start}) > guidance_end({end})")
    weighting = values.get("advanced_weighting")
    if weighting is not None:
        if not isinstance(weighting, list) or not all(isinstance(w, (int, float)) and not isinstance(w, bool)
                                                      for w in weighting):
            raise FieldError(f"{where}.advanced_weighting", "expected a list of numbers (one per ControlNet layer)")
        weighting = tuple(float(w) for w in weighting)
    image, mask = _images(values, where, decode)
    region = _decoded(values.get("effective_region_mask"), f"{where}.effective_region_mask", decode)
    unit = ControlUnit(
        enabled=_flag(values, "enabled", where, True),
        module=preprocessors.find(module).name,  # type: ignore[union-attr]
        model=model,
        weight=_number(values, "weight", where, 1.0, 0.0, 2.0),
        image=image,
        mask=mask,
        resize_mode=_enum(ResizeMode, values.get("resize_mode", ResizeMode.INNER_FIT), f"{where}.resize_mode",
                          list(ResizeMode)),
        low_vram=_flag(values, "low_vram", where, False),
        processor_res=_number(values, "processor_res", where, -1, integer=True),
        threshold_a=_number(values, "threshold_a", where, -1),
        threshold_b=_number(values, "threshold_b", where, -1),
        guidance_start=start,
        guidance_end=end,
        pixel_perfect=_flag(values, "pixel_perfect", where, False),
        control_mode=_enum(ControlMode, values.get("control_mode", ControlMode.BALANCED), f"{where}.control_mode",
                           list(ControlMode)),
        hr_option=_enum(HiresOption, values.get("hr_option", HiresOption.BOTH), f"{where}.hr_option",
                        list(HiresOption)),
        save_detected_map=_flag(values, "save_detected_map", where, True),
        advanced_weighting=weighting,
        effective_region_mask=region,
        union_control_type=_enum(UnionType, values.get("union_control_type", UnionType.UNKNOWN),
                                 f"{where}.union_control_type", list(UnionType)[:-1]),
        where=where,
    )
    if unit.enabled:  # (whether a weighted preprocessor's files are there is the runtime's pre-queue check)
        unit = unit.with_defaults()
    return unit


def parse_units(args: Sequence[Any], where: str, decode: Decoder | None = None) -> list[ControlUnit]:
    """The ``args`` of ``alwayson_scripts.ControlNet``: unit dicts (None entries, as the UI sends for unused
    units, are skipped)."""
    if not isinstance(args, (list, tuple)):
        raise FieldError(where, "expected a list of ControlNet units")
    if len(args) > MAX_UNITS:
        raise FieldError(where, f"{len(args)} units; at most {MAX_UNITS}")
    return [parse_unit(u, f"{where}.{i}", decode) for i, u in enumerate(args) if u is not None]


def script_info(is_img2img: bool, unit_count: int = 3) -> dict[str, Any]:
    """The ``/sdapi/v1/script-info`` entry: one argument per unit, each a unit dict with the defaults."""
    default = {"enabled": False, "module": "none", "model": "None", "weight": 1.0, "image": None,
               "resize_mode": ResizeMode.INNER_FIT.value, "low_vram": False, "processor_res": -1,
               "threshold_a": -1, "threshold_b": -1, "guidance_start": 0.0, "guidance_end": 1.0,
               "pixel_perfect": False, "control_mode": ControlMode.BALANCED.value,
               "hr_option": HiresOption.BOTH.value, "save_detected_map": True}
    args = [{"label": f"ControlNet Unit {i}", "value": dict(default), "minimum": None, "maximum": None,
             "step": None, "choices": None} for i in range(unit_count)]
    return {"name": SCRIPT_TITLE, "is_alwayson": True, "is_img2img": is_img2img, "args": args}
