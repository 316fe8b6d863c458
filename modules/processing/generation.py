"""One generation job, shared by txt2img and img2img: seeds, prompts and batches in A1111's order, extra networks,
conditioning, decoding, infotext, saving and the grid.

The job-specific part is a ``Plan``: how one batch's latents are sampled (txt2img from noise, optionally with a hires
pass; img2img from an encoded image, optionally masked) and what happens to each decoded image (inpainting pastes it
back over the original). Everything else is this one readable sequence:

    resolve sampler -> seeds, prompts -> for each batch (noise streams, plan.sample, decode, plan.finish_image, save)
    -> grid -> params.txt
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image

from modules import infotext as infotext_mod
from modules import samplers
from modules.processing import extra_networks, families, sampler_params, saving, seamless
from modules.processing.conditioning import PromptEncoder
from modules.processing.context import Processed, ProcessingContext
from modules.processing.job_settings import JobSettings
from modules.processing.hires import LATENT_FACTOR
from modules.processing.params import GenerationParams
from modules.processing.progress import Interrupted, interrupt_points
from modules.processing.prompt_schedule import BatchConditioning
from modules.processing.rng import ImageRNG, fix_seed
from modules.processing.sampling import GuidedDenoiser, check_finite, decode_latents, to_pil
from modules.processing.sampling import extra_noise as sampling_extra_noise

log = logging.getLogger(__name__)


def number(value: float, from_api: bool) -> float | int:
    """A1111's UI prints ``CFG scale: 7``; its API, whose model types the field as float, prints ``7.0``."""
    if not from_api and float(value).is_integer():
        return int(value)
    return value


@dataclass
class Batch:
    """One batch of a job: its images' seeds and prompts, and the noise streams they draw from."""

    number: int
    first_index: int  # index of the batch's first image among all the job's images
    seeds: list[int]
    subseeds: list[int]
    prompts: list[str]  # as written (extra-network tags kept: the infotext shows them)
    negative_prompts: list[str]
    rng: ImageRNG | None = None  # built after the scripts' batch hooks, which may change the seeds

    @property
    def size(self) -> int:
        return len(self.seeds)


@dataclass
class JobLists:
    """The per-image lists of a job, which scripts may rewrite in ``process`` (A1111's ``p.all_prompts``, ...)."""

    all_prompts: list[str]
    all_negative_prompts: list[str]
    all_seeds: list[int]
    all_subseeds: list[int]


class JobHooks:
    """Where scripts step into a job, at A1111's points; every method defaults to nothing. ``extra`` is the
    job's infotext dictionary (A1111's ``p.extra_generation_params``), which any hook may extend."""

    def process(self, job: Job, lists: JobLists) -> None:
        """After seeds and prompts are set, before the first batch (A1111 ``process``)."""

    def before_batch(self, job: Job, batch: Batch) -> None:
        """Before a batch is sampled; may change its prompts and seeds (``before_process_batch``,
        ``process_batch``)."""

    def after_batch(self, job: Job, batch: Batch, images: torch.Tensor) -> torch.Tensor:
        """The batch's decoded images as (B, 3, H, W) in [-1, 1], which may be edited (``postprocess_batch``)."""
        return images

    def image(self, job: Job, batch: Batch, index_in_batch: int, image: Image.Image) -> Image.Image:
        """One finished image, which may be replaced (``postprocess_image``)."""
        return image

    def done(self, job: Job, processed: Processed) -> None:
        """After the grid, with the job's results (``postprocess``)."""


class Plan:
    """What a job does differently. Subclasses set ``kind`` and implement ``sample``."""

    kind: saving.OutputKind = saving.TXT2IMG
    progress_steps: int = 0  # sampling steps of one batch, for the progress bar

    def width_height(self) -> tuple[int, int]:
        """Size of the initial noise (the first pass / the processed area)."""
        raise NotImplementedError

    def prepare(self, job: Job) -> None:
        """Once per job, before the first batch (encode the init image, infotext values, ...)."""

    def sample(self, job: Job, batch: Batch) -> torch.Tensor | list[Image.Image]:
        """The batch's final latents, or finished images when there is nothing to sample."""
        raise NotImplementedError

    def finish_image(self, job: Job, batch: Batch, index_in_batch: int, image: Image.Image) -> Image.Image:
        return image

    def extra_outputs(self, job: Job) -> list[tuple[Image.Image, str]]:
        """Images shown after the results (masks), with their infotext; not saved as samples."""
        return []


