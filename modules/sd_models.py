"""A1111's ``modules.sd_models`` for extensions: ``checkpoints_list`` (title -> ``CheckpointInfo``),
``checkpoint_aliases``, ``CheckpointInfo`` (``filename``, ``title``, ``name``, ``name_for_extra``, ``model_name``,
``hash``, ``sha256``, ``shorthash``, ``ids``, ``calculate_shorthash()``), ``model_hash``, ``checkpoint_tiles``,
``list_models``, ``get_closet_checkpoint_match``, ``select_checkpoint``, ``reload_model_weights``,
``unload_model_weights``, ``read_state_dict`` and ``model_data`` (``sd_model``, ``get_sd_model()``).

A view of our checkpoint registry and model manager: the lists are read from the registry each time (a refresh
shows at once), and loading goes through the job queue like the API's model switch, so it never runs during a
generation. The loaded model is our diffusers ``LoadedModel``; A1111's ldm model builder (``load_model``,
``load_model_weights``, ...) does not exist here and reading those names raises AttributeError. No torch, no
gradio at import.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from modules import hashing

model_dir = "Stable-diffusion"


def _rt() -> Any:
    from modules import shared

    if shared.runtime is None:
        raise RuntimeError("modules.sd_models needs the running app")
    return shared.runtime


def __getattr__(name: str) -> Any:
    if name == "model_path":
        return str(_rt().paths.model_dir("checkpoints"))
    if name in _LDM_ONLY:
        raise AttributeError(f"modules.sd_models.{name} is part of A1111's ldm model loading, which this app does "
                             "not have (checkpoints load with diffusers); use sd_models.reload_model_weights(info=...)")
    raise AttributeError(f"module 'modules.sd_models' has no attribute {name!r}")


_LDM_ONLY = {"load_model", "load_model_weights", "get_checkpoint_state_dict", "instantiate_from_config",
             "repair_config", "apply_alpha_schedule_override", "send_model_to_cpu", "send_model_to_device",
             "send_model_to_trash", "get_obj_from_str", "check_fp8", "SkipWritingToConfig",
             "reuse_model_from_already_loaded", "load_model_weights_orig"}


class CheckpointInfo:
    """A1111's ``CheckpointInfo`` over our registry's entry for the file. ``CheckpointInfo(filename)`` finds the
    registry entry of that file (A1111 builds one from a path)."""

    def __init__(self, filename: Any) -> None:
        if hasattr(filename, "legacy_hash") and hasattr(filename, "path"):  # our registry entry
            self._info = filename
            return
        path = os.path.abspath(os.fspath(filename))
        registry = _rt().registry
        found = next((c for c in registry.list() if os.path.abspath(c.path) == path), None)
        if found is None:
            registry.refresh()
            found = next((c for c in registry.list() if os.path.abspath(c.path) == path), None)
        if found is None:
            raise FileNotFoundError(f"{path} is not in the checkpoint folders (models/{model_dir}, --ckpt-dir)")
        self._info = found

    # A1111's attributes
    @property
    def filename(self) -> str:
        return self._info.filename

    @property
    def is_safetensors(self) -> bool:
        return self._info.is_safetensors

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def name_for_extra(self) -> str:
        return self._info.name_for_extra

    @property
    def model_name(self) -> str:
        return self._info.model_name

    @property
    def hash(self) -> str:
        """A1111's old 8-hex hash (64 KiB at 1 MiB)."""
        return self._info.legacy_hash

    @property
    def sha256(self) -> str | None:
        return self._info.sha256

    @property
    def shorthash(self) -> str | None:
        return self._info.shorthash

    @property
    def title(self) -> str:
        return self._info.title

    @property
    def short_title(self) -> str:
        return self._info.short_title

    @property
    def ids(self) -> list[str]:
        return list(self._info.aliases)

    @property
    def metadata(self) -> dict[str, Any]:
        """The safetensors ``__metadata__`` (A1111 reads it when the file is listed); {} for pickles."""
        if not self.is_safetensors:
            return {}
        from modules.models import formats

        try:
            meta = formats.read_safetensors_header(self._info.path).get("__metadata__") or {}
        except Exception:  # noqa: BLE001 - metadata is informational; a bad header is reported when it loads
            return {}
        return dict(meta)

    def calculate_shorthash(self) -> str | None:
        """Compute (or read from cache.json) the sha256 and return the 10-hex short hash; None with --no-hashing
        when the cache does not know it."""
        registry = _rt().registry
        if getattr(_rt().args, "no_hashing", False):
            cached = registry.cached_hash(self._info)
            return hashing.short_hash(cached) if cached else None
        registry.ensure_hash(self._info)
        return self._info.shorthash

    def register(self) -> None:
        """A1111 adds the entry to ``checkpoints_list``; every file in the folders is listed here already."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CheckpointInfo) and os.path.abspath(other.filename) == os.path.abspath(self.filename)

    def __hash__(self) -> int:
        return hash(os.path.abspath(self.filename))

    def __repr__(self) -> str:
        return f"CheckpointInfo({self.title!r})"


class _Checkpoints(Mapping):
    """``checkpoints_list``: title -> CheckpointInfo, read from the registry on every access."""

    def _items(self) -> dict[str, CheckpointInfo]:
        return {info.title: CheckpointInfo(info) for info in _rt().registry.list()}

    def __getitem__(self, key: str) -> CheckpointInfo:
        return self._items()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(_rt().registry.list())


class _Aliases(Mapping):
    """``checkpoint_aliases``: every alias A1111 accepts (title, name, hashes, ...) -> CheckpointInfo."""

    def _items(self) -> dict[str, CheckpointInfo]:
        out: dict[str, CheckpointInfo] = {}
        for info in _rt().registry.list():
            view = CheckpointInfo(info)
            for alias in info.aliases:
                out.setdefault(alias, view)
        return out

    def __getitem__(self, key: str) -> CheckpointInfo:
        return self._items()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())


checkpoints_list: Mapping[str, CheckpointInfo] = _Checkpoints()
checkpoint_aliases: Mapping[str, CheckpointInfo] = _Aliases()
checkpoints_loaded: dict[str, Any] = {}  # A1111's state-dict cache; ours keeps whole models (sd_checkpoints_limit)


def model_hash(filename: str | os.PathLike[str]) -> str:
    """A1111's old 8-hex model hash of a file: sha256 of the 64 KiB at offset 1 MiB ("NOFILE" if unreadable)."""
    return hashing.legacy_model_hash(filename)


