"""The composition root: builds each service once from the flags and wires them together.

Handlers (UI and API) receive this object explicitly; nothing here is a module-level global. Heavy libraries (torch,
diffusers) are imported only when a model is first loaded, so the server answers HTTP within seconds.
"""

from __future__ import annotations

import argparse
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from modules import infotext
from modules.hashing import HashCache
from modules.jobs import Job, JobQueue
from modules.models.manager import CheckpointNotFound, ModelManager
from modules.models.registry import CheckpointRegistry
from modules.options import Options, anchor_folder_defaults, default_registry
from modules.paths import Paths
from modules.processing import budget
from modules.processing.context import CheckpointIdentity, ProcessingContext
from modules.processing.job_settings import JobSettings
from modules.processing.params import Img2ImgParams, Txt2ImgParams, check_budget
from modules.processing.progress import JobProgress
from modules.script_registry import ScriptRegistry

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    args: argparse.Namespace
    paths: Paths
    options: Options
    registry: CheckpointRegistry
    manager: ModelManager
    jobs: JobQueue
    hash_cache: HashCache | None = None
    loras: Any = None  # modules.models.lora.LoraRegistry
    embeddings: Any = None  # modules.models.embeddings.EmbeddingDatabase
    vaes: Any = None  # modules.models.vae.VaeRegistry
    styles: Any = None  # modules.styles.StyleDatabase
    upscalers: Any = None  # modules.upscalers.registry.UpscalerRegistry
    face_restorers: Any = None  # modules.upscalers.face_restoration.FaceRestorers
    version: str | None = None
    startup_notes: list[str] = field(default_factory=list)
    extensions: list[Any] = field(default_factory=list)  # modules.extensions.Extension, discovered at start
    restart_requested: bool = False  # set by /sdapi/v1/server-restart; main() re-executes after shutdown
    # each tab's scripts (ours and the A1111 Script classes), rebuilt after scripts load
    scripts: ScriptRegistry = field(default_factory=ScriptRegistry)
    costs: budget.CostModel = field(default_factory=budget.CostModel)  # step costs measured on finished jobs
    controlnets: Any = None  # modules.controlnet.models.ControlNetRegistry
    controlnet_cache: Any = None  # modules.controlnet.models.ControlNetCache: loaded ControlNets
    modules: Any = None  # modules.models.additional_modules.AdditionalModules: text encoders / VAEs for Flux
    interrogator: Any = None  # modules.interrogate.service.Interrogator: img2text
    preview_networks: Any = None  # modules.processing.live_preview.PreviewNetworks, made with the first job

    # -- settings -------------------------------------------------------------------------------------------
    def job_settings(self, overrides: dict[str, Any] | None) -> JobSettings:
        """A snapshot of the settings for one job, with per-request overrides validated, not stored."""
        values = self.options.as_dict()
        if overrides:
            values.update(self.options.validate(overrides, from_api=True))
        return JobSettings.of(values)

    def module_parts(self, values: Any = None) -> Callable[[], list[Any]]:
        """The additional module files (``forge_additional_modules``, else the automatic choice) a checkpoint
        without its own text encoders or VAE is completed from, as a function: the folders are listed only when a
        checkpoint needs them."""
        source = values if values is not None else self.options.as_dict()
        chosen = source.get("forge_additional_modules") or []
        chosen = [chosen] if isinstance(chosen, str) else list(chosen)
        return lambda: self.modules.for_checkpoint(chosen) if self.modules is not None else []

    def load_choices(self, values: Any = None) -> dict[str, Any]:
        """What a checkpoint is loaded with besides its file: the additional modules (``module_parts``) and the
        weight-storage choice (Forge's ``forge_unet_storage_dtype``), as keyword arguments of the manager's loads."""
        source = values if values is not None else self.options.as_dict()
        from modules.models.weight_storage import AUTOMATIC

        return {"parts": self.module_parts(values), "storage": source.get("forge_unet_storage_dtype") or AUTOMATIC}

    # -- jobs -----------------------------------------------------------------------------------------------
    def submit_interrogate(self, image: Any, model: str, field: str = "model") -> Job:
        """Queue a caption of ``image`` by ``model`` (clip, deepdanbooru, wd14): on the job queue, so a tagger
        never runs beside a generation. An unknown model is a FieldError before queueing."""
        from modules.errors import FieldError
        from modules.interrogate.service import check_model

        check_model(model, field)
        if self.interrogator is None:
            raise FieldError(field, "interrogation is not set up in this server")
        settings = self.options.as_dict()

        def run(job: Job) -> Any:
            job.progress.set_textinfo(f"Interrogating with {model}")
            return self.interrogator.interrogate(image, model, settings, field)

        return self.jobs.submit("interrogate", run, description=f"Interrogate ({model})")

    def submit_interrogate_folder(self, folder_text: str, model: str, overwrite: bool = False) -> Job:
        """Queue captions of every picture in a folder, each into ``<stem>.txt`` beside it (``interrogate.batch``);
        the folder passes the same checks as img2img's batch folders (a FieldError naming ``folder``)."""
        from modules.cmd_args import checked_folder
        from modules.errors import FieldError
        from modules.interrogate import batch
        from modules.interrogate.service import check_model

        check_model(model)
        folder = checked_folder(self.args, self.paths.data_dir, "folder", folder_text)
        if folder is None or not folder.is_dir():
            raise FieldError("folder", f"no such folder: {folder_text or '(empty)'}")
        settings = {**self.options.as_dict(), "interrogate_keep_models_in_memory": True}  # loaded once a batch

        def run(job: Job) -> Any:
            def on_picture(done: int, total: int) -> None:
                job.progress.set_textinfo(f"Interrogating with {model}: {done}/{total}")
                job.progress.check_interrupt()

            try:
                return batch.caption_folder(folder, lambda image: self.interrogator.interrogate(image, model, settings),
                                            overwrite, on_picture)
            finally:
                if not self.options.get("interrogate_keep_models_in_memory", False):
                    self.interrogator.unload()

        return self.jobs.submit("interrogate-folder", run, description=f"Interrogate a folder ({model})")

    def submit_load(self, name: str | None) -> Job:
        """Queue a checkpoint load (it runs between generations, never during one)."""
        info = self.manager.resolve(name)

        def run(job: Job) -> Any:
            job.progress.set_textinfo(f"Loading {info.title}")
            self.manager.ensure(info.title, reuse_previous=True, **self.load_choices())
            self._remember_checkpoint(info.title)
            return info.title

        return self.jobs.submit("load-checkpoint", run, description=f"Load {info.title}")

    def submit_txt2img(self, params: Txt2ImgParams, *, from_api: bool = False, script: Any = None,
                       job_id: str | None = None, scripts_call: Any = None) -> Job:
        """Queue a txt2img job. Names, overrides and hires settings are checked here, before queueing.
        ``script``: a built-in script's parsed arguments (``prompts_from_file.ScriptArgs``); ``scripts_call``:
        the extension scripts' arguments (``modules.scripts.ScriptCall``), defaults when None."""
        from modules.processing.txt2img import check_txt2img, txt2img

        check_txt2img(params, current_checkpoint=self.manager.info.title if self.manager.info else None,
                      upscalers=self.upscalers)

        def process(p: Any, ctx: ProcessingContext) -> Any:
            return txt2img(p, ctx, self.upscalers)

        return self._submit_generation("txt2img", params,
                                       self._processor("txt2img", params, process, script, scripts_call),
                                       from_api=from_api, job_id=job_id)

    def submit_img2img(self, params: Img2ImgParams, *, from_api: bool = False, script: Any = None,
                       job_id: str | None = None, scripts_call: Any = None) -> Job:
        """Queue an img2img/inpainting job (``params.init_images`` already decoded)."""
        from modules.errors import FieldError
        from modules.processing.img2img import img2img

        if not params.init_images:
            raise FieldError("init_images", "at least one init image is required")
        from modules.processing import sampler_params

        sampler_params.check(params)
        return self._submit_generation("img2img", params,
                                       self._processor("img2img", params, img2img, script, scripts_call),
                                       from_api=from_api, job_id=job_id)

    def _processor(self, tab: str, params: Any, process: Any, script: Any, scripts_call: Any) -> Any:
        """``process(params, ctx)``, or the chosen built-in script running it (``prompts_from_file.ScriptArgs``,
        ``sd_upscale.SdUpscaleArgs``, ...), with the extension scripts' hooks around every generation when the
        tab has any; the script's own checks run before anything is queued."""
        if scripts_call is None:  # a job submitted without a prepared request: the always-on scripts' defaults
            scripts_call = self.scripts.tab(tab).always_on_call()
        if scripts_call is not None:
            plain = process

            def process(p: Any, ctx: ProcessingContext) -> Any:
                return scripts_call.run(p, ctx, plain)
        if script is None:
            return lambda ctx: process(params, ctx)
        script.check(params)
        return lambda ctx: script.run(params, ctx, process, self.upscalers)

    def _submit_generation(self, kind: str, params: Any, process: Any, *, from_api: bool,
                           job_id: str | None = None) -> Job:
        """The common path of every generation: settings snapshot with validated overrides, checkpoint choice,
        VAE, embeddings, then ``process(ctx)`` on the job queue."""
        from modules import samplers

        samplers.resolve_sampler(params.sampler_name, params.scheduler)  # raises UnknownSamplerError early
        settings = self.job_settings(params.override_settings)
        self.check_controlnet_units(params.controlnet_units, kind)
        check_budget(params, settings.max_job_megapixel_steps)
        self.check_job_seconds(params, settings)
        overridden = bool(params.override_settings.get("sd_model_checkpoint"))
        if overridden:
            self.manager.resolve(settings.sd_model_checkpoint)  # 422 for unknown names before queueing
        refiner_info = self._other_checkpoint("refiner_checkpoint", params.refiner_checkpoint)
        hires_info = (self._other_checkpoint("hr_checkpoint_name", getattr(params, "hr_checkpoint_name", None))
                      if getattr(params, "enable_hr", False) else None)
        if not params.override_settings_restore_afterwards and params.override_settings:
            self.options.apply(params.override_settings, from_api=from_api)
        progress = JobProgress(job=kind, preview_every=settings.show_progress_every_n_steps
                               if settings.live_previews_enable else 0)

        def context(job: Job, settings: JobSettings, overridden: bool, nested: bool = False) -> ProcessingContext:
            """The job's context for ``settings``: the checkpoint they name loaded (a configured one that no
            longer exists falls back to the loaded/first one, as in A1111), second checkpoints, VAE. ``nested``:
            reconfigured while the job runs, when the job's first context still holds the model it started with."""
            from modules import script_callbacks
            from modules.errors import FieldError
            from modules.processing.generation import live_preview

            job.progress.set_textinfo("Loading model" if self.manager.model is None else "")
            wanted = settings.sd_model_checkpoint or None
            name = wanted if overridden or self.registry.get(wanted) is not None else None
            model, info = self.manager.ensure(name, reuse_previous=not nested, **self.load_choices(settings))
            if not overridden:
                self._remember_checkpoint(info.title)
            if self.preview_networks is None:
                from modules.processing.live_preview import PreviewNetworks

                self.preview_networks = PreviewNetworks()
            preview = live_preview(model, settings, self.paths.model_dir("vae_approx") if self.paths else None,
                                   self.preview_networks)
            job.progress.set_preview(preview.decode, in_job_thread=preview.in_job_thread)
            refiner = self._load_second(model, info, refiner_info, "refiner_checkpoint")
            hires = self._load_second(model, info, hires_info, "hr_checkpoint_name")
            if refiner is not None and hires is not None and refiner is not hires:
                raise FieldError("hr_checkpoint_name", "a hires checkpoint and a refiner that are two more "
                                                       "checkpoints cannot be combined; choose one of them")
            comments: list[str] = []
            vae_switcher = self._select_vae(model, settings, comments)

            def reconfigure(overrides: dict[str, Any]) -> ProcessingContext:
                changed = JobSettings.of({**settings, **self.options.validate(overrides, from_api=True)})
                return context(job, changed, overridden or "sd_model_checkpoint" in overrides, nested=True)

            return ProcessingContext(
                model=model,
                checkpoint=identity_of(info),
                settings=settings,
                data_dir=self.paths.data_dir,
                progress=job.progress,
                version=self.version,
                from_api=from_api,
                save_params_txt=not getattr(self.args, "no_prompt_history", False),
                nan_check=not getattr(self.args, "disable_nan_check", False),
                loras=self.loras,
                embeddings=self.embeddings.load_for(model) if self.embeddings is not None else None,
                styles=self.styles,
                vae_infotext=vae_switcher.infotext() if vae_switcher is not None else {},
                comments=comments,
                refiner=refiner,
                refiner_checkpoint=identity_of(refiner_info) if refiner is not None else None,
                refiner_embeddings=(self.embeddings.load_for(refiner)
                                    if refiner is not None and self.embeddings is not None else None),
                save_hooks=script_callbacks.save_hooks(),
                hires_model=hires,
                hires_checkpoint=identity_of(hires_info) if hires is not None else None,
                hires_embeddings=(self.embeddings.load_for(hires)
                                  if hires is not None and self.embeddings is not None else None),
                cfg_callbacks=script_callbacks.cfg_callbacks(),
                reconfigure=reconfigure,
                check_budget=lambda script_params, cells: self.check_job_seconds(script_params, settings, cells),
                face_restorers=self.face_restorers,
                extension_networks=_extension_networks(),
                grid_hook=script_callbacks.hook("image_grid"),
                extra_noise_hook=script_callbacks.hook("extra_noise"),
                control=self._control_job(params, settings),
            )

        def run(job: Job) -> Any:
            ctx = context(job, settings, overridden)
            try:
                return process(ctx)
            finally:
                self._learn_costs(ctx, job.progress)

        return self.jobs.submit(kind, run, description=params.prompt[:80], progress=progress, job_id=job_id)

    # -- ControlNet -----------------------------------------------------------------------------------------
    def check_controlnet_units(self, units: list[Any], kind: str) -> None:
        """Enabled units name a model that is on disk, a preprocessor that can run and have an image to work
        from (img2img falls back on its picture); each error names the unit's field. Runs before queueing."""
        from modules.errors import FieldError

        for unit in units:
            if not unit.active:
                continue
            if self.controlnets is None:
                raise FieldError(f"{unit.where}.model", "ControlNet is not set up in this server")
            self.controlnet_models(rescan=False).resolve(unit.model, f"{unit.where}.model")
            unavailable = unit.preprocessor.unavailable(self.annotator_setup())
            if unavailable:
                raise FieldError(f"{unit.where}.module", unavailable)
            if unit.image is None and kind == "txt2img":
                raise FieldError(f"{unit.where}.image", "ControlNet is enabled but no input image is given")

    def controlnet_models(self, rescan: bool) -> Any:
        """The ControlNet registry with the setting ``control_net_models_path``'s folder in it: rescanned when
        asked (the lists' refresh) or when the setting has changed since the last scan."""
        extra = str(self.options.get("control_net_models_path") or "")
        if rescan or extra != (self.controlnets.extra_dir or ""):
            self.controlnets.refresh(extra)
        return self.controlnets

    def annotator_setup(self) -> Any:
        """Where the weighted ControlNet preprocessors' files are (the setting ``control_net_modules_path``,
        ``annotators/`` of each ControlNet folder, sd-webui-controlnet's ``annotator/downloads``) and the device
        their networks run on (``--use-cpu controlnet`` keeps them on the CPU)."""
        from modules.controlnet.annotator_files import AnnotatorSetup, annotator_setup

        if self.controlnets is None:
            return AnnotatorSetup()
        extra = str(self.options.get("control_net_modules_path") or "") or getattr(
            self.args, "controlnet_annotator_models_path", None)
        device = self.manager.device_policy.device_for("controlnet") if self.manager is not None else "cpu"
        if extra and self.paths is not None and not Path(extra).is_absolute():
            extra = str(self.paths.data_dir / extra)  # relative to the data folder, as the extension reads it
        return annotator_setup(self.controlnets.dirs, self.paths.extensions_dir if self.paths is not None else None,
                               extra, str(device))

    def _control_job(self, params: Any, settings: Mapping[str, Any]) -> Any:
        units = list(getattr(params, "controlnet_units", None) or [])
        if not units or self.controlnets is None:
            return None
        from modules.controlnet.control import ControlJob

        return ControlJob(units, self.controlnets, self.controlnet_cache,
                          cache_size=int(settings.get("control_net_model_cache_size", 2) or 2),
                          hires=bool(getattr(params, "enable_hr", False)), seed=max(int(params.seed), 0),
                          annotators=self.annotator_setup())

    # -- time budget ----------------------------------------------------------------------------------------
    def _cost_target(self, settings: Mapping[str, Any]) -> tuple[str, str, str, float | None]:
        """(device kind, checkpoint key, family, UNet parameters) of the model a job with ``settings`` runs on:
        the loaded model when it is that one, else the file's size stands in (family unknown until loaded)."""
        model, info = self.manager.model, self.manager.info
        wanted = JobSettings.of(settings).sd_model_checkpoint
        target = self.registry.get(wanted) if wanted else None
        if model is not None and info is not None and (target is None or target.path == info.path):
            return model.device.type, str(info.path), model.kind.family, _unet_params(model)
        device = getattr(getattr(self.manager.device_policy, "device", None), "type", "cpu")
        target = target or info
        if target is None:
            return device, "", "unknown", None
        return device, str(target.path), "unknown", 0.8 * target.size / 4  # fp32 bytes; a fp16 file counts half

    def check_job_seconds(self, params: Any, settings: Mapping[str, Any], multiplier: int = 1) -> float:
        """Refuse (FieldError) a job estimated over ``max_job_seconds``; returns the estimate in seconds."""
        limit = JobSettings.of(settings).max_job_seconds
        if not limit:
            return 0.0
        device, key, family, params_count = self._cost_target(settings)
        cost = self.costs.cost(device, key, family, params_count)
        return budget.check_seconds(params, cost, limit, multiplier, where=f" on this server's {device}")

    def _learn_costs(self, ctx: ProcessingContext, progress: JobProgress) -> None:
        timings = [budget.StepTiming(mp, rows, sec) for mp, rows, sec in progress.step_timings()]
        if not timings or ctx.checkpoint is None:
            return
        model = ctx.model
        try:
            self.costs.observe(model.device.type, ctx.checkpoint.filename, model.kind.family, _unet_params(model),
                               timings)
        except Exception:  # noqa: BLE001 - learning is best effort; it must never fail a finished job
            log.exception("could not update the step cost model")

    def submit_extras(self, params: Any, images: list[tuple[Any, str]], *, save: bool = True,
                      output_dir: Any = None, postprocess: Any = None) -> Job:
        """Queue an Extras job over ``images`` ((PIL image, source name) pairs); returns (results, paths).
        ``postprocess``: the extensions' Extras scripts with their values (``scripts_postprocessing.
        PostprocessCall``); None runs them with their defaults, as A1111's API does."""
        from modules.processing import postprocessing

        from modules import script_callbacks, scripts_postprocessing

        postprocessing.check_request(params, self.upscalers, self.face_restorers)
        settings = self.options.as_dict()
        hooks = script_callbacks.save_hooks()
        if postprocess is None:
            postprocess = scripts_postprocessing.call_for(self.scripts.extras)

        def run(job: Job) -> Any:
            job.progress.begin(job_count=len(images), steps=1)
            results, paths = [], []
            for number, (image, name) in enumerate(images):
                if job.progress.interrupted:
                    break
                job.progress.next_job(number)
                result = postprocessing.run_extras(image, params, self.upscalers, self.face_restorers)
                outputs = [(result, "")]
                if postprocess is not None:  # the extensions' scripts, after ours; they may add images
                    outputs = [(postprocessing.ExtrasResult(im, info), suffix)
                               for im, info, suffix in postprocess.apply(result.image, result.info)]
                for result, suffix in outputs:
                    result.image.info.update({k: v for k, v in image.info.items() if isinstance(v, str)})
                    result.image.info["extras"] = result.infotext
                    results.append(result)
                    paths.append(postprocessing.save_extras(result, image.info, settings, self.paths.data_dir,
                                                            basename=f"{name}{suffix}" if name else "",
                                                            output_dir=output_dir, hooks=hooks)
                                 if save else None)
            job.progress.next_job(len(images))
            return results, paths

        return self.jobs.submit("extras", run, description="Extras", progress=JobProgress(job="extras"))

    def _other_checkpoint(self, field_name: str, name: str | None) -> Any:
        """The second checkpoint a request names (refiner, hires checkpoint): 422 naming the field when unknown;
        None for nothing / "None" / "Use same checkpoint"."""
        from modules.errors import FieldError

        if name in (None, "", "None", "Use same checkpoint"):
            return None
        try:
            return self.manager.resolve(name)
        except CheckpointNotFound as err:
            raise FieldError(field_name, f"checkpoint {name!r} not found", err.choices) from err

    def _load_second(self, model: Any, info: Any, other: Any, field_name: str) -> Any:
        """The second model for a job: none when it is the job's own checkpoint (A1111 then does nothing);
        refused when its latent space differs from the model's (SD1.5 latents cannot continue SDXL ones)."""
        from modules.errors import FieldError

        if other is None or other.path == info.path:
            return None
        second = self.manager.load_secondary(other, **self.load_choices())
        if second.latent_space != model.latent_space:
            raise FieldError(field_name, f"{other.title} ({second.kind.label}) cannot continue a "
                                         f"{model.kind.label} image: their latent spaces differ")
        return second

    def _select_vae(self, model: Any, settings: Mapping[str, Any], comments: list[str]) -> Any:
        """Put the VAE the settings ask for into the loaded model (no checkpoint reload). A VAE file that cannot be
        used keeps the current VAE and says so in the job's comments, as A1111 goes on with the one it has."""
        if self.vaes is None:
            return None
        from modules.models.types import ModelFileError
        from modules.models.vae import VaeSwitcher

        switcher = VaeSwitcher.for_model(model, hash_cache=self.hash_cache,
                                         hashing=not getattr(self.args, "no_hashing", False))
        try:
            typed = JobSettings.of(settings)
            choice = switcher.select(self.vaes, typed.sd_vae, self.paths.forced_vae,
                                     typed.sd_vae_overrides_per_model_preferences)
            if choice.warning:
                comments.append(choice.warning)
        except ModelFileError as err:
            log.warning("VAE not changed: %s", err)
            comments.append(f"VAE not changed: {err}")
        return switcher

    def _remember_checkpoint(self, title: str) -> None:
        """When no usable checkpoint is configured, the one loaded as the default becomes ``sd_model_checkpoint``
        for the session (in memory; config.json gets it with the next save), as A1111 does. Without this, a fresh
        install would keep whatever a per-request override loaded last."""
        current = self.options.get("sd_model_checkpoint")
        if current is None or self.registry.get(current) is None:
            self.options.apply({"sd_model_checkpoint": title}, save=False)
            if current is not None:
                log.warning("Checkpoint %s not found; using %s instead.", current, title)

    def select_checkpoint(self, name: str) -> Job:
        """Make ``name`` the configured checkpoint (config.json) and load it."""
        info = self.manager.resolve(name)
        self.options.apply({"sd_model_checkpoint": info.title}, from_api=False)
        return self.submit_load(info.title)


