"""A1111's ``modules.processing`` surface for extension scripts: ``StableDiffusionProcessingTxt2Img`` /
``StableDiffusionProcessingImg2Img`` (the ``p`` every script hook receives), ``process_images(p)`` and ``Processed``.

``p`` is a plain attribute bag with A1111's names. ``process_images(p)`` turns it into our typed parameters
(validated like any request), runs the job through the same plan as the UI and API, and calls the scripts' hooks at
A1111's points through ``ScriptBridge``:

    setup, before_process -> seeds, prompts -> process -> per batch: before_process_batch, process_batch, sample,
    postprocess_batch, per image: postprocess_image -> grid -> postprocess

What a hook may change, and when it takes effect: any field before ``process`` (in ``setup``/``before_process``);
``all_prompts``/``all_seeds``/..., ``n_iter``/``batch_size`` and ``extra_generation_params`` in ``process``; a
batch's ``prompts``/``seeds`` in ``process_batch``; images in ``postprocess_batch``/``postprocess_image``.
``p.override_settings`` (checkpoint, VAE, clip skip, ...) reconfigures the job's context before it runs.

``process_images`` only works inside a running generation job (a script's ``run`` or a hook): that is where the
loaded model and the settings snapshot are. Pure processing module: no gradio, no web framework.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from pydantic import ValidationError

from modules.errors import FieldError
from modules.processing import context as _context
from modules.processing.context import ProcessingContext
from modules.processing.params import GenerationParams, Img2ImgParams, Txt2ImgParams

if TYPE_CHECKING:  # generation imports torch; extensions import this module at startup, before any model
    from modules.processing.generation import Batch, Job, JobLists

log = logging.getLogger(__name__)

Process = Callable[[Any, ProcessingContext], "_context.Processed"]


@dataclass
class _Run:
    ctx: ProcessingContext
    process: Process  # txt2img or img2img (with its upscalers bound)


_active = threading.local()


@contextlib.contextmanager
def running(ctx: ProcessingContext, process: Process) -> Iterator[None]:
    """Make ``process_images`` available to scripts for the ``with`` block (one generation job's thread)."""
    previous = getattr(_active, "run", None)
    _active.run = _Run(ctx, process)
    try:
        yield
    finally:
        _active.run = previous


def active_context() -> ProcessingContext | None:
    run = getattr(_active, "run", None)
    return run.ctx if run is not None else None


_A1111_EXTRAS: dict[str, Any] = {
    # attributes A1111's StableDiffusionProcessing has besides the request fields; scripts read and set them
    "sd_model": None, "outpath_samples": None, "outpath_grids": None, "eta": None, "sampler_index": None,
    "scripts": None, "script_args": (), "all_prompts": None, "all_negative_prompts": None, "all_seeds": None,
    "all_subseeds": None, "prompts": None, "negative_prompts": None, "seeds": None, "subseeds": None,
    "iteration": 0, "batch_index": 0, "is_api": False, "user": None, "disable_extra_networks": False,
    "comments": None, "s_min_uncond": None, "s_churn": None, "s_tmax": None, "s_tmin": None, "s_noise": None,
    "ddim_discretize": None, "do_not_reload_embeddings": False, "paste_to": None, "color_corrections": None,
    "overlay_images": None, "seed_enable_extras": True, "image_mask": None, "latent_mask": None,
    "job_timestamp": "", "scripts_setup_complete": False,
    # set by A1111 in __post_init__ / setup; extensions read or reset them (adetailer: cached_c, cached_uc)
    "main_prompt": None, "main_negative_prompt": None, "cached_c": [None, None], "cached_uc": [None, None],
    "sampler": None, "c": None, "uc": None, "rng": None, "step_multiplier": 1, "truncate_x": 0, "truncate_y": 0,
    "modified_noise": None, "token_merging_ratio": 0, "token_merging_ratio_hr": 0, "is_hr_pass": False,
    "extra_network_data": {}, "extra_result_images": [], "latents_after_sampling": [],
    "pixels_after_sampling": [], "refiner_checkpoint_info": None, "script_args_value": (),
    "n_iter_per_batch": None, "mask_for_overlay": None, "init_latent": None, "image_conditioning": None,
    "nmask": None, "inpainting_mask_weight": None, "sampler_noise_scheduler_override": None,
    "sd_model_name": None, "sd_model_hash": None, "sd_vae_name": None, "sd_vae_hash": None,
}


class StableDiffusionProcessing:
    """A1111's ``p``: every request field as an attribute, plus the lists scripts rewrite."""

    params_class: type[GenerationParams] = GenerationParams

    def __init__(self, **kwargs: Any) -> None:
        for name, info in self.params_class.model_fields.items():
            setattr(self, name, info.get_default(call_default_factory=True))
        for name, value in _A1111_EXTRAS.items():
            setattr(self, name, copy.copy(value))
        self.comments = {}
        for name, value in kwargs.items():
            setattr(self, name, value)
        if self.sampler_name is None and isinstance(self.sampler_index, str):
            self.sampler_name = self.sampler_index

    @classmethod
    def from_params(cls, params: GenerationParams, **extra: Any) -> StableDiffusionProcessing:
        values = {name: getattr(params, name) for name in type(params).model_fields}
        values["extra_generation_params"] = dict(params.extra_generation_params)
        return cls(**values, **extra)

    def to_params(self) -> GenerationParams:
        """The typed, validated parameters; a script that set a value out of range is a 422 naming the field."""
        values = {name: getattr(self, name) for name in self.params_class.model_fields if hasattr(self, name)}
        for name in ("prompt", "negative_prompt", "seed", "subseed"):
            if isinstance(values.get(name), list):  # A1111 allows one per image; the first is the job's
                values[name] = values[name][0] if values[name] else ("" if "prompt" in name else -1)
        try:
            return self.params_class(**values)
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(part) for part in first.get("loc", ())) or "p"
            raise FieldError(field, f"a script set {field} to an invalid value: {first.get('msg')}") from err

    # A1111 methods scripts call.
    def close(self) -> None:
        """Nothing to release: models and caches belong to the model manager."""

    def setup_scripts(self) -> None:
        self.scripts_setup_complete = True
        if self.scripts is not None:
            self.scripts.setup_scrips(self, is_ui=not self.is_api)

    def fill_fields_from_opts(self) -> None:
        """A1111 reads sampler options from settings here; our sampler reads them from the job's settings."""

    def get_token_merging_ratio(self, for_hr: bool = False) -> float:
        return 0.0  # token merging is not used here

    def setup_prompts(self) -> None:
        """A1111's ``setup_prompts``: one prompt per image, styles applied; ``main_prompt`` is the first."""
        count = int(self.n_iter) * int(self.batch_size)
        styles = _styles()

        def each(value: Any, apply: str) -> list[str]:
            values = list(value) if isinstance(value, list) else [value] * count
            if styles is not None and self.styles:
                values = [getattr(styles, apply)(v, self.styles) for v in values]
            return values

        self.all_prompts = each(self.prompt, "apply_styles_to_prompt")
        self.all_negative_prompts = each(self.negative_prompt, "apply_negative_styles_to_prompt")
        self.main_prompt, self.main_negative_prompt = self.all_prompts[0], self.all_negative_prompts[0]


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    params_class = Txt2ImgParams


