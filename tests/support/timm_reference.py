"""timm (test-only, installed with --no-deps): the ViT / BiT-ResNet / BEiT reference that controlnet_aux's MiDaS and
ZoeDepth code builds on, for the depth converters' oracles.

timm's package imports torchvision at import time (data transforms, dataset classes, FrozenBatchNorm2d), and
torchvision does not import with the pinned CPU torch here. So, before timm is imported, ``torchvision`` is made an
empty stand-in: every name in it is a class that raises when it is instantiated (no torchvision code is run and no
math is replaced), plus the names of ``InterpolationMode``, which timm reads into a lookup table at import. The
networks the tests build (VisionTransformer, its hybrid ResNetV2 stem) never touch torchvision. A real torchvision
that imports is used as it is.
"""

from __future__ import annotations

import contextlib
import enum
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any, Iterator


class _Absent:
    def __init__(self, *_a: Any, **_k: Any) -> None:
        raise NotImplementedError("torchvision is not importable here; the tests' timm stand-in has none of it")


class InterpolationMode(enum.Enum):  # the names timm maps to PIL/str modes at import (no resizing is done)
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


class _AbsentModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "InterpolationMode":
            return InterpolationMode
        return type(name, (_Absent,), {})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _AbsentModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def _torchvision_imports() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        importlib.import_module("torchvision")
    except Exception:  # noqa: BLE001 - the CUDA build fails with RuntimeError/ImportError/OSError
        _forget_torchvision()
        return False
    return True


def _forget_torchvision() -> None:
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]


@contextlib.contextmanager
def absent_torchvision() -> Iterator[None]:
    """Inside: ``import torchvision...`` gives the stand-in (unless the real one imports). After: the stand-in is
    gone from sys.modules and the import system, so other tests see no torchvision at all; the modules imported
    inside keep the placeholder names they took."""
    if _torchvision_imports():
        yield
        return
    finder = _Finder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        _forget_torchvision()


def timm() -> Any:
    """The ``timm`` package, importable without a working torchvision (ImportError when timm is not installed)."""
    if importlib.util.find_spec("timm") is None:
        raise ImportError("timm is not installed (run_tests.sh installs timm==1.0.31 with --no-deps)")
    with absent_torchvision():
        import timm as module
    return module
