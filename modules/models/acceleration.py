"""Opt-in speed-ups of the UNet: channels-last memory layout (``--opt-channelslast``) and ``torch.compile``
(``--compile``).

Compile modes:

* ``blocks`` - each repeated block (``BasicTransformerBlock``, ``ResnetBlock2D``) is compiled once and the code is
  shared by all its instances, so warm-up takes seconds rather than the minutes a whole-UNet compile takes, and a
  new image size reuses most of it (``dynamic=None``: sizes seen twice are compiled shape-generic);
* ``graphs`` - the whole UNet with ``mode="reduce-overhead"``: CUDA graphs replay each step without launch
  overhead. Shapes are static, so each new size, batch or prompt length compiles again; best for a server that
  makes one size all day.

Compiling happens on the first UNet call, which ``time_first_call`` logs so users see the warm-up.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

log = logging.getLogger(__name__)

BLOCKS, GRAPHS = "blocks", "graphs"
COMPILE_MODES = (BLOCKS, GRAPHS)
REPEATED_BLOCKS = ("BasicTransformerBlock", "ResnetBlock2D")


def channels_last(unet: torch.nn.Module) -> None:
    """NHWC convolutions: faster with cuDNN on tensor-core GPUs, mostly neutral elsewhere (measure first)."""
    unet.to(memory_format=torch.channels_last)


def compile_unet(unet: torch.nn.Module, mode: str, backend: str = "inductor") -> int:
    """Wrap the UNet (or its repeated blocks) in ``torch.compile``; returns how many modules were wrapped.

    ``backend`` is torch.compile's (tests use ``aot_eager``, which traces the same graphs without a C++ build).
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; expected one of {', '.join(COMPILE_MODES)}")
    if mode == GRAPHS:
        # The forward, not the module: hooks on the UNet (memory swapping, the warm-up timer) stay outside the graph.
        unet.forward = torch.compile(unet.forward, backend=backend,
                                     mode="reduce-overhead" if backend == "inductor" else None, dynamic=False)
        wrapped = 1
    else:
        wrapped = 0
        for module in unet.modules():
            if type(module).__name__ in REPEATED_BLOCKS:
                module.compile(backend=backend)  # nn.Module.compile: in place, parameters stay the module's
                wrapped += 1
    time_first_call(unet, f"torch.compile ({mode}, {wrapped} module{'s' if wrapped != 1 else ''})")
    return wrapped


def time_first_call(module: torch.nn.Module, what: str) -> None:
    """Log how long the first forward takes (the compile warm-up), then remove the hooks."""
    started: dict[str, float] = {}

    def before(_module: Any, _args: Any) -> None:
        started.setdefault("t", time.perf_counter())

    def after(_module: Any, _args: Any, _output: Any) -> None:
        log.info("%s: first UNet call took %.1f s (warm-up)", what, time.perf_counter() - started["t"])
        pre.remove()
        post.remove()

    pre = module.register_forward_pre_hook(before)
    post = module.register_forward_hook(after)
