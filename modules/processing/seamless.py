"""Seamless tiles (A1111's ``tiling``): every 2-D convolution of the UNet and the VAE pads circularly for the job,
so the image wraps around at its edges and tiles without seams. Undone when the job ends, whatever happens.

The padding mode is an attribute ``nn.Conv2d.forward`` reads on each call, so switching it changes no weights and
costs nothing; convolutions that have no padding (1x1) are unaffected by it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator

import torch

CIRCULAR = "circular"


@contextlib.contextmanager
def circular_padding(modules: Iterable[Any], enabled: bool = True) -> Iterator[int]:
    """Within the block, the ``Conv2d`` layers of ``modules`` (None entries skipped) pad circularly; yields how
    many were switched. Layers are restored to their own mode on exit."""
    switched: list[tuple[torch.nn.Conv2d, str]] = []
    try:
        if enabled:
            seen: set[int] = set()
            for module in modules:
                if module is None:
                    continue
                for layer in module.modules():
                    if isinstance(layer, torch.nn.Conv2d) and id(layer) not in seen:
                        seen.add(id(layer))
                        if layer.padding_mode != CIRCULAR:
                            switched.append((layer, layer.padding_mode))
                            layer.padding_mode = CIRCULAR
        yield len(switched)
    finally:
        for layer, mode in switched:
            layer.padding_mode = mode
