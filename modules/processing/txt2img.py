"""txt2img: sampling from noise, and the hires fix (upscale, then a second img2img pass at the larger size).

The shared job sequence (seeds, batches, infotext, saving, grid) is ``generation.run_job``; this module is the plan
for one txt2img batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from modules import samplers
from modules.errors import FieldError
from modules.processing import sampler_params, saving, upscale
from modules.processing.context import Processed, ProcessingContext
from modules.processing.generation import (LATENT_FACTOR, Batch, Job, Plan, fields_for_name, live_preview,  # noqa: F401
                                           number, run_job)
from modules.processing.hires import HiresTarget
from modules.processing.params import Txt2ImgParams
from modules.processing.sampling import add_noise, denoise, img2img_start, img2img_steps, to_pil

SAME_SAMPLER, SAME_SCHEDULER, SAME_CHECKPOINT = "Use same sampler", "Use same scheduler", "Use same checkpoint"


@torch.inference_mode()
def whole_image_conditioning(job: Job, batch: int, width: int, height: int) -> torch.Tensor | None:
    """Inpainting UNets need mask + masked-image latents; without an init image the whole image is masked (A1111:
    a mask of ones over the latents of a mid-grey image)."""
    model = job.model
    if not model.kind.inpainting:
        return None
    grey = torch.zeros(1, 3, height, width)
    latent = job.encode(grey)
    return job.family.inpainting_conditioning(torch.ones(1, 1, height, width), latent).repeat(batch, 1, 1, 1)


def pil_to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """8-bit RGB images -> (B, 3, H, W) float32 in [-1, 1]."""
    arrays = [np.asarray(im.convert("RGB"), dtype=np.float32) / 127.5 - 1.0 for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


class Txt2ImgPlan(Plan):
    kind = saving.TXT2IMG

    def __init__(self, p: Txt2ImgParams, upscalers: upscale.ModelUpscalers | None = None) -> None:
        self.p = p
        self.upscalers = upscalers
        self.hires = p.enable_hr
        self.hr_steps = p.hr_second_pass_steps or p.steps
        self.progress_steps = p.steps + (self.hr_steps if self.hires else 0)
        self._conditioning_cache: dict[tuple[int, int, int], torch.Tensor | None] = {}
        if self.hires:
            self.upscaler = upscale.check_upscaler(p.hr_upscaler, upscalers)
            self.target = HiresTarget.of(p)
            self.hr_sampler, self.hr_schedule = _hires_sampler(p)

    def width_height(self) -> tuple[int, int]:
        return self.p.width, self.p.height

    def prepare(self, job: Job) -> None:
        p = self.p
        if not self.hires:
            return
        if p.hr_resize_x == 0 and p.hr_resize_y == 0:
            job.extra["Hires upscale"] = number(p.hr_scale, job.ctx.from_api)
        else:
            job.extra["Hires resize"] = f"{p.hr_resize_x}x{p.hr_resize_y}"
        job.extra["Hires steps"] = p.hr_second_pass_steps or None
        job.extra["Hires upscaler"] = self.upscaler
        if p.hr_sampler_name not in (None, "", SAME_SAMPLER):
            job.extra["Hires sampler"] = self.hr_sampler.name
        if p.hr_scheduler not in (None, "", SAME_SCHEDULER):
            job.extra["Hires schedule type"] = self.hr_schedule.label
        if p.hr_prompt and p.hr_prompt != p.prompt:
            job.extra["Hires prompt"] = p.hr_prompt
        if p.hr_negative_prompt and p.hr_negative_prompt != p.negative_prompt:
            job.extra["Hires negative prompt"] = p.hr_negative_prompt
        identity = job.ctx.hires_checkpoint
        if job.ctx.hires_model is not None and identity is not None:
            job.extra["Hires checkpoint"] = (f"{identity.model_name} [{identity.shorthash}]" if identity.shorthash
                                             else identity.model_name)

    def _image_conditioning(self, job: Job, batch: int, width: int, height: int) -> torch.Tensor | None:
        key = (batch, width, height)
        if key not in self._conditioning_cache:  # the same for every batch of the job
            self._conditioning_cache[key] = whole_image_conditioning(job, batch, width, height)
        return self._conditioning_cache[key]

    def sample(self, job: Job, batch: Batch) -> torch.Tensor:
        p, ctx, model = self.p, job.ctx, job.model
        scheduler = job.new_scheduler()
        scheduler.set_timesteps(p.steps, device=model.device)
        latents = batch.rng.first().to(model.device, torch.float32) * scheduler.init_noise_sigma
        with job.networks(batch.prompts) as (encoder, clip_prompts):
            evaluations = len(scheduler.timesteps)
            conditioning = job.conditioning(encoder, clip_prompts, batch.negative_prompts, evaluations)
            denoiser = job.denoiser(conditioning, p.width, p.height,
                                    self._image_conditioning(job, batch.size, p.width, p.height))
            if not self.hires:  # with hires fix the refiner works on the second pass (A1111's default)
                denoiser = job.with_refiner(
                    denoiser, lambda enc: job.conditioning(enc, clip_prompts, batch.negative_prompts, evaluations),
                    evaluations, p.width, p.height)
            latents, completed = denoise(scheduler, denoiser, latents, batch.rng.generators, ctx.progress, p.steps,
                                         seeds=batch.seeds)
        if not self.hires or not completed:  # a skip skips the hires pass too, as in A1111
            return latents
        return self._hires_pass(job, batch, latents)

    def _hires_pass(self, job: Job, batch: Batch, latents: torch.Tensor) -> Any:
        p = self.p
        if job.settings.save_images_before_highres_fix and not p.do_not_save_samples:
            self._save_first_pass(job, batch, latents)
        # A hires checkpoint (same latent space) takes over from here: its text encoder, UNet and VAE.
        other = job.ctx.hires_model is not None
        hr_job = job.on_model(job.ctx.hires_model, job.ctx.hires_embeddings) if other else job
        ctx, model = hr_job.ctx, hr_job.model
        lh, lw = self.target.latent_size
        if upscale.is_latent(self.upscaler):
            latents = upscale.upscale_latents(latents, self.upscaler, lh, lw)
        else:
            resize = upscale.pixel_upscaler(self.upscaler, self.upscalers)
            images = [resize(to_pil(t), lw * LATENT_FACTOR, lh * LATENT_FACTOR) for t in job.decode(latents)]
            latents = hr_job.encode(pil_to_tensor(images))
        latents = self.target.trim(latents)
        height, width = latents.shape[2] * LATENT_FACTOR, latents.shape[3] * LATENT_FACTOR
        if p.denoising_strength == 0:
            return [to_pil(t) for t in hr_job.decode(latents)] if other else latents
        noise = job.noise_streams(batch.seeds, batch.subseeds, width, height).first().to(model.device, torch.float32)
        scheduler = hr_job.new_scheduler(self.hr_sampler, self.hr_schedule, size=(width, height))
        total, run = img2img_steps(self.hr_steps, p.denoising_strength, fix_steps=True)
        start = img2img_start(scheduler, total, run, model.device)
        x = add_noise(scheduler, latents, noise, start)
        x = hr_job.extra_noise(scheduler, latents, noise, x, start)
        hr_prompts, hr_negative = batch.prompts, batch.negative_prompts
        styles = job.ctx.styles if p.styles else None
        if p.hr_prompt:  # styles apply to a hires prompt as to the prompt
            text = styles.apply_styles_to_prompt(p.hr_prompt, p.styles) if styles is not None else p.hr_prompt
            hr_prompts = [text] * batch.size
        if p.hr_negative_prompt:
            text = (styles.apply_negative_styles_to_prompt(p.hr_negative_prompt, p.styles) if styles is not None
                    else p.hr_negative_prompt)
            hr_negative = [text] * batch.size
        with hr_job.networks(hr_prompts) as (encoder, clip_prompts):
            # A1111's hires timeline: [a:b:12] counts on from the first pass's steps, [a:b:1.5] is halfway
            # through the hires pass.
            evaluations = len(scheduler.timesteps) - start
            conditioning = hr_job.conditioning(encoder, clip_prompts, hr_negative, p.steps,
                                               hires_evaluations=evaluations)
            conditioning_image = (whole_image_conditioning(hr_job, batch.size, width, height) if other
                                  else self._image_conditioning(job, batch.size, width, height))
            denoiser = hr_job.denoiser(conditioning, width, height, conditioning_image, hires_pass=True)
            denoiser = hr_job.with_refiner(
                denoiser, lambda enc: hr_job.conditioning(enc, clip_prompts, hr_negative, p.steps,
                                                          hires_evaluations=evaluations),
                evaluations, width, height)
            x, _ = denoise(scheduler, denoiser, x, batch.rng.generators, ctx.progress, self.hr_steps,
                           seeds=batch.seeds, start=start, step_offset=p.steps)
        if other:  # decoded by the hires checkpoint's own VAE
            return [to_pil(t) for t in hr_job.decode(x)]
        return x

    def _save_first_pass(self, job: Job, batch: Batch, latents: torch.Tensor) -> None:
        outdir = saving.output_dir(job.settings, job.ctx.data_dir, self.kind, grid=False)
        for i, tensor in enumerate(job.decode(latents)):
            text = job.infotext(prompt=batch.prompts[i], negative_prompt=batch.negative_prompts[i],
                                seed=batch.seeds[i], subseed=batch.subseeds[i])
            fields = fields_for_name(job, batch.seeds[i], batch.prompts[i], job.job_timestamp, batch.number)
            saving.save_image(to_pil(tensor), outdir, settings=job.settings, fields=fields, infotext=text,
                              suffix="-before-highres-fix")


def _hires_sampler(p: Txt2ImgParams) -> tuple[Any, Any]:
    """The hires pass's sampler and schedule; "Use same ..." (or nothing) keeps the first pass's."""
    name = p.sampler_name if p.hr_sampler_name in (None, "", SAME_SAMPLER) else p.hr_sampler_name
    schedule = p.scheduler if p.hr_scheduler in (None, "", SAME_SCHEDULER) else p.hr_scheduler
    try:
        return samplers.resolve_sampler(name, schedule)
    except samplers.UnknownSamplerError as err:
        field = {"sampler_name": "hr_sampler_name", "scheduler": "hr_scheduler"}.get(err.field, err.field)
        raise samplers.UnknownSamplerError(field, err.choices, err.value) from err


def check_txt2img(p: Txt2ImgParams, current_checkpoint: str | None = None,
                  upscalers: upscale.ModelUpscalers | None = None) -> None:
    """Names and combinations refused before the job is queued (each error names its field)."""
    samplers.resolve_sampler(p.sampler_name, p.scheduler)
    sampler_params.check(p)
    if not p.enable_hr:
        return
    upscale.check_upscaler(p.hr_upscaler, upscalers)
    _hires_sampler(p)
    target = HiresTarget.of(p)
    if max(target.width, target.height) > 2 * 4096 or min(target.latent_size) < 1:
        raise FieldError("hr_scale", f"hires size {target.width}x{target.height} is out of range")


def txt2img(p: Txt2ImgParams, ctx: ProcessingContext, upscalers: upscale.ModelUpscalers | None = None) -> Processed:
    """Generate ``n_iter`` batches of ``batch_size`` images. Interrupt keeps the images already finished."""
    return run_job(p, ctx, Txt2ImgPlan(p, upscalers))
