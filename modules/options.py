"""Settings: one registry of typed options (default, label, section, bounds) and the values in ``config.json``.

The registry is the single source for the Settings tab, ``GET/POST /sdapi/v1/options`` and validation. Writes are
validate-then-atomic: a bad value is refused with a message naming the key and nothing is written. Pure module: no
torch, no gradio.

The registry holds every A1111 setting (``modules.a1111_settings``): the ones this server acts on are declared in
``builtin_options()`` (or listed in ``a1111_settings.IMPLEMENTED``) and validated strictly; the others are *stored
only* (``OptionInfo.used`` is False): kept, saved and returned for A1111 tools, and accepted as leniently as A1111
accepts them (it checks no types when a setting is written). ``config.json`` is written with every key, defaults
included, as A1111 writes it.
"""

from __future__ import annotations

import copy
import logging
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from modules import fileio
from modules.models import weight_storage

log = logging.getLogger(__name__)


class OptionError(ValueError):
    """A setting could not be applied. ``field`` names the key, for 4xx answers and UI messages."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass
class OptionInfo:
    """One setting. ``kind`` is the value type ('bool', 'int', 'float', 'str', 'list'); ``choices`` may be a callable."""

    default: Any
    label: str = ""
    section: tuple[str, str] = ("other", "Other")
    kind: str = ""
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: Iterable[Any] | Callable[[], Iterable[Any]] | None = None
    restricted: bool = False  # refused over the API and with --hide-ui-dir-config (paths, filename patterns)
    infotext: str | None = None  # infotext key that maps onto this setting (override settings)
    comment: str = ""
    onchange: Callable[[], None] | None = None
    needs_reload_ui: bool = False
    used: bool = True  # False: an A1111 setting this server stores and returns but does not act on ("stored only")

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind = _kind_of(self.default)

    def current_choices(self) -> list[Any] | None:
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, (list, tuple)):
        return "list"
    return "str"


MAX_TEXT = 10_000  # characters in one text value
MAX_STORED_JSON = 100_000  # characters of one stored-only value, as JSON


def _coerce_stored(key: str, info: OptionInfo, value: Any) -> Any:
    """A stored-only setting: any JSON value, as A1111 (which checks no types on write) takes it; numbers of the
    setting's kind are normalised (1 -> 1.0 for a float, 2.0 -> 2 for an int). Only sizes and non-finite numbers
    are refused, so a hostile client cannot bloat config.json."""
    import json
    import math

    if isinstance(value, float) and not math.isfinite(value):
        raise OptionError(key, "expected a finite number")
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise OptionError(key, f"text is too long ({MAX_TEXT:,} characters at most)")
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, (list, dict)):
        try:
            size = len(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError) as err:
            raise OptionError(key, f"expected a JSON value ({err})") from None
        if size > MAX_STORED_JSON:
            raise OptionError(key, f"value is too large ({MAX_STORED_JSON:,} characters of JSON at most)")
    elif value is not None and not isinstance(value, (bool, int, float, str)):
        raise OptionError(key, f"expected a JSON value, got {type(value).__name__}")
    if not isinstance(value, bool):
        if info.kind == "float" and isinstance(value, int):
            value = float(value)
        elif info.kind == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)
    return value


def _coerce(key: str, info: OptionInfo, value: Any) -> Any:
    """Check and normalise one value against its OptionInfo; raise OptionError with a readable reason."""
    if not info.used:
        return _coerce_stored(key, info, value)
    kind = info.kind
    if value is None and info.default is None:
        return None
    if kind == "bool":
        if not isinstance(value, bool):
            raise OptionError(key, f"expected true or false, got {type(value).__name__}")
    elif kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptionError(key, f"expected a number, got {type(value).__name__}")
        if value != value or value in (float("inf"), float("-inf")):
            raise OptionError(key, "expected a finite number")
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise OptionError(key, "expected a whole number")
            value = int(value)
        else:
            value = float(value)
        if info.minimum is not None and value < info.minimum:
            raise OptionError(key, f"must be at least {info.minimum}")
        if info.maximum is not None and value > info.maximum:
            raise OptionError(key, f"must be at most {info.maximum}")
    elif kind == "list":
        if not isinstance(value, (list, tuple)):
            raise OptionError(key, f"expected a list, got {type(value).__name__}")
        value = list(value)
    else:
        if not isinstance(value, str):
            raise OptionError(key, f"expected text, got {type(value).__name__}")
        if len(value) > MAX_TEXT:
            raise OptionError(key, f"text is too long ({MAX_TEXT:,} characters at most)")
    choices = info.current_choices()
    if choices is not None and kind != "list" and value not in choices:
        shown = ", ".join(map(str, choices[:30]))
        raise OptionError(key, f"{value!r} is not one of: {shown}")
    return value


def same_value(a: Any, b: Any) -> bool:
    """Equal, and both booleans or neither (``True == 1`` in Python, but 1 is no value for a checkbox)."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


