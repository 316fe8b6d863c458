"""A1111's ``modules.processing`` surface for extension scripts: ``StableDiffusionProcessingTxt2Img`` /
``StableDiffusionProcessingImg2Img`` (the ``p`` every script hook receives), ``process_images(p)`` and ``Processed``.

``p`` is a plain attribute bag with A1111's names. ``process_images(p)`` turns it into our typed parameters
(validated like any request), runs the job through the same plan as the UI and API, and calls the scripts' hooks at
A1111's points through ``ScriptBridge``:

    setup, before_process -> seeds, prompts -> process -> per batch: before_process_batch, process_batch, sample,
    postprocess_batch, per image: postprocess_image -> grid -> postprocess

What a hook may change, and when it takes effect: any field before ``process`` (in ``setup``/``before_process``);
``all_prompts``/``all_seeds``/... and ``extra_generation_params`` in ``process``; a batch's ``prompts``/``seeds`` in
``process_batch``; images in ``postprocess_batch``/``postprocess_image``. ``p.override_settings`` (checkpoint, VAE,
clip skip, ...) reconfigures the job's context before it runs.

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
    "comments": None, "s_min_uncond": 0.0, "s_churn": 0.0, "s_tmax": None, "s_tmin": 0.0, "s_noise": 1.0,
    "ddim_discretize": None, "do_not_reload_embeddings": False, "paste_to": None, "color_corrections": None,
    "overlay_images": None, "seed_enable_extras": True, "image_mask": None, "latent_mask": None,
    "job_timestamp": "", "scripts_setup_complete": False,
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


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    params_class = Txt2ImgParams


class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    params_class = Img2ImgParams


def process_images(p: StableDiffusionProcessing) -> _context.Processed:
    """Run ``p`` now, in the current job, with its scripts' hooks; returns A1111's ``Processed``."""
    run = getattr(_active, "run", None)
    if run is None:
        raise RuntimeError("process_images(p) runs only inside a generation job (a script's run() or a hook)")
    if p.scripts is not None:
        if not p.scripts_setup_complete:
            p.setup_scripts()
        p.scripts.before_process(p)
    params = p.to_params()
    ctx = run.ctx
    overrides = {k: v for k, v in (p.override_settings or {}).items() if ctx.settings.get(k) != v}
    if overrides:
        if ctx.reconfigure is None:
            raise FieldError("override_settings", "this job cannot change settings while it runs")
        ctx = ctx.reconfigure(overrides)
    ctx = copy.copy(ctx)
    ctx.job_hooks = ScriptBridge(p)
    with running(ctx, run.process):
        processed = run.process(params, ctx)
    return processed


class _AnyProcessed(type):
    def __instancecheck__(cls, obj: Any) -> bool:  # what process_images returns is a Processed too
        return isinstance(obj, _context.Processed)


class Processed(_context.Processed, metaclass=_AnyProcessed):
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
            clip_skip=int(ctx.settings.get("CLIP_stop_at_last_layers", 1)),
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
        p.sd_model = job.model
        p.scripts.process(p)
        lists.all_prompts, lists.all_negative_prompts = p.all_prompts, p.all_negative_prompts
        lists.all_seeds, lists.all_subseeds = p.all_seeds, p.all_subseeds
        self._extra(job)

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
            self.p.scripts.postprocess(self.p, processed)


def get_fixed_seed(seed: Any) -> int:
    """A1111: -1 (or empty) becomes a random seed."""
    from modules.processing.rng import fix_seed as fixed

    return fixed(int(seed) if seed not in (None, "") else -1)


def fix_seed(p: StableDiffusionProcessing) -> None:
    p.seed, p.subseed = get_fixed_seed(p.seed), get_fixed_seed(p.subseed)