def checkpoint_tiles(use_short: bool = False) -> list[str]:
    """The titles the checkpoint dropdown shows (``use_short``: ``stem [hash]``)."""
    return [info.short_title if use_short else info.title for info in _rt().registry.list()]


def list_models() -> None:
    """Rescan the checkpoint folders (A1111 rebuilds ``checkpoints_list``; ours is read live)."""
    _rt().registry.refresh()


def get_closet_checkpoint_match(search_string: str) -> CheckpointInfo | None:
    """A1111's (misspelt) closest match: an exact alias, else the shortest title containing the text."""
    found = _rt().registry.get(search_string)
    return CheckpointInfo(found) if found is not None else None


def select_checkpoint() -> CheckpointInfo:
    """The configured checkpoint (``sd_model_checkpoint``), else the first one; FileNotFoundError without any."""
    rt = _rt()
    found = rt.registry.get(rt.options.get("sd_model_checkpoint"))
    if found is None:
        available = rt.registry.list()
        if not available:
            raise FileNotFoundError(f"No checkpoints found. Put a .safetensors or .ckpt file into "
                                    f"{rt.paths.model_dir('checkpoints')}")
        found = rt.manager.info if rt.manager.info is not None else available[0]
    return CheckpointInfo(found)


def _on_worker(rt: Any) -> bool:
    """Whether this thread is the job worker (a script or hook inside a job): queueing would wait for itself."""
    return getattr(rt.jobs, "_thread", None) is threading.current_thread()


