"""A1111's settings as data: every key of stable-diffusion-webui v1.10.1 ``modules/shared_options.py``.

One row per key: its default, label, section and type, with choices and slider bounds where A1111 gives fixed ones.
These are facts about A1111 (written in our own form, not its code), used three ways:

* ``modules.options.default_registry()`` registers every row that ``builtin_options()`` does not already declare, so
  ``GET /sdapi/v1/options`` returns every A1111 key, ``config.json`` holds them all, and ``POST /sdapi/v1/options``
  and ``override_settings`` accept them;
* ``IMPLEMENTED`` names the rows (beyond ``builtin_options()``) that this server reads; the others are *stored only*:
  kept and returned for A1111 tools, marked as not used in the Settings tab, and accepted as leniently as A1111 does;
* ``SECTIONS`` gives A1111's sections, their order and their category, for the Settings tab.

Defaults that depend on the machine or the command line in A1111 have a fixed value here and a ``note``. The three
``OptionHTML`` texts (``sd_vae_explanation``, ``infotext_explanation``, ``profiling_explanation``) are explanations,
never saved or returned by A1111, so they are not rows. Labels are A1111's; its longer explanations are shortened.
Where the facts were read is in the header of tests/fixtures/a1111_shared_options_keys.txt, the test's independent
key list. Pure module: no imports from this project.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

A1111_VERSION = "v1.10.1"


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    category: str | None  # A1111's category: the heading its Settings page groups sections under

    @property
    def key(self) -> tuple[str, str]:
        return self.id, self.title


@dataclass(frozen=True)
class Fact:
    """One A1111 setting. ``kind``: 'bool', 'int', 'float', 'str' or 'list'. ``choices``: A1111's fixed choices
    (None where A1111 computes them at run time from installed models or scripts; ``dynamic_choices`` says so)."""

    key: str
    default: Any
    label: str
    section: Section
    kind: str
    choices: tuple[Any, ...] | None = None
    dynamic_choices: bool = False
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    comment: str = ""
    infotext: str | None = None
    needs_reload_ui: bool = False
    restricted: bool = False  # a path, filename pattern or API-only setting: never written over our API
    note: str = ""  # where A1111's default depends on the machine or flags, what we use instead


# A1111's categories, in the order it registers them (its Settings page shows them in this order).
CATEGORIES = (("saving", "Saving images"), ("sd", "Stable Diffusion"), ("ui", "User Interface"),
              ("system", "System"), ("postprocessing", "Postprocessing"), ("training", "Training"))

SAVING_IMAGES = Section("saving-images", "Saving images/grids", "saving")
SAVING_PATHS = Section("saving-paths", "Paths for saving", "saving")
SAVING_TO_DIRS = Section("saving-to-dirs", "Saving to a directory", "saving")
UPSCALING = Section("upscaling", "Upscaling", "postprocessing")
FACE_RESTORATION = Section("face-restoration", "Face restoration", "postprocessing")
SYSTEM = Section("system", "System", "system")
PROFILER = Section("profiler", "Profiler", "system")
API = Section("API", "API", "system")
TRAINING = Section("training", "Training", "training")
SD = Section("sd", "Stable Diffusion", "sd")
SDXL = Section("sdxl", "Stable Diffusion XL", "sd")
SD3 = Section("sd3", "Stable Diffusion 3", "sd")
VAE = Section("vae", "VAE", "sd")
IMG2IMG = Section("img2img", "img2img", "sd")
OPTIMIZATIONS = Section("optimizations", "Optimizations", "sd")
COMPATIBILITY = Section("compatibility", "Compatibility", "sd")
INTERROGATE = Section("interrogate", "Interrogate", None)
EXTRA_NETWORKS = Section("extra_networks", "Extra Networks", "sd")
PROMPT_EDITING = Section("ui_prompt_editing", "Prompt editing", "ui")
GALLERY = Section("ui_gallery", "Gallery", "ui")
UI_ALTERNATIVES = Section("ui_alternatives", "UI alternatives", "ui")
USER_INTERFACE = Section("ui", "User interface", "ui")
INFOTEXT = Section("infotext", "Infotext", "ui")
LIVE_PREVIEWS = Section("ui", "Live previews", "ui")  # A1111 reuses the id "ui" for this one
SAMPLER_PARAMS = Section("sampler-params", "Sampler parameters", "sd")
POSTPROCESSING = Section("postprocessing", "Postprocessing", "postprocessing")
HIDDEN = Section("hidden", "Hidden options", None)  # A1111: section (None, "Hidden options"), not on the page

# In the order A1111 declares them.
SECTIONS: tuple[Section, ...] = (
    SAVING_IMAGES, SAVING_PATHS, SAVING_TO_DIRS, UPSCALING, FACE_RESTORATION, SYSTEM, PROFILER, API, TRAINING, SD,
    SDXL, SD3, VAE, IMG2IMG, OPTIMIZATIONS, COMPATIBILITY, INTERROGATE, EXTRA_NETWORKS, PROMPT_EDITING, GALLERY,
    UI_ALTERNATIVES, USER_INTERFACE, INFOTEXT, LIVE_PREVIEWS, SAMPLER_PARAMS, POSTPROCESSING, HIDDEN,
)


def display_order() -> list[Section]:
    """Sections as A1111's Settings page groups them: by category in A1111's category order (uncategorised last),
    declaration order inside a category. (A1111 also sorts sections by title inside a category; we keep the
    declaration order, which reads better in a single column.)"""
    rank = {cat: i for i, (cat, _) in enumerate(CATEGORIES)}
    return sorted(SECTIONS, key=lambda s: rank.get(s.category, len(rank)))  # stable: declaration order kept


# -- the rows --------------------------------------------------------------------------------------------------
# (key, default, label) or (key, default, label, {extras}); extras: kind, choices, dynamic, min, max, step, info,
# infotext, reload, restricted, note.
_OUTPUTS = "A1111: under its outputs folder (relative to the install folder when inside it)"

_ROWS: dict[Section, list[tuple]] = {
    SAVING_IMAGES: [
        ("samples_save", True, "Always save all generated images"),
        ("samples_format", "png", "File format for images"),
        ("samples_filename_pattern", "", "Images filename pattern", {"restricted": True}),
        ("save_images_add_number", True, "Add number to filename when saving"),
        ("save_images_replace_action", "Replace", "Saving the image to an existing file",
         {"choices": ("Replace", "Add number suffix")}),
        ("grid_save", True, "Always save all generated image grids"),
        ("grid_format", "png", "File format for grids"),
        ("grid_extended_filename", False, "Add extended info (seed, prompt) to filename when saving grid"),
        ("grid_only_if_multiple", True, "Do not save grids consisting of one picture"),
        ("grid_prevent_empty_spots", False, "Prevent empty spots in grid (when set to autodetect)"),
        ("grid_zip_filename_pattern", "", "Archive filename pattern", {"restricted": True}),
        ("n_rows", -1, "Grid row count; use -1 for autodetect and 0 for it to be same as batch size",
         {"min": -1, "max": 16, "step": 1}),
        ("font", "", "Font for image grids that have text", {"restricted": True}),
        ("grid_text_active_color", "#000000", "Text color for image grids"),
        ("grid_text_inactive_color", "#999999", "Inactive text color for image grids"),
        ("grid_background_color", "#ffffff", "Background color for image grids"),
        ("save_images_before_face_restoration", False, "Save a copy of image before doing face restoration."),
        ("save_images_before_highres_fix", False, "Save a copy of image before applying highres fix."),
        ("save_images_before_color_correction", False,
         "Save a copy of image before applying color correction to img2img results"),
        ("save_mask", False, "For inpainting, save a copy of the greyscale mask"),
        ("save_mask_composite", False, "For inpainting, save a masked composite"),
        ("jpeg_quality", 80, "Quality for saved jpeg and avif images", {"min": 1, "max": 100, "step": 1}),
        ("webp_lossless", False, "Use lossless compression for webp images"),
        ("export_for_4chan", True, "Save copy of large images as JPG",
         {"info": "if the file size is above the limit, or either width or height are above the limit"}),
        ("img_downscale_threshold", 4.0, "File size limit for the above option, MB"),
        ("target_side_length", 4000, "Width/height limit for the above option, in pixels"),
        ("img_max_size_mp", 200, "Maximum image size", {"info": "in megapixels"}),
        ("use_original_name_batch", True, "Use original name for output filename during batch process in extras tab"),
        ("use_upscaler_name_as_suffix", False, "Use upscaler name as filename suffix in the extras tab"),
        ("save_selected_only", True, "When using 'Save' button, only save a single selected image"),
        ("save_write_log_csv", True, "Write log.csv when saving images using 'Save' button"),
        ("save_init_img", False, "Save init images when using img2img"),
        ("temp_dir", "", "Directory for temporary images; leave empty for default", {"restricted": True}),
        ("clean_temp_dir_at_start", False, "Cleanup non-default temporary directory when starting webui",
         {"restricted": True}),
        ("save_incomplete_images", False, "Save incomplete images",
         {"info": "save images that has been interrupted in mid-generation"}),
        ("notification_audio", True, "Play notification sound after image generation",
         {"info": "notification.mp3 should be present in the root directory", "reload": True}),
        ("notification_volume", 100, "Notification sound volume", {"min": 0, "max": 100, "step": 1, "info": "in %"}),
    ],
    SAVING_PATHS: [
        ("outdir_samples", "", "Output directory for images; if empty, defaults to three directories below",
         {"restricted": True}),
        ("outdir_txt2img_samples", "outputs/txt2img-images", "Output directory for txt2img images",
         {"restricted": True, "note": _OUTPUTS}),
        ("outdir_img2img_samples", "outputs/img2img-images", "Output directory for img2img images",
         {"restricted": True, "note": _OUTPUTS}),
        ("outdir_extras_samples", "outputs/extras-images", "Output directory for images from extras tab",
         {"restricted": True, "note": _OUTPUTS}),
        ("outdir_grids", "", "Output directory for grids; if empty, defaults to two directories below",
         {"restricted": True}),
        ("outdir_txt2img_grids", "outputs/txt2img-grids", "Output directory for txt2img grids",
         {"restricted": True, "note": _OUTPUTS}),
        ("outdir_img2img_grids", "outputs/img2img-grids", "Output directory for img2img grids",
         {"restricted": True, "note": _OUTPUTS}),
        ("outdir_save", "log/images", "Directory for saving images using the Save button",
         {"restricted": True, "note": "A1111: log/images under its data folder"}),
        ("outdir_init_images", "outputs/init-images", "Directory for saving init images when using img2img",
         {"restricted": True, "note": _OUTPUTS}),
    ],
    SAVING_TO_DIRS: [
        ("save_to_dirs", True, "Save images to a subdirectory"),
        ("grid_save_to_dirs", True, "Save grids to a subdirectory"),
        ("use_save_to_dirs_for_ui", False, 'When using "Save" button, save images to a subdirectory'),
        ("directories_filename_pattern", "[date]", "Directory name pattern", {"restricted": True}),
        ("directories_max_prompt_words", 8, "Max prompt words for [prompt_words] pattern",
         {"min": 1, "max": 20, "step": 1}),
    ],
    UPSCALING: [
        ("ESRGAN_tile", 192, "Tile size for ESRGAN upscalers.", {"min": 0, "max": 512, "step": 16,
                                                                  "info": "0 = no tiling"}),
        ("ESRGAN_tile_overlap", 8, "Tile overlap for ESRGAN upscalers.", {"min": 0, "max": 48, "step": 1,
                                                                          "info": "Low values = visible seam"}),
        ("realesrgan_enabled_models", ["R-ESRGAN 4x+", "R-ESRGAN 4x+ Anime6B"],
         "Select which Real-ESRGAN models to show in the web UI.", {"dynamic": True}),
        ("dat_enabled_models", ["DAT x2", "DAT x3", "DAT x4"], "Select which DAT models to show in the web UI.",
         {"dynamic": True}),
        ("DAT_tile", 192, "Tile size for DAT upscalers.", {"min": 0, "max": 512, "step": 16, "info": "0 = no tiling"}),
        ("DAT_tile_overlap", 8, "Tile overlap for DAT upscalers.", {"min": 0, "max": 48, "step": 1,
                                                                    "info": "Low values = visible seam"}),
        ("upscaler_for_img2img", None, "Upscaler for img2img", {"kind": "str", "dynamic": True}),
        ("set_scale_by_when_changing_upscaler", False,
         "Automatically set the Scale by factor based on the name of the selected Upscaler."),
    ],
    FACE_RESTORATION: [
        ("face_restoration", False, "Restore faces", {"infotext": "Face restoration",
                                                     "info": "will use a third-party model on generation result "
                                                             "to reconstruct faces"}),
        ("face_restoration_model", "CodeFormer", "Face restoration model", {"dynamic": True}),
        ("code_former_weight", 0.5, "CodeFormer weight", {"min": 0, "max": 1, "step": 0.01,
                                                          "info": "0 = maximum effect; 1 = minimum effect"}),
        ("face_restoration_unload", False, "Move face restoration model from VRAM into RAM after processing"),
    ],
    SYSTEM: [
        ("auto_launch_browser", "Local", "Automatically open webui in browser on startup",
         {"choices": ("Disable", "Local", "Remote")}),
        ("enable_console_prompts", False, "Print prompts to console when generating with txt2img and img2img.",
         {"note": "A1111: the value of --enable-console-prompts"}),
        ("show_warnings", False, "Show warnings in console.", {"reload": True}),
        ("show_gradio_deprecation_warnings", True, "Show gradio deprecation warnings in console.", {"reload": True}),
        ("memmon_poll_rate", 8, "VRAM usage polls per second during generation.",
         {"min": 0, "max": 40, "step": 1, "info": "0 = disable"}),
        ("samples_log_stdout", False, "Always print all generation info to standard output"),
        ("multiple_tqdm", True, "Add a second progress bar to the console that shows progress for an entire job."),
        ("enable_upscale_progressbar", True, "Show a progress bar in the console for tiled upscaling."),
        ("print_hypernet_extra", False, "Print extra hypernetwork information to console."),
        ("list_hidden_files", True, "Load models/files in hidden directories",
         {"info": 'directory is hidden if its name starts with "."'}),
        ("disable_mmap_load_safetensors", False, "Disable memmapping for loading .safetensors files.",
         {"info": "fixes very slow loading speed in some cases"}),
        ("hide_ldm_prints", True, "Prevent Stability-AI's ldm/sgm modules from printing noise to console."),
        ("dump_stacks_on_signal", False, "Print stack traces before exiting the program with ctrl+c."),
    ],
    PROFILER: [
        ("profiling_enable", False, "Enable profiling"),
        ("profiling_activities", ["CPU"], "Activities", {"choices": ("CPU", "CUDA")}),
        ("profiling_record_shapes", True, "Record shapes"),
        ("profiling_profile_memory", True, "Profile memory"),
        ("profiling_with_stack", True, "Include python stack"),
        ("profiling_filename", "trace.json", "Profile filename", {"restricted": True}),
    ],
    API: [  # A1111: restrict_api, so never written over its API either
        ("api_enable_requests", True, "Allow http:// and https:// URLs for input images in API", {"restricted": True}),
        ("api_forbid_local_requests", True, "Forbid URLs to local resources", {"restricted": True}),
        ("api_useragent", "", "User agent for requests", {"restricted": True}),
    ],
    TRAINING: [
        ("unload_models_when_training", False, "Move VAE and CLIP to RAM when training if possible. Saves VRAM."),
        ("pin_memory", False, "Turn on pin_memory for DataLoader. Makes training slightly faster but can increase "
                              "memory usage."),
        ("save_optimizer_state", False, "Saves Optimizer state as separate *.optim file. Training of embedding or HN "
                                        "can be resumed with the matching optim file."),
        ("save_training_settings_to_txt", True, "Save textual inversion and hypernet settings to a text file "
                                                "whenever training starts."),
        ("dataset_filename_word_regex", "", "Filename word regex"),
        ("dataset_filename_join_string", " ", "Filename join string"),
        ("training_image_repeats_per_epoch", 1, "Number of repeats for a single input image per epoch; used only for "
                                                "displaying epoch number"),
        ("training_write_csv_every", 500, "Save an csv containing the loss to log directory every N steps, "
                                          "0 to disable"),
        ("training_xattention_optimizations", False, "Use cross attention optimizations while training"),
        ("training_enable_tensorboard", False, "Enable tensorboard logging."),
        ("training_tensorboard_save_images", False, "Save generated images within tensorboard."),
        ("training_tensorboard_flush_every", 120, "How often, in seconds, to flush the pending tensorboard events and "
                                                  "summaries to disk."),
    ],
    SD: [
        ("sd_model_checkpoint", None, "Stable Diffusion checkpoint", {"kind": "str", "dynamic": True,
                                                                       "infotext": "Model hash"}),
        ("sd_checkpoints_limit", 1, "Maximum number of checkpoints loaded at the same time",
         {"min": 1, "max": 10, "step": 1}),
        ("sd_checkpoints_keep_in_cpu", True, "Only keep one model on device",
         {"info": "will keep models other than the currently used one in RAM rather than VRAM"}),
        ("sd_checkpoint_cache", 0, "Checkpoints to cache in RAM",
         {"min": 0, "max": 10, "step": 1, "info": "obsolete; set to 0 and use the two settings above instead"}),
        ("sd_unet", "Automatic", "SD Unet", {"dynamic": True, "info": "Automatic = use one with same filename as "
                                                                      "checkpoint; None = use Unet from checkpoint"}),
        ("enable_quantization", False, "Enable quantization in K samplers for sharper and cleaner results. This may "
                                       "change existing seeds", {"reload": True}),
        ("emphasis", "Original", "Emphasis mode", {"choices": ("Original", "No norm", "Ignore", "None"),
                                                   "infotext": "Emphasis"}),
        ("enable_batch_seeds", True, "Make K-diffusion samplers produce same images in a batch as when making a "
                                     "single image"),
        ("comma_padding_backtrack", 20, "Prompt word wrap length limit", {"min": 0, "max": 74, "step": 1}),
        ("sdxl_clip_l_skip", False, "Clip skip SDXL",
         {"info": "Enable Clip skip for the secondary clip model in sdxl"}),
        ("CLIP_stop_at_last_layers", 1, "Clip skip", {"min": 1, "max": 12, "step": 1, "infotext": "Clip skip"}),
        ("upcast_attn", False, "Upcast cross attention layer to float32"),
        ("randn_source", "GPU", "Random number generator source.", {"choices": ("GPU", "CPU", "NV"),
                                                                    "infotext": "RNG"}),
        ("tiling", False, "Tiling", {"infotext": "Tiling", "info": "produce a tileable picture"}),
        ("hires_fix_refiner_pass", "second pass", "Hires fix: which pass to enable refiner for",
         {"choices": ("first pass", "second pass", "both passes"), "infotext": "Hires refiner"}),
    ],
    SDXL: [
        ("sdxl_crop_top", 0, "crop top coordinate"),
        ("sdxl_crop_left", 0, "crop left coordinate"),
        ("sdxl_refiner_low_aesthetic_score", 2.5, "SDXL low aesthetic score",
         {"info": "used for refiner model negative prompt"}),
        ("sdxl_refiner_high_aesthetic_score", 6.0, "SDXL high aesthetic score",
         {"info": "used for refiner model prompt"}),
    ],
    SD3: [
        ("sd3_enable_t5", False, "Enable T5", {"info": "load T5 text encoder; increases VRAM use by a lot; requires "
                                                       "model reload to apply"}),
    ],
    VAE: [
        ("sd_vae_checkpoint_cache", 0, "VAE Checkpoints to cache in RAM", {"min": 0, "max": 10, "step": 1}),
        ("sd_vae", "Automatic", "SD VAE", {"dynamic": True, "infotext": "VAE"}),
        ("sd_vae_overrides_per_model_preferences", True, "Selected VAE overrides per-model preferences"),
        ("auto_vae_precision_bfloat16", False, "Automatically convert VAE to bfloat16",
         {"info": "triggers when a tensor with NaNs is produced in VAE; if enabled, overrides the option below"}),
        ("auto_vae_precision", True, "Automatically revert VAE to 32-bit floats"),
        ("sd_vae_encode_method", "Full", "VAE type for encode", {"choices": ("Full", "TAESD"),
                                                                 "infotext": "VAE Encoder"}),
        ("sd_vae_decode_method", "Full", "VAE type for decode", {"choices": ("Full", "TAESD"),
                                                                 "infotext": "VAE Decoder"}),
    ],
    IMG2IMG: [
        ("inpainting_mask_weight", 1.0, "Inpainting conditioning mask strength",
         {"min": 0.0, "max": 1.0, "step": 0.01, "infotext": "Conditional mask weight"}),
        ("initial_noise_multiplier", 1.0, "Noise multiplier for img2img",
         {"min": 0.0, "max": 1.5, "step": 0.001, "infotext": "Noise multiplier"}),
        ("img2img_extra_noise", 0.0, "Extra noise multiplier for img2img and hires fix",
         {"min": 0.0, "max": 1.0, "step": 0.01, "infotext": "Extra noise",
          "info": "0 = disabled (default); should be lower than denoising strength"}),
        ("img2img_color_correction", False, "Apply color correction to img2img results to match original colors."),
        ("img2img_fix_steps", False, "With img2img, do exactly the amount of steps the slider specifies."),
        ("img2img_background_color", "#ffffff", "With img2img, fill transparent parts of the input image with this "
                                                "color."),
        ("img2img_editor_height", 720, "Height of the image editor", {"min": 80, "max": 1600, "step": 1,
                                                                      "info": "in pixels", "reload": True}),
        ("img2img_sketch_default_brush_color", "#ffffff", "Sketch initial brush color", {"reload": True}),
        ("img2img_inpaint_mask_brush_color", "#ffffff", "Inpaint mask brush color", {"reload": True}),
        ("img2img_inpaint_sketch_default_brush_color", "#ffffff", "Inpaint sketch initial brush color",
         {"reload": True}),
        ("return_mask", False, "For inpainting, include the greyscale mask in results for web"),
        ("return_mask_composite", False, "For inpainting, include masked composite in results for web"),
        ("img2img_batch_show_results_limit", 32, "Show the first N batch img2img results in UI",
         {"min": -1, "max": 1000, "step": 1, "info": "0: disable, -1: show all images"}),
        ("overlay_inpaint", True, "Overlay original for inpaint",
         {"info": "when inpainting, overlay the original image over the areas that weren't inpainted."}),
    ],
    OPTIMIZATIONS: [
        ("cross_attention_optimization", "Automatic", "Cross attention optimization", {"dynamic": True}),
        ("s_min_uncond", 0.0, "Negative Guidance minimum sigma", {"min": 0.0, "max": 15.0, "step": 0.01,
                                                                  "infotext": "NGMS"}),
        ("s_min_uncond_all", False, "Negative Guidance minimum sigma all steps", {"infotext": "NGMS all steps"}),
        ("token_merging_ratio", 0.0, "Token merging ratio", {"min": 0.0, "max": 0.9, "step": 0.1,
                                                             "infotext": "Token merging ratio"}),
        ("token_merging_ratio_img2img", 0.0, "Token merging ratio for img2img", {"min": 0.0, "max": 0.9, "step": 0.1}),
        ("token_merging_ratio_hr", 0.0, "Token merging ratio for high-res pass",
         {"min": 0.0, "max": 0.9, "step": 0.1, "infotext": "Token merging ratio hr"}),
        ("pad_cond_uncond", False, "Pad prompt/negative prompt", {"infotext": "Pad conds"}),
        ("pad_cond_uncond_v0", False, "Pad prompt/negative prompt (v0)", {"infotext": "Pad conds v0"}),
        ("persistent_cond_cache", True, "Persistent cond cache"),
        ("batch_cond_uncond", True, "Batch cond/uncond"),
        ("fp8_storage", "Disable", "FP8 weight", {"choices": ("Disable", "Enable for SDXL", "Enable")}),
        ("cache_fp16_weight", False, "Cache FP16 weight for LoRA"),
    ],
    COMPATIBILITY: [
        ("auto_backcompat", True, "Automatic backward compatibility"),
        ("use_old_emphasis_implementation", False, "Use old emphasis implementation. Can be useful to reproduce old "
                                                   "seeds."),
        ("use_old_karras_scheduler_sigmas", False, "Use old karras scheduler sigmas (0.1 to 10)."),
        ("no_dpmpp_sde_batch_determinism", False, "Do not make DPM++ SDE deterministic across different batch sizes."),
        ("use_old_hires_fix_width_height", False, "For hires fix, use width/height sliders to set final resolution "
                                                  "rather than first pass (disables Upscale by, Resize width/height "
                                                  "to)."),
        ("hires_fix_use_firstpass_conds", False, "For hires fix, calculate conds of second pass using extra networks "
                                                 "of first pass."),
        ("use_old_scheduling", False, "Use old prompt editing timelines.", {"infotext": "Old prompt editing "
                                                                                        "timelines"}),
        ("use_downcasted_alpha_bar", False, "Downcast model alphas_cumprod to fp16 before sampling. For reproducing "
                                            "old seeds.", {"infotext": "Downcast alphas_cumprod"}),
        ("refiner_switch_by_sample_steps", False, "Switch to refiner by sampling steps instead of model timesteps. "
                                                  "Old behavior for refiner.",
         {"infotext": "Refiner switch by sampling steps"}),
    ],
    INTERROGATE: [
        ("interrogate_keep_models_in_memory", False, "Keep models in VRAM"),
        ("interrogate_return_ranks", False, "Include ranks of model tags matches in results.",
         {"info": "booru only"}),
        ("interrogate_clip_num_beams", 1, "BLIP: num_beams", {"min": 1, "max": 16, "step": 1}),
        ("interrogate_clip_min_length", 24, "BLIP: minimum description length", {"min": 1, "max": 128, "step": 1}),
        ("interrogate_clip_max_length", 48, "BLIP: maximum description length", {"min": 1, "max": 256, "step": 1}),
        ("interrogate_clip_dict_limit", 1500, "CLIP: maximum number of lines in text file",
         {"info": "0 = No limit"}),
        ("interrogate_clip_skip_categories", [], "CLIP: skip inquire categories", {"dynamic": True}),
        ("interrogate_deepbooru_score_threshold", 0.5, "deepbooru: score threshold",
         {"min": 0, "max": 1, "step": 0.01}),
        ("deepbooru_sort_alpha", True, "deepbooru: sort tags alphabetically", {"info": "if not: sort by score"}),
        ("deepbooru_use_spaces", True, "deepbooru: use spaces in tags", {"info": "if not: use underscores"}),
        ("deepbooru_escape", True, "deepbooru: escape (\\) brackets",
         {"info": "so they are used as literal brackets and not for emphasis"}),
        ("deepbooru_filter_tags", "", "deepbooru: filter out those tags", {"info": "separate by comma"}),
    ],
    EXTRA_NETWORKS: [
        ("extra_networks_show_hidden_directories", True, "Show hidden directories"),
        ("extra_networks_dir_button_function", False, "Add a '/' to the beginning of directory buttons"),
        ("extra_networks_hidden_models", "When searched", "Show cards for models in hidden directories",
         {"choices": ("Always", "When searched", "Never")}),
        ("extra_networks_default_multiplier", 1.0, "Default multiplier for extra networks",
         {"min": 0.0, "max": 2.0, "step": 0.01}),
        ("extra_networks_card_width", 0, "Card width for Extra Networks", {"info": "in pixels"}),
        ("extra_networks_card_height", 0, "Card height for Extra Networks", {"info": "in pixels"}),
        ("extra_networks_card_text_scale", 1.0, "Card text scale", {"min": 0.0, "max": 2.0, "step": 0.01,
                                                                    "info": "1 = original size"}),
        ("extra_networks_card_show_desc", True, "Show description on card"),
        ("extra_networks_card_description_is_html", False, "Treat card description as HTML"),
        ("extra_networks_card_order_field", "Path", "Default order field for Extra Networks cards",
         {"choices": ("Path", "Name", "Date Created", "Date Modified"), "reload": True}),
        ("extra_networks_card_order", "Ascending", "Default order for Extra Networks cards",
         {"choices": ("Ascending", "Descending"), "reload": True}),
        ("extra_networks_tree_view_style", "Dirs", "Extra Networks directory view style",
         {"choices": ("Tree", "Dirs"), "reload": True}),
        ("extra_networks_tree_view_default_enabled", True, "Show the Extra Networks directory view by default",
         {"reload": True}),
        ("extra_networks_tree_view_default_width", 180, "Default width for the Extra Networks directory tree view",
         {"reload": True}),
        ("extra_networks_add_text_separator", " ", "Extra networks separator",
         {"info": "extra text to add before <...> when adding extra network to prompt"}),
        ("ui_extra_networks_tab_reorder", "", "Extra networks tab order", {"reload": True}),
        ("textual_inversion_print_at_load", False, "Print a list of Textual Inversion embeddings when loading model"),
        ("textual_inversion_add_hashes_to_infotext", True, "Add Textual Inversion hashes to infotext"),
        ("sd_hypernetwork", "None", "Add hypernetwork to prompt", {"dynamic": True}),
    ],
    PROMPT_EDITING: [
        ("keyedit_precision_attention", 0.1, "Precision for (attention:1.1) when editing the prompt with "
                                             "Ctrl+up/down", {"min": 0.01, "max": 0.2, "step": 0.001}),
        ("keyedit_precision_extra", 0.05, "Precision for <extra networks:0.9> when editing the prompt with "
                                          "Ctrl+up/down", {"min": 0.01, "max": 0.2, "step": 0.001}),
        ("keyedit_delimiters", r".,\/!?%^*;:{}=`~() ", "Word delimiters when editing the prompt with Ctrl+up/down"),
        ("keyedit_delimiters_whitespace", ["Tab", "Carriage Return", "Line Feed"],
         "Ctrl+up/down whitespace delimiters", {"choices": ("Tab", "Carriage Return", "Line Feed")}),
        ("keyedit_move", True, "Alt+left/right moves prompt elements"),
        ("disable_token_counters", False, "Disable prompt token counters"),
        ("include_styles_into_token_counters", True, "Count tokens of enabled styles"),
    ],
    GALLERY: [
        ("return_grid", True, "Show grid in gallery"),
        ("do_not_show_images", False, "Do not show any images in gallery"),
        ("js_modal_lightbox", True, "Full page image viewer: enable"),
        ("js_modal_lightbox_initially_zoomed", True, "Full page image viewer: show images zoomed in by default"),
        ("js_modal_lightbox_gamepad", False, "Full page image viewer: navigate with gamepad"),
        ("js_modal_lightbox_gamepad_repeat", 250, "Full page image viewer: gamepad repeat period",
         {"info": "in milliseconds"}),
        ("sd_webui_modal_lightbox_icon_opacity", 1, "Full page image viewer: control icon unfocused opacity",
         {"kind": "float", "min": 0.0, "max": 1, "step": 0.01, "info": "for mouse only", "reload": True}),
        ("sd_webui_modal_lightbox_toolbar_opacity", 0.9, "Full page image viewer: tool bar opacity",
         {"min": 0.0, "max": 1, "step": 0.01, "info": "for mouse only", "reload": True}),
        ("gallery_height", "", "Gallery height", {"info": "can be any valid CSS value, for example 768px or 20em",
                                                  "reload": True}),
        ("open_dir_button_choice", "Subdirectory", "What directory the [📂] button opens",
         {"choices": ("Output Root", "Subdirectory", "Subdirectory (even temp dir)")}),
    ],
    UI_ALTERNATIVES: [
        ("compact_prompt_box", False, "Compact prompt layout", {"reload": True}),
        ("samplers_in_dropdown", True, "Use dropdown for sampler selection instead of radio group", {"reload": True}),
        ("dimensions_and_batch_together", True, "Show Width/Height and Batch sliders in same row", {"reload": True}),
        ("sd_checkpoint_dropdown_use_short", False, "Checkpoint dropdown: use filenames without paths"),
        ("hires_fix_show_sampler", False, "Hires fix: show hires checkpoint and sampler selection", {"reload": True}),
        ("hires_fix_show_prompts", False, "Hires fix: show hires prompt and negative prompt", {"reload": True}),
        ("txt2img_settings_accordion", False, "Settings in txt2img hidden under Accordion", {"reload": True}),
        ("img2img_settings_accordion", False, "Settings in img2img hidden under Accordion", {"reload": True}),
        ("interrupt_after_current", True, "Don't Interrupt in the middle",
         {"info": "when using Interrupt button, if generating more than one image, stop after the generation of an "
                  "image has finished, instead of immediately"}),
    ],
    USER_INTERFACE: [
        ("localization", "None", "Localization", {"dynamic": True, "reload": True}),
        ("quicksettings_list", ["sd_model_checkpoint"], "Quicksettings list",
         {"dynamic": True, "reload": True,
          "info": "setting entries that appear at the top of page rather than in settings tab"}),
        ("ui_tab_order", [], "UI tab order", {"dynamic": True, "reload": True}),
        ("hidden_tabs", [], "Hidden UI tabs", {"dynamic": True, "reload": True}),
        ("ui_reorder_list", [], "UI item order for txt2img/img2img tabs", {"dynamic": True, "reload": True,
                                                                           "info": "selected items appear first"}),
        ("gradio_theme", "Default", "Gradio theme", {"dynamic": True, "reload": True}),
        ("gradio_themes_cache", True, "Cache gradio themes locally"),
        ("show_progress_in_title", True, "Show generation progress in window title."),
        ("send_seed", True, "Send seed when sending prompt or image to other interface"),
        ("send_size", True, "Send size when sending prompt or image to another interface"),
        ("enable_reloading_ui_scripts", False, "Reload UI scripts when using Reload UI option"),
    ],
    INFOTEXT: [
        ("enable_pnginfo", True, "Write infotext to metadata of the generated image"),
        ("save_txt", False, "Create a text file with infotext next to every generated image"),
        ("add_model_name_to_info", True, "Add model name to infotext"),
        ("add_model_hash_to_info", True, "Add model hash to infotext"),
        ("add_vae_name_to_info", True, "Add VAE name to infotext"),
        ("add_vae_hash_to_info", True, "Add VAE hash to infotext"),
        ("add_user_name_to_info", False, "Add user name to infotext when authenticated"),
        ("add_version_to_infotext", True, "Add program version to infotext"),
        ("disable_weights_auto_swap", True, "Disregard checkpoint information from pasted infotext",
         {"info": "when reading generation parameters from text into UI"}),
        ("infotext_skip_pasting", [], "Disregard fields from pasted infotext", {"dynamic": True}),
        ("infotext_styles", "Apply if any", "Infer styles from prompts of pasted infotext",
         {"choices": ("Ignore", "Apply", "Discard", "Apply if any")}),
    ],
    LIVE_PREVIEWS: [
        ("show_progressbar", True, "Show progressbar"),
        ("live_previews_enable", True, "Show live previews of the created image"),
        ("live_previews_image_format", "png", "Live preview file format", {"choices": ("jpeg", "png", "webp")}),
        ("show_progress_grid", True, "Show previews of all images generated in a batch as a grid"),
        ("show_progress_every_n_steps", 10, "Live preview display period", {"min": -1, "max": 32, "step": 1}),
        ("show_progress_type", "Approx NN", "Live preview method",
         {"choices": ("Full", "Approx NN", "Approx cheap", "TAESD")}),
        ("live_preview_allow_lowvram_full", False, "Allow Full live preview method with lowvram/medvram"),
        ("live_preview_content", "Prompt", "Live preview subject",
         {"choices": ("Combined", "Prompt", "Negative prompt")}),
        ("live_preview_refresh_period", 1000, "Progressbar and preview update period", {"info": "in milliseconds"}),
        ("live_preview_fast_interrupt", False, "Return image with chosen live preview method on interrupt"),
        ("js_live_preview_in_modal_lightbox", False, "Show Live preview in full page image viewer"),
        ("prevent_screen_sleep_during_generation", True, "Prevent screen sleep during generation"),
    ],
    SAMPLER_PARAMS: [
        ("hide_samplers", [], "Hide samplers in user interface", {"dynamic": True, "reload": True}),
        ("eta_ddim", 0.0, "Eta for DDIM", {"min": 0.0, "max": 1.0, "step": 0.01, "infotext": "Eta DDIM"}),
        ("eta_ancestral", 1.0, "Eta for k-diffusion samplers", {"min": 0.0, "max": 1.0, "step": 0.01,
                                                                "infotext": "Eta"}),
        ("ddim_discretize", "uniform", "img2img DDIM discretize", {"choices": ("uniform", "quad")}),
        ("s_churn", 0.0, "sigma churn", {"min": 0.0, "max": 100.0, "step": 0.01, "infotext": "Sigma churn"}),
        ("s_tmin", 0.0, "sigma tmin", {"min": 0.0, "max": 10.0, "step": 0.01, "infotext": "Sigma tmin"}),
        ("s_tmax", 0.0, "sigma tmax", {"min": 0.0, "max": 999.0, "step": 0.01, "infotext": "Sigma tmax",
                                       "info": "0 = inf"}),
        ("s_noise", 1.0, "sigma noise", {"min": 0.0, "max": 1.1, "step": 0.001, "infotext": "Sigma noise"}),
        ("sigma_min", 0.0, "sigma min", {"infotext": "Schedule min sigma", "info": "0 = default (~0.03)"}),
        ("sigma_max", 0.0, "sigma max", {"infotext": "Schedule max sigma", "info": "0 = default (~14.6)"}),
        ("rho", 0.0, "rho", {"infotext": "Schedule rho", "info": "0 = default (7 for karras, 1 for polyexponential)"}),
        ("eta_noise_seed_delta", 0, "Eta noise seed delta", {"infotext": "ENSD"}),
        ("always_discard_next_to_last_sigma", False, "Always discard next-to-last sigma",
         {"infotext": "Discard penultimate sigma"}),
        ("sgm_noise_multiplier", False, "SGM noise multiplier", {"infotext": "SGM noise multiplier"}),
        ("uni_pc_variant", "bh1", "UniPC variant", {"choices": ("bh1", "bh2", "vary_coeff"),
                                                    "infotext": "UniPC variant"}),
        ("uni_pc_skip_type", "time_uniform", "UniPC skip type",
         {"choices": ("time_uniform", "time_quadratic", "logSNR"), "infotext": "UniPC skip type"}),
        ("uni_pc_order", 3, "UniPC order", {"min": 1, "max": 50, "step": 1, "infotext": "UniPC order",
                                            "info": "must be < sampling steps"}),
        ("uni_pc_lower_order_final", True, "UniPC lower order final", {"infotext": "UniPC lower order final"}),
        ("sd_noise_schedule", "Default", "Noise schedule for sampling",
         {"choices": ("Default", "Zero Terminal SNR"), "infotext": "Noise Schedule"}),
        ("skip_early_cond", 0.0, "Ignore negative prompt during early sampling",
         {"min": 0.0, "max": 1.0, "step": 0.01, "infotext": "Skip Early CFG"}),
        ("beta_dist_alpha", 0.6, "Beta scheduler - alpha", {"min": 0.01, "max": 1.0, "step": 0.01,
                                                            "infotext": "Beta scheduler alpha"}),
        ("beta_dist_beta", 0.6, "Beta scheduler - beta", {"min": 0.01, "max": 1.0, "step": 0.01,
                                                          "infotext": "Beta scheduler beta"}),
    ],
    POSTPROCESSING: [
        ("postprocessing_enable_in_main_ui", [], "Enable postprocessing operations in txt2img and img2img tabs",
         {"dynamic": True}),
        ("postprocessing_disable_in_extras", [], "Disable postprocessing operations in extras tab", {"dynamic": True}),
        ("postprocessing_operation_order", [], "Postprocessing operation order", {"dynamic": True}),
        ("upscaling_max_images_in_cache", 5, "Maximum number of images in upscaling cache",
         {"min": 0, "max": 10, "step": 1}),
        ("postprocessing_existing_caption_action", "Ignore", "Action for existing captions",
         {"choices": ("Ignore", "Keep", "Prepend", "Append")}),
    ],
    HIDDEN: [
        ("disabled_extensions", [], "Disable these extensions"),
        ("disable_all_extensions", "none", "Disable all extensions (preserves the list of disabled extensions)",
         {"choices": ("none", "extra", "all")}),
        ("restore_config_state_file", "", "Config state file to restore from, under 'config-states/' folder",
         {"restricted": True}),
        ("sd_checkpoint_hash", "", "SHA256 hash of the current checkpoint"),
    ],
}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "list"
    return "str"


def _build() -> dict[str, Fact]:
    out: dict[str, Fact] = {}
    for section, rows in _ROWS.items():
        for row in rows:
            key, default, label = row[:3]
            extra = row[3] if len(row) > 3 else {}
            choices = extra.get("choices")
            out[key] = Fact(key=key, default=default, label=label, section=section,
                            kind=extra.get("kind") or _kind(default), choices=tuple(choices) if choices else None,
                            dynamic_choices=bool(extra.get("dynamic")), minimum=extra.get("min"),
                            maximum=extra.get("max"), step=extra.get("step"), comment=extra.get("info", ""),
                            infotext=extra.get("infotext"), needs_reload_ui=bool(extra.get("reload")),
                            restricted=bool(extra.get("restricted")), note=extra.get("note", ""))
    return out


A1111_SETTINGS: dict[str, Fact] = _build()
"""Every key A1111 saves in config.json and returns from GET /sdapi/v1/options, in A1111's declaration order."""

