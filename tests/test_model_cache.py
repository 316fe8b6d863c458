"""A1111's "checkpoints to keep loaded" (``sd_checkpoints_limit``): switching back to a kept checkpoint makes it
current without reading it again; beyond the limit the least recently used is released; a file changed on disk
is read again."""

from __future__ import annotations

import gc
import weakref

from modules.hashing import HashCache
from modules.models import loader
from modules.models.devices import DevicePolicy
from modules.models.manager import ModelManager
from modules.models.registry import CheckpointRegistry
from tests.support.tiny_checkpoints import write_tiny_checkpoint


def _manager(tmp_path, limit):
    root = tmp_path / "models"
    for seed, name in enumerate(("alpha", "beta", "gamma"), start=1):
        write_tiny_checkpoint("sd1", root, name, seed=seed)
    registry = CheckpointRegistry([root], HashCache(None))
    registry.refresh()
    loads = []

    def counting(path, policy):
        loads.append(path.stem)
        return loader.load_checkpoint(path, policy)

    keep = {"limit": limit}
    manager = ModelManager(registry, DevicePolicy.cpu(), hashing=False, load_fn=counting,
                           keep_loaded=lambda: keep["limit"])
    return manager, loads, keep, root


def test_switching_back_to_a_kept_checkpoint_does_not_read_it_again(tmp_path):
    manager, loads, _, _ = _manager(tmp_path, 2)
    alpha, _ = manager.ensure("alpha")
    beta, _ = manager.ensure("beta")
    again, info = manager.ensure("alpha")
    assert again is alpha and info.name.startswith("alpha") and loads == ["alpha", "beta"]
    assert manager.kept_titles()[0].startswith("beta")
    assert manager.ensure("beta")[0] is beta and loads == ["alpha", "beta"]
    # a third one pushes out the least recently used (alpha), which is really released
    alpha_ref = weakref.ref(alpha)
    del alpha, again
    manager.ensure("gamma")
    gc.collect()
    assert loads == ["alpha", "beta", "gamma"] and alpha_ref() is None
    assert [t.split(".")[0] for t in manager.kept_titles()] == ["beta"]


def test_with_the_default_limit_nothing_extra_stays_loaded(tmp_path):
    manager, loads, _, _ = _manager(tmp_path, 1)
    alpha_ref = weakref.ref(manager.ensure("alpha")[0])
    manager.ensure("beta")
    gc.collect()
    assert alpha_ref() is None and manager.kept_titles() == []
    manager.ensure("alpha")
    assert loads == ["alpha", "beta", "alpha"]


def test_a_kept_checkpoint_changed_on_disk_is_read_again(tmp_path):
    import os

    manager, loads, _, root = _manager(tmp_path, 3)
    manager.ensure("alpha")
    manager.ensure("beta")
    path = root / "alpha.safetensors"
    write_tiny_checkpoint("sd1", root, "alpha", seed=9)  # replaced by another file of the same name
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))
    manager.registry.refresh()
    manager.ensure("alpha")
    assert loads == ["alpha", "beta", "alpha"]