class LazyDevicePolicy:
    """The ``DevicePolicy``, decided on first use: deciding imports torch (about a second), which the page does
    not need, so the server answers first and the background model load pays for it."""

    def __init__(self, decide: Any) -> None:
        self._decide = decide
        self._policy: Any = None
        self._lock = threading.Lock()

    def resolved(self) -> Any:
        with self._lock:
            if self._policy is None:
                self._policy = self._decide()
            return self._policy

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.resolved(), name)


def _extension_networks() -> Any:
    """The A1111 facade's registry of extension networks, as processing takes it (None when none registered)."""
    import sys

    facade = sys.modules.get("modules.extra_networks")
    if facade is None or not (facade.extra_network_registry or facade.extra_network_aliases):
        return None
    from modules.processing.extra_networks import ExtensionNetworks

    return ExtensionNetworks(
        kinds=lambda: set(facade.extra_network_registry) | set(facade.extra_network_aliases),
        batch=facade.batch_networks)


def _unet_params(model: Any) -> float | None:
    """The UNet's parameter count, counted once per loaded model."""
    if "unet_params" not in model.extra:
        try:
            model.extra["unet_params"] = float(sum(p.numel() for p in model.unet.parameters()))
        except (AttributeError, TypeError):
            model.extra["unet_params"] = None
    return model.extra["unet_params"]


