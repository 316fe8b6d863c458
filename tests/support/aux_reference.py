"""controlnet_aux (test-only): the reference implementation our annotator networks are checked against.

Its package ``__init__`` files import every annotator, some of which need torchvision (which does not import with
the pinned CPU torch here), so the package is installed with ``--no-deps`` and a submodule is imported with its
parent packages' ``__init__`` files skipped.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any


def _bare_package(name: str, location: Path) -> None:
    if name in sys.modules:
        return
    package = types.ModuleType(name)
    package.__path__ = [str(location)]
    sys.modules[name] = package


def reference(submodule: str) -> Any:
    """``controlnet_aux.<submodule>`` (e.g. "hed", "open_pose.body", "normalbae.nets.NNET"), every parent package
    of it created bare (its ``__init__`` not run)."""
    if "controlnet_aux" not in sys.modules:
        spec = importlib.util.find_spec("controlnet_aux")  # finds the folder without running its __init__
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("controlnet_aux is not installed (run_tests.sh installs it with --no-deps)")
        _bare_package("controlnet_aux", Path(list(spec.submodule_search_locations)[0]))
    root = Path(sys.modules["controlnet_aux"].__path__[0])
    parts = submodule.split(".")
    for depth in range(1, len(parts)):
        folder = root.joinpath(*parts[:depth])
        _bare_package("controlnet_aux." + ".".join(parts[:depth]), folder)
    return importlib.import_module(f"controlnet_aux.{submodule}")
