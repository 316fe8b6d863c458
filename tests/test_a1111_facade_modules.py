"""A1111 modules that extensions import (issue 17 section 2): ``modules.devices`` (adetailer imports
``NansException`` from it) gives the running app's device policy and our NaN error; ``modules.sd_samplers`` and
``modules.sd_schedulers`` are views of our one sampler table; ``modules.hashes`` hashes through the app's cache."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from modules.processing.sampling import NansError


def test_devices_follow_the_running_app(tiny_api_client):
    from modules import devices

    policy = tiny_api_client.app.state.runtime.manager.device_policy
    assert devices.device == policy.device == torch.device("cpu")  # no GPU here: the app's choice
    assert devices.cpu == torch.device("cpu")
    assert devices.dtype == devices.dtype_unet == policy.dtype == torch.float32
    assert devices.dtype_vae == policy.vae_dtype
    assert devices.device_esrgan == policy.device_for("esrgan")
    assert devices.get_optimal_device() == policy.device and devices.get_optimal_device_name() == "cpu"
    assert devices.has_mps() is False
    devices.torch_gc()
    with devices.autocast():  # fp32: no autocast at all
        assert not torch.is_autocast_enabled("cpu")
    with devices.without_autocast():
        assert not torch.is_autocast_enabled("cpu")
    assert devices.cond_cast_unet(torch.ones(2, dtype=torch.float64)).dtype == torch.float32
    with pytest.raises(AttributeError, match="A1111 internals"):
        devices.sd_hijack_something  # noqa: B018


def test_nans_exception_is_the_error_our_sampler_raises(tiny_api_client):
    from modules.devices import NansException, test_for_nans

    assert NansException is NansError
    with pytest.raises(NansException, match="all NaNs was produced in unet"):
        test_for_nans(torch.full((2, 2), float("nan")), "unet")
    test_for_nans(torch.tensor([float("nan"), 1.0]), "unet")  # A1111 raises only when every value is NaN


def test_importing_the_facade_does_not_import_torch():
    code = "import sys; import modules.devices; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_sampler_and_scheduler_lists_as_extensions_read_them(tiny_api_client):
    from modules import samplers, sd_samplers, sd_schedulers

    assert [s.name for s in sd_samplers.all_samplers] == samplers.sampler_names()
    euler_a = sd_samplers.find_sampler_config("Euler a")
    assert euler_a.name == "Euler a" and "k_euler_a" in euler_a.aliases and euler_a.constructor is None
    assert sd_samplers.find_sampler_config(None) == sd_samplers.all_samplers[0]
    assert sd_samplers.find_sampler_config("no such sampler") is None
    assert sd_samplers.samplers_map["k_euler_a"] == "Euler a"
    opts = tiny_api_client.app.state.runtime.options
    opts.apply({"hide_samplers": ["Euler a"]})
    try:
        assert "Euler a" not in sd_samplers.visible_sampler_names() and "Euler" in sd_samplers.visible_sampler_names()
    finally:
        opts.apply({"hide_samplers": []})
    assert [s.label for s in sd_schedulers.schedulers] == samplers.schedule_labels()
    assert sd_schedulers.schedulers_map["karras"] is sd_schedulers.schedulers_map["Karras"]
    assert sd_schedulers.schedulers_map["Karras"].default_rho == samplers.find_schedule("karras").default_rho


def test_hashes_as_extensions_call_them(tiny_api_client, tmp_path):
    import hashlib
    import os

    from modules import hashes

    path = tmp_path / "model.safetensors"
    header = b'{"__metadata__":{}}'
    payload = b"tensor bytes " * 1000
    path.write_bytes(len(header).to_bytes(8, "little") + header + payload)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()  # the oracle: hashlib on the whole file
    assert hashes.calculate_sha256(path) == expected
    assert hashes.sha256_from_cache(path, "test/model") is None  # not hashed yet: nothing is read
    assert hashes.sha256(path, "test/model") == expected
    assert hashes.sha256_from_cache(path, "test/model") == expected  # kept in the app's cache.json
    with open(path, "rb") as f:
        assert hashes.addnet_hash_safetensors(f) == hashlib.sha256(payload).hexdigest()
    assert hashes.sha256(path, "test/model-addnet", use_addnet_hash=True) == hashlib.sha256(payload).hexdigest()
    path.write_bytes(path.read_bytes() + b"changed")
    os.utime(path, (1, 1))
    assert hashes.sha256_from_cache(path, "test/model") is None  # the file changed: the cached value is stale