SAVING = ("saving-images", "Saving images/grids")
PATHS = ("saving-paths", "Paths for saving")
TO_DIRS = ("saving-to-dirs", "Saving to a directory")
SD = ("sd", "Stable Diffusion")
VAE = ("vae", "VAE")
SAMPLER = ("sampler-params", "Sampler parameters")
IMG2IMG = ("img2img", "img2img")
UPSCALING = ("upscaling", "Upscaling")
INFOTEXT = ("infotext", "Infotext")
PREVIEW = ("ui", "Live previews")
UI = ("ui", "User interface")
UI_ALTERNATIVES = ("ui_alternatives", "UI alternatives")
GALLERY = ("ui_gallery", "Gallery")
COMPATIBILITY = ("compatibility", "Compatibility")
EXTRA_NETWORKS = ("extra_networks", "Extra Networks")
SYSTEM = ("system", "System")
EXTENSIONS = ("extensions", "Extensions")
CONTROLNET = ("control_net", "ControlNet")
INTERROGATE = ("interrogate", "Interrogate")


def builtin_options() -> dict[str, OptionInfo]:
    """The core settings, with A1111's keys, defaults and labels."""
    return {
        # Saving images
        "samples_save": OptionInfo(True, "Always save all generated images", SAVING),
        "samples_format": OptionInfo("png", "File format for images", SAVING, choices=("png", "jpg", "jpeg", "webp")),
        "samples_filename_pattern": OptionInfo("", "Images filename pattern", SAVING, restricted=True),
        "save_images_add_number": OptionInfo(True, "Add number to filename when saving", SAVING),
        "grid_save": OptionInfo(True, "Always save all generated image grids", SAVING),
        "grid_format": OptionInfo("png", "File format for grids", SAVING, choices=("png", "jpg", "jpeg", "webp")),
        "grid_only_if_multiple": OptionInfo(True, "Do not save grids consisting of one picture", SAVING),
        "n_rows": OptionInfo(-1, "Grid row count; use -1 for autodetect and 0 for it to be same as batch size", SAVING,
                             minimum=-1, maximum=16),
        "grid_prevent_empty_spots": OptionInfo(False, "Prevent empty spots in grid (when set to autodetect)", SAVING),
        "enable_pnginfo": OptionInfo(True, "Save text information about generation parameters as chunks to png files",
                                     INFOTEXT),
        "save_txt": OptionInfo(False, "Create a text file with infotext next to every image", INFOTEXT),
        "save_images_before_highres_fix": OptionInfo(False, "Save copy of each image before applying highres fix.",
                                                     SAVING),
        "use_original_name_batch": OptionInfo(True, "Use original name for output filename during batch process in "
                                                    "extras tab", SAVING),
        "save_selected_only": OptionInfo(True, "When using 'Save' button, only save a single selected image",
                                         SAVING),
        "jpeg_quality": OptionInfo(80, "Quality for saved jpeg and webp images", SAVING, minimum=1, maximum=100),
        # Paths (restricted: never writable over the API)
        "outdir_samples": OptionInfo("", "Output directory for images; if empty, defaults to three directories below",
                                     PATHS, restricted=True),
        "outdir_txt2img_samples": OptionInfo("outputs/txt2img-images", "Output directory for txt2img images", PATHS,
                                             restricted=True),
        "outdir_img2img_samples": OptionInfo("outputs/img2img-images", "Output directory for img2img images", PATHS,
                                             restricted=True),
        "outdir_extras_samples": OptionInfo("outputs/extras-images", "Output directory for images from extras tab",
                                            PATHS, restricted=True),
        "outdir_grids": OptionInfo("", "Output directory for grids; if empty, defaults to two directories below",
                                   PATHS, restricted=True),
        "outdir_txt2img_grids": OptionInfo("outputs/txt2img-grids", "Output directory for txt2img grids", PATHS,
                                           restricted=True),
        "outdir_img2img_grids": OptionInfo("outputs/img2img-grids", "Output directory for img2img grids", PATHS,
                                           restricted=True),
        "outdir_save": OptionInfo("log/images", "Directory for saving images using the Save button", PATHS,
                                  restricted=True),
        # Saving to a directory
        "save_to_dirs": OptionInfo(True, "Save images to a subdirectory", TO_DIRS),
        "grid_save_to_dirs": OptionInfo(True, "Save grids to a subdirectory", TO_DIRS),
        "directories_filename_pattern": OptionInfo("[date]", "Directory name pattern", TO_DIRS, restricted=True),
        "directories_max_prompt_words": OptionInfo(8, "Max prompt words for [prompt_words] pattern", TO_DIRS,
                                                   minimum=1, maximum=20),
        # Stable Diffusion
        "sd_model_checkpoint": OptionInfo(None, "Stable Diffusion checkpoint", SD, kind="str"),
        "sd_checkpoints_limit": OptionInfo(1, "Maximum number of checkpoints loaded at the same time", SD,
                                           minimum=1, maximum=10),
        "CLIP_stop_at_last_layers": OptionInfo(1, "Clip skip", SD, minimum=1, maximum=12, infotext="Clip skip"),
        "emphasis": OptionInfo("Original", "Emphasis mode", SD, choices=("Original", "No norm", "Ignore", "None"),
                               infotext="Emphasis"),
        "comma_padding_backtrack": OptionInfo(20, "Prompt word wrap length limit", SD, minimum=0, maximum=74),
        "use_old_scheduling": OptionInfo(False, "Use old prompt editing timelines", COMPATIBILITY,
                                         infotext="Old prompt editing timelines"),
        "randn_source": OptionInfo("GPU", "Random number generator source", SD, choices=("GPU", "CPU", "NV"),
                                   infotext="RNG"),
        "vae_tiling": OptionInfo("Automatic", "VAE in tiles (less memory for large images; Automatic: above 4 "
                                              "megapixels or when the GPU lacks memory)", VAE,
                                 choices=("Automatic", "Always", "Never")),
        "sd_vae": OptionInfo("Automatic", "SD VAE", VAE, infotext="VAE"),
        # Forge's "VAE / Text Encoder": files completing a checkpoint that lacks them (Flux's clip_l, t5xxl, ae)
        "forge_additional_modules": OptionInfo([], "VAE / Text Encoder", SD, kind="list"),
        # Forge's "Diffusion in Low Bits": how a Flux transformer's weights rest in memory (modules.models.weight_storage)
        "forge_unet_storage_dtype": OptionInfo(weight_storage.AUTOMATIC, "Diffusion in Low Bits (Flux weight storage)",
                                               SD, choices=weight_storage.CHOICES),
        # diffusers' First-Block-Cache for Flux: 0 off; about 0.05-0.2 skips the later blocks on steps that change
        # little (faster, slightly different pictures)
        "flux_first_block_cache": OptionInfo(0.0, "Flux First-Block-Cache threshold (0: off)", SD, minimum=0.0,
                                             maximum=1.0, step=0.01),
        "sd_vae_overrides_per_model_preferences": OptionInfo(
            True, "Selected VAE overrides per-model preferences", VAE),
        "auto_vae_precision": OptionInfo(True, "Automatically revert VAE to 32-bit floats", VAE),
        # img2img
        "inpainting_mask_weight": OptionInfo(1.0, "Inpainting conditioning mask strength", IMG2IMG, minimum=0.0,
                                             maximum=1.0, infotext="Conditional mask weight"),
        "initial_noise_multiplier": OptionInfo(1.0, "Noise multiplier for img2img", IMG2IMG, minimum=0.0,
                                               maximum=1.5, infotext="Noise multiplier"),
        "img2img_fix_steps": OptionInfo(False, "With img2img, do exactly the amount of steps the slider specifies.",
                                        IMG2IMG),
        "img2img_background_color": OptionInfo("#ffffff", "With img2img, fill transparent parts of the input image "
                                                          "with this color.", IMG2IMG),
        # Upscaling
        "ESRGAN_tile": OptionInfo(192, "Tile size for ESRGAN upscalers.", UPSCALING, minimum=0, maximum=512, step=16,
                                  comment="0 = no tiling"),
        "ESRGAN_tile_overlap": OptionInfo(8, "Tile overlap for ESRGAN upscalers.", UPSCALING, minimum=0, maximum=48),
        # Sampler parameters
        "eta_noise_seed_delta": OptionInfo(0, "Eta noise seed delta", SAMPLER, minimum=0, maximum=2**32 - 1,
                                           infotext="ENSD"),
        "hide_samplers": OptionInfo([], "Hide samplers in user interface", SAMPLER, kind="list"),
        # Infotext
        "add_model_hash_to_info": OptionInfo(True, "Add model hash to infotext", INFOTEXT),
        "add_model_name_to_info": OptionInfo(True, "Add model name to infotext", INFOTEXT),
        "add_version_to_infotext": OptionInfo(True, "Add program version to infotext", INFOTEXT),
        "add_vae_name_to_info": OptionInfo(True, "Add VAE name to infotext", INFOTEXT),
        "add_vae_hash_to_info": OptionInfo(True, "Add VAE hash to infotext", INFOTEXT),
        "textual_inversion_add_hashes_to_infotext": OptionInfo(True, "Add Textual Inversion hashes to infotext",
                                                               EXTRA_NETWORKS),
        # Live previews
        "show_progressbar": OptionInfo(True, "Show progressbar", PREVIEW),
        "live_previews_enable": OptionInfo(True, "Show live previews of the created image", PREVIEW),
        "show_progress_every_n_steps": OptionInfo(10, "Live preview display period (in sampling steps)", PREVIEW,
                                                  minimum=-1, maximum=32),
        "show_progress_type": OptionInfo("Approx NN", "Live preview method", PREVIEW,
                                         choices=("Full", "Approx NN", "Approx cheap", "TAESD"),
                                         comment="Approx NN: models/VAE-approx/model.pt (SDXL: vaeapprox-sdxl.pt); "
                                                 "TAESD: taesd_decoder.pth (SDXL: taesdxl_decoder.pth) there; "
                                                 "without its file the next cheaper method is used"),
        "live_preview_allow_lowvram_full": OptionInfo(False, "Allow Full live preview method with lowvram/medvram",
                                                      PREVIEW),
        "live_preview_fast_interrupt": OptionInfo(False, "Return image with chosen live preview method on "
                                                         "interrupt", PREVIEW),
        # User interface
        "localization": OptionInfo("None", "Localization", UI, needs_reload_ui=True),
        "return_grid": OptionInfo(True, "Show grid in gallery", GALLERY),
        "hires_fix_show_sampler": OptionInfo(False, "Hires fix: show hires checkpoint and sampler selection",
                                             UI_ALTERNATIVES, needs_reload_ui=True),
        "hires_fix_show_prompts": OptionInfo(False, "Hires fix: show hires prompt and negative prompt",
                                             UI_ALTERNATIVES, needs_reload_ui=True),
        # System
        "samples_log_stdout": OptionInfo(False, "Always print all generation info to standard output", SYSTEM),
        "max_job_megapixel_steps": OptionInfo(1_000_000.0, "Largest job accepted, in megapixel-steps (width x height "
                                                         "x steps x images, hires pass included; 0: no limit)",
                                              SYSTEM, restricted=True, minimum=0),
        "max_job_seconds": OptionInfo(1800.0, "Longest job accepted, in estimated seconds on this server (from the "
                                              "measured step time of its model; X/Y/Z cells and hires pass "
                                              "included; 0: no limit)", SYSTEM, restricted=True, minimum=0),
        # ControlNet (sd-webui-controlnet's keys)
        "control_net_models_path": OptionInfo("", "Extra path to scan for ControlNet models (e.g. training output "
                                                  "directory)", CONTROLNET, restricted=True),
        "control_net_modules_path": OptionInfo("", "Path to directory containing annotator model directories "
                                                   "(overrides the command line flag)", CONTROLNET,
                                               restricted=True),
        "control_net_unit_count": OptionInfo(3, "Multi-ControlNet: ControlNet unit number", CONTROLNET, minimum=1,
                                             maximum=10, step=1, needs_reload_ui=True),
        "control_net_model_cache_size": OptionInfo(2, "Model cache size", CONTROLNET, minimum=1, maximum=10, step=1),
        "control_net_no_detectmap": OptionInfo(False, "Do not append detectmap to output", CONTROLNET),
        # The WD14 tagger (img2text, modules/interrogate): which folder of models/wd14 ("": the first) and thresholds
        "interrogate_wd14_model": OptionInfo("", "WD14 tagger: model folder (empty: the first in models/wd14)",
                                             INTERROGATE, kind="str"),
        "interrogate_wd14_general_threshold": OptionInfo(0.35, "WD14 tagger: general tags threshold", INTERROGATE,
                                                         minimum=0.0, maximum=1.0, step=0.01),
        "interrogate_wd14_character_threshold": OptionInfo(0.85, "WD14 tagger: character tags threshold",
                                                           INTERROGATE, minimum=0.0, maximum=1.0, step=0.01),
        # Extensions (set on the Extensions tab; kept out of the Settings tab)
        "disabled_extensions": OptionInfo([], "Disable these extensions", EXTENSIONS, kind="list"),
        "disable_all_extensions": OptionInfo("none", "Disable all extensions (preserves the list of disabled "
                                                     "extensions)", EXTENSIONS, choices=("none", "extra", "all")),
    }


