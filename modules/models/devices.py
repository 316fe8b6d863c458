"""The one place that decides which device and dtypes the models use.

A1111 flags: ``--no-half`` (fp32 weights), ``--no-half-vae`` (fp32 VAE only), ``--precision full|autocast|half``
(here ``full`` means fp32 everywhere) and ``--use-cpu all|sd|<task>...`` (force CPU for everything / the SD model /
one auxiliary task). CPU always runs fp32: fp16 matmuls are unsupported or very slow there, and bf16 was measured
unusable on our machines.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch


def _cuda_available() -> bool:
    try:
        return torch.cuda.is_available()
    except Exception:  # a broken driver must not stop a CPU start
        return False


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    try:
        return bool(mps is not None and mps.is_available())
    except Exception:
        return False


@dataclass(frozen=True)
class DevicePolicy:
    """Device and dtypes for the SD model, plus which auxiliary tasks (``--use-cpu``) must stay on the CPU."""

    device: torch.device
    dtype: torch.dtype  # UNet and text encoders
    vae_dtype: torch.dtype
    cpu_tasks: frozenset[str] = field(default_factory=frozenset)
    memory_mode: str = "auto"  # memory.REQUESTS: the flags' request; the mode itself is chosen per checkpoint
    channels_last: bool = False  # --opt-channelslast: the UNet's convolutions in NHWC
    compile_mode: str | None = None  # --compile: acceleration.COMPILE_MODES

    @classmethod
    def from_flags(
        cls,
        no_half: bool = False,
        no_half_vae: bool = False,
        precision: str = "autocast",
        use_cpu: Iterable[str] | None = None,
        memory_mode: str = "auto",
        channels_last: bool = False,
        compile_mode: str | None = None,
    ) -> "DevicePolicy":
        """Decide from the command-line flags and the hardware present."""
        tasks = frozenset(t.strip().lower() for t in (use_cpu or ()) if t and t.strip())
        if tasks & {"all", "sd"}:
            device = torch.device("cpu")
        elif _cuda_available():
            device = torch.device("cuda")
        elif _mps_available():
            device = torch.device("mps")
        else:
            device = torch.device("cpu")
        half_ok = device.type != "cpu" and precision != "full"
        dtype = torch.float16 if half_ok and not no_half else torch.float32
        vae_dtype = torch.float16 if half_ok and not (no_half or no_half_vae) else torch.float32
        return cls(device=device, dtype=dtype, vae_dtype=vae_dtype, cpu_tasks=tasks, memory_mode=memory_mode,
                   channels_last=channels_last, compile_mode=compile_mode)

    @classmethod
    def cpu(cls) -> "DevicePolicy":
        """fp32 on the CPU: what tests and ``--use-cpu all`` get."""
        return cls(device=torch.device("cpu"), dtype=torch.float32, vae_dtype=torch.float32)

    def device_for(self, task: str) -> torch.device:
        """Device of an auxiliary task (``interrogate``, ``gfpgan``, ``esrgan``...): CPU when ``--use-cpu`` names it."""
        if {"all", task.lower()} & self.cpu_tasks:
            return torch.device("cpu")
        return self.device

    def describe(self) -> dict[str, Any]:
        """Plain values for logs and the API."""
        return {
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "vae_dtype": str(self.vae_dtype).removeprefix("torch."),
            "cpu_tasks": sorted(self.cpu_tasks),
            "memory_mode": self.memory_mode,
            "channels_last": self.channels_last,
            "compile": self.compile_mode,
        }


def torch_gc() -> None:
    """Give freed accelerator memory back to the driver (after unloading a model or an out-of-memory error)."""
    gc.collect()
    if _cuda_available():
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()
    elif _mps_available() and hasattr(torch, "mps"):
        try:
            torch.mps.empty_cache()
        except Exception:
            pass
