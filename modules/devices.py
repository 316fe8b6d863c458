"""A1111's ``modules.devices`` for extensions (issue 17 section 2): ``device``, ``cpu``, ``dtype``, ``dtype_vae``,
``dtype_unet``, ``device_esrgan`` and the other task devices, ``get_optimal_device``, ``get_device_for``,
``torch_gc``, ``autocast``, ``without_autocast``, ``NansException``, ``test_for_nans``, ``has_mps``.

A facade: the values come from the running app's device policy (``shared.runtime``, decided on first use) or,
without an app, from the flags-free default for this hardware. Importing it costs nothing; torch is imported when a
name is first read. ``NansException`` is the error our sampler raises, so an extension's ``except`` catches ours.
"""

from __future__ import annotations

import contextlib
from typing import Any

# A1111's names of the auxiliary devices, and the --use-cpu task each follows
_TASK_DEVICES = {"device_interrogate": "interrogate", "device_gfpgan": "gfpgan", "device_esrgan": "esrgan",
                 "device_codeformer": "codeformer"}


def _policy() -> Any:
    from modules import shared

    runtime = shared.runtime
    if runtime is not None and getattr(runtime, "manager", None) is not None:
        return runtime.manager.device_policy
    from modules.models.devices import DevicePolicy

    return DevicePolicy.from_flags()


def __getattr__(name: str) -> Any:
    """The lazily read names: devices and dtypes of the app's policy, and the torch-backed classes."""
    if name == "cpu":
        import torch

        return torch.device("cpu")
    if name == "device":
        return _policy().device
    if name in _TASK_DEVICES:
        return get_device_for(_TASK_DEVICES[name])
    if name in ("dtype", "dtype_unet", "dtype_inference"):
        return _policy().dtype
    if name == "dtype_vae":
        return _policy().vae_dtype
    if name == "unet_needs_upcast":
        return False  # we never run the UNet in a dtype that needs it
    if name == "NansException":
        from modules.processing.sampling import NansError

        return NansError
    raise AttributeError(f"module 'modules.devices' has no attribute {name!r} (A1111 internals we do not have)")


def get_optimal_device() -> Any:
    return _policy().device


def get_optimal_device_name() -> str:
    device = _policy().device
    return f"{device.type}:{device.index}" if device.index is not None else device.type


def get_cuda_device_string() -> str:
    return "cuda"


def get_device_for(task: str) -> Any:
    """The device of an auxiliary task: the CPU when ``--use-cpu`` names it (or ``all``)."""
    return _policy().device_for(task)


def has_mps() -> bool:
    from modules.models.devices import _mps_available

    return _mps_available()


def torch_gc() -> None:
    from modules.models.devices import torch_gc as collect

    collect()


def autocast(disable: bool = False) -> Any:
    """A1111's autocast context: none when the model runs in fp32 (our CPU), else torch's autocast for the device."""
    import torch

    policy = _policy()
    if disable or policy.dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(policy.device.type, dtype=policy.dtype)


def without_autocast(disable: bool = False) -> Any:
    import torch

    device_type = _policy().device.type
    if disable or not torch.is_autocast_enabled(device_type):
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)


def test_for_nans(x: Any, where: str) -> None:
    """Raise ``NansException`` when ``x`` holds only NaNs, as A1111 does (unless --disable-nan-check)."""
    import torch

    from modules import shared
    from modules.processing.sampling import NansError

    if getattr(shared.cmd_opts, "disable_nan_check", False):
        return
    if not torch.all(torch.isnan(x)).item():
        return
    raise NansError(f"A tensor with all NaNs was produced in {where}. Try the --no-half command line flag (and "
                    "--no-half-vae for the VAE), or disable this check with --disable-nan-check.")


def cond_cast_unet(value: Any) -> Any:
    return value.to(_policy().dtype) if hasattr(value, "to") else value


def cond_cast_float(value: Any) -> Any:
    return value.float() if hasattr(value, "float") else value


def enable_tf32() -> None:
    import torch

    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
