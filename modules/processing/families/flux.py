"""Flux.1 on the family interface: a flow-matching transformer over 16-channel latents packed in 2x2 patches,
conditioned on T5-XXL's token sequence and CLIP-L's pooled vector, with the guidance embedding of dev
("Distilled CFG Scale") and real CFG when the CFG scale is above 1.

Prompts: emphasis ``(word:1.2)`` scales T5's output vectors of those tokens (mode "Original" keeps the mean, as for
SD); prompt editing, alternation and ``AND`` work as for SD (they choose texts per step); ``BREAK`` has no chunk to
end in T5's single 512-token sequence and is dropped; CLIP-L's pooled vector reads the text without the markup. A
prompt beyond 512 T5 tokens is cut there, as diffusers' FluxPipeline cuts it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from modules.errors import FieldError
from modules.processing.conditioning import EMPHASIS_MODES, Conditioning, apply_emphasis, parse_for_emphasis
from modules.processing.flow_sampling import FlowMatchSampler, FlowSamplerError, check as check_sampler

T5_TOKENS = 512
CLIP_TOKENS = 77
DEFAULT_DISTILLED_CFG = 3.5


class FluxPromptEncoder:
    """Texts -> Conditioning(context = T5 hidden states (B, 512, C), pooled = CLIP-L pooled (B, P))."""

    def __init__(self, model: Any, emphasis: str = "Original") -> None:
        if emphasis not in EMPHASIS_MODES:
            raise ValueError(f"emphasis must be one of {', '.join(EMPHASIS_MODES)}, got {emphasis!r}")
        self.model, self.emphasis = model, emphasis
        self.used_embeddings: set[str] = set()  # textual inversion is SD's
        self._cache: dict[tuple[str, ...], Conditioning] = {}

    def _t5_row(self, text: str) -> tuple[list[int], list[float], str]:
        tokenizer = self.model.tokenizer_2
        ids: list[int] = []
        weights: list[float] = []
        plain: list[str] = []
        for piece, weight in parse_for_emphasis(text, self.emphasis):
            if weight == -1:  # BREAK
                continue
            plain.append(piece)
            piece_ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
            ids += piece_ids
            weights += [weight] * len(piece_ids)
        ids, weights = ids[:T5_TOKENS - 1] + [tokenizer.eos_token_id], weights[:T5_TOKENS - 1] + [1.0]
        padding = T5_TOKENS - len(ids)
        return ids + [tokenizer.pad_token_id] * padding, weights + [1.0] * padding, "".join(plain)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> Conditioning:
        key = tuple(texts)
        if key in self._cache:
            return self._cache[key]
        model = self.model
        rows = [self._t5_row(t) for t in texts]
        t5 = model.text_encoder_2
        device = next(t5.parameters()).device
        ids = torch.tensor([r[0] for r in rows], device=device)
        hidden = t5(ids, output_hidden_states=False).last_hidden_state
        hidden = apply_emphasis(hidden, [r[1] for r in rows], self.emphasis)
        clip = model.text_encoder
        clip_ids = model.tokenizer([r[2] for r in rows], padding="max_length", max_length=CLIP_TOKENS,
                                   truncation=True, return_tensors="pt").input_ids
        pooled = clip(clip_ids.to(next(clip.parameters()).device), output_hidden_states=False).pooler_output
        self._cache[key] = Conditioning(hidden.to(model.dtype), pooled.to(model.dtype))
        return self._cache[key]


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/2 * W/2, 4C): 2x2 patches as tokens, row by row (diffusers' _pack_latents)."""
    b, c, h, w = latents.shape
    return latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b, _, features = tokens.shape
    c = features // 4
    return tokens.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def image_ids(h: int, w: int, device: Any, dtype: torch.dtype) -> torch.Tensor:
    """Each patch token's (0, row, column) position for the transformer's RoPE."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


def first_block_cache(transformer: Any, threshold: float) -> bool:
    """diffusers' First-Block-Cache on the transformer for this pass (opt-in, setting ``flux_first_block_cache``):
    when the first block's output changed by less than ``threshold`` (relative) since the last step, the other
    blocks' residual is reused. Fresh state for every pass; turned off again at threshold 0. Returns whether on."""
    from diffusers.hooks import FirstBlockCacheConfig

    config = getattr(transformer, "_cache_config", None)
    if threshold <= 0:
        if config is not None:
            transformer.disable_cache()
        return False
    if config is None or getattr(config, "threshold", None) != threshold:
        if config is not None:
            transformer.disable_cache()
        transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
    transformer._reset_stateful_cache()
    return True


