"""A1111's ``modules.shared_items`` for extensions: ``list_checkpoint_tiles``, ``refresh_checkpoints``,
``sd_vae_items``, ``refresh_vae_list``, ``list_samplers``, ``realesrgan_models_names``, ``dat_models_names``,
``cross_attention_optimizations``, ``sd_unet_items``, ``ui_reorder_categories``, ``callbacks_order_settings``,
``get_infotext_names``, ``reload_hypernetworks``. Views of the running app's registries; no torch, no gradio.
"""

from __future__ import annotations

from typing import Any, Iterator


def _rt() -> Any:
    from modules import shared

    if shared.runtime is None:
        raise RuntimeError("modules.shared_items needs the running app")
    return shared.runtime


def list_checkpoint_tiles(use_short: bool = False) -> list[str]:
    from modules import sd_models

    return sd_models.checkpoint_tiles(use_short)


def refresh_checkpoints() -> None:
    from modules import sd_models

    sd_models.list_models()


def sd_vae_items() -> list[str]:
    """The ``sd_vae`` choices: ``["Automatic", "None", <VAE files>...]``."""
    return list(_rt().vaes.choices())


def refresh_vae_list() -> None:
    _rt().vaes.refresh()


def list_samplers() -> list[Any]:
    from modules import sd_samplers

    return sd_samplers.all_samplers


def realesrgan_models_names() -> list[str]:
    return [i.name for i in _rt().upscalers.list() if i.model_name == "RealESRGAN"]


def dat_models_names() -> list[str]:
    return [i.name for i in _rt().upscalers.list() if i.model_name == "DAT"]


def postprocessing_scripts() -> list[Any]:
    return []  # Extras runs its own steps; extensions' postprocessing scripts are not loaded


def cross_attention_optimizations() -> list[str]:
    return ["Automatic", "None"]  # diffusers chooses the attention (scaled-dot-product)


def sd_unet_items() -> list[str]:
    return ["Automatic", "None"]  # no UNet replacements (TensorRT & co.)


def refresh_unet_list() -> None:
    """No UNet replacements to list."""


def reload_hypernetworks() -> None:
    """Hypernetworks are not supported: ``shared.hypernetworks`` stays empty."""


def get_infotext_names() -> list[str]:
    """The infotext keys the app's settings and the scripts' controls map to (for ``infotext_skip_pasting``)."""
    from modules import infotext, scripts

    names = list(infotext.INFOTEXT_KEY_ORDER) + list(infotext.INFOTEXT_TRAILING_KEYS)
    names += [info.infotext for info in _rt().options.registry.values() if info.infotext]
    for runner in (scripts.scripts_txt2img, scripts.scripts_img2img):
        for script in runner.scripts:
            names += [key for _, key in script.infotext_fields or [] if isinstance(key, str)]
    return list(dict.fromkeys(names))


ui_reorder_categories_builtin_items = ["prompt", "image", "inpaint", "sampler", "accordions", "checkboxes",
                                       "dimensions", "cfg", "denoising", "seed", "batch", "override_settings"]


def ui_reorder_categories() -> Iterator[str]:
    """A1111's UI sections, then the ones always-on scripts ask for, then ``scripts``."""
    from modules import scripts

    yield from ui_reorder_categories_builtin_items
    sections = {}
    for runner in (scripts.scripts_txt2img, scripts.scripts_img2img):
        for script in runner.scripts:
            if script.section and script.section not in ui_reorder_categories_builtin_items:
                sections[script.section] = 1
    yield from sections
    yield "scripts"


def callbacks_order_settings() -> list[str]:
    """The ``<kind>`` entries of A1111's callback-order settings, one per callback kind that has callbacks."""
    from modules import script_callbacks

    return [f"callbacks_order_{kind}" for kind in script_callbacks.KINDS if script_callbacks.callbacks(kind)]