class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    """A1111's img2img ``p``: every keyword A1111 takes (``init_images``, ``mask``, ``mask_blur``,
    ``inpainting_fill``, ``inpaint_full_res``, ``inpaint_full_res_padding``, ``inpainting_mask_invert``,
    ``initial_noise_multiplier``, ``resize_mode``, ``denoising_strength``, ...). The mask given is kept as
    ``image_mask`` and ``mask`` becomes None, as A1111's ``__post_init__`` does; ``image_mask`` is what runs."""

    params_class = Img2ImgParams

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if "image_mask" not in kwargs:
            self.image_mask, self.mask = self.mask, None

    def to_params(self) -> GenerationParams:
        mask = self.image_mask if self.image_mask is not None else self.mask
        saved, self.mask = self.mask, mask
        try:
            return super().to_params()
        finally:
            self.mask = saved


def process_images(p: StableDiffusionProcessing) -> _context.Processed:
    """Run ``p`` now, in the current job, with its scripts' hooks; returns A1111's ``Processed``. The scripts'
    ``before_process`` runs first, then ``p.override_settings`` reconfigure the job (checkpoint, VAE, ...) for
    this run only, as A1111 restores them afterwards."""
    run = _current_run()
    if p.scripts is not None:
        if not p.scripts_setup_complete:
            p.setup_scripts()
        p.scripts.before_process(p)
    p.to_params()  # a script's invalid value is a 422 naming the field before anything is reconfigured
    ctx = run.ctx
    overrides = {k: v for k, v in (p.override_settings or {}).items() if ctx.settings.get(k) != v}
    if overrides:
        if ctx.reconfigure is None:
            raise FieldError("override_settings", "this job cannot change settings while it runs")
        ctx = ctx.reconfigure(overrides)
    return _process(p, ctx)


