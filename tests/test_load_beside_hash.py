"""Issue 23: the checkpoint's sha256 runs beside the load (the first load's diffusers import and the weight
conversion), not before it. The title is ``name [shorthash]`` once the model is current, as before; a hash that
fails fails the load, unless the weights already went into the previous model's modules."""

from __future__ import annotations

import hashlib
import threading

import pytest

from modules.hashing import HashCache
from modules.models import loader
from modules.models.devices import DevicePolicy
from modules.models.manager import ModelManager
from modules.models.registry import CheckpointRegistry
from tests.support.tiny_checkpoints import write_tiny_checkpoint


def _setup(tmp_path, load_fn=None):
    root = tmp_path / "models"
    path = write_tiny_checkpoint("sd1", root, "alpha", seed=1)
    registry = CheckpointRegistry([root], HashCache(tmp_path / "cache.json"))
    registry.refresh()
    manager = ModelManager(registry, DevicePolicy.cpu(), hashing=True, load_fn=load_fn)
    return manager, registry, path


def test_the_hash_runs_on_another_thread_during_the_load_and_is_in_the_title(tmp_path):
    threads = {}
    manager, registry, path = _setup(tmp_path)
    original = registry.ensure_hash

    def recording(info):
        threads["hash"] = threading.get_ident()
        return original(info)

    registry.ensure_hash = recording
    model, info = manager.ensure(None)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert threads["hash"] != threading.get_ident()
    assert info.sha256 == digest and manager.info.title == f"{path.name} [{digest[:10]}]"
    assert manager.status().loaded_title == manager.info.title


def test_a_failed_hash_fails_the_load_and_keeps_nothing(tmp_path):
    manager, registry, _ = _setup(tmp_path, load_fn=lambda p, policy: loader.load_checkpoint(p, policy))

    def vanished(info):
        raise FileNotFoundError(2, "No such file", str(info.path))

    registry.ensure_hash = vanished
    with pytest.raises(FileNotFoundError):
        manager.ensure(None)
    assert manager.model is None and manager.status().last_error


def test_a_failed_load_reports_the_load_error_not_the_hash(tmp_path):
    def broken(path, policy):
        raise RuntimeError("cannot build")

    manager, _, _ = _setup(tmp_path, load_fn=broken)
    with pytest.raises(RuntimeError, match="cannot build"):
        manager.ensure(None)
    assert "cannot build" in manager.status().last_error