def transformer_call(model: Any, guidance: float, cached: bool = False,
                     reference: tuple[torch.Tensor, torch.Tensor] | None = None) -> Callable[..., torch.Tensor]:
    """The network call; ``reference``: Kontext's reference tokens and their positions, read beside the latents
    (``flux_kontext``), the output for them dropped."""
    transformer = model.unet
    guided = bool(model.extra.get("guidance_embeds", False))

    def call(x: torch.Tensor, t: Any, c: Conditioning, kwargs: dict[str, Any]) -> torch.Tensor:
        b, _, h, w = x.shape
        dtype, device = x.dtype, x.device
        timestep = torch.as_tensor(t, device=device, dtype=torch.float32).reshape(-1).expand(b) / 1000
        with transformer.cache_context("flux") if cached else contextlib.nullcontext():
            return unpack(_forward(x, timestep, c, dtype, device, b, h, w), h, w)

    def _forward(x: torch.Tensor, timestep: torch.Tensor, c: Conditioning, dtype: Any, device: Any, b: int, h: int,
                 w: int) -> torch.Tensor:
        tokens, ids = pack(x), image_ids(h, w, device, dtype)
        if reference is not None:
            tokens = torch.cat([tokens, reference[0].to(device, dtype).expand(b, -1, -1)], dim=1)
            ids = torch.cat([ids, reference[1].to(device, dtype)])
        out = transformer(
            hidden_states=tokens, timestep=timestep.to(dtype),
            guidance=torch.full((b,), float(guidance), device=device, dtype=torch.float32) if guided else None,
            pooled_projections=c.pooled.to(dtype), encoder_hidden_states=c.context.to(dtype),
            txt_ids=torch.zeros(c.context.shape[1], 3, device=device, dtype=dtype),
            img_ids=ids, return_dict=False)[0]
        return out[:, :(h // 2) * (w // 2)]

    return call


class Flux:
    name = "flux"
    latent_channels = 16
    pixel_multiple = 16  # 8x VAE and 2x2 patches

    def prompt_encoder(self, model: Any, settings: Any, embeddings: Any) -> FluxPromptEncoder:
        return FluxPromptEncoder(model, emphasis=settings.emphasis)

    def network(self, model: Any, p: Any, width: int, height: int, batch: int, *, settings: Any = None,
                hires_pass: bool = False, encode: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> tuple[Any, Any, Any]:
        guidance = getattr(p, "hr_distilled_cfg" if hires_pass else "distilled_cfg_scale", None)
        threshold = float((settings or {}).get("flux_first_block_cache", 0.0) or 0.0)
        call = transformer_call(model, DEFAULT_DISTILLED_CFG if guidance is None else guidance,
                                first_block_cache(model.unet, threshold),
                                self._kontext_reference(model, p, width, height, encode))
        return call, None, None

    @staticmethod
    def _kontext_reference(model: Any, p: Any, width: int, height: int,
                           encode: Callable[[torch.Tensor], torch.Tensor] | None) -> Any:
        request = getattr(p, "kontext", None)
        if request is None:
            return None
        from modules.processing.families import flux_kontext

        if model.kind.inpainting:
            raise FieldError(f"{request.where}.0", "Kontext reference images need a Flux.1 Kontext (or dev) "
                                                   "checkpoint, not Flux.1 Fill")
        if encode is None:
            raise FieldError(f"{request.where}.0", "Kontext reference images are not available in this pass")
        return flux_kontext.reference_tokens(request, (width, height), encode, id(model.vae))

    def inpainting_conditioning(self, mask: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """Flux.1 Fill's input after the latents: the blanked image's latents (16 channels), then the mask as each
        latent pixel's 8x8 patch of mask pixels (64 channels); packed with the latents this is Fill's 64 + 64 + 256
        token features, in FluxFillPipeline's order."""
        b, _, h, w = latents.shape
        mask = torch.nn.functional.interpolate(mask.float(), size=(h * 8, w * 8)) if mask.shape[-2:] != (h * 8, w * 8) \
            else mask.float()
        patches = mask[:, 0].view(1, h, 8, w, 8).permute(0, 2, 4, 1, 3).reshape(1, 64, h, w)
        return torch.cat([latents, patches.to(latents.device, latents.dtype).expand(b, -1, -1, -1)], dim=1)

    def scheduler(self, job: Any, sampler: Any, schedule: Any, width: int, height: int) -> FlowMatchSampler:
        from modules.processing import sampler_params

        tokens = (height // 16) * (width // 16)
        flow = FlowMatchSampler(sampler.name, _schedule_label(sampler, schedule), job.model.scheduler_config, tokens)
        eta = sampler_params.resolve(job.p, job.settings, sampler.name).eta
        if eta is not None:
            flow.a1111_eta = float(eta)
        return flow

    def check(self, p: Any, sampler: Any, schedule: Any, settings: Any = None) -> None:
        from modules.processing import sampler_params

        try:
            check_sampler(sampler.name, _schedule_label(sampler, schedule))
        except FlowSamplerError as err:
            raise FieldError(err.field, str(err)) from None
        params = sampler_params.resolve(p, settings or {}, sampler.name)
        if params.step_kwargs.get("s_churn", 0.0):
            raise FieldError("s_churn", "sigma churn is not available for Flux models")
        if params.s_min_uncond:
            raise FieldError("s_min_uncond", "Negative Guidance minimum sigma is not available for Flux models")
        for name in ("width", "height"):
            value = int(getattr(p, name))
            if value % self.pixel_multiple:
                raise FieldError(name, f"{name} {value} is not a multiple of {self.pixel_multiple}, which Flux "
                                       f"needs (8x autoencoder, 2x2 patches): use {value // 16 * 16 or 16}")

    def infotext(self, p: Any, model: Any, from_api: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if model.extra.get("guidance_embeds", False):
            value = getattr(p, "distilled_cfg_scale", None)
            value = DEFAULT_DISTILLED_CFG if value is None else value
            out["Distilled CFG Scale"] = int(value) if not from_api and float(value).is_integer() else value
        if getattr(p, "enable_hr", False) and model.extra.get("guidance_embeds", False):
            value = getattr(p, "hr_distilled_cfg", DEFAULT_DISTILLED_CFG)
            out["Hires Distilled CFG Scale"] = int(value) if not from_api and float(value).is_integer() else value
        # Forge's "Module N: <file stem>" for each piece taken from another file than the checkpoint
        parts = model.extra.get("parts", {})
        stems = [Path(parts[role]).stem for role in ("vae", "clip_l", "t5")
                 if role in parts and Path(parts[role]) != Path(model.path)]
        out.update({f"Module {i}": stem for i, stem in enumerate(stems, start=1)})
        return out

    def preview(self, model: Any) -> Callable[[torch.Tensor], Any]:
        from modules.processing.sampling import to_pil

        factors = model.extra["latent_rgb"]  # fitted to the model's VAE at load (models.families.flux)

        def show(latents: torch.Tensor) -> Any:
            latent = latents[0].float().cpu()
            if factors is None:  # no fitted colours: the first three channels, as a rough picture
                return to_pil(latent[:3].clamp(-1, 1))
            design = torch.cat([latent, torch.ones(1, *latent.shape[1:])], dim=0)
            return to_pil(torch.einsum("lxy,lr->rxy", design, factors))

        return show


def _schedule_label(sampler: Any, schedule: Any) -> str:
    label = getattr(schedule, "label", None) or "Automatic"
    return "Simple" if label == "Automatic" else label


FAMILY = Flux()