def process_images_inner(p: StableDiffusionProcessing) -> _context.Processed:
    """A1111's ``process_images_inner``: ``process_images`` without ``before_process`` and without applying
    ``p.override_settings`` (the caller has set up the job as it wants it)."""
    return _process(p, _current_run().ctx)


def _current_run() -> _Run:
    run = getattr(_active, "run", None)
    if run is None:
        raise RuntimeError("process_images(p) runs only inside a generation job (a script's run() or a hook)")
    return run


def _process(p: StableDiffusionProcessing, ctx: ProcessingContext) -> _context.Processed:
    params = p.to_params()
    run = _current_run()
    ctx = copy.copy(ctx)
    ctx.job_hooks = ScriptBridge(p)
    process = _process_for(p, run)
    with running(ctx, run.process):
        processed = process(params, ctx)
    return processed_view(processed)


def _process_for(p: StableDiffusionProcessing, run: _Run) -> Process:
    """What runs ``p``: img2img for an img2img ``p``, txt2img for a txt2img one (with the app's upscalers for the
    hires fix), whatever tab the job itself came from."""
    if isinstance(p, StableDiffusionProcessingImg2Img):
        from modules.processing.img2img import img2img

        return img2img
    if isinstance(p, StableDiffusionProcessingTxt2Img):
        from modules import shared
        from modules.processing.txt2img import txt2img

        upscalers = getattr(shared.runtime, "upscalers", None)
        return lambda params, ctx: txt2img(params, ctx, upscalers)
    return run.process


class _A1111Processed:
    """The ``Processed`` members A1111 has besides ours, read from the parameters the job ran with."""

    params: Any
    checkpoint: Any
    vae_name: Any
    vae_hash: Any
    extra_generation_params: dict[str, Any]

    def infotext(self, p: Any, index: int) -> str:
        """A1111's ``processed.infotext(p, index)``: the parameters text of image ``index`` of this run (counted
        from the first generated image, as A1111 counts it; a grid before it is skipped)."""
        texts = getattr(self, "infotexts", None) or []
        position = index + int(getattr(self, "index_of_first_image", 0) or 0)
        if 0 <= position < len(texts):
            return texts[position]
        return create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, index=index)

    @property
    def restore_faces(self) -> bool:
        return bool(self.params.restore_faces)

    @property
    def face_restoration_model(self) -> str | None:
        return self.extra_generation_params.get("Face restoration")

    @property
    def sd_model_name(self) -> str | None:
        return self.checkpoint.model_name if self.checkpoint is not None else None

    @property
    def sd_model_hash(self) -> str | None:
        return self.checkpoint.shorthash if self.checkpoint is not None else None

    @property
    def sd_vae_name(self) -> str | None:
        return self.vae_name

    @property
    def sd_vae_hash(self) -> str | None:
        return self.vae_hash

    @property
    def seed_resize_from_w(self) -> int:
        return self.params.seed_resize_from_w

    @property
    def seed_resize_from_h(self) -> int:
        return self.params.seed_resize_from_h

    @property
    def subseed_strength(self) -> float:
        return self.params.subseed_strength

    @property
    def denoising_strength(self) -> float | None:
        return getattr(self.params, "denoising_strength", None)

    @property
    def image_cfg_scale(self) -> float | None:
        return getattr(self.params, "image_cfg_scale", None)

    @property
    def token_merging_ratio(self) -> float:
        return 0.0

    @property
    def token_merging_ratio_hr(self) -> float:
        return 0.0

    @property
    def extra_images(self) -> list[Any]:
        return []


class _ProcessedView(_A1111Processed, _context.Processed):
    """What ``process_images`` returns: the job's ``Processed`` (same lists) with A1111's extra members."""