# A1111 keys not declared in ``modules.options.builtin_options()`` that this server nevertheless reads (so they are
# validated strictly, like the built-in ones, and not marked "stored only").
IMPLEMENTED = frozenset({
    "face_restoration",  # restore_faces left unset follows it (modules/processing/generation.py)
    "face_restoration_model",
    "code_former_weight",
    "save_images_before_face_restoration",
    "tiling",  # tiling left unset follows it
    "send_size",  # A1111's infotext_utils for extensions: sending an image sends its size (modules/infotext_utils.py)
    # sampler parameters a request leaves unset (modules/processing/sampler_params.py)
    "eta_ancestral", "eta_ddim", "s_churn", "s_tmin", "s_tmax", "s_noise", "s_min_uncond",
    "img2img_extra_noise",  # img2img and the hires pass (modules/processing/generation.py Job.extra_noise)
    # the taggers' caption (modules/interrogate: WD14 formats its tags as A1111 formats DeepBooru's)
    "interrogate_keep_models_in_memory", "interrogate_return_ranks", "deepbooru_sort_alpha", "deepbooru_use_spaces",
    "deepbooru_escape", "deepbooru_filter_tags", "interrogate_deepbooru_score_threshold",
    # Interrogate CLIP (modules/interrogate/service.py)
    "interrogate_clip_num_beams", "interrogate_clip_min_length", "interrogate_clip_max_length",
    "interrogate_clip_dict_limit", "interrogate_clip_skip_categories",
    # the Extra Networks cards (modules/extra_networks_html.py, modules/ui/extra_networks_panel.py)
    "extra_networks_default_multiplier", "extra_networks_card_width", "extra_networks_card_height",
    "extra_networks_card_text_scale", "extra_networks_card_show_desc", "extra_networks_card_description_is_html",
    "extra_networks_card_order_field", "extra_networks_card_order", "extra_networks_show_hidden_directories",
    "extra_networks_tree_view_default_enabled", "extra_networks_tree_view_default_width",
    "ui_extra_networks_tab_reorder",
})
