"""What the page's localization leaves as it is: names and generated text (one list for the page's scripts and the
tests that check the translation is complete).

- **Name dropdowns**: checkpoints, VAEs, samplers, upscalers, styles, ControlNet models and preprocessors, X/Y/Z
  values. A file or style may be called anything, even a word the translation knows, so their choices and chosen
  values keep their names; only the few choices that are UI words (``None``, ``Automatic``, "Use same sampler",
  the Latent upscalers...) translate.
  Every other dropdown's choices are UI text, translated where they are drawn (gradio keeps the English value).
- **Data**: the infotext under the gallery, PNG Info's output, the footer's version, and on the Extra Networks cards
  the names, descriptions and folders are data, never UI text (CSS selectors).
"""

from __future__ import annotations

_TABS = ("txt2img", "img2img")

NAME_DROPDOWNS: tuple[str, ...] = (
    "setting_sd_model_checkpoint", "setting_sd_vae", "setting_forge_additional_modules", "hr_sampler",
    "hr_checkpoint", "setting_localization", "txt2img_hr_upscaler", "extras_upscaler_1", "extras_upscaler_2",
    "img2img_sd_upscale_upscaler_index",
    *(f"{tab}_{what}" for tab in _TABS for what in ("styles", "styles_edit_select", "sampling", "checkpoint")),
)
# ids ending so, wherever they are: the ControlNet units' lists and the X/Y/Z plot's value pickers
NAME_DROPDOWN_SUFFIXES: tuple[str, ...] = ("_preprocessor_dropdown", "_model_dropdown", "_values_dropdown")
UI_WORDS_IN_NAME_LISTS: tuple[str, ...] = (
    "None", "Automatic", "Use same checkpoint", "Use same sampler", "Use same scheduler", "Nearest", "Latent",
    "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)", "Latent (nearest)",
    "Latent (nearest-exact)")
DATA_SELECTORS: tuple[str, ...] = (
    "#pnginfo_html", "#footer_version", *(f"#html_info_{tab}" for tab in _TABS),
    ".card .name", ".card .description", ".nocards ul", ".tree-dir:not(.tree-all)", ".extra-network-edit-path")


def is_name_dropdown(elem_id: str | None) -> bool:
    return bool(elem_id) and (elem_id in NAME_DROPDOWNS or elem_id.endswith(NAME_DROPDOWN_SUFFIXES))


def page_data() -> dict[str, list[str]]:
    """For ``window.__sdPage.untranslated``."""
    return {"nameDropdowns": list(NAME_DROPDOWNS), "nameDropdownSuffixes": list(NAME_DROPDOWN_SUFFIXES),
            "uiWordsInNameLists": list(UI_WORDS_IN_NAME_LISTS), "data": list(DATA_SELECTORS)}
