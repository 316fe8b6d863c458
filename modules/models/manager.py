"""The loaded checkpoint: which one is active, loading a new one, and keeping the old one if that fails.

Loads run on the job worker (never concurrently with a generation); the HTTP threads only read ``status``. A failed
load leaves the previous model loaded and usable, and the error is kept for the UI and the API.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

from modules.models.types import LoadedModel, ModelFileError, ModuleParts, module_parts
from modules.models.weight_storage import AUTOMATIC, storage_mode

log = logging.getLogger(__name__)


class NoCheckpointError(RuntimeError):
    """No checkpoint file exists yet: the user must add one."""

    user_error = True  # the user's setup, not a fault: the job worker logs one line, no traceback


def _deleted(info: Any) -> bool:
    path = getattr(info, "path", None)
    return path is not None and not os.path.exists(path)


class CheckpointNotFound(ValueError):
    """A name that matches no checkpoint; ``choices`` lists the valid titles."""

    def __init__(self, name: str, choices: list[str]) -> None:
        self.field = "sd_model_checkpoint"
        self.choices = choices
        super().__init__(f"checkpoint {name!r} not found; available: {', '.join(choices) or 'none'}")


@dataclass
class ManagerStatus:
    loaded_title: str | None
    loading_title: str | None
    last_error: str | None
    load_seconds: float | None


class ModelManager:
    def __init__(self, registry: Any, device_policy: Any, *, hashing: bool = True,
                 load_fn: Callable[..., LoadedModel] | None = None,
                 on_loaded: Callable[[LoadedModel, Any], None] | None = None,
                 keep_loaded: Callable[[], int] = lambda: 1) -> None:
        """``keep_loaded()``: A1111's ``sd_checkpoints_limit``, how many checkpoints stay loaded; switching back to
        one of them is instant (it is made current, not read again)."""
        self.registry = registry
        self.device_policy = device_policy
        self.hashing = hashing
        self._load_fn = load_fn
        self._on_loaded = on_loaded
        self._lock = threading.Lock()
        self.model: LoadedModel | None = None
        self.info: Any = None  # CheckpointInfo of the loaded model
        self._loading: Any = None
        self.last_error: str | None = None
        self.load_seconds: float | None = None
        self._secondary: tuple[Any, LoadedModel] | None = None  # (info, model) of the refiner
        self._keep_loaded = keep_loaded
        self._kept: OrderedDict[Any, tuple[Any, LoadedModel]] = OrderedDict()  # path -> (info, model), LRU first

    def status(self) -> ManagerStatus:
        with self._lock:
            return ManagerStatus(
                loaded_title=self.info.title if self.info is not None else None,
                loading_title=self._loading.title if self._loading is not None else None,
                last_error=self.last_error,
                load_seconds=self.load_seconds,
            )

    def resolve(self, name: str | None) -> Any:
        """Find a checkpoint by title/name/hash alias; None picks the loaded one, else the first available."""
        if name:
            info = self.registry.get(name)
            if info is None:
                self.registry.refresh()
                info = self.registry.get(name)
            if info is None:
                raise CheckpointNotFound(name, [c.title for c in self.registry.list()])
            return info
        available = self.registry.list()
        if self.info is not None:
            # The loaded model, unless its file was deleted and a refresh dropped it from the list: then it is
            # not used silently; the first listed one is (or NoCheckpointError says what to do).
            if any(c.path == self.info.path for c in available) or not _deleted(self.info):
                return self.info
            log.warning("%s was deleted from disk; not using it", self.info.title)
        if not available:
            # Name the real folder (--data-dir/--ckpt-dir move it), not A1111's relative default.
            folder = self.registry.dirs[0] if getattr(self.registry, "dirs", None) else "models/Stable-diffusion"
            raise NoCheckpointError(
                f"No checkpoint found. Put a Stable Diffusion model (.safetensors or .ckpt) into {folder} "
                "and press the refresh button next to the checkpoint list.")
        return available[0]

    def ensure(self, name: str | None, *, reuse_previous: bool = False, parts: ModuleParts = (),
               storage: str = AUTOMATIC) -> tuple[LoadedModel, Any]:
        """Make ``name`` (or the default) the loaded model; call this on the job worker.

        ``reuse_previous``: when only one checkpoint is kept loaded, the new weights may be copied into the current
        model's modules (same layout), so a switch holds one model instead of two. Only for callers that hold no
        reference to the current model (not a job switching checkpoints while it runs).
        ``parts``: the additional module files (text encoders, VAE) a checkpoint without them is completed from; a
        loaded model that was completed from other files is loaded again with these. A function giving them is
        called only when a model needs them.
        ``storage``: the weight-storage choice (``stored_weights``); a model a family built under another choice is
        loaded again."""
        info = self.resolve(name)
        if self.model is not None and self.info is not None and self.info.path == info.path:
            if _built_with(self.model, parts, storage):
                return self.model, self.info
            log.info("Additional modules or weight storage changed: loading %s again", info.title)
            return self.load(info, parts=parts, storage=storage), info
        with self._lock:
            kept = self._kept.pop(info.path, None)
        if kept is not None and _same_file(kept[0], info) and _built_with(kept[1], parts, storage):  # unchanged
            started = time.perf_counter()
            self._make_current(kept[0], kept[1])
            with self._lock:
                self.load_seconds = time.perf_counter() - started
            log.info("Switched to %s (kept loaded)", info.title)
            if self._on_loaded is not None:
                self._on_loaded(kept[1], info)
            return kept[1], info
        return self.load(info, reuse_previous=reuse_previous, parts=parts, storage=storage), info

    def _make_current(self, info: Any, model: LoadedModel) -> None:
        """``model`` becomes the current one; the previous one is kept while ``keep_loaded()`` allows, the least
        recently used beyond that are released."""
        limit = max(1, int(self._keep_loaded() or 1))
        with self._lock:
            previous = (self.info, self.model) if self.model is not None else None
            self.model, self.info = model, info
            if previous is not None and previous[0].path != info.path:
                self._kept[previous[0].path] = previous
            released = 0
            while len(self._kept) > limit - 1:
                self._kept.popitem(last=False)
                released += 1
            waiting = previous is not None and self._kept.get(previous[0].path) is previous
        if waiting and "memory" in getattr(previous[1], "extra", {}):
            from modules.models import memory  # torch: only reached once a model exists

            memory.park(previous[1])  # an offloaded model waiting in the cache gives its GPU memory back
        if released:
            gc.collect()
            from modules.jobs import _free_accelerator_memory

            _free_accelerator_memory()

    def kept_titles(self) -> list[str]:
        """Checkpoints loaded besides the current one, least recently used first."""
        with self._lock:
            return [info.title for info, _ in self._kept.values()]

    def load(self, info: Any, *, reuse_previous: bool = False, parts: ModuleParts = (),
             storage: str = AUTOMATIC) -> LoadedModel:
        """Load a checkpoint, replacing the current one only when the new one loaded completely."""
        started = time.perf_counter()
        # The sha256 (for the title ``name [shorthash]``) is read beside the load, not before it: hashlib and
        # file reads release the GIL, so a 2 GB file hashes while the first load imports diffusers (3.5 s) and
        # the weights are converted (1.8 s saved at start-up on a 2-core CPU). It is waited for before the model
        # becomes current, so titles are as before.
        hashed = self._hash_in_background(info)
        with self._lock:
            self._loading = info
            donor = self.model if reuse_previous and self._load_fn is None and int(self._keep_loaded() or 1) <= 1 \
                else None
        try:
            from modules.models import loader  # heavy (torch, diffusers): imported on first use

            # The previous model stays usable until the new one is complete, so a failed load keeps it.
            if self._load_fn is not None:
                model = self._load_fn(info.path, self.device_policy)
            else:
                model = None
                try:
                    model = loader.load_checkpoint(info.path, self.device_policy, reuse=donor, parts=parts,
                                                   storage=storage)
                except Exception as err:
                    if donor is None or type(err).__name__ != "OutOfMemoryError":
                        raise
                if model is None:  # out of the except block: its traceback no longer holds the old model
                    # Another layout than the previous checkpoint, and no room for both: release it first (as
                    # A1111 always does), then load again.
                    log.warning("Not enough memory for %s next to %s: releasing that one first", info.title,
                                self.info.title if self.info is not None else "the previous checkpoint")
                    donor = None
                    self.unload()
                    model = loader.load_checkpoint(info.path, self.device_policy, parts=parts, storage=storage)
            _wait_for_hash(hashed, model, info)
        except ModelFileError as err:
            _wait(hashed, quiet=True)
            with self._lock:
                self.last_error = str(err)
                self._loading = None
            raise
        except Exception as err:
            _wait(hashed, quiet=True)
            with self._lock:
                self.last_error = f"{info.title}: {err}"
                self._loading = None
            raise
        self._make_current(info, model)
        with self._lock:
            self._loading = None
            self.last_error = None
            self.load_seconds = time.perf_counter() - started
        log.info("Loaded %s (%s) in %.1f s", info.title, model.kind.label, self.load_seconds)
        if self._on_loaded is not None:
            self._on_loaded(model, info)
        return model

    def load_secondary(self, info: Any, parts: ModuleParts = (), storage: str = AUTOMATIC) -> LoadedModel:
        """A second model next to the loaded one (the SDXL refiner), kept for the next job; one at a time, so a
        different refiner replaces it. Call on the job worker. The configured checkpoint is not changed."""
        with self._lock:
            current = self._secondary
        if current is not None and current[0].path == info.path and _storage_agrees(current[1], storage):
            return current[1]
        with self._lock:
            self._secondary = None  # free the old refiner before loading the next
        gc.collect()
        hashed = self._hash_in_background(info)
        try:
            from modules.models import loader

            if self._load_fn is not None:
                model = self._load_fn(info.path, self.device_policy)
            else:
                model = loader.load_checkpoint(info.path, self.device_policy, parts=parts, storage=storage)
        except BaseException:
            _wait(hashed, quiet=True)
            raise
        _wait(hashed)
        with self._lock:
            self._secondary = (info, model)
        log.info("Loaded refiner %s (%s)", info.title, model.kind.label)
        return model

    def _hash_in_background(self, info: Any) -> Future | None:
        """``registry.ensure_hash(info)`` on its own thread (None when hashing is off)."""
        if not self.hashing:
            return None
        future: Future = Future()

        def run() -> None:
            try:
                future.set_result(self.registry.ensure_hash(info))
            except BaseException as err:  # noqa: BLE001 - handed to the loading thread, which raises it
                future.set_exception(err)

        threading.Thread(target=run, name="checkpoint-hash", daemon=True).start()
        return future

    def unload(self) -> None:
        with self._lock:
            self.model = None
            self.info = None
            self._secondary = None
            self._kept.clear()
        gc.collect()
        from modules.jobs import _free_accelerator_memory

        _free_accelerator_memory()


def _wait(hashed: Future | None, quiet: bool = False) -> None:
    """Wait for a background hash; its error is raised unless ``quiet`` (the load failed already: that error is
    the one to report)."""
    if hashed is None:
        return
    if quiet:
        hashed.exception()
    else:
        hashed.result()


def _wait_for_hash(hashed: Future | None, model: Any, info: Any) -> None:
    """The hash that ran beside a successful load: its error fails the load (a file that vanished, as when the
    hash ran first), except when the weights went into the previous model's modules: that model is gone, so the
    new one becomes current without a hash in its title."""
    try:
        _wait(hashed)
    except OSError as err:
        if not getattr(model, "extra", {}).get("reused_modules"):
            raise
        log.warning("%s loaded, but its sha256 could not be computed: %s", info.title, err)


def _parts_agree(model: Any, parts: ModuleParts) -> bool:
    """Whether a loaded model was completed from these additional modules (always, for a model that needs none:
    ``parts`` is then not resolved)."""
    used = getattr(model, "extra", {}).get("part_files")
    return used is None or used == [str(p) for p in module_parts(parts)]


def _built_with(model: Any, parts: ModuleParts, storage: str) -> bool:
    """Whether a loaded model is what loading its file with these additional modules and this storage gives."""
    return _parts_agree(model, parts) and _storage_agrees(model, storage)


def _storage_agrees(model: Any, storage: str) -> bool:
    """Whether a loaded model keeps its weights as ``storage`` asks (always, for a model built without a choice)."""
    used = getattr(model, "extra", {}).get("storage")
    if used is None:
        return True
    return used == storage_mode(storage)


def _same_file(a: Any, b: Any) -> bool:
    return (a.path, getattr(a, "size", None), getattr(a, "mtime", None)) == \
        (b.path, getattr(b, "size", None), getattr(b, "mtime", None))
