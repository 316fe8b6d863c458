"""What a job needs besides its parameters, and what it gives back.

``ProcessingContext`` is handed in by whoever runs the job (UI, API, scripts): the loaded model and its checkpoint
identity, a settings snapshot, where to save, and the progress record. Processing never reaches for globals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.processing.job_settings import JobSettings
from modules.processing.progress import JobProgress


@dataclass(frozen=True)
class CheckpointIdentity:
    """How the loaded checkpoint is named in infotext and API answers."""

    title: str
    model_name: str  # file stem, the infotext "Model"
    shorthash: str | None  # 10 hex of the file's sha256, the infotext "Model hash"
    sha256: str | None = None
    filename: str = ""


@dataclass
class ProcessingContext:
    model: Any  # LoadedModel
    checkpoint: CheckpointIdentity
    settings: JobSettings  # given as the option values (a mapping), kept as their typed snapshot
    data_dir: Path
    progress: JobProgress = field(default_factory=JobProgress)
    version: str | None = None
    from_api: bool = False  # A1111's API prints floats as floats ("CFG scale: 7.0"); the UI prints 7
    save_params_txt: bool = True
    nan_check: bool = True
    # Called before every model evaluation with (step, cond, uncond): per-step observers (tests, extensions).
    denoiser_hooks: list[Any] = field(default_factory=list)
    loras: Any = None  # LoraRegistry: <lora:...> tags resolve here; None = no LoRA folders
    embeddings: Any = None  # EmbeddingSet fitted to ``model``
    styles: Any = None  # StyleDatabase for ``params.styles``
    vae_infotext: dict[str, str] = field(default_factory=dict)  # {"VAE hash": ..., "VAE": ...} of an external VAE
    comments: list[str] = field(default_factory=list)  # notes for the user (unknown LoRA, VAE fallback, ...)
    refiner: Any = None  # LoadedModel of the refiner checkpoint, when the job uses one
    refiner_checkpoint: CheckpointIdentity | None = None
    refiner_embeddings: Any = None  # EmbeddingSet fitted to ``refiner``
    save_hooks: Any = None  # saving.SaveHooks: extensions' on_before_image_saved / on_image_saved
    hires_model: Any = None  # LoadedModel of the hires checkpoint (``hr_checkpoint_name``), when it differs
    hires_checkpoint: CheckpointIdentity | None = None
    hires_embeddings: Any = None
    # Scripts (A1111 facade): ``generation.JobHooks`` called at A1111's points of a job; None = no scripts.
    job_hooks: Any = None
    # Extensions' on_cfg_denoiser / on_cfg_denoised / on_cfg_after_cfg (``sampling.CfgCallbacks``); None = none.
    cfg_callbacks: Any = None
    # ``reconfigure(overrides)`` -> a context for the same job with settings overridden (checkpoint, VAE, clip
    # skip...): what X/Y/Z plot and scripts' ``p.override_settings`` use. None where the caller cannot reload.
    reconfigure: Any = None
    # ``check_budget(params, multiplier)``: the server's time budget (FieldError past ``max_job_seconds``) for a
    # script that runs ``multiplier`` jobs inside this one (X/Y/Z plot cells); None = no time budget.
    check_budget: Any = None
    # ``modules.upscalers.face_restoration.FaceRestorers`` for "Restore faces"; None = none set up (the job says so).
    face_restorers: Any = None
    # ``extra_networks.ExtensionNetworks``: networks extensions registered (activated around each batch); None = none.
    extension_networks: Any = None
    # Extensions' on_image_grid / on_extra_noise (``saving.ImageGridLoopParams`` / ``sampling.ExtraNoiseParams``).
    grid_hook: Any = None
    extra_noise_hook: Any = None
    # ``controlnet.control.ControlJob``: the job's ControlNet units; None = none.
    control: Any = None

    def __post_init__(self) -> None:
        self.settings = JobSettings.of(self.settings)


@dataclass
class Processed:
    """Results of one txt2img/img2img job: PIL images (grid first when there is one) and their infotexts."""

    images: list[Any]
    infotexts: list[str]
    prompt: str
    negative_prompt: str
    seed: int
    subseed: int
    all_prompts: list[str]
    all_negative_prompts: list[str]
    all_seeds: list[int]
    all_subseeds: list[int]
    params: Any
    sampler_name: str
    schedule_label: str
    checkpoint: CheckpointIdentity
    index_of_first_image: int = 0
    saved_paths: list[Path | None] = field(default_factory=list)  # aligned with images; None = not saved
    job_timestamp: str = ""
    version: str | None = None
    clip_skip: int = 1
    extra_generation_params: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    comments: list[str] = field(default_factory=list)
    vae_name: str | None = None
    vae_hash: str | None = None
    is_using_inpainting_conditioning: bool = False

    def info_dict(self) -> dict[str, Any]:
        """The object A1111's API serialises into the ``info`` string (``Processed.js()`` keys)."""
        p = self.params
        return {
            "prompt": self.prompt,
            "all_prompts": self.all_prompts,
            "negative_prompt": self.negative_prompt,
            "all_negative_prompts": self.all_negative_prompts,
            "seed": self.seed,
            "all_seeds": self.all_seeds,
            "subseed": self.subseed,
            "all_subseeds": self.all_subseeds,
            "subseed_strength": p.subseed_strength,
            "width": p.width,
            "height": p.height,
            "sampler_name": self.sampler_name,
            "cfg_scale": p.cfg_scale,
            "steps": p.steps,
            "batch_size": p.batch_size,
            "restore_faces": bool(p.restore_faces),
            "face_restoration_model": self.extra_generation_params.get("Face restoration"),  # None: did not run
            "sd_model_name": self.checkpoint.model_name,
            "sd_model_hash": self.checkpoint.shorthash,
            "sd_vae_name": self.vae_name,
            "sd_vae_hash": self.vae_hash,
            "seed_resize_from_w": p.seed_resize_from_w,
            "seed_resize_from_h": p.seed_resize_from_h,
            "denoising_strength": getattr(p, "denoising_strength", None),
            "extra_generation_params": self.extra_generation_params,
            "index_of_first_image": self.index_of_first_image,
            "infotexts": self.infotexts,
            "styles": list(p.styles),
            "job_timestamp": self.job_timestamp,
            "clip_skip": self.clip_skip,
            "is_using_inpainting_conditioning": self.is_using_inpainting_conditioning,
            "version": self.version or "",
            "comments": list(self.comments),  # ours: what A1111 shows above the infotext (unknown LoRA, ...)
        }

    def js(self) -> str:
        return json.dumps(self.info_dict(), ensure_ascii=False)

    # A1111 ``Processed`` attributes scripts read.
    @property
    def info(self) -> str:
        return self.js()

    @property
    def width(self) -> int:
        return self.params.width

    @property
    def height(self) -> int:
        return self.params.height

    @property
    def steps(self) -> int:
        return self.params.steps

    @property
    def cfg_scale(self) -> float:
        return self.params.cfg_scale

    @property
    def batch_size(self) -> int:
        return self.params.batch_size

    @property
    def styles(self) -> list[str]:
        return list(self.params.styles)
