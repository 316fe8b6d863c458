"""The scripts we run natively (no A1111 ``p``): "Poor man's outpainting", "Prompts from file or textbox" and "SD
upscale", each declared once: its title, the tabs that offer it, its arguments in A1111's ``script_args`` order
(label, default, range, choices: the Script dropdown's controls, ``/sdapi/v1/script-info`` and argument parsing
all read them), and how it turns a request's parameters and ``script_args`` into the job it runs.

``prepare`` returns the parameters to run (outpainting rewrites them) and the runner that drives the job
(``check``/``run``, as ``prompts_from_file.ScriptArgs``), or None when the plain generation runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from modules.processing import outpainting, prompts_from_file, sd_upscale
from modules.processing.params import GenerationParams

TXT2IMG, IMG2IMG = "txt2img", "img2img"


@dataclass(frozen=True)
class ScriptArg:
    """One control of a script, in ``script_args`` order. ``key`` names its value in the UI's fields (None: a
    note with no value, whose slot A1111 fills with ""); ``kind`` is the control the UI draws."""

    key: str | None
    label: str
    value: Any
    kind: str  # "checkbox", "radio", "textbox", "slider", "dropdown", "checkboxgroup", "note"
    elem: str | None  # its element id after the tab's name ("pff_text" -> txt2img_pff_text)
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    def info(self) -> dict[str, Any]:
        """A1111's ``script-info`` entry for this argument."""
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"label": "" if self.kind == "note" else self.label, "value": value,
                "minimum": self.minimum, "maximum": self.maximum, "step": self.step,
                "choices": list(self.choices) if self.choices is not None else None}


Prepare = Callable[[GenerationParams, Sequence[Any], Sequence[str]], "tuple[GenerationParams, Any]"]


@dataclass(frozen=True)
class BuiltinScript:
    title: str
    tabs: tuple[str, ...]
    arguments: Callable[[Sequence[str]], tuple[ScriptArg, ...]]  # given the upscaler names
    prepare: Prepare  # (params, script_args, upscaler names) -> (params to run, job runner or None)
    group_elem: str | None = None  # the element id of its group after the tab's name

    @property
    def name(self) -> str:
        """A1111's script name: the lower-cased title, which the API's ``script_name`` matches."""
        return self.title.lower()

    def values(self, fields: dict[str, Any], upscaler_names: Sequence[str]) -> list[Any]:
        """``script_args`` from the UI's field values (a note's slot is "")."""
        return [fields.get(arg.key, arg.value) if arg.key else "" for arg in self.arguments(upscaler_names)]


def _outpainting_args(_: Sequence[str]) -> tuple[ScriptArg, ...]:
    return (ScriptArg("outpaint_pixels", "Pixels to expand", 128, "slider", "outpaint_pixels", 8, 256, 8),
            ScriptArg("outpaint_mask_blur", "Mask blur", 4, "slider", "outpaint_mask_blur", 0, 64, 1),
            ScriptArg("outpaint_fill", "Masked content", "fill", "radio", "outpaint_fill",
                      choices=outpainting.MASKED_CONTENT),
            ScriptArg("outpaint_directions", "Outpainting direction", outpainting.DIRECTIONS, "checkboxgroup",
                      "outpaint_direction", choices=outpainting.DIRECTIONS))


def _prompts_args(_: Sequence[str]) -> tuple[ScriptArg, ...]:
    return (ScriptArg("pff_iterate", "Iterate seed every line", False, "checkbox", "pff_iterate"),
            ScriptArg("pff_same_seed", "Use same random seed for all lines", False, "checkbox", "pff_same_seed"),
            ScriptArg("pff_position", "Insert prompts at the", "start", "radio", "pff_position",
                      choices=("start", "end")),
            ScriptArg("pff_text", "List of prompt inputs", "", "textbox", "pff_text"))


SD_UPSCALE_NOTE = "Will upscale the image by the selected scale factor; use width and height sliders to set tile size"


def _sd_upscale_args(upscaler_names: Sequence[str]) -> tuple[ScriptArg, ...]:
    return (ScriptArg(None, SD_UPSCALE_NOTE, "", "note", None),
            ScriptArg("sdu_overlap", "Tile overlap", 64, "slider", "sd_upscale_overlap", 0, 256, 16),
            ScriptArg("sdu_upscaler", "Upscaler", "None", "dropdown", "sd_upscale_upscaler_index",
                      choices=tuple(upscaler_names)),
            ScriptArg("sdu_scale", "Scale Factor", 2.0, "slider", "sd_upscale_scale_factor", 1.0, 4.0, 0.05))


def _prepare_prompts(params: GenerationParams, args: Sequence[Any], _: Sequence[str]) -> tuple[GenerationParams, Any]:
    values = list(args)
    if len(values) >= 3:  # the UI's empty radio/textbox values are A1111's defaults
        values[2] = values[2] or "start"
    if len(values) >= 4:
        values[3] = values[3] or ""
    return params, prompts_from_file.parse_args(values)


OUTPAINTING = BuiltinScript(outpainting.TITLE, (IMG2IMG,), _outpainting_args,
                            lambda params, args, _: (outpainting.apply(params, args), None))
PROMPTS_FROM_FILE = BuiltinScript(prompts_from_file.TITLE, (TXT2IMG, IMG2IMG), _prompts_args, _prepare_prompts,
                                  "script_prompts_from_file")
SD_UPSCALE = BuiltinScript(sd_upscale.TITLE, (IMG2IMG,), _sd_upscale_args,
                           lambda params, args, names: (params, sd_upscale.parse_args(args, names)))
BUILTIN_SCRIPTS: tuple[BuiltinScript, ...] = (OUTPAINTING, PROMPTS_FROM_FILE, SD_UPSCALE)  # the dropdown's order


def for_tab(tab: str) -> tuple[BuiltinScript, ...]:
    return tuple(s for s in BUILTIN_SCRIPTS if tab in s.tabs)


def ui_keys() -> tuple[str, ...]:
    """Every built-in script control's field key (values the UI takes out before building parameters)."""
    return tuple(dict.fromkeys(a.key for s in BUILTIN_SCRIPTS for a in s.arguments(()) if a.key))
