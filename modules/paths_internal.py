"""A1111's ``modules.paths_internal`` for extensions (``from modules.paths_internal import models_path``): the
folder names of ``modules.paths``, read when asked, so they are the running app's once ``shared.bind`` ran."""

from __future__ import annotations

import os
from typing import Any

from modules.paths import INSTALL_DIR

modules_path = str(INSTALL_DIR / "modules")
cwd = os.getcwd()
_FROM_PATHS = ("script_path", "data_path", "models_path", "extensions_dir", "extensions_builtin_dir")


def normalized_filepath(filepath: str) -> str:
    """A1111's: an absolute, normalised path."""
    return os.path.abspath(os.path.expanduser(filepath))


def __getattr__(name: str) -> Any:
    from modules import paths

    if name in _FROM_PATHS:
        return getattr(paths, name)
    if name == "config_states_dir":
        return os.path.join(paths.data_path, "config_states")
    if name in ("sd_configs_path", "sd_default_config", "sd_model_file", "default_sd_model_file"):
        configs = os.path.join(paths.script_path, "configs")
        return {"sd_configs_path": configs, "sd_default_config": os.path.join(configs, "v1-inference.yaml"),
                "sd_model_file": os.path.join(paths.script_path, "model.ckpt"),
                "default_sd_model_file": os.path.join(paths.script_path, "model.ckpt")}[name]
    raise AttributeError(f"module 'modules.paths_internal' has no attribute {name!r}")