def processed_view(processed: _context.Processed) -> _context.Processed:
    if isinstance(processed, _A1111Processed) or not isinstance(processed, _context.Processed):
        return processed
    view = object.__new__(_ProcessedView)
    view.__dict__.update(processed.__dict__)
    return view


class _AnyProcessed(type):
    def __instancecheck__(cls, obj: Any) -> bool:  # what process_images returns is a Processed too
        return isinstance(obj, _context.Processed)


class Processed(_A1111Processed, _context.Processed, metaclass=_AnyProcessed):
    """A1111's ``Processed(p, images_list, seed, info, ...)`` constructor, for scripts whose ``run`` returns
    images of their own (a grid, several jobs' results); everything else is taken from ``p``."""

    def __init__(self, p: StableDiffusionProcessing, images_list: list[Any], seed: int = -1, info: str = "",
                 subseed: int | None = None, all_prompts: list[str] | None = None,
                 all_negative_prompts: list[str] | None = None, all_seeds: list[int] | None = None,
                 all_subseeds: list[int] | None = None, index_of_first_image: int = 0,
                 infotexts: list[str] | None = None, comments: str = "", extra_images_list: Any = None) -> None:
        ctx = active_context()
        if ctx is None:
            raise RuntimeError("Processed(p, ...) is built inside a generation job")
        from modules import samplers

        params = p.to_params()
        sampler, schedule = samplers.resolve_sampler(params.sampler_name, params.scheduler)
        seed = int(p.seed if seed in (-1, None) else seed)
        prompt = p.prompt if isinstance(p.prompt, str) else (p.prompt or [""])[0]
        super().__init__(
            images=list(images_list), infotexts=list(infotexts or [info] * len(images_list)), prompt=prompt,
            negative_prompt=params.negative_prompt, seed=seed, subseed=int(subseed if subseed is not None
                                                                           else p.subseed),
            all_prompts=list(all_prompts or p.all_prompts or [prompt]),
            all_negative_prompts=list(all_negative_prompts or p.all_negative_prompts or [params.negative_prompt]),
            all_seeds=list(all_seeds or p.all_seeds or [seed]), all_subseeds=list(all_subseeds or p.all_subseeds
                                                                                  or [seed]),
            params=params, sampler_name=sampler.name,
            schedule_label=samplers.effective_schedule_label(sampler, schedule), checkpoint=ctx.checkpoint,
            index_of_first_image=index_of_first_image, saved_paths=[None] * len(images_list),
            job_timestamp=p.job_timestamp, version=ctx.version,
            clip_skip=ctx.settings.CLIP_stop_at_last_layers,
            extra_generation_params=dict(p.extra_generation_params),
            comments=[comments] if comments else [])


class PostprocessImageArgs:
    """A1111's ``scripts.PostprocessImageArgs``: ``postprocess_image`` may replace ``pp.image``."""

    def __init__(self, image: Any) -> None:
        self.image = image


class PostprocessBatchListArgs:
    """A1111's ``scripts.PostprocessBatchListArgs``: ``postprocess_batch_list`` may replace ``pp.images``."""

    def __init__(self, images: list[Any]) -> None:
        self.images = images


