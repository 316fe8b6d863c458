"""Typed, bounded parameters for each operation: the one declaration that feeds the UI, the API schemas and validation.

Defaults here are the UI's (A1111 ``ui.py``). The API keeps A1111's own, different defaults by subclassing
(see ``modules/api/schemas.py``). Pure module: pydantic only.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SEED_MAX = 2**32 - 1
MAX_SIDE = 4096  # pixels; larger requests are refused before they reach the queue
MAX_PROMPT_CHARS = 100_000


class GenerationParams(BaseModel):
    """Fields shared by txt2img and img2img, with A1111's names."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, validate_assignment=True)

    prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="Prompt")
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="Negative prompt")
    styles: list[str] = Field(default_factory=list, description="Prompt styles to apply")
    seed: int = Field(-1, ge=-1, le=SEED_MAX, description="Seed; -1 picks a random one")
    subseed: int = Field(-1, ge=-1, le=SEED_MAX, description="Variation seed; -1 picks a random one")
    subseed_strength: float = Field(0.0, ge=0.0, le=1.0, description="Variation strength")
    seed_resize_from_h: int = Field(-1, ge=-1, le=MAX_SIDE, description="Resize seed from height (0 or -1: off)")
    seed_resize_from_w: int = Field(-1, ge=-1, le=MAX_SIDE, description="Resize seed from width (0 or -1: off)")
    sampler_name: str | None = Field("DPM++ 2M", max_length=100, description="Sampling method")
    scheduler: str | None = Field("Automatic", max_length=100, description="Schedule type")
    batch_size: int = Field(1, ge=1, le=64, description="Images per batch")
    n_iter: int = Field(1, ge=1, le=1000, description="Batch count")
    steps: int = Field(20, ge=1, le=500, description="Sampling steps")
    cfg_scale: float = Field(7.0, ge=0.0, le=100.0, description="CFG Scale")
    width: int = Field(512, ge=64, le=MAX_SIDE, multiple_of=8, description="Width in pixels, a multiple of 8")
    height: int = Field(512, ge=64, le=MAX_SIDE, multiple_of=8, description="Height in pixels, a multiple of 8")
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    override_settings: dict[str, Any] = Field(default_factory=dict)
    override_settings_restore_afterwards: bool = True


class Txt2ImgParams(GenerationParams):
    """txt2img. Hires fix and refiner fields arrive with the img2img/hires work."""


def clamp_steps_for_ui(steps: int) -> int:
    """The UI slider's range (1-150) is narrower than the API's."""
    return max(1, min(150, steps))
