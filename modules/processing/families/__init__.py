"""Model families, the sampling side: what a job asks of the model it runs on, so that txt2img, img2img,
inpainting, hires fix, X/Y/Z and the API never ask "is this SDXL" or "is this Flux".

``for_model(model)`` gives the family's ``SamplingFamily``: the latent layout (channels, pixel multiple), the prompt
encoder, the network call inside the guided denoiser (with its extra inputs), the noise schedule for a sampler, the
live-preview colours, the checks refused before a job is queued, and the family's own infotext. The loading side is
``modules.models.families``.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch

# (x, t, conditioning, added kwargs) -> the network's prediction, float32, x's shape
NetworkCall = Callable[[torch.Tensor, Any, Any, dict[str, Any]], torch.Tensor]


class SamplingFamily(Protocol):
    name: str
    latent_channels: int
    pixel_multiple: int  # width and height must be multiples of this

    def prompt_encoder(self, model: Any, settings: Any, embeddings: Any) -> Any:
        """An object with ``encode(texts) -> Conditioning`` and ``used_embeddings`` (``conditioning.PromptEncoder``)."""

    def network(self, model: Any, p: Any, width: int, height: int, batch: int, *, settings: Any = None,
                hires_pass: bool = False, encode: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> tuple[NetworkCall | None, torch.Tensor | None, torch.Tensor | None]:
        """The network call for a pass at this size (None: the denoiser's own UNet call), and the (positive,
        negative) extra conditioning rows (SDXL's size/crop time ids; None where the family has none).
        ``encode``: pixels in [-1, 1] -> the job's scaled latents (for reference images: Flux Kontext)."""

    def inpainting_conditioning(self, mask: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """An inpainting model's extra input: ``mask`` (1, 1, H, W) in [0, 1] at the pixels' size, ``latents`` the
        scaled latents (B, C, H/8, W/8) of the image with the masked area blanked."""

    def scheduler(self, job: Any, sampler: Any, schedule: Any, width: int, height: int) -> Any:
        """A fresh scheduler for one pass."""

    def check(self, p: Any, sampler: Any, schedule: Any, settings: Any = None) -> None:
        """Refuse what the family cannot do, naming the request field (FieldError)."""

    def infotext(self, p: Any, model: Any, from_api: bool) -> dict[str, Any]:
        """The family's own infotext entries."""

    def preview(self, model: Any) -> Callable[[torch.Tensor], Any]:
        """latents -> PIL image, without the VAE (the live preview's "Approx cheap")."""


def for_model(model: Any) -> SamplingFamily:
    if getattr(getattr(model, "kind", None), "family", None) == "flux":
        from modules.processing.families import flux

        return flux.FAMILY
    from modules.processing.families import sd

    return sd.FAMILY
