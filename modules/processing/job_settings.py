"""The settings processing reads, as one typed, read-only snapshot per job.

A setting is declared once, in ``modules.options`` (type, default, range, label, section); processing reads the
ones it implements here as attributes (``settings.jpeg_quality``: an int), never as ``settings.get("key",
default)`` with a second default and a cast at each place. The snapshot is also the full mapping of values (every
key, extensions' included), for what is looked up by a computed key (the output folder of a kind, a sampler's
``eta_ddim``) and for A1111's ``p``/``opts`` views.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterator, Mapping


@dataclasses.dataclass(frozen=True, eq=False)
class JobSettings(Mapping[str, Any]):
    source: Mapping[str, Any]  # every key's value (named so as not to hide Mapping.values)
    # saving
    samples_save: bool
    samples_format: str
    grid_format: str
    grid_save: bool
    return_grid: bool
    grid_only_if_multiple: bool
    grid_prevent_empty_spots: bool
    n_rows: int
    save_to_dirs: bool
    grid_save_to_dirs: bool
    directories_filename_pattern: str
    directories_max_prompt_words: int
    samples_filename_pattern: str
    save_images_add_number: bool
    enable_pnginfo: bool
    jpeg_quality: int
    save_txt: bool
    use_original_name_batch: bool
    save_images_before_face_restoration: bool
    save_images_before_highres_fix: bool
    outdir_samples: str
    outdir_grids: str
    # prompts and conditioning
    CLIP_stop_at_last_layers: int
    emphasis: str
    comma_padding_backtrack: int
    textual_inversion_add_hashes_to_infotext: bool
    # sampling
    use_old_scheduling: bool
    img2img_extra_noise: float
    initial_noise_multiplier: float
    img2img_fix_steps: bool
    img2img_background_color: str
    inpainting_mask_weight: float
    # VAE, face restoration, tiling
    auto_vae_precision: bool
    vae_tiling: str
    face_restoration: bool
    face_restoration_model: str
    code_former_weight: float
    tiling: bool
    # progress
    show_progress_every_n_steps: int
    live_previews_enable: bool
    show_progress_type: str
    live_preview_allow_lowvram_full: bool
    live_preview_fast_interrupt: bool
    # the checkpoint ("": none chosen, the first one found) and its VAE
    sd_model_checkpoint: str
    sd_vae: str
    sd_vae_overrides_per_model_preferences: bool
    # ours: the job size and time this server accepts (0: any)
    max_job_megapixel_steps: float
    max_job_seconds: float

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> JobSettings:
        """The snapshot of ``values`` (option values, overrides applied); a key not there has its declared
        default; each typed field is converted to its type."""
        if isinstance(values, JobSettings):
            return values
        defaults = _declared_defaults()
        typed = {}
        for name, convert in _field_types().items():
            value = values.get(name)
            if value is None:
                value = defaults.get(name)
            typed[name] = _convert(convert, value)
        return cls(source=dict(values), **typed)

    def __getitem__(self, key: str) -> Any:
        return self.source[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.source)

    def __len__(self) -> int:
        return len(self.source)


def _convert(kind: type, value: Any) -> Any:
    if value is None:
        return kind()
    if kind is bool and isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return kind(value)


@functools.lru_cache(maxsize=1)
def _field_types() -> dict[str, type]:
    kinds = {"bool": bool, "int": int, "float": float, "str": str}
    return {f.name: kinds[f.type] for f in dataclasses.fields(JobSettings) if f.name != "source"}


@functools.lru_cache(maxsize=1)
def _declared_defaults() -> dict[str, Any]:
    from modules.options import default_registry

    return {key: info.default for key, info in default_registry().items()}
