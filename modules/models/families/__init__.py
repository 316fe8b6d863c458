"""Model families, the loading side: each tells its checkpoints from keys and shapes and builds a ``LoadedModel``.

A family is one module with ``detect(shapes) -> ModelKind | None`` and ``build(sd, path, policy, parts=, consume=)``
(``flux``); the Stable Diffusion families (SD1.x, SD2.x, SDXL and its refiner) are built by ``modules.models.loader``
from their original yaml configs. Detection asks every family in turn, never the file name. The sampling side of a
family (prompt encoding, the network call, the noise schedule) is ``modules.processing.families``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from modules.models.types import ModelKind


@dataclass(frozen=True)
class LoadingFamily:
    """How one family is recognised and built."""

    name: str
    detect: Callable[[Mapping[str, tuple[int, ...]]], ModelKind | None]
    build: Callable[..., Any]  # (sd, path, policy, *, parts, consume) -> LoadedModel


def _flux() -> LoadingFamily:
    from modules.models.families import flux

    return LoadingFamily(name="Flux.1", detect=flux.detect, build=flux.build)


def families() -> list[LoadingFamily]:
    """Families with their own loader, in detection order (each a module imported on first use)."""
    return [_flux()]


def detect_family(shapes: Mapping[str, tuple[int, ...]]) -> LoadingFamily | None:
    """The family with its own loader that recognises these keys, or None (an SD checkpoint, or unknown)."""
    return next((f for f in families() if f.detect(shapes) is not None), None)
