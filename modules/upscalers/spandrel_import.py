"""Import spandrel (architecture detection for upscaler and restoration state dicts) where torchvision cannot be.

spandrel imports torchvision at import time for two architectures we never load (LaMa inpainting and
RestoreFormer). On machines where torchvision is missing, or installed against another torch build (its import
then fails with ``operator torchvision::nms does not exist``), spandrel would not import at all. For that import
only we provide the three names those modules bind (``normalize``, ``rotate``, ``InterpolationMode``) and remove the
stand-in from ``sys.modules`` right after, so nothing else can mistake it for torchvision. A working torchvision is
always used as is. spandrel is installed without dependencies (``requirements-nodeps.txt``) for the same reason.
"""

from __future__ import annotations

import enum
import functools
import sys
import types
from typing import Any

_STAND_IN_MODULES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


class _InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def _normalize(tensor: Any, mean: Any, std: Any, inplace: bool = False) -> Any:
    import torch

    mean_t = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    if inplace:
        return tensor.sub_(mean_t).div_(std_t)
    return (tensor - mean_t) / std_t


def _rotate(*_args: Any, **_kwargs: Any) -> Any:
    raise NotImplementedError("image rotation needs torchvision, which is not usable on this machine")


def _stand_in() -> dict[str, types.ModuleType]:
    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.normalize = _normalize  # type: ignore[attr-defined]
    functional.rotate = _rotate  # type: ignore[attr-defined]
    functional.InterpolationMode = _InterpolationMode  # type: ignore[attr-defined]
    transforms.functional = functional  # type: ignore[attr-defined]
    transforms.InterpolationMode = _InterpolationMode  # type: ignore[attr-defined]
    root.transforms = transforms  # type: ignore[attr-defined]
    return dict(zip(_STAND_IN_MODULES, (root, transforms, functional)))


def _torchvision_works() -> bool:
    try:
        import torchvision.transforms.functional  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or RuntimeError from a build against another torch
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        return False
    return True


@functools.cache
def import_spandrel() -> Any:
    """The spandrel module. Raises ImportError with an install hint when spandrel itself is missing."""
    try:
        import spandrel  # noqa: F401 - probe
    except ModuleNotFoundError as err:
        if err.name == "spandrel":
            raise ImportError("spandrel is not installed: pip install --no-deps -r requirements-nodeps.txt") from err
    except Exception:  # noqa: BLE001 - torchvision failed inside spandrel's import
        pass
    else:
        return sys.modules["spandrel"]
    for name in [n for n in sys.modules if n == "spandrel" or n.startswith("spandrel.")]:
        del sys.modules[name]  # a half-imported spandrel
    if _torchvision_works():
        import spandrel

        return spandrel
    stand_in = _stand_in()
    sys.modules.update(stand_in)
    try:
        import spandrel
    finally:
        for name, module in stand_in.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
    return spandrel


@functools.cache
def install_extra_arches() -> Any:
    """spandrel_extra_arches registered with spandrel's loader (once per process; it refuses a second time)."""
    import_spandrel()
    import spandrel_extra_arches

    try:
        spandrel_extra_arches.install()
    except Exception as err:  # noqa: BLE001 - already registered (by us or by an extension): fine
        if "Duplicate" not in type(err).__name__:
            raise
    return spandrel_extra_arches
