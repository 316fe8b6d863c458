"""The txt2img tab: A1111's controls, labels and defaults, one typed parameter object per click.

The Generate handler streams (``common.stream_job``): it queues the job on the shared queue, then yields progress
(step, total, ETA, queue position, live preview) until the job ends, then the saved PNGs and their infotext.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import gradio as gr

from modules import samplers
from modules.processing import builtin_scripts, upscale
from modules.processing.params import Txt2ImgParams
from modules.runtime import Runtime
from modules.ui import common, controlnet_controls, extra_networks_panel, kontext_controls, script_controls
from modules.ui.common import error_html  # noqa: F401  (re-exported for app.py)


@dataclass
class Txt2ImgControls:
    """Components whose values make up a Txt2ImgParams, by field name."""

    fields: dict[str, Any]
    generate: Any
    interrupt: Any
    skip: Any
    gallery: Any
    infotext: Any
    progress: Any
    preview: Any
    output: common.OutputPanel | None = None


def params_from_values(values: dict[str, Any]) -> Txt2ImgParams:
    """The tab's values as one typed object (the Script values are taken out before, ``ScriptControls.take``;
    any left are dropped). Validation errors are user-readable (``common.stream_job``)."""
    data = common.ui_values(values)
    data["controlnet_units"] = controlnet_controls.take_units(data, "txt2img")
    data["kontext"] = kontext_controls.take_request(data)
    for key in ("script_name", *builtin_scripts.ui_keys()):
        data.pop(key, None)
    if data.get("hr_sampler_name") == "Use same sampler":
        data["hr_sampler_name"] = None
    if data.get("hr_scheduler") == "Use same scheduler":
        data["hr_scheduler"] = None
    if data.get("hr_checkpoint_name") == "Use same checkpoint":
        data["hr_checkpoint_name"] = None
    return Txt2ImgParams(**data)


def hires_resolution_html(width: float, height: float, scale: float, rx: float, ry: float) -> str:
    """A1111's upscaled-resolution line under the hires controls (an arrow instead of English words)."""
    from modules.processing.hires import HiresTarget

    try:
        p = Txt2ImgParams(width=int(width), height=int(height), hr_scale=float(scale), hr_resize_x=int(rx or 0),
                          hr_resize_y=int(ry or 0))
        target = HiresTarget.of(p)
    except (ValueError, ZeroDivisionError):
        return ""
    w = target.width - target.trim_x * 8
    h = target.height - target.trim_y * 8
    return (f"<span class='hires-resolution'><b>{int(width)}x{int(height)}</b> → "
            f"<b>{w // 8 * 8}x{h // 8 * 8}</b></span>")


def build_hires_controls(rt: Runtime, f: dict[str, Any]) -> Any:
    tab = "txt2img"
    with gr.Accordion("Hires. fix", open=False, elem_id=f"{tab}_hr"):
        f["enable_hr"] = gr.Checkbox(False, label="Hires. fix", elem_id=f"{tab}_enable_hr")
        with gr.Row():
            f["hr_upscaler"] = gr.Dropdown(upscale.hires_upscaler_names(getattr(rt, "upscalers", None)),
                                           value=upscale.DEFAULT_LATENT_MODE, label="Upscaler",
                                           elem_id=f"{tab}_hr_upscaler")
            f["hr_second_pass_steps"] = gr.Slider(0, 150, value=0, step=1, label="Hires steps",
                                                  elem_id=f"{tab}_hires_steps")
            f["denoising_strength"] = gr.Slider(0, 1, value=0.7, step=0.01, label="Denoising strength",
                                                elem_id=f"{tab}_denoising_strength")
        with gr.Row():
            f["hr_scale"] = gr.Slider(1, 4, value=2.0, step=0.05, label="Upscale by", elem_id=f"{tab}_hr_scale")
            f["hr_resize_x"] = gr.Slider(0, 2048, value=0, step=8, label="Resize width to",
                                         elem_id=f"{tab}_hr_resize_x")
            f["hr_resize_y"] = gr.Slider(0, 2048, value=0, step=8, label="Resize height to",
                                         elem_id=f"{tab}_hr_resize_y")
        resolution = gr.HTML(hires_resolution_html(512, 512, 2.0, 0, 0), elem_id=f"{tab}_hr_resolution")
        with gr.Row(visible=bool(rt.options.get("hires_fix_show_sampler", False))):
            f["hr_checkpoint_name"] = gr.Dropdown(["Use same checkpoint"] + [c.title for c in rt.registry.list()],
                                                  value="Use same checkpoint", label="Checkpoint",
                                                  elem_id="hr_checkpoint")
            f["hr_sampler_name"] = gr.Dropdown(["Use same sampler"] + [s.name for s in samplers.SAMPLERS],
                                               value="Use same sampler", label="Hires sampling method",
                                               elem_id="hr_sampler")
            f["hr_scheduler"] = gr.Dropdown(["Use same scheduler"] + [s.label for s in samplers.SCHEDULES],
                                            value="Use same scheduler", label="Hires schedule type",
                                            elem_id="hr_scheduler")
        with gr.Row(visible=bool(rt.options.get("hires_fix_show_prompts", False))):
            f["hr_prompt"] = gr.Textbox(label="Hires prompt", elem_id="hires_prompt", lines=3,
                                        placeholder="Prompt for hires fix pass.\nLeave empty to use the same prompt "
                                                    "as in first pass.")
            f["hr_negative_prompt"] = gr.Textbox(label="Hires negative prompt", elem_id="hires_neg_prompt", lines=3,
                                                 placeholder="Negative prompt for hires fix pass.\nLeave empty to "
                                                             "use the same negative prompt as in first pass.")
    size_inputs = [f["width"], f["height"], f["hr_scale"], f["hr_resize_x"], f["hr_resize_y"]]
    for component in size_inputs:
        component.change(hires_resolution_html, inputs=size_inputs, outputs=[resolution], queue=False,
                         show_progress="hidden")
    return resolution