@dataclass
class Job:
    """The state of one running job, handed to the plan's hooks."""

    p: GenerationParams
    ctx: ProcessingContext
    sampler: Any
    schedule: Any
    schedule_label: str
    extra: dict[str, Any] = field(default_factory=dict)  # extra generation params (infotext, info.extra...)
    comments: list[str] = field(default_factory=list)
    encoders: EncoderCache | None = None
    job_timestamp: str = ""
    first_pass_size: tuple[int, int] | None = None  # (width, height) of the first pass: ControlNet maps' size

    @property
    def model(self) -> Any:
        return self.ctx.model

    def on_model(self, model: Any, embeddings: Any) -> Job:
        """The same job on another model (the hires checkpoint): its own prompt encoders; the infotext values and
        comments are shared with this job."""
        other = Job(p=self.p, ctx=dataclasses.replace(self.ctx, model=model, embeddings=embeddings),
                    sampler=self.sampler, schedule=self.schedule, schedule_label=self.schedule_label,
                    extra=self.extra, comments=self.comments, job_timestamp=self.job_timestamp,
                    first_pass_size=self.first_pass_size)
        other.encoders = EncoderCache(model, self.settings, embeddings)
        return other

    @property
    def settings(self) -> JobSettings:
        return self.ctx.settings

    @property
    def family(self) -> families.SamplingFamily:
        return families.for_model(self.model)

    @property
    def use_old_scheduling(self) -> bool:
        return self.settings.use_old_scheduling

    def new_scheduler(self, sampler: Any = None, schedule: Any = None, size: tuple[int, int] | None = None) -> Any:
        """A fresh scheduler (they are stateful) for the job's or the given sampler, for a pass of ``size``
        (width, height; the job's by default), with the job's eta and sigma churn where that sampler takes them
        (``sampler_params``)."""
        width, height = size or (self.p.width, self.p.height)
        return self.family.scheduler(self, sampler or self.sampler, schedule or self.schedule, width, height)

    def extra_noise(self, scheduler: Any, clean: torch.Tensor, noise: torch.Tensor, noised: torch.Tensor,
                    index: int) -> torch.Tensor:
        """The img2img / hires start latents with the setting ``img2img_extra_noise`` applied (A1111)."""
        amount = self.settings.img2img_extra_noise
        if amount <= 0:
            return noised
        self.extra["Extra noise"] = amount
        return sampling_extra_noise(scheduler, clean, noise, noised, index, amount, self.ctx.extra_noise_hook)

    def noise_streams(self, seeds: list[int], subseeds: list[int], width: int, height: int) -> ImageRNG:
        """Noise streams for a batch's latent of ``width`` x ``height`` pixels (a hires pass draws its own)."""
        p, s = self.p, self.settings
        return ImageRNG((self.family.latent_channels, height // LATENT_FACTOR, width // LATENT_FACTOR), seeds,
                        subseeds=subseeds, subseed_strength=p.subseed_strength,
                        seed_resize_from_h=p.seed_resize_from_h, seed_resize_from_w=p.seed_resize_from_w,
                        source=s.get("randn_source", "GPU"), device=self.model.device,
                        eta_noise_seed_delta=int(s.get("eta_noise_seed_delta", 0)))

    @contextlib.contextmanager
    def networks(self, prompts: list[str]) -> Iterator[tuple[PromptEncoder, list[str]]]:
        """Activate the extra networks of ``prompts`` (from the first, as A1111 does) for the ``with`` block; yields
        the encoder for them and the prompts without their tags."""
        clip_prompts, networks = extra_networks.strip_batch(prompts)
        others = self.ctx.extension_networks
        kinds = others.kinds() if others is not None else set()
        with extra_networks.activated(self.model, networks, self.ctx.loras, kinds) as activation, \
                (others.batch(self, networks) if kinds else contextlib.nullcontext()):
            self.extra.update(activation.infotext)
            note(self.comments, activation.messages)
            assert self.encoders is not None
            yield self.encoders.get(activation.key), clip_prompts

    def conditioning(self, encoder: PromptEncoder, prompts: list[str], negative_prompts: list[str],
                     evaluations: int, hires_evaluations: int | None = None) -> BatchConditioning:
        # Schedules count model evaluations, as A1111's do (second-order samplers evaluate ~twice a step).
        return BatchConditioning(encoder, prompts, negative_prompts, evaluations, hires_steps=hires_evaluations,
                                 use_old_scheduling=self.use_old_scheduling)

    def denoiser(self, conditioning: BatchConditioning, width: int, height: int,
                 image_conditioning: torch.Tensor | None = None, cfg_scale: float | None = None,
                 hires_pass: bool = False) -> GuidedDenoiser:
        """The pass's denoiser, with the job's ControlNet units (``hires_pass``: the hires fix's second pass)."""
        network, time_ids, neg_time_ids = self.family.network(self.model, self.p, width, height,
                                                              conditioning.batch_size, settings=self.settings,
                                                              hires_pass=hires_pass, encode=self.encode)
        control = None
        if self.ctx.control is not None and self.ctx.control.active:
            control = self.ctx.control.for_pass(self.model, width, height, hires_pass, self.encode,
                                                self.first_pass_size or (width, height))
            control = control if control.units else None  # every unit excluded from this pass
        return GuidedDenoiser(self.model, conditioning, self.p.cfg_scale if cfg_scale is None else cfg_scale,
                              time_ids, neg_time_ids, image_conditioning, hooks=self.ctx.denoiser_hooks,
                              cfg_callbacks=self.ctx.cfg_callbacks,
                              s_min_uncond=sampler_params.resolve(self.p, self.settings, self.sampler.name).s_min_uncond,
                              control=control, network=network)

    def with_refiner(self, denoiser: GuidedDenoiser, make_conditioning: Callable[[PromptEncoder], BatchConditioning],
                     evaluations: int, width: int, height: int) -> Any:
        """The pass's denoiser, handing over to the refiner checkpoint once ``refiner_switch_at`` of its
        ``evaluations`` are done (A1111's refiner: the refiner's own text encoder, time ids and UNet for the rest).
        Without a refiner, ``denoiser`` itself."""
        refiner, identity = self.ctx.refiner, self.ctx.refiner_checkpoint
        if refiner is None or identity is None:
            return denoiser
        switch_at = float(self.p.refiner_switch_at or 0.8)
        switch_step = math.ceil(evaluations * switch_at)
        if switch_step >= evaluations:
            return denoiser

        def build() -> GuidedDenoiser:
            self.extra["Refiner"] = f"{identity.model_name} [{identity.shorthash}]" if identity.shorthash \
                else identity.model_name
            self.extra["Refiner switch at"] = switch_at
            family = families.for_model(refiner)
            encoder = family.prompt_encoder(refiner, self.settings, self.ctx.refiner_embeddings)
            conditioning = make_conditioning(encoder)
            # the refiner shares the latent space (checked at load): the job's encode serves its references too
            network, time_ids, neg_time_ids = family.network(refiner, self.p, width, height, conditioning.batch_size,
                                                             settings=self.settings, encode=self.encode)
            return GuidedDenoiser(refiner, conditioning, self.p.cfg_scale, time_ids, neg_time_ids, None,
                                  hooks=self.ctx.denoiser_hooks, cfg_callbacks=self.ctx.cfg_callbacks,
                                  network=network)

        return RefinerSwitch(denoiser, build, switch_step)

    def decode(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Latents -> pixel tensors. After an interrupt these are the partly denoised latents, decoded as A1111
        returns them (``JobProgress.finishing``: only a second interrupt stops this decode)."""
        if self.ctx.nan_check:
            check_finite(latents, "Unet")
        progress = self.ctx.progress
        if progress.interrupted and self.settings.live_preview_fast_interrupt:
            fast = self._decode_with_preview(latents)
            if fast is not None:
                return fast
        with progress.finishing() if progress.interrupted else contextlib.nullcontext():
            return decode_latents(self.model, latents,
                                  auto_upcast=self.settings.auto_vae_precision,
                                  tiling=self.settings.vae_tiling)

    def _decode_with_preview(self, latents: torch.Tensor) -> list[torch.Tensor] | None:
        """A1111's ``live_preview_fast_interrupt``: an interrupted job's images drawn by the live preview method
        instead of the VAE, brought to the job's size (A1111 keeps the method's own, smaller size)."""
        height, width = latents.shape[-2] * 8, latents.shape[-1] * 8
        images = []
        for latent in latents:
            picture = self.ctx.progress.decode_with_preview(latent[None])
            if picture is None:
                return None
            if picture.size != (width, height):
                picture = picture.resize((width, height), Image.Resampling.BICUBIC)
            pixels = torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)
            images.append((pixels + 0.5) / 127.5 - 1.0)  # the centre of each 8-bit level: saved as drawn
        return images

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] (B, 3, H, W) -> scaled latents (float32), one image at a time to bound memory."""
        from modules.processing.sampling import tiling_wanted, vae_tiles

        vae = self.model.vae
        scaling = float(getattr(vae.config, "scaling_factor", 0.18215))
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        out = []
        tiled = tiling_wanted(self.settings.vae_tiling, images.shape[-1], images.shape[-2],
                              self.model.device)
        with vae_tiles(vae, tiled):
            for image in images:
                x = image[None].to(self.model.device, self.model.vae_dtype)
                latent = vae.encode(x).latent_dist.mode().float()
                out.append((latent - shift) * scaling)
        return torch.cat(out)

    def infotext(self, *, prompt: str, negative_prompt: str, seed: int, subseed: int) -> str:
        return create_infotext(self.p, self.ctx, prompt=prompt, negative_prompt=negative_prompt, seed=seed,
                               subseed=subseed, sampler_name=self.sampler.name, schedule_label=self.schedule_label,
                               extra=self.extra)


class RefinerSwitch:
    """A denoiser that is ``base`` for the first ``switch_step`` evaluations and then the refiner (built on first
    use, so a job interrupted before the switch never encodes for it). The evaluation count carries over, so
    prompt-editing schedules continue where they were."""

    def __init__(self, base: GuidedDenoiser, build: Callable[[], GuidedDenoiser], switch_step: int) -> None:
        self.base, self.build, self.switch_step = base, build, switch_step
        self.refiner: GuidedDenoiser | None = None

    def __call__(self, x: torch.Tensor, t: Any) -> torch.Tensor:
        if self.refiner is None and self.base.step >= self.switch_step:
            self.refiner = self.build()
            self.refiner.step = self.base.step
        return (self.refiner or self.base)(x, t)


def run_job(p: GenerationParams, ctx: ProcessingContext, plan: Plan) -> Processed:
    """Generate ``n_iter`` batches of ``batch_size`` images. Interrupt takes effect inside a UNet step or a VAE
    decode (``interrupt_points``); as in A1111, the batch it cuts short during sampling comes back as the images its
    last finished step predicts (saved, with infotexts), and no later batch starts. A batch interrupted before its
    first step, or during its decode, is dropped."""
    # A1111: restore_faces / tiling left unset (None) follow the settings "face_restoration" / "tiling".
    if p.restore_faces is None:
        p.restore_faces = ctx.settings.face_restoration
    if p.tiling is None:
        p.tiling = ctx.settings.tiling
    models = [ctx.model, getattr(ctx, "refiner", None), getattr(ctx, "hires_model", None)]
    parts = [part for m in models if m is not None for part in (m.unet, m.vae)]
    with interrupt_points(ctx.progress, parts), seamless.circular_padding(parts, enabled=bool(p.tiling)):
        return _run_job(p, ctx, plan)


def _run_job(p: GenerationParams, ctx: ProcessingContext, plan: Plan) -> Processed:
    settings = ctx.settings
    sampler, schedule = samplers.resolve_sampler(p.sampler_name, p.scheduler)
    family = families.for_model(ctx.model)
    family.check(p, sampler, schedule, ctx.settings)
    job = Job(p=p, ctx=ctx, sampler=sampler, schedule=schedule,
              schedule_label=samplers.effective_schedule_label(sampler, schedule), comments=list(ctx.comments))
    if family.name != "sd" and job.schedule_label == "Automatic":
        job.schedule_label = "Simple"  # the flow schedule Automatic means (Forge prints it)
    count = p.n_iter * p.batch_size
    seed, subseed = fix_seed(p.seed), fix_seed(p.subseed)
    # A1111: with a variation strength every image keeps the seed and the variation seeds advance instead.
    all_seeds = [seed + (i if p.subseed_strength == 0 else 0) for i in range(count)]
    all_subseeds = [subseed + i for i in range(count)]
    prompt, negative_prompt = apply_styles(ctx.styles, p.prompt, p.negative_prompt, p.styles)
    all_prompts = [prompt] * count
    all_negative = [negative_prompt] * count
    job_timestamp = job.job_timestamp = datetime.now().strftime("%Y%m%d%H%M%S")
    job.encoders = EncoderCache(ctx.model, settings, ctx.embeddings)
    outdir = saving.output_dir(settings, ctx.data_dir, plan.kind, grid=False)
    save_samples = settings.samples_save and not p.do_not_save_samples
    emphasis = settings.emphasis
    if emphasis != "Original" and any(c in prompt + negative_prompt for c in "(["):
        job.extra["Emphasis"] = emphasis
    if job.use_old_scheduling:
        job.extra["Old prompt editing timelines"] = True
    job.extra.update(sampler_params.resolve(p, settings, sampler.name).infotext)  # Eta, Sigma churn, NGMS...
    job.extra.update(p.extra_generation_params)
    hooks = ctx.job_hooks or JobHooks()
    lists = JobLists(all_prompts, all_negative, all_seeds, all_subseeds)
    hooks.process(job, lists)
    count = p.n_iter * p.batch_size  # a script's process() may set the batch count (A1111 reads p.n_iter after it)
    all_prompts, all_negative, all_seeds, all_subseeds = _fitted(lists, count)
    images, infotexts, saved = [], [], []
    interrupted = False
    try:
        plan.prepare(job)
    except Interrupted:  # inside the init image's encode: no image at all
        interrupted = True
    ctx.progress.begin(job_count=p.n_iter, steps=plan.progress_steps or p.steps)
    width, height = plan.width_height()
    job.first_pass_size = (width, height)
    if ctx.control is not None:
        job.extra.update(ctx.control.infotext())
    for n in range(0 if interrupted else p.n_iter):
        if ctx.progress.interrupted:
            interrupted = True
            break
        ctx.progress.next_job(n, steps=plan.progress_steps or p.steps)
        lo, hi = n * p.batch_size, (n + 1) * p.batch_size
        seeds, subseeds = all_seeds[lo:hi], all_subseeds[lo:hi]
        batch = Batch(number=n, first_index=lo, seeds=seeds, subseeds=subseeds, prompts=all_prompts[lo:hi],
                      negative_prompts=all_negative[lo:hi])
        hooks.before_batch(job, batch)
        all_prompts[lo:hi], all_negative[lo:hi] = batch.prompts, batch.negative_prompts
        all_seeds[lo:hi], all_subseeds[lo:hi] = batch.seeds, batch.subseeds
        batch.rng = job.noise_streams(batch.seeds, batch.subseeds, width, height)
        try:
            result = plan.sample(job, batch)
            tensors = job.decode(result) if isinstance(result, torch.Tensor) else None
        except Interrupted:  # mid-step or mid-decode: this batch is unfinished and never saved
            interrupted = True
            break
        ti_hashes = job.encoders.ti_hashes()
        if ti_hashes and settings.textual_inversion_add_hashes_to_infotext:
            job.extra["TI hashes"] = ti_hashes
        if tensors is not None:
            if ctx.job_hooks is not None:
                tensors = list(hooks.after_batch(job, batch, torch.stack(tensors)))
            decoded = [to_pil(t) for t in tensors]
        else:
            decoded = result
        for i, image in enumerate(decoded):
            index = lo + i
            if p.restore_faces:
                image = restore_faces(job, batch, i, image, outdir if save_samples else None)
            image = hooks.image(job, batch, i, image)
            image = plan.finish_image(job, batch, i, image)
            text = job.infotext(prompt=all_prompts[index], negative_prompt=all_negative[index],
                                seed=all_seeds[index], subseed=all_subseeds[index])
            image.info["parameters"] = text
            path = None
            if save_samples:
                fields = fields_for_name(job, all_seeds[index], all_prompts[index], job_timestamp, n)
                path = saving.save_image(image, outdir, settings=settings, fields=fields, infotext=text,
                                         hooks=ctx.save_hooks, p=p)
            saved.append(path)
            images.append(image)
            infotexts.append(text)
        ctx.progress.next_job(n + 1)  # the batch is complete even when skipped mid-way

    interrupted = interrupted or ctx.progress.interrupted  # a batch cut short still came back (its prediction)
    index_of_first_image = 0
    want_grid = (settings.return_grid or settings.grid_save) and not p.do_not_save_grid
    grid_wanted = want_grid and (len(images) > 1 or (images and not settings.grid_only_if_multiple))
    if grid_wanted:
        rows = saving.grid_rows(len(images), p.batch_size, settings.n_rows,
                                 settings.grid_prevent_empty_spots)
        grid = saving.image_grid(images, rows, hook=ctx.grid_hook)
        grid_text = job.infotext(prompt=prompt, negative_prompt=negative_prompt, seed=all_seeds[0],
                                 subseed=all_subseeds[0])
        grid.info["parameters"] = grid_text
        grid_path = None
        if settings.grid_save:
            grid_dir = saving.output_dir(settings, ctx.data_dir, plan.kind, grid=True)
            fields = fields_for_name(job, all_seeds[0], prompt, job_timestamp, 0)
            grid_path = saving.save_image(grid, grid_dir, settings=settings, fields=fields, infotext=grid_text,
                                          grid=True, hooks=ctx.save_hooks, p=p)
        if settings.return_grid:
            images.insert(0, grid)
            saved.insert(0, grid_path)
            infotexts.insert(0, grid_text)
            index_of_first_image = 1
    for image, text in plan.extra_outputs(job) if images else []:
        images.append(image)
        saved.append(None)
        infotexts.append(text)
    if ctx.control is not None and images and not settings.get("control_net_no_detectmap", False):
        for shown in ctx.control.shown_maps():  # ControlNet's detected maps, after the results (not saved)
            images.append(Image.fromarray(shown))
            saved.append(None)
            infotexts.append("")

    if ctx.save_params_txt and infotexts:
        try:
            from modules import fileio

            fileio.atomic_write_text(ctx.data_dir / "params.txt", infotexts[index_of_first_image], backup=False)
        except OSError as err:
            log.warning("could not write params.txt: %s", err)

    processed = Processed(
        images=images, infotexts=infotexts, prompt=prompt, negative_prompt=negative_prompt, seed=all_seeds[0],
        subseed=all_subseeds[0], all_prompts=all_prompts, all_negative_prompts=all_negative, all_seeds=all_seeds,
        all_subseeds=all_subseeds, params=p, sampler_name=sampler.name, schedule_label=job.schedule_label,
        checkpoint=ctx.checkpoint, index_of_first_image=index_of_first_image, saved_paths=saved,
        job_timestamp=job_timestamp, version=ctx.version,
        clip_skip=settings.CLIP_stop_at_last_layers, extra_generation_params=job.extra,
        interrupted=interrupted, comments=job.comments, vae_name=ctx.vae_infotext.get("VAE"),
        vae_hash=ctx.vae_infotext.get("VAE hash"),
        is_using_inpainting_conditioning=bool(ctx.model.kind.inpainting))
    hooks.done(job, processed)
    return processed


def restore_faces(job: Job, batch: Batch, index_in_batch: int, image: Image.Image,
                  outdir: Path | None) -> Image.Image:
    """A1111's "Restore faces" on one finished image, before the scripts see it: the restorer of the setting
    ``face_restoration_model`` (CodeFormer with fidelity ``code_former_weight``, or GFPGAN) at full visibility.
    Without its weights the image is kept as it is and the job says, once, what was skipped and which file goes
    where; the infotext names the restorer only when it ran."""
    restorers, settings = job.ctx.face_restorers, job.settings
    name = settings.face_restoration_model or "CodeFormer"
    known = [r.name for r in restorers.items] if restorers is not None else []
    if name not in known:
        reason = (f"unknown face restorer {name!r} (setting face_restoration_model; choose one of "
                  f"{', '.join(known)})" if known else "no face restorers are set up in this server")
    else:
        reason = restorers.get(name).unavailable_reason()
    if reason is not None:
        note(job.comments, [f"Face restoration was skipped: {reason}"])
        return image
    if outdir is not None and settings.save_images_before_face_restoration:
        text = job.infotext(prompt=batch.prompts[index_in_batch], negative_prompt=batch.negative_prompts[index_in_batch],
                            seed=batch.seeds[index_in_batch], subseed=batch.subseeds[index_in_batch])
        fields = fields_for_name(job, batch.seeds[index_in_batch], batch.prompts[index_in_batch], job.job_timestamp,
                                 batch.number)
        saving.save_image(image, outdir, settings=settings, fields=fields, infotext=text,
                          suffix="-before-face-restoration")
    restored = restorers.apply(name, image, 1.0, settings.code_former_weight)
    job.extra["Face restoration"] = name
    return restored


def _fitted(lists: JobLists, count: int) -> tuple[list[str], list[str], list[int], list[int]]:
    """The lists a script left, checked: one entry per image (a script that shortens them would otherwise fail
    deep inside sampling)."""
    out = []
    for name in ("all_prompts", "all_negative_prompts", "all_seeds", "all_subseeds"):
        values = list(getattr(lists, name))
        if len(values) < count:
            raise ValueError(f"a script left {name} with {len(values)} entries for {count} images")
        out.append(values[:count])
    return out[0], out[1], [int(v) for v in out[2]], [int(v) for v in out[3]]


def create_infotext(p: GenerationParams, ctx: ProcessingContext, *, prompt: str, negative_prompt: str, seed: int,
                    subseed: int, sampler_name: str, schedule_label: str, extra: dict[str, Any]) -> str:
    """The ``parameters`` text, keys in A1111's fixed order; None values are left out."""
    s = ctx.settings
    clip_skip = int(s.get("CLIP_stop_at_last_layers", 1))
    ensd = int(s.get("eta_noise_seed_delta", 0))
    spec = samplers.find_sampler(sampler_name)  # A1111 prints ENSD only for samplers whose noise it shifts
    ensd_sampler = spec is not None and samplers.uses_ensd(spec, getattr(p, "eta", None))
    rng_source = s.get("randn_source", "GPU")
    denoising = getattr(p, "denoising_strength", None)
    hires = bool(getattr(p, "enable_hr", False))
    is_img2img = hasattr(p, "init_images")
    base = {
        "Steps": p.steps,
        "Sampler": sampler_name,
        "Schedule type": schedule_label,
        "CFG scale": number(p.cfg_scale, ctx.from_api),
        "Seed": seed,
        "Face restoration": None,  # the restorer's name in ``extra`` once it ran (see restore_faces)
        "Size": f"{p.width}x{p.height}",
        "Model hash": ctx.checkpoint.shorthash if s.get("add_model_hash_to_info", True) else None,
        "Model": ctx.checkpoint.model_name if s.get("add_model_name_to_info", True) else None,
        "VAE hash": ctx.vae_infotext.get("VAE hash") if s.get("add_vae_hash_to_info", True) else None,
        "VAE": ctx.vae_infotext.get("VAE") if s.get("add_vae_name_to_info", True) else None,
        "Variation seed": subseed if p.subseed_strength > 0 else None,
        "Variation seed strength": number(p.subseed_strength, ctx.from_api) if p.subseed_strength > 0 else None,
        "Seed resize from": (f"{p.seed_resize_from_w}x{p.seed_resize_from_h}"
                             if p.seed_resize_from_w > 0 and p.seed_resize_from_h > 0 else None),
        # txt2img prints it only with hires fix (where it is the second pass's), img2img always
        "Denoising strength": number(denoising, ctx.from_api) if denoising is not None and (hires or is_img2img)
        else None,
        "Conditional mask weight": (s.get("inpainting_mask_weight", 1.0)
                                    if is_img2img and ctx.model.kind.inpainting else None),
        "Clip skip": clip_skip if clip_skip > 1 else None,
        "ENSD": ensd if ensd != 0 and ensd_sampler else None,
        "RNG": rng_source if rng_source != "GPU" else None,
        "Tiling": "True" if p.tiling else None,
        "Version": ctx.version if s.get("add_version_to_infotext", True) else None,
        **families.for_model(ctx.model).infotext(p, ctx.model, ctx.from_api),  # Flux: Distilled CFG Scale
    }
    return infotext_mod.build_infotext(prompt, negative_prompt, infotext_mod.ordered_params(base, extra))


def fields_for_name(job: Job, seed: int, prompt: str, job_timestamp: str, batch_number: int) -> dict[str, Any]:
    p, ctx = job.p, job.ctx
    return {
        "seed": seed, "prompt": prompt, "negative_prompt": p.negative_prompt, "steps": p.steps, "cfg": p.cfg_scale,
        "width": p.width, "height": p.height, "sampler": job.sampler.name, "model_name": ctx.checkpoint.model_name,
        "model_hash": ctx.checkpoint.shorthash or "", "job_timestamp": job_timestamp, "batch_number": batch_number,
        "styles": p.styles, "date": datetime.now(),
        "prompt_words_limit": ctx.settings.directories_max_prompt_words,
    }


def apply_styles(styles: Any, prompt: str, negative_prompt: str, names: list[str]) -> tuple[str, str]:
    """Prompt styles merged into the prompts before anything parses them (A1111 ``setup_prompts``)."""
    if styles is None or not names:
        return prompt, negative_prompt
    return styles.apply_styles_to_prompt(prompt, names), styles.apply_negative_styles_to_prompt(negative_prompt, names)


def note(comments: list[str], messages: list[str]) -> None:
    for message in messages:
        if message not in comments:
            comments.append(message)


class EncoderCache:
    """One PromptEncoder per set of active extra networks: text-encoder LoRAs change what a text encodes, so
    batches with the same networks share cached conditioning and batches with others do not."""

    def __init__(self, model: Any, settings: JobSettings, embeddings: Any) -> None:
        self.model, self.settings, self.embeddings = model, settings, embeddings
        self._encoders: dict[Any, PromptEncoder] = {}

    def get(self, key: Any) -> PromptEncoder:
        if key not in self._encoders:
            self._encoders[key] = families.for_model(self.model).prompt_encoder(self.model, self.settings,
                                                                                self.embeddings)
        return self._encoders[key]

    def ti_hashes(self) -> str | None:
        """A1111's ``TI hashes`` value for the embeddings the prompts used."""
        used = sorted({name for enc in self._encoders.values() for name in enc.used_embeddings})
        return self.embeddings.ti_hashes(used) if self.embeddings is not None and used else None


def live_preview(model: Any, settings: Any = None, approx_dir: Path | None = None, networks: Any = None) -> Any:
    """The job's live preview (``live_preview.Preview``): the ``show_progress_type`` method of ``settings`` for
    the model's latent space (the family's Approx cheap without settings); ``networks``: the runtime's
    ``live_preview.PreviewNetworks``."""
    from modules.processing import live_preview as previews

    cheap = families.for_model(model).preview(model)
    if settings is None:
        return previews.Preview(previews.APPROX_CHEAP, cheap)
    return previews.choose(model, settings.show_progress_type, approx_dir, cheap,
                           allow_lowvram_full=settings.live_preview_allow_lowvram_full, networks=networks)