class ScriptBridge:
    """``generation.JobHooks`` for scripts: calls ``p.scripts`` (a ``modules.scripts.ScriptRunner``) at the job's
    hook points, copying the job's lists into ``p`` before each hook and what the hook changed back into the
    job."""

    def __init__(self, p: StableDiffusionProcessing) -> None:
        self.p = p

    def _extra(self, job: Job) -> None:
        job.extra.update(self.p.extra_generation_params)

    def process(self, job: Job, lists: JobLists) -> None:
        p = self.p
        p._running_job = job  # create_infotext(p, ...) prints what the job adds (Lora hashes, TI hashes, ...)
        for name, target in (("prompt", "all_prompts"), ("negative_prompt", "all_negative_prompts"),
                             ("seed", "all_seeds"), ("subseed", "all_subseeds")):
            value = getattr(p, name)
            if isinstance(value, list):  # one per image (Prompt matrix), as A1111 accepts
                if len(value) < len(getattr(lists, target)):
                    raise FieldError(name, f"{len(value)} values for {len(getattr(lists, target))} images")
                values = list(value[:len(getattr(lists, target))])
                if name in ("seed", "subseed"):
                    values = [get_fixed_seed(v) for v in values]
                setattr(lists, target, values)
        if p.scripts is None:
            return
        p.all_prompts, p.all_negative_prompts = lists.all_prompts, lists.all_negative_prompts
        p.all_seeds, p.all_subseeds = lists.all_seeds, lists.all_subseeds
        p.seed, p.subseed = lists.all_seeds[0], lists.all_subseeds[0]
        p.job_timestamp = job.job_timestamp
        from modules import sd_models

        p.sd_model = sd_models.annotate(job.model)
        if job.ctx.checkpoint is not None:
            p.sd_model_name, p.sd_model_hash = job.ctx.checkpoint.model_name, job.ctx.checkpoint.shorthash
        p.sd_vae_name, p.sd_vae_hash = job.ctx.vae_infotext.get("VAE"), job.ctx.vae_infotext.get("VAE hash")
        p.scripts.process(p)
        lists.all_prompts, lists.all_negative_prompts = p.all_prompts, p.all_negative_prompts
        lists.all_seeds, lists.all_subseeds = p.all_seeds, p.all_subseeds
        self._batches(job)
        self._extra(job)

    def _batches(self, job: Job) -> None:
        """A ``process`` hook may change ``p.n_iter``/``p.batch_size`` (dynamic prompts runs one batch per prompt
        combination): the job runs that many, validated as a request's and within the server's budget."""
        p = self.p
        wanted = (p.n_iter, p.batch_size)
        if wanted == (job.p.n_iter, job.p.batch_size):
            return
        try:
            job.p.n_iter, job.p.batch_size = int(wanted[0]), int(wanted[1])
        except (TypeError, ValueError, ValidationError) as err:
            raise FieldError("n_iter", f"a script set n_iter={wanted[0]!r}, batch_size={wanted[1]!r}: {err}") from err
        from modules.processing.params import check_budget

        check_budget(job.p, job.ctx.settings.max_job_megapixel_steps)
        if job.ctx.check_budget is not None:
            job.ctx.check_budget(job.p, 1)

    def before_batch(self, job: Job, batch: Batch) -> None:
        p = self.p
        if p.scripts is None:
            return
        p.iteration = batch.number
        p.prompts, p.negative_prompts = list(batch.prompts), list(batch.negative_prompts)
        p.seeds, p.subseeds = list(batch.seeds), list(batch.subseeds)
        keywords = dict(batch_number=batch.number, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
        p.scripts.before_process_batch(p, **keywords)
        p.scripts.process_batch(p, **keywords)
        for name in ("prompts", "negative_prompts", "seeds", "subseeds"):
            value = list(getattr(p, name))
            if len(value) != batch.size:
                raise ValueError(f"a script left p.{name} with {len(value)} entries for a batch of {batch.size}")
            setattr(batch, name, value)
        self._extra(job)

    def after_batch(self, job: Job, batch: Batch, images: Any) -> Any:
        import torch

        if self.p.scripts is None:
            return images

        unit = torch.clamp((images + 1.0) / 2.0, 0.0, 1.0)  # A1111 hands scripts [0, 1]
        self.p.scripts.postprocess_batch(self.p, unit, batch_number=batch.number)
        listed = PostprocessBatchListArgs(list(unit))
        self.p.scripts.postprocess_batch_list(self.p, listed, batch_number=batch.number)
        self._extra(job)
        if len(listed.images) != batch.size:
            raise ValueError("a script changed the number of images in a batch")
        return torch.stack([torch.as_tensor(x) for x in listed.images]) * 2.0 - 1.0

    def image(self, job: Job, batch: Batch, index_in_batch: int, image: Any) -> Any:
        self.p.batch_index = index_in_batch
        if self.p.scripts is None:
            return image
        pp = PostprocessImageArgs(image)
        self.p.scripts.postprocess_image(self.p, pp)
        self._extra(job)
        return pp.image

    def done(self, job: Job, processed: _context.Processed) -> None:
        if self.p.scripts is not None:
            self.p.scripts.postprocess(self.p, processed_view(processed))


def get_fixed_seed(seed: Any) -> int:
    """A1111: -1 (or empty) becomes a random seed."""
    from modules.processing.rng import fix_seed as fixed

    return fixed(int(seed) if seed not in (None, "") else -1)


def fix_seed(p: StableDiffusionProcessing) -> None:
    p.seed, p.subseed = get_fixed_seed(p.seed), get_fixed_seed(p.subseed)


def _styles() -> Any:
    from modules import shared

    ctx = active_context()
    return ctx.styles if ctx is not None and ctx.styles is not None else shared.prompt_styles


def create_infotext(p: Any, all_prompts: list[str] | None, all_seeds: list[int] | None,
                    all_subseeds: list[int] | None, comments: Any = None, iteration: int = 0,
                    position_in_batch: int = 0, use_main_prompt: bool = False, index: int | None = None,
                    all_negative_prompts: list[str] | None = None) -> str:
    """A1111's ``create_infotext``: the ``parameters`` text of image ``index`` (default ``position_in_batch +
    iteration * batch_size``) of ``p``, built by the same code as every image's infotext, with what the running
    job added (Lora hashes, TI hashes, ...) and ``p.extra_generation_params``. ``comments`` is accepted and
    unused, as in A1111. Only inside a generation job (the checkpoint and settings are the job's)."""
    ctx = active_context()
    if ctx is None:
        raise RuntimeError("create_infotext(p, ...) is called inside a generation job (a script's run() or a hook)")
    from modules import samplers
    from modules.processing.generation import create_infotext as build

    params = p.to_params() if hasattr(p, "to_params") else p
    if index is None:
        index = position_in_batch + iteration * int(params.batch_size)
    sampler, schedule = samplers.resolve_sampler(params.sampler_name, params.scheduler)
    job = getattr(p, "_running_job", None)
    extra = {**(job.extra if job is not None else {}), **dict(getattr(p, "extra_generation_params", None) or {})}
    negatives = all_negative_prompts if all_negative_prompts is not None else getattr(p, "all_negative_prompts", None)
    if use_main_prompt and getattr(p, "main_prompt", None) is not None:
        prompt, negative = p.main_prompt, p.main_negative_prompt or ""
    else:
        prompt = all_prompts[index] if all_prompts else params.prompt
        negative = negatives[index] if negatives else params.negative_prompt
    seed = all_seeds[index] if all_seeds else get_fixed_seed(params.seed)
    subseed = all_subseeds[index] if all_subseeds else get_fixed_seed(params.subseed)
    return build(params, ctx, prompt=prompt, negative_prompt=negative, seed=int(seed), subseed=int(subseed),
                 sampler_name=sampler.name, schedule_label=samplers.effective_schedule_label(sampler, schedule),
                 extra=extra)


def create_binary_mask(image: Any, round: bool = True) -> Any:  # noqa: A002 - A1111's parameter name
    """A1111's ``create_binary_mask``: an RGBA image with any transparency gives its alpha channel (values above
    128 become 255, the rest 0, when ``round``); anything else is converted to ``L`` as it is (A1111 does not
    threshold that case either)."""
    from modules.processing import masking

    if image.mode == "RGBA" and image.getextrema()[-1] != (255, 255):
        return masking.binary_mask(image, round)
    return image.convert("L")


def uncrop(image: Any, dest_size: tuple[int, int], paste_loc: tuple[int, int, int, int]) -> Any:
    """A1111's ``uncrop``: ``image`` cropped-and-resized into the box ``paste_loc`` = (x, y, w, h) of a transparent
    canvas of ``dest_size``."""
    from PIL import Image

    from modules.processing import imageops

    x, y, w, h = paste_loc
    canvas = Image.new("RGBA", dest_size)
    canvas.paste(imageops.resize_image(imageops.CROP_AND_RESIZE, image, w, h), (x, y))
    return canvas


def apply_overlay(image: Any, paste_loc: tuple[int, int, int, int] | None, overlay: Any) -> tuple[Any, Any]:
    """A1111's ``apply_overlay``: put a generated image back into the original (``overlay``: the original, opaque
    outside the mask); returns (composited RGB image, the generated image before compositing)."""
    if overlay is None:
        return image, image.copy()
    if paste_loc is not None:
        image = uncrop(image, (overlay.width, overlay.height), paste_loc)
    original = image.copy()
    composited = image.convert("RGBA")
    composited.alpha_composite(overlay)
    return composited.convert("RGB"), original
