"""Helpers to run the real engine on tiny checkpoints written to disk (no mocks, no hub)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modules.models.devices import DevicePolicy
from modules.models.loader import load_checkpoint
from modules.options import builtin_options
from modules.processing.context import CheckpointIdentity, ProcessingContext
from modules.processing.params import Txt2ImgParams
from modules.processing.progress import JobProgress
from modules.processing.txt2img import txt2img


def default_settings(**overrides: Any) -> dict[str, Any]:
    values = {k: info.default for k, info in builtin_options().items()}
    values.update(overrides)
    return values


def load_tiny(path: Path) -> Any:
    return load_checkpoint(path, DevicePolicy.cpu())


def run_txt2img(model: Any, data_dir: Path, *, settings: dict[str, Any] | None = None, from_api: bool = False,
                progress: JobProgress | None = None, hooks: list[Any] | None = None, face_restorers: Any = None,
                loras: Any = None, **params: Any) -> Any:
    defaults = dict(prompt="a photo of a cat", width=64, height=64, steps=3, seed=1234)
    defaults.update(params)
    ctx = ProcessingContext(
        model=model,
        checkpoint=CheckpointIdentity(title="tiny.safetensors [0123456789]", model_name="tiny",
                                      shorthash="0123456789"),
        settings=settings if settings is not None else default_settings(),
        data_dir=data_dir,
        progress=progress or JobProgress(),
        version="v0.1.0",
        from_api=from_api,
        denoiser_hooks=list(hooks or []),
        face_restorers=face_restorers,
        loras=loras,
    )
    return txt2img(Txt2ImgParams(**defaults), ctx)
