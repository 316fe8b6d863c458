"""Shared model types: what a checkpoint is, what family it belongs to, and how loading can fail.

Kept free of heavy imports so the registry, the API schemas and the UI can use these names cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, Union

Family = Literal["sd1", "sd2", "sdxl", "sdxl_refiner", "flux"]
Prediction = Literal["epsilon", "v_prediction", "flow"]  # flow: a flow-matching velocity (Flux)


@dataclass(frozen=True)
class ModelKind:
    """What the state dict says a checkpoint is."""

    family: Family
    prediction: Prediction = "epsilon"
    inpainting: bool = False  # 9-channel UNet input (latents + mask + masked-image latents)
    in_channels: int = 4

    @property
    def label(self) -> str:
        parts = [self.family]
        if self.prediction == "v_prediction":
            parts.append("v")
        if self.inpainting:
            parts.append("inpainting")
        return "-".join(parts)


class ModelFileError(Exception):
    """Base class: a model file could not be used. ``str(err)`` is a sentence a user can act on."""

    kind: str = "invalid"

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path.name}: {message}")


class UnsafeFileError(ModelFileError):
    """A pickle that would run code or reference objects outside the weights-only allow-list."""

    kind = "unsafe"


class CorruptFileError(ModelFileError):
    """Bytes that are not a valid safetensors/zip-pickle file (bad header, offsets, dtypes...)."""

    kind = "corrupt"


class IncompleteFileError(ModelFileError):
    """A file shorter than its own header says: usually an interrupted download."""

    kind = "incomplete"


class UnknownModelError(ModelFileError):
    """Valid weights, but not a Stable Diffusion family we can build."""

    kind = "unknown-family"


class MissingPartError(ModelFileError):
    """A checkpoint without a piece it needs (Flux without its T5 text encoder or VAE), and no chosen file has it."""

    kind = "missing-part"
    field = "forge_additional_modules"  # where the user supplies it


COMPONENT_NAMES = ("unet", "vae", "text_encoder", "text_encoder_2")  # LoadedModel's module slots

# The additional module files a checkpoint may be completed from, or a function giving them: called only when a
# checkpoint needs them, so an SD job never lists the module folders or fails on a Flux module choice.
ModuleParts = Union[Sequence[Path], Callable[[], Sequence[Path]]]


def module_parts(parts: ModuleParts) -> list[Path]:
    return [Path(p) for p in (parts() if callable(parts) else parts)]


@dataclass
class LoadedModel:
    """Diffusers components built from one checkpoint, on their device, ready for the sampling loop.

    ``unet`` is the denoising network: a ``UNet2DConditionModel`` for SD, a ``FluxTransformer2DModel`` for Flux (the
    slot keeps its name because extensions, memory hooks and LoRA reach the network under it). For Flux,
    ``text_encoder`` is CLIP-L (pooled vector) and ``text_encoder_2`` T5-XXL (the token sequence).

    ``text_encoder_2``/``tokenizer_2`` are set for SDXL (OpenCLIP bigG); the SDXL refiner has only the bigG encoder,
    held in ``text_encoder_2`` with ``text_encoder`` None.
    """

    kind: ModelKind
    path: Path
    unet: Any
    vae: Any
    text_encoder: Any | None
    tokenizer: Any | None
    scheduler_config: dict[str, Any]
    device: Any  # torch.device
    dtype: Any  # torch.dtype for UNet and text encoders
    vae_dtype: Any  # torch.dtype for the VAE (may be upgraded to fp32 after a NaN)
    text_encoder_2: Any | None = None
    tokenizer_2: Any | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def components(self) -> dict[str, Any]:
        """The modules this model has, by slot (``COMPONENT_NAMES``)."""
        return {name: module for name in COMPONENT_NAMES if (module := getattr(self, name)) is not None}

    @property
    def is_sdxl(self) -> bool:
        return self.kind.family in ("sdxl", "sdxl_refiner")

    @property
    def is_flux(self) -> bool:
        return self.kind.family == "flux"

    @property
    def latent_space(self) -> str:
        """Models of the same latent space can continue each other's latents (refiner, hires checkpoint)."""
        return {"sdxl": "sdxl", "sdxl_refiner": "sdxl", "flux": "flux"}.get(self.kind.family, "sd")