def identity_of(info: Any) -> CheckpointIdentity:
    return CheckpointIdentity(title=info.title, model_name=info.path.stem, shorthash=info.shorthash,
                              sha256=info.sha256, filename=str(info.path))


def build_runtime(args: argparse.Namespace) -> Runtime:
    paths = Paths.from_args(args)
    paths.ensure_data_folders()
    options = Options(paths.config_file if not getattr(args, "ui_settings_file", None)
                      else paths.data_dir / args.ui_settings_file,
                      anchor_folder_defaults(default_registry(), paths.data_dir, paths.install_dir))
    options.load()
    options.frozen = bool(getattr(args, "freeze_settings", False))
    if (not options.path.exists() and not options.frozen and options.unreadable is None
            and options.quarantined is None):
        try:  # as A1111 after its first start: every key, so tools recognise the folder (outdir_txt2img_samples)
            options.save()
        except OSError as err:
            log.warning("could not write %s: %s", options.path, err)
    notes = [note for note in [options.startup_note()] if note]  # config.json kept aside, or not readable at all
    cache = HashCache(paths.cache_file)
    extra = [paths.explicit_ckpt] if paths.explicit_ckpt and paths.explicit_ckpt.is_file() else []
    registry = CheckpointRegistry(paths.model_dirs("checkpoints"), cache, extra_files=extra)
    registry.refresh()
    def decide_devices() -> Any:
        from modules.models import memory
        from modules.models.devices import DevicePolicy

        return DevicePolicy.from_flags(no_half=bool(getattr(args, "no_half", False)),
                                       no_half_vae=bool(getattr(args, "no_half_vae", False)),
                                       precision=getattr(args, "precision", "autocast") or "autocast",
                                       use_cpu=list(getattr(args, "use_cpu", None) or []),
                                       memory_mode=memory.requested_mode(
                                           medvram=bool(getattr(args, "medvram", False)),
                                           medvram_sdxl=bool(getattr(args, "medvram_sdxl", False)),
                                           lowvram=bool(getattr(args, "lowvram", False))),
                                       channels_last=bool(getattr(args, "opt_channelslast", False)),
                                       compile_mode=getattr(args, "compile", None))

    policy = LazyDevicePolicy(decide_devices)
    hashing = not getattr(args, "no_hashing", False)
    from modules import script_callbacks

    # A1111's on_model_loaded(sd_model) for extensions (a failing callback is reported, never raised).
    manager = ModelManager(registry, policy, hashing=hashing,
                           on_loaded=lambda model, info: script_callbacks.call("model_loaded", model),
                           keep_loaded=lambda: int(options.get("sd_checkpoints_limit", 1) or 1))
    jobs = JobQueue(max_pending=max(1, int(getattr(args, "max_queue_size", 64) or 64)))
    from modules.models.embeddings import EmbeddingDatabase
    from modules.models.lora import LoraRegistry
    from modules.models.vae import VaeRegistry
    from modules.styles import StyleDatabase

    vaes = VaeRegistry.from_paths(paths)
    options.registry["sd_vae"].choices = vaes.choices  # the setting accepts what is on disk now
    from modules import localization

    options.registry["localization"].choices = lambda: localization.names(paths.localization_dirs())
    from modules.upscalers.face_restoration import FaceRestorers
    from modules.upscalers.registry import UpscalerRegistry

    upscalers = UpscalerRegistry.from_paths(paths, settings=options.as_dict, device_policy=policy)
    style_files = list(getattr(args, "styles_file", None) or []) or [paths.styles_file]
    from modules import fileio

    for style_file in style_files:  # a kill -9 during a styles save leaves its temp file behind
        fileio.remove_temp_leftovers(style_file)
    styles = StyleDatabase(style_files, quarantine_unreadable=True)
    for original, kept in styles.quarantined:
        notes.append(f"{original.name} could not be read and was kept as {kept.name}; its styles are not loaded.")
    from modules import package_blocklist

    notes += package_blocklist.installed_problems()
    for note in notes:
        log.warning("%s", note)
    from modules.controlnet.models import ControlNetCache, ControlNetRegistry

    controlnets = ControlNetRegistry(paths.model_dirs("controlnet"))
    from modules.models.additional_modules import AdditionalModules

    additional = AdditionalModules.from_paths(paths)
    options.registry["forge_additional_modules"].choices = additional.names
    rt = Runtime(args=args, paths=paths, options=options, registry=registry, manager=manager, jobs=jobs,
                 hash_cache=cache, loras=LoraRegistry.from_paths(paths, cache, hashing=hashing),
                 embeddings=EmbeddingDatabase.from_paths(paths, cache, hashing=hashing), vaes=vaes,
                 styles=styles,
                 upscalers=upscalers, face_restorers=FaceRestorers.from_paths(paths, policy),
                 version=infotext.version_string(paths.install_dir), startup_notes=notes,
                 controlnets=controlnets, controlnet_cache=ControlNetCache(), modules=additional,
                 interrogator=_interrogator(paths, policy))
    return rt


def _interrogator(paths: Paths, policy: Any) -> Any:
    from modules.interrogate.service import LISTS, Interrogator

    # decided when a model first loads: the device policy stays lazy (no torch import at start-up)
    return Interrogator(paths.model_dirs("wd14"),
                        gpu=lambda: getattr(policy.device_for("interrogate"), "type", "cpu") == "cuda",
                        deepbooru_dirs=paths.model_dirs("deepbooru"), blip_dirs=paths.model_dirs("blip"),
                        clip_dirs=paths.model_dirs("clip"), list_dirs=(LISTS, *paths.model_dirs("interrogate")))