def build_txt2img_tab(rt: Runtime) -> Txt2ImgControls:
    tab = "txt2img"
    f: dict[str, Any] = {}
    row = common.build_prompt_row(rt, tab, f)
    extra = extra_networks_panel.begin(tab)  # A1111 1.6+: Generation beside the Extra Networks tabs
    with gr.Row():
        with gr.Column(scale=1):
            common.build_sampler_controls(rt, tab, f)
            script_controls.section(rt, tab, "sampler")
            common.build_size_and_batch(tab, f)
            script_controls.section(rt, tab, "dimensions")
            script_controls.section(rt, tab, "batch")
            f["cfg_scale"] = gr.Slider(1, 30, value=7, step=0.5, label="CFG Scale", elem_id=f"{tab}_cfg_scale")
            f["distilled_cfg_scale"] = common.distilled_cfg_slider(tab)
            script_controls.section(rt, tab, "cfg")
            seed_buttons = common.build_seed_controls(tab, f)
            script_controls.section(rt, tab, "seed")
            build_hires_controls(rt, f)
            common.build_refiner_controls(rt, tab, f)
            controlnet_controls.build_accordion(rt, tab, f)
            kontext_controls.build_accordion(tab, f)
            script_controls.scripts_area(rt, tab)
            f["script_name"] = script_controls.dropdown(rt, tab, f"{tab}_script")
            scripts = script_controls.selectable(rt, tab, f)
        with gr.Column(scale=1):
            output = common.build_output_panel(tab)
    extra_networks_panel.end(rt, tab, extra)
    common.wire_prompt_row(rt, row, f)
    from modules.processing import saving

    common.wire_output_panel(rt, output, saving.TXT2IMG)
    common.wire_reuse_seed(seed_buttons, f, output)

    inputs = list(f.values())
    names = list(f.keys())

    from modules.ui.pnginfo_tab import wire_paste_button

    wire_paste_button(rt, row.paste, f)

    def submit(values: tuple[Any, ...]) -> Any:
        data = dict(zip(names, values))
        chosen = scripts.take(data)
        run = scripts.prepare(params_from_values(data), chosen, [])
        return rt.submit_txt2img(run.params, script=run.script, scripts_call=run.scripts_call)

    def generate_fn(*values: Any) -> Iterator[common.Outputs]:
        yield from common.stream_job(rt, lambda: submit(values))

    generating = row.generate.click(generate_fn, inputs=inputs,
                       outputs=[output.gallery, output.infotext, output.progress, output.preview,
                                output.generation_info],
                       concurrency_limit=None, show_progress="hidden")
    common.continue_forever(generating, "txt2img")
    return Txt2ImgControls(f, row.generate, row.interrupt, row.skip, output.gallery, output.infotext,
                           output.progress, output.preview, output)


__all__ = ["build_txt2img_tab", "params_from_values", "Txt2ImgControls"]