def a1111_option(fact: Any) -> OptionInfo:
    """An A1111 setting from ``modules.a1111_settings`` as an OptionInfo: stored only unless listed in
    ``IMPLEMENTED``. Choices A1111 computes at run time (models, scripts) are not known here and not checked."""
    from modules import a1111_settings

    return OptionInfo(fact.default, fact.label, fact.section.key, kind=fact.kind, minimum=fact.minimum,
                      maximum=fact.maximum, step=fact.step, choices=fact.choices, restricted=fact.restricted,
                      infotext=fact.infotext, comment=fact.comment, needs_reload_ui=fact.needs_reload_ui,
                      used=fact.key in a1111_settings.IMPLEMENTED)


def default_registry() -> dict[str, OptionInfo]:
    """Every setting: A1111's keys in A1111's order (``builtin_options()`` where it declares them, the facts of
    ``modules.a1111_settings`` otherwise), then our own keys A1111 lacks."""
    from modules.a1111_settings import A1111_SETTINGS

    builtin = builtin_options()
    registry = {key: builtin.pop(key, None) or a1111_option(fact) for key, fact in A1111_SETTINGS.items()}
    registry.update(builtin)  # ours: vae_tiling, job limits...
    return registry


def anchor_folder_defaults(registry: Mapping[str, OptionInfo], data_dir: Path,
                           install_dir: Path) -> dict[str, OptionInfo]:
    """The registry with the output folders' defaults (``outdir_*``) absolute when the data folder is not the install
    folder, as A1111 writes them then (its defaults are relative to its install folder, the working directory, only
    for folders inside it). Extensions resolve a relative one against the working directory (infinite-image-browsing
    lists nothing otherwise); our saving resolves it against the data folder, so it is the same folder either way."""
    if Path(data_dir).resolve() == Path(install_dir).resolve():
        return dict(registry)
    out = dict(registry)
    for key, info in registry.items():
        if key.startswith("outdir_") and isinstance(info.default, str) and info.default \
                and not Path(info.default).is_absolute():
            out[key] = replace(info, default=str(Path(data_dir) / info.default))
    return out