def reload_model_weights(sd_model: Any = None, info: CheckpointInfo | Any = None, forced_reload: bool = False) -> Any:
    """Load ``info`` (default: ``select_checkpoint()``) as the current model and return it, as the API's model
    switch does: on the job queue, after the running generation. Called from inside a job (a script's ``run``),
    the switch happens there and then. ``forced_reload`` reads the file again even when it is the loaded one."""
    rt = _rt()
    target = info if info is not None else select_checkpoint()
    title = target.title if hasattr(target, "title") else str(target)
    resolved = rt.manager.resolve(title)

    def load(job: Any = None) -> Any:
        if forced_reload:
            return rt.manager.load(resolved, **rt.load_choices())
        model, _ = rt.manager.ensure(resolved.title, reuse_previous=job is not None, **rt.load_choices())
        return model

    if _on_worker(rt):
        return annotate(load())
    if not forced_reload:
        rt.submit_load(resolved.title).wait()
        return annotate(rt.manager.model)
    return annotate(rt.jobs.submit("load-checkpoint", load, description=f"Reload {resolved.title}").wait())


def unload_model_weights(sd_model: Any = None, info: Any = None) -> None:
    """Release the loaded model (as ``/sdapi/v1/unload-checkpoint``); the next generation loads it again."""
    rt = _rt()
    if _on_worker(rt):
        raise RuntimeError("unload_model_weights cannot run inside a generation job: the job is using the model")
    rt.jobs.submit("unload-checkpoint", lambda job: rt.manager.unload()).wait()


def read_state_dict(checkpoint_file: str, print_global_state: bool = False, map_location: Any = None) -> Any:
    """The tensors of a weights file, read safely (safetensors, or pickles weights-only)."""
    from modules.models import formats

    return formats.load_state_dict(checkpoint_file, str(map_location or "cpu"))


def annotate(model: Any) -> Any:
    """Give our loaded model the attributes A1111's ``sd_model`` has and extensions read: ``sd_checkpoint_info``,
    ``sd_model_hash``, ``sd_model_checkpoint``, ``is_sd1``/``is_sd2``/``is_sd3`` (``is_sdxl`` is ours)."""
    if model is None or getattr(model, "_a1111_annotated", None) is model.path:
        return model
    rt = _rt()
    found = next((c for c in rt.registry.list() if c.path == model.path), None)
    family = getattr(getattr(model, "kind", None), "family", "")
    model.sd_checkpoint_info = CheckpointInfo(found) if found is not None else None
    model.sd_model_hash = found.shorthash if found is not None else None
    model.sd_model_checkpoint = str(model.path)
    model.is_sd1, model.is_sd2, model.is_sd3 = family == "sd1", family == "sd2", False
    model._a1111_annotated = model.path
    return model


class SdModelData:
    """A1111's ``model_data``: the loaded model (``sd_model``, ``get_sd_model()``) and the ones kept loaded."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    @property
    def sd_model(self) -> Any:
        from modules import shared

        return annotate(shared.runtime.manager.model) if shared.runtime is not None else None

    @property
    def loaded_sd_models(self) -> list[Any]:
        model = self.sd_model
        return [model] if model is not None else []

    @property
    def was_loaded_at_least_once(self) -> bool:
        from modules import shared

        return shared.runtime is not None and shared.runtime.manager.model is not None

    def get_sd_model(self) -> Any:
        """The loaded model; None before the first load (the background load is queued at start)."""
        return self.sd_model

    def set_sd_model(self, v: Any, already_loaded: bool = False) -> None:
        raise AttributeError("modules.sd_models.model_data.set_sd_model: the model manager owns the loaded model; "
                             "use sd_models.reload_model_weights(info=...) to switch checkpoints")


model_data = SdModelData()
