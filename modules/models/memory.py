"""Memory modes: where the model's weights live between uses (A1111's ``--medvram`` / ``--lowvram``).

* ``none``    - every component stays on the execution device (the fast default when it fits);
* ``medvram`` - components live in CPU memory and only the one running (text encoder, UNet or VAE) is on the GPU;
* ``lowvram`` - the UNet and text encoders are offloaded layer by layer with diffusers' group offloading (leaf
  level, with a CUDA stream that prefetches the next layer while one runs), the VAE as in ``medvram``.

Without a flag the mode is chosen per checkpoint from the GPU's free memory (``choose_mode``). On the CPU and on
Apple's unified memory there is nothing to gain, so without a flag the mode is ``none`` there (a flag is still
obeyed: that is how the tests run these paths on a CPU).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

NONE, MEDVRAM, LOWVRAM = "none", "medvram", "lowvram"
AUTO, MEDVRAM_SDXL = "auto", "medvram-sdxl"
REQUESTS = (AUTO, NONE, MEDVRAM, MEDVRAM_SDXL, LOWVRAM)

GIB = 1024 ** 3
# Working memory a job needs next to the weights, with room for the allocator: estimates for SD1.5 at 512x512 and
# SDXL at 1024x1024 in fp16 with SDPA (attention and the VAE decode dominate). Not yet measured on a GPU here:
# tests/benchmarks/gpu_speed.py prints the real peaks.
# Flux at 1024x1024 in bf16: 4096 image + 512 text tokens through 3072-wide blocks, and the 16-channel VAE decode.
WORKING_BYTES = {"sd1": int(1.5 * GIB), "sd2": int(1.75 * GIB), "sdxl": 3 * GIB, "sdxl_refiner": 3 * GIB,
                 "flux": 4 * GIB}


def requested_mode(medvram: bool = False, medvram_sdxl: bool = False, lowvram: bool = False) -> str:
    """The flags as one request: ``--lowvram`` wins over ``--medvram``, which wins over ``--medvram-sdxl``."""
    if lowvram:
        return LOWVRAM
    if medvram:
        return MEDVRAM
    return MEDVRAM_SDXL if medvram_sdxl else AUTO


@dataclass(frozen=True)
class MemoryChoice:
    mode: str
    reason: str


def choose_mode(requested: str, *, device_type: str, family: str, weight_bytes: int, largest_bytes: int,
                free_bytes: int | None) -> MemoryChoice:
    """The mode for one checkpoint.

    ``weight_bytes``: all components at their run dtype; ``largest_bytes``: the biggest single component;
    ``free_bytes``: the device's free memory before loading (None when unknown). An explicit flag is obeyed;
    ``auto`` (only on CUDA; elsewhere ``none``) keeps everything resident when weights plus working memory fit,
    swaps whole components when the largest one plus working memory fits, and offloads layer by layer otherwise.
    """
    if requested not in REQUESTS:
        raise ValueError(f"unknown memory mode {requested!r}; expected one of {', '.join(REQUESTS)}")
    if requested in (NONE, MEDVRAM, LOWVRAM):  # a flag is obeyed on every device, as in A1111
        return MemoryChoice(requested, f"--{requested}" if requested != NONE else "requested")
    if requested == MEDVRAM_SDXL and family in ("sdxl", "sdxl_refiner"):
        return MemoryChoice(MEDVRAM, "--medvram-sdxl and an SDXL checkpoint")
    if device_type != "cuda":
        return MemoryChoice(NONE, f"{device_type} keeps the weights in main memory")
    if free_bytes is None:
        return MemoryChoice(NONE, "free GPU memory unknown")
    working = WORKING_BYTES.get(family, WORKING_BYTES["sd1"])
    free = f"{free_bytes / GIB:.1f} GiB free"
    if free_bytes >= weight_bytes + working:
        return MemoryChoice(NONE, f"{free}, {weight_bytes / GIB:.1f} GiB of weights fit")
    if free_bytes >= largest_bytes + working:
        return MemoryChoice(MEDVRAM, f"{free}: too little for all {weight_bytes / GIB:.1f} GiB of weights")
    return MemoryChoice(LOWVRAM, f"{free}: too little even for the largest component ({largest_bytes / GIB:.1f} GiB)")


def free_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA device, as the driver reports it (other processes included); None elsewhere."""
    if device.type != "cuda":
        return None
    try:
        free, _total = torch.cuda.mem_get_info(device)
    except (RuntimeError, AssertionError):
        return None
    return int(free)


def resident_bytes(model: Any) -> int:
    """Bytes of ``model``'s weights now on its execution device (what releasing it gives back)."""
    return sum(tensor.numel() * tensor.element_size() for component in model.components().values()
               for tensor in (*component.parameters(), *component.buffers()) if tensor.device == model.device)


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        moved = [_to_device(v, device) for v in value]
        return type(value)(moved) if isinstance(value, list) else tuple(moved)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


