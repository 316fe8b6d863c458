"""Stable Diffusion 1.x / 2.x / SDXL on the family interface: the UNet with CLIP conditioning, 4-channel latents
at 1/8 of the pixels, A1111's samplers on the model's discrete noise schedule."""

from __future__ import annotations

from typing import Any, Callable

import torch

from modules.errors import FieldError

from modules.processing import sampler_params
from modules.processing.conditioning import PromptEncoder
from modules.processing.sampling import cheap_preview
from modules.processing.schedulers import build_scheduler


def sdxl_time_ids(model: Any, width: int, height: int, batch: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """SDXL's size and crop conditioning rows (the refiner's with aesthetic scores); None for SD1/SD2."""
    if not model.is_sdxl:
        return None, None
    if model.kind.family == "sdxl_refiner":  # size, crop, aesthetic score (A1111 defaults 6.0 / 2.5)
        pos = [height, width, 0, 0, 6.0]
        neg = [height, width, 0, 0, 2.5]
    else:
        pos = neg = [height, width, 0, 0, height, width]
    make = lambda v: torch.tensor([v] * batch, device=model.device, dtype=model.dtype)  # noqa: E731
    return make(pos), make(neg)


class StableDiffusion:
    name = "sd"
    latent_channels = 4
    pixel_multiple = 8

    def prompt_encoder(self, model: Any, settings: Any, embeddings: Any) -> PromptEncoder:
        return PromptEncoder(model, clip_skip=settings.CLIP_stop_at_last_layers, emphasis=settings.emphasis,
                             comma_backtrack=settings.comma_padding_backtrack,
                             embeddings=embeddings.vectors() if embeddings is not None else None)

    def network(self, model: Any, p: Any, width: int, height: int, batch: int, *, settings: Any = None,
                hires_pass: bool = False, encode: Any = None) -> tuple[Any, Any, Any]:
        time_ids, neg_time_ids = sdxl_time_ids(model, width, height, batch)
        return None, time_ids, neg_time_ids  # None: the denoiser's own UNet call

    def inpainting_conditioning(self, mask: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """SD's 9-channel input: the mask at the latents' size, then the blanked image's latents (A1111)."""
        small = torch.nn.functional.interpolate(mask.to(latents.device), size=latents.shape[-2:])
        return torch.cat([small.expand(latents.shape[0], -1, -1, -1), latents], dim=1)

    def scheduler(self, job: Any, sampler: Any, schedule: Any, width: int, height: int) -> Any:
        scheduler = build_scheduler(sampler, schedule, job.model.scheduler_config)
        params = sampler_params.resolve(job.p, job.settings, sampler.name)
        scheduler.a1111_step_kwargs = params.step_kwargs
        if params.eta is not None and hasattr(scheduler, "a1111_eta"):
            scheduler.a1111_eta = params.eta
        return scheduler

    def check(self, p: Any, sampler: Any, schedule: Any, settings: Any = None) -> None:
        request = getattr(p, "kontext", None)
        if request is not None:  # Forge's extension skips SD models silently; a field that does nothing is refused
            raise FieldError(f"{request.where}.0", "Kontext reference images need a Flux checkpoint "
                                                   "(Flux.1 Kontext dev)")

    def infotext(self, p: Any, model: Any, from_api: bool) -> dict[str, Any]:
        return {}

    def preview(self, model: Any) -> Callable[[torch.Tensor], Any]:
        return lambda latents: cheap_preview(latents, sdxl=model.is_sdxl)


FAMILY = StableDiffusion()