def _relative_form_of_default(info: OptionInfo, value: Any) -> bool:
    """``value`` is a folder setting's default as written before ``anchor_folder_defaults`` made it absolute
    ("outputs/txt2img-images" for "<data>/outputs/txt2img-images"): A1111 tools resolve it against the working
    directory, so it is read as the default."""
    if not (isinstance(value, str) and value and isinstance(info.default, str)) or Path(value).is_absolute():
        return False
    default, relative = Path(info.default), Path(value)
    return default.is_absolute() and default.parts[-len(relative.parts):] == relative.parts


def _defaults(registry: Mapping[str, OptionInfo]) -> dict[str, Any]:
    return {key: copy.deepcopy(info.default) for key, info in registry.items()}


class Options:
    """Current setting values over a registry; thread-safe; persisted atomically to ``config.json``.

    Unknown keys found in config.json (from extensions not loaded now, or newer versions) are kept and written back,
    so a user never loses them. Saving writes every key, defaults included, as A1111 does (tools recognise a web UI
    folder by keys such as ``outdir_txt2img_samples`` in its config.json).
    """

    def __init__(self, path: Path, registry: Mapping[str, OptionInfo] | None = None) -> None:
        self.path = path
        self.registry: dict[str, OptionInfo] = dict(registry or default_registry())
        # every registered key with its value, defaults included (A1111's ``opts.data``, which extensions read)
        self.data: dict[str, Any] = _defaults(self.registry)
        self.quarantined: Path | None = None
        self.unreadable: str | None = None  # why config.json could not be read at all (a folder, no permission)
        self.frozen = False  # --freeze-settings: nothing is written; in-memory session values still change
        self._lock = threading.RLock()

    # -- registry -------------------------------------------------------------------------------------------
    def add_option(self, key: str, info: OptionInfo) -> None:
        with self._lock:
            self.registry[key] = info
            if key not in self.data:  # A1111: a new option's default is in ``opts.data`` at once
                self.data[key] = copy.deepcopy(info.default)

    def onchange(self, key: str, func: Callable[[], None], call: bool = True) -> None:
        """A1111's ``opts.onchange``: ``func`` runs after ``key`` changes (and now, unless ``call`` is False)."""
        with self._lock:
            info = self.registry.get(key)
            if info is None:
                raise OptionError(key, "unknown setting")
            info.onchange = func
        if call:
            func()

    def __contains__(self, key: str) -> bool:
        return key in self.registry or key in self.data

    _OWN_ATTRIBUTES = frozenset({"path", "registry", "data", "quarantined", "unreadable", "frozen"})

    def __setattr__(self, key: str, value: Any) -> None:
        """A1111's ``opts.samples_format = "jpg"`` (extensions do it, often to restore the old value later): the
        setting changes for this session, validated as any change (a bad value raises OptionError), not written
        to config.json and without its onchange callback, as in A1111 (``set()``/``apply()`` save and notify).
        Any other name is an ordinary attribute."""
        if key.startswith("_") or key in Options._OWN_ATTRIBUTES or "_lock" not in self.__dict__:
            object.__setattr__(self, key, value)
            return
        with self._lock:
            if key in self.registry:
                self.data[key] = self.validate({key: value})[key]
                return
            if key in self.data:  # a setting of an extension not loaded now: kept as given
                self.data[key] = value
                return
        object.__setattr__(self, key, value)

    # -- values ---------------------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            if key in self.data:
                return self.data[key]
            info = self.registry.get(key)
            return info.default if info is not None else default

    def __getattr__(self, key: str) -> Any:  # opts.samples_format, as extensions expect
        if key.startswith("_") or key in ("path", "registry", "data", "quarantined", "unreadable", "frozen"):
            raise AttributeError(key)
        with self.__dict__["_lock"]:
            if key in self.__dict__["data"] or key in self.__dict__["registry"]:
                return self.get(key)
        raise AttributeError(key)

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            out = {k: info.default for k, info in self.registry.items()}
            out.update(self.data)
            return out

    def validate(self, changes: Mapping[str, Any], *, from_api: bool = False) -> dict[str, Any]:
        """Return normalised values; raise OptionError naming the first bad key. Nothing is stored."""
        clean: dict[str, Any] = {}
        for key, value in changes.items():
            info = self.registry.get(key)
            if info is None:
                raise OptionError(key, "unknown setting")
            if from_api and info.restricted and not same_value(value, self.get(key)):  # the same value: no write
                raise OptionError(key, "this setting can only be changed in config.json or the local UI")
            clean[key] = _coerce(key, info, value)
        return clean

    def apply(self, changes: Mapping[str, Any], *, from_api: bool = False, save: bool = True) -> list[str]:
        """Validate all, then store and persist atomically. Returns the keys whose value changed."""
        with self._lock:
            clean = self.validate(changes, from_api=from_api)
            changed = [k for k, v in clean.items() if not same_value(self.get(k), v)]
            if not changed:
                return []
            if self.frozen and save:
                raise OptionError(changed[0], "settings are frozen (--freeze-settings)")
            previous = dict(self.data)
            self.data.update({k: clean[k] for k in changed})
            if save:
                try:
                    self.save()
                except OSError as err:
                    self.data = previous
                    raise OptionError(changed[0], f"could not write {self.path.name}: {err}") from err
        for key in changed:
            cb = self.registry[key].onchange
            if cb is not None:
                try:
                    cb()
                except Exception:  # a failing callback must not undo a saved setting
                    log.exception("onchange callback for %s failed", key)
        return changed

    def set(self, key: str, value: Any) -> bool:
        return bool(self.apply({key: value}))

    # -- persistence ----------------------------------------------------------------------------------------
    def load(self, *, at_start: bool = True) -> None:
        """Read config.json. A corrupt file is quarantined (kept, never overwritten) and defaults are used; one that
        cannot be read at all (a folder, no permission) is left alone and defaults are used. ``at_start=False``:
        a look before the real start (extension preloads): nothing is moved or deleted, so the real start still
        finds, quarantines and reports the problem."""
        data, quarantined, unreadable = self._read(at_start)
        with self._lock:
            self.quarantined, self.unreadable = quarantined, unreadable
            self.data = {}
            if unreadable is not None:
                log.warning("Settings file %s could not be read (%s); started with defaults.", self.path, unreadable)
            if quarantined is not None:
                log.warning("Settings file %s was unreadable; kept it as %s and started with defaults.",
                            self.path, quarantined)
            for key, value in (data or {}).items():
                info = self.registry.get(key)
                if info is None:
                    self.data[key] = value  # keep unknown keys verbatim
                    continue
                if _relative_form_of_default(info, value):
                    continue  # an earlier save's relative default: the default (absolute) is the same folder
                try:
                    self.data[key] = _coerce(key, info, value)
                except OptionError as err:
                    log.warning("Ignoring bad value in %s: %s", self.path.name, err)
            for key, value in _defaults(self.registry).items():
                self.data.setdefault(key, value)

    def _read(self, at_start: bool) -> tuple[dict[str, Any] | None, Path | None, str | None]:
        """(data, where a corrupt file went, why the file could not be read at all)."""
        if at_start:
            return fileio.read_settings_at_start(self.path)
        try:
            return fileio.read_json_quietly(self.path), None, None
        except OSError as err:
            return None, None, err.strerror or type(err).__name__

    def startup_note(self) -> str | None:
        """What the page must tell the user about loading this file, or None when it loaded normally."""
        name = self.path.name
        if self.quarantined is not None:
            return f"{name} could not be read and was kept as {self.quarantined.name}; defaults are in use."
        if self.unreadable is not None:
            return (f"{name} could not be read ({self.unreadable}): {self.path}; defaults are in use and changed "
                    "settings cannot be saved until it is fixed.")
        return None

    def save(self) -> None:
        import json

        with self._lock:
            text = json.dumps(self.as_dict(), indent=4, ensure_ascii=False, default=str)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fileio.atomic_write_text(self.path, text, private=True)  # extensions keep API keys and tokens here


@dataclass
class SettingsSnapshot:
    """An immutable copy of the values a job reads, taken when it starts (override_settings applied)."""

    values: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)
