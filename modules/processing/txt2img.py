"""txt2img: seeds, prompts and batches in A1111's order, our sampling loop, infotext, saving and the grid.

One readable sequence: resolve sampler -> seeds -> for each batch (encode prompts, noise, denoise, decode, save) ->
grid. Everything it needs arrives in the parameter object and the context.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import torch

from modules import infotext as infotext_mod
from modules import samplers
from modules.processing import extra_networks
from modules.processing import saving
from modules.processing.conditioning import PromptEncoder
from modules.processing.prompt_schedule import BatchConditioning
from modules.processing.context import Processed, ProcessingContext
from modules.processing.params import GenerationParams
from modules.processing.progress import Interrupted
from modules.processing.rng import ImageRNG, fix_seed
from modules.processing.sampling import (GuidedDenoiser, check_finite, cheap_preview, decode_latents, denoise,
                                         to_pil)
from modules.processing.schedulers import build_scheduler

log = logging.getLogger(__name__)

LATENT_FACTOR = 8  # pixels per latent cell for every SD family's VAE


def _number(value: float, from_api: bool) -> float | int:
    """A1111's UI prints ``CFG scale: 7``; its API, whose model types the field as float, prints ``7.0``."""
    if not from_api and float(value).is_integer():
        return int(value)
    return value


def create_infotext(p: GenerationParams, ctx: ProcessingContext, *, prompt: str, negative_prompt: str, seed: int,
                    subseed: int, sampler_name: str, schedule_label: str, extra: dict[str, Any]) -> str:
    """The ``parameters`` text, keys in A1111's fixed order; None values are left out."""
    s = ctx.settings
    clip_skip = int(s.get("CLIP_stop_at_last_layers", 1))
    ensd = int(s.get("eta_noise_seed_delta", 0))
    rng_source = s.get("randn_source", "GPU")
    base = {
        "Steps": p.steps,
        "Sampler": sampler_name,
        "Schedule type": schedule_label,
        "CFG scale": _number(p.cfg_scale, ctx.from_api),
        "Seed": seed,
        "Size": f"{p.width}x{p.height}",
        "Model hash": ctx.checkpoint.shorthash if s.get("add_model_hash_to_info", True) else None,
        "Model": ctx.checkpoint.model_name if s.get("add_model_name_to_info", True) else None,
        "VAE hash": ctx.vae_infotext.get("VAE hash") if s.get("add_vae_hash_to_info", True) else None,
        "VAE": ctx.vae_infotext.get("VAE") if s.get("add_vae_name_to_info", True) else None,
        "Variation seed": subseed if p.subseed_strength > 0 else None,
        "Variation seed strength": _number(p.subseed_strength, ctx.from_api) if p.subseed_strength > 0 else None,
        "Seed resize from": (f"{p.seed_resize_from_w}x{p.seed_resize_from_h}"
                             if p.seed_resize_from_w > 0 and p.seed_resize_from_h > 0 else None),
        "Clip skip": clip_skip if clip_skip > 1 else None,
        "ENSD": ensd if ensd != 0 else None,
        "RNG": rng_source if rng_source != "GPU" else None,
        "Version": ctx.version if s.get("add_version_to_infotext", True) else None,
    }
    return infotext_mod.build_infotext(prompt, negative_prompt, infotext_mod.ordered_params(base, extra))


def _fields_for_name(p: GenerationParams, ctx: ProcessingContext, seed: int, prompt: str, sampler: str,
                     job_timestamp: str, batch_number: int) -> dict[str, Any]:
    return {
        "seed": seed, "prompt": prompt, "negative_prompt": p.negative_prompt, "steps": p.steps, "cfg": p.cfg_scale,
        "width": p.width, "height": p.height, "sampler": sampler, "model_name": ctx.checkpoint.model_name,
        "model_hash": ctx.checkpoint.shorthash or "", "job_timestamp": job_timestamp, "batch_number": batch_number,
        "styles": p.styles, "date": datetime.now(),
        "prompt_words_limit": ctx.settings.get("directories_max_prompt_words", 8),
    }