# The component each execution device holds for a swapper, whichever model it belongs to: a refiner or a hires
# checkpoint next to the main model takes its turn like the main model's parts, so two UNets never sit on one small
# GPU together. Weak references: a released model's parts are not kept alive by being the last to have run.
_ON_DEVICE: dict[str, tuple[weakref.ref, torch.device]] = {}  # device -> (component, where it rests)
_TURN_LOCK = threading.Lock()


def _holder(device: torch.device) -> torch.nn.Module | None:
    entry = _ON_DEVICE.get(str(device))
    return entry[0]() if entry is not None else None


class ComponentSwapper:
    """``medvram``: whole components take turns on the execution device; the one that ran last stays there until
    another one (of any model) is needed, so the 20 UNet calls of a job move nothing.

    A forward pre-hook on each component and on its direct children makes it the active one: the VAE's ``decode`` and
    ``encode`` call its children, never its own forward. The hook also moves tensor arguments to the execution device,
    so a caller that builds inputs on "the parameters' device" still works. ``Module.to`` keeps parameter objects, so
    LoRA backups and loaded VAE weights stay attached to the same tensors.
    """

    def __init__(self, execution_device: torch.device, storage_device: torch.device | str = "cpu") -> None:
        self.execution_device = torch.device(execution_device)
        self.storage_device = torch.device(storage_device)
        self.moves = 0  # components moved onto the execution device, for logs and benchmarks
        self._handles: list[Any] = []
        self.components: list[torch.nn.Module] = []

    @property
    def active(self) -> torch.nn.Module | None:
        """This swapper's component on the execution device, if one is."""
        holder = _holder(self.execution_device)
        return holder if any(holder is c for c in self.components) else None

    def add(self, component: torch.nn.Module) -> None:
        torch.nn.Module.to(component, self.storage_device)  # torch's own: diffusers' override only warns
        self.components.append(component)

        def pre_hook(_module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            self.activate(component)
            return _to_device(args, self.execution_device), _to_device(kwargs, self.execution_device)

        for module in (component, *component.children()):
            self._handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))

    def activate(self, component: torch.nn.Module) -> None:
        key = str(self.execution_device)
        with _TURN_LOCK:
            holder = _holder(self.execution_device)
            if holder is component:
                return
            if holder is not None:
                torch.nn.Module.to(holder, _ON_DEVICE[key][1])
            torch.nn.Module.to(component, self.execution_device)
            _ON_DEVICE[key] = (weakref.ref(component), self.storage_device)
        self.moves += 1

    def park(self) -> None:
        """Move this swapper's active component back to storage (a model that stops being current frees the GPU)."""
        with _TURN_LOCK:
            holder = _holder(self.execution_device)
            if holder is not None and any(holder is c for c in self.components):
                torch.nn.Module.to(holder, self.storage_device)
                del _ON_DEVICE[str(self.execution_device)]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@dataclass
class MemoryPlan:
    """What ``apply`` installed on one model; kept in ``LoadedModel.extra["memory"]``."""

    mode: str
    reason: str
    swapper: ComponentSwapper | None = None

    def park(self) -> None:
        if self.swapper is not None:
            self.swapper.park()


def storage_device(mode: str, execution_device: torch.device) -> torch.device:
    """Where the loader should put the weights: the CPU when they are offloaded, so a small GPU never holds all."""
    return execution_device if mode == NONE else torch.device("cpu")


def apply(choice: MemoryChoice, execution_device: torch.device, *, unet: torch.nn.Module, vae: torch.nn.Module,
          text_encoders: Iterable[torch.nn.Module | None]) -> MemoryPlan:
    """Install the hooks of ``choice.mode`` on a freshly built model (weights on ``storage_device``)."""
    plan = MemoryPlan(choice.mode, choice.reason)
    encoders = [e for e in text_encoders if e is not None]
    if choice.mode == NONE:
        if execution_device.type == "cuda":
            log.info("memory mode none (%s)", choice.reason)
        return plan
    plan.swapper = ComponentSwapper(execution_device)
    if choice.mode == MEDVRAM:
        for component in (*encoders, unet, vae):
            plan.swapper.add(component)
    else:  # LOWVRAM
        from diffusers.hooks import apply_group_offloading

        use_stream = execution_device.type == "cuda"
        for component in (*encoders, unet):
            apply_group_offloading(component, onload_device=execution_device, offload_device=torch.device("cpu"),
                                   offload_type="leaf_level", use_stream=use_stream, non_blocking=use_stream)
        plan.swapper.add(vae)  # the VAE can switch to fp32 after a NaN, which group offloading's copies would miss
    log.info("memory mode %s (%s)", choice.mode, choice.reason)
    return plan


def park(model: Any) -> None:
    """Free the execution device of a model that stays loaded but is no longer current."""
    plan = getattr(model, "extra", {}).get("memory")
    if isinstance(plan, MemoryPlan):
        plan.park()