def _sdxl_time_ids(model: Any, p: GenerationParams, batch: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if not model.is_sdxl:
        return None, None
    if model.kind.family == "sdxl_refiner":  # size, crop, aesthetic score (A1111 defaults 6.0 / 2.5)
        pos = [p.height, p.width, 0, 0, 6.0]
        neg = [p.height, p.width, 0, 0, 2.5]
    else:
        pos = neg = [p.height, p.width, 0, 0, p.height, p.width]
    make = lambda v: torch.tensor([v] * batch, device=model.device, dtype=model.dtype)  # noqa: E731
    return make(pos), make(neg)


@torch.inference_mode()
def _txt2img_image_conditioning(model: Any, batch: int, height: int, width: int) -> torch.Tensor | None:
    """Inpainting UNets need mask + masked-image latents; for txt2img the whole image is masked (A1111: a mask of
    ones over the latents of a mid-grey image)."""
    if not model.kind.inpainting:
        return None
    grey = torch.zeros(1, 3, height, width, device=model.device, dtype=model.vae_dtype)
    latent = model.vae.encode(grey).latent_dist.mode() * model.vae.config.scaling_factor
    mask = torch.ones(1, 1, height // LATENT_FACTOR, width // LATENT_FACTOR, device=model.device)
    cond = torch.cat([mask, latent.float()], dim=1)
    return cond.repeat(batch, 1, 1, 1)


def txt2img(p: GenerationParams, ctx: ProcessingContext) -> Processed:
    """Generate ``n_iter`` batches of ``batch_size`` images. Interrupt keeps the images already finished."""
    model = ctx.model
    settings = ctx.settings
    sampler, schedule = samplers.resolve_sampler(p.sampler_name, p.scheduler)
    schedule_label = samplers.effective_schedule_label(sampler, schedule)
    count = p.n_iter * p.batch_size
    seed, subseed = fix_seed(p.seed), fix_seed(p.subseed)
    # A1111: with a variation strength every image keeps the seed and the variation seeds advance instead.
    all_seeds = [seed + (i if p.subseed_strength == 0 else 0) for i in range(count)]
    all_subseeds = [subseed + i for i in range(count)]
    prompt, negative_prompt = apply_styles(ctx.styles, p.prompt, p.negative_prompt, p.styles)
    all_prompts = [prompt] * count
    all_negative = [negative_prompt] * count
    job_timestamp = datetime.now().strftime("%Y%m%d%H%M%S")
    encoders = EncoderCache(model, settings, ctx.embeddings)
    use_old_scheduling = bool(settings.get("use_old_scheduling", False))
    outdir = saving.output_dir(settings, ctx.data_dir, saving.TXT2IMG, grid=False)
    save_samples = settings.get("samples_save", True) and not p.do_not_save_samples
    extra: dict[str, Any] = {}
    comments = list(ctx.comments)
    emphasis = str(settings.get("emphasis", "Original"))
    if emphasis != "Original" and any(c in prompt + negative_prompt for c in "(["):
        extra["Emphasis"] = emphasis
    if use_old_scheduling:
        extra["Old prompt editing timelines"] = True

    images, infotexts, saved = [], [], []
    ctx.progress.begin(job_count=p.n_iter, steps=p.steps)
    interrupted = False
    latent_shape = (4, p.height // LATENT_FACTOR, p.width // LATENT_FACTOR)
    # The same for every batch of the job (a VAE encode of a grey image for inpainting models, else None).
    image_conditioning = _txt2img_image_conditioning(model, p.batch_size, p.height, p.width)
    time_ids, neg_time_ids = _sdxl_time_ids(model, p, p.batch_size)
    for n in range(p.n_iter):
        if ctx.progress.interrupted:
            interrupted = True
            break
        ctx.progress.next_job(n)
        lo, hi = n * p.batch_size, (n + 1) * p.batch_size
        seeds, subseeds = all_seeds[lo:hi], all_subseeds[lo:hi]
        rng = ImageRNG(latent_shape, seeds, subseeds=subseeds, subseed_strength=p.subseed_strength,
                       seed_resize_from_h=p.seed_resize_from_h, seed_resize_from_w=p.seed_resize_from_w,
                       source=settings.get("randn_source", "GPU"), device=model.device,
                       eta_noise_seed_delta=int(settings.get("eta_noise_seed_delta", 0)))
        scheduler = build_scheduler(sampler, schedule, model.scheduler_config)
        scheduler.set_timesteps(p.steps, device=model.device)
        noise = rng.first().to(model.device, torch.float32)
        latents = noise * scheduler.init_noise_sigma
        # Extra networks come from the batch's first prompt (as in A1111) and never reach CLIP as text.
        clip_prompts, networks = extra_networks.strip_batch(all_prompts[lo:hi])
        try:
            with extra_networks.activated(model, networks, ctx.loras) as activation:
                encoder = encoders.get(activation.key)
                # Schedules count model evaluations, as A1111's do (second-order samplers evaluate ~twice a step).
                conditioning = BatchConditioning(encoder, clip_prompts, all_negative[lo:hi],
                                                 len(scheduler.timesteps), use_old_scheduling=use_old_scheduling)
                extra.update(activation.infotext)
                _note(comments, activation.messages)
                denoiser = GuidedDenoiser(model, conditioning, p.cfg_scale, time_ids, neg_time_ids,
                                          image_conditioning, hooks=ctx.denoiser_hooks)
                latents, _completed = denoise(scheduler, denoiser, latents, rng.generators, ctx.progress, p.steps,
                                              seeds=seeds)
        except Interrupted:
            interrupted = True
            break
        ti_hashes = encoders.ti_hashes()
        if ti_hashes and settings.get("textual_inversion_add_hashes_to_infotext", True):
            extra["TI hashes"] = ti_hashes
        if ctx.nan_check:
            check_finite(latents, "Unet")
        decoded = decode_latents(model, latents, auto_upcast=bool(settings.get("auto_vae_precision", True)))
        for i, tensor in enumerate(decoded):
            index = lo + i
            text = create_infotext(p, ctx, prompt=all_prompts[index], negative_prompt=all_negative[index],
                                   seed=all_seeds[index], subseed=all_subseeds[index], sampler_name=sampler.name,
                                   schedule_label=schedule_label, extra=extra)
            image = to_pil(tensor)
            image.info["parameters"] = text
            path = None
            if save_samples:
                fields = _fields_for_name(p, ctx, all_seeds[index], all_prompts[index], sampler.name,
                                          job_timestamp, n)
                path = saving.save_image(image, outdir, settings=settings, fields=fields, infotext=text)
            saved.append(path)
            images.append(image)
            infotexts.append(text)
        ctx.progress.next_job(n + 1)  # the batch is complete even when skipped mid-way

    index_of_first_image = 0
    want_grid = (settings.get("return_grid", True) or settings.get("grid_save", True)) and not p.do_not_save_grid
    grid_wanted = want_grid and (len(images) > 1 or (images and not settings.get("grid_only_if_multiple", True)))
    if grid_wanted:
        rows = saving.grid_rows(len(images), p.batch_size, int(settings.get("n_rows", -1)),
                                 bool(settings.get("grid_prevent_empty_spots", False)))
        grid = saving.image_grid(images, rows)
        grid_text = create_infotext(p, ctx, prompt=prompt, negative_prompt=negative_prompt, seed=all_seeds[0],
                                    subseed=all_subseeds[0], sampler_name=sampler.name,
                                    schedule_label=schedule_label, extra=extra)
        grid.info["parameters"] = grid_text
        grid_path = None
        if settings.get("grid_save", True):
            grid_dir = saving.output_dir(settings, ctx.data_dir, saving.TXT2IMG, grid=True)
            fields = _fields_for_name(p, ctx, all_seeds[0], prompt, sampler.name, job_timestamp, 0)
            grid_path = saving.save_image(grid, grid_dir, settings=settings, fields=fields, infotext=grid_text,
                                          grid=True)
        if settings.get("return_grid", True):
            images.insert(0, grid)
            saved.insert(0, grid_path)
            infotexts.insert(0, grid_text)
            index_of_first_image = 1

    if ctx.save_params_txt and infotexts:
        try:
            from modules import fileio

            fileio.atomic_write_text(ctx.data_dir / "params.txt", infotexts[index_of_first_image], backup=False)
        except OSError as err:
            log.warning("could not write params.txt: %s", err)

    return Processed(
        images=images, infotexts=infotexts, prompt=prompt, negative_prompt=negative_prompt, seed=all_seeds[0],
        subseed=all_subseeds[0], all_prompts=all_prompts, all_negative_prompts=all_negative, all_seeds=all_seeds,
        all_subseeds=all_subseeds, params=p, sampler_name=sampler.name, schedule_label=schedule_label,
        checkpoint=ctx.checkpoint, index_of_first_image=index_of_first_image, saved_paths=saved,
        job_timestamp=job_timestamp, version=ctx.version,
        clip_skip=int(settings.get("CLIP_stop_at_last_layers", 1)), extra_generation_params=extra,
        interrupted=interrupted, comments=comments, vae_name=ctx.vae_infotext.get("VAE"),
        vae_hash=ctx.vae_infotext.get("VAE hash"))


def apply_styles(styles: Any, prompt: str, negative_prompt: str, names: list[str]) -> tuple[str, str]:
    """Prompt styles merged into the prompts before anything parses them (A1111 ``setup_prompts``)."""
    if styles is None or not names:
        return prompt, negative_prompt
    return styles.apply_styles_to_prompt(prompt, names), styles.apply_negative_styles_to_prompt(negative_prompt, names)


def _note(comments: list[str], messages: list[str]) -> None:
    for message in messages:
        if message not in comments:
            comments.append(message)


class EncoderCache:
    """One PromptEncoder per set of active extra networks: text-encoder LoRAs change what a text encodes, so
    batches with the same networks share cached conditioning and batches with others do not."""

    def __init__(self, model: Any, settings: dict[str, Any], embeddings: Any) -> None:
        self.model, self.settings, self.embeddings = model, settings, embeddings
        self._encoders: dict[Any, PromptEncoder] = {}

    def get(self, key: Any) -> PromptEncoder:
        if key not in self._encoders:
            self._encoders[key] = PromptEncoder(
                self.model, clip_skip=int(self.settings.get("CLIP_stop_at_last_layers", 1)),
                emphasis=str(self.settings.get("emphasis", "Original")),
                comma_backtrack=int(self.settings.get("comma_padding_backtrack", 20)),
                embeddings=self.embeddings.vectors() if self.embeddings is not None else None)
        return self._encoders[key]

    def ti_hashes(self) -> str | None:
        """A1111's ``TI hashes`` value for the embeddings the prompts used."""
        used = sorted({name for enc in self._encoders.values() for name in enc.used_embeddings})
        return self.embeddings.ti_hashes(used) if self.embeddings is not None and used else None


def live_preview(model: Any) -> Any:
    """A latent -> PIL function for JobProgress, matching the model's latent space."""
    return lambda latents: cheap_preview(latents, sdxl=model.is_sdxl)
