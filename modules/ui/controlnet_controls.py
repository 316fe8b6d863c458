"""The ControlNet accordion of txt2img and img2img, laid out like sd-webui-controlnet's: one tab per unit
(``control_net_unit_count``), each with its image and optional mask, Enable / Low VRAM / Pixel Perfect, the
control type that filters the preprocessor and model lists, the sliders the chosen preprocessor declares, the
guidance range, control mode, resize mode and (txt2img) the hires option, and a preview of the detected map.

Every control is a field of the tab (``controlnet_<unit>_<field>``); ``take_units`` turns them into the job's
units, and infotext pasting fills them from ``ControlNet N`` (``values_from_infotext``).
"""

from __future__ import annotations

from typing import Any, Mapping

import gradio as gr
import numpy as np

from modules.controlnet import hints, preprocessors
from modules.controlnet.units import (INFOTEXT_FIELDS, ControlMode, HiresOption, ResizeMode, parse_infotext,
                                      parse_unit)
from modules.runtime import Runtime

UNIT_FIELDS = ("enabled", "image", "mask", "low_vram", "pixel_perfect", "module", "model", "weight",
               "processor_res", "threshold_a", "threshold_b", "guidance_start", "guidance_end", "control_mode",
               "resize_mode", "hr_option")
PREFIX = "controlnet_"
HIDDEN_NAMES = ("Resolution", "Threshold A", "Threshold B")  # a hidden slider's label (the API's field names)


def key(unit: int, name: str) -> str:
    return f"{PREFIX}{unit}_{name}"


def unit_count(rt: Runtime) -> int:
    return max(1, min(10, int(rt.options.get("control_net_unit_count", 3) or 3)))


def _model_choices(rt: Runtime) -> list[str]:
    registry = getattr(rt, "controlnets", None)
    return ["None", *(registry.titles() if registry is not None else [])]


def _slider_updates(module: str) -> list[Any]:
    """The three sliders as the preprocessor declares them (label, range, default, shown or not)."""
    pre = preprocessors.find(module) or preprocessors.find("none")
    return [gr.update(label=s.label if s.visible else name, minimum=s.minimum, maximum=s.maximum, step=s.step,
                      value=s.value, visible=s.visible)
            for s, name in zip(pre.sliders, HIDDEN_NAMES)]  # type: ignore[union-attr]


def build_accordion(rt: Runtime, tab: str, f: dict[str, Any]) -> None:
    """The accordion inside the current column; adds its controls to ``f``."""
    with gr.Accordion("ControlNet", open=False, elem_id=f"{tab}_controlnet"):
        with gr.Tabs(elem_id=f"{tab}_controlnet_tabs"):
            for i in range(unit_count(rt)):
                with gr.Tab(f"ControlNet Unit {i}", elem_id=f"{tab}_controlnet_ControlNet-{i}_tab"):
                    _build_unit(rt, tab, i, f)


def _build_unit(rt: Runtime, tab: str, i: int, f: dict[str, Any]) -> None:
    eid = f"{tab}_controlnet_ControlNet-{i}"
    with gr.Row():
        f[key(i, "image")] = gr.Image(label="Single Image", type="pil", image_mode="RGB", height=240,
                                      sources=["upload", "clipboard"], elem_id=f"{eid}_input_image")
        f[key(i, "mask")] = gr.Image(label="Mask (optional; white = the area to inpaint)", type="pil",
                                     image_mode="L", height=240, sources=["upload", "clipboard"],
                                     elem_id=f"{eid}_mask_image")
        preview = gr.Image(label="Preprocessor Preview", type="numpy", height=240, interactive=False,
                           elem_id=f"{eid}_generated_image")
    with gr.Row():
        f[key(i, "enabled")] = gr.Checkbox(False, label="Enable", elem_id=f"{eid}_enable_checkbox")
        f[key(i, "low_vram")] = gr.Checkbox(False, label="Low VRAM", elem_id=f"{eid}_low_vram_checkbox")
        f[key(i, "pixel_perfect")] = gr.Checkbox(False, label="Pixel Perfect", elem_id=f"{eid}_pixel_perfect_checkbox")
    control_type = gr.Radio(preprocessors.control_type_names(), value="All", label="Control Type",
                            elem_id=f"{eid}_type_filter_radio")
    with gr.Row():
        f[key(i, "module")] = gr.Dropdown([p.label for p in preprocessors.ordered()], value="none",
                                          label="Preprocessor", elem_id=f"{eid}_preprocessor_dropdown")
        detect = gr.Button("Run preprocessor", size="sm", elem_id=f"{eid}_trigger_preprocessor")
        f[key(i, "model")] = gr.Dropdown(_model_choices(rt), value="None", label="Model",
                                         elem_id=f"{eid}_model_dropdown")
        refresh = gr.Button("Refresh", size="sm", elem_id=f"{eid}_refresh_models")
    with gr.Row():
        f[key(i, "weight")] = gr.Slider(0, 2, value=1.0, step=0.05, label="Control Weight",
                                        elem_id=f"{eid}_control_weight_slider")
        f[key(i, "guidance_start")] = gr.Slider(0, 1, value=0.0, step=0.01, label="Starting Control Step",
                                                elem_id=f"{eid}_start_control_step_slider")
        f[key(i, "guidance_end")] = gr.Slider(0, 1, value=1.0, step=0.01, label="Ending Control Step",
                                              elem_id=f"{eid}_ending_control_step_slider")
    none = preprocessors.find("none")
    assert none is not None
    with gr.Row():
        res, s1, s2 = none.sliders
        f[key(i, "processor_res")] = gr.Slider(res.minimum, res.maximum, value=res.value, step=res.step,
                                               label=HIDDEN_NAMES[0], visible=res.visible,
                                               elem_id=f"{eid}_preprocessor_resolution_slider")
        f[key(i, "threshold_a")] = gr.Slider(s1.minimum, s1.maximum, value=s1.value, step=s1.step,
                                             label=HIDDEN_NAMES[1], visible=s1.visible,
                                             elem_id=f"{eid}_threshold_A_slider")
        f[key(i, "threshold_b")] = gr.Slider(s2.minimum, s2.maximum, value=s2.value, step=s2.step,
                                             label=HIDDEN_NAMES[2], visible=s2.visible,
                                             elem_id=f"{eid}_threshold_B_slider")
    f[key(i, "control_mode")] = gr.Radio([m.value for m in ControlMode], value=ControlMode.BALANCED.value,
                                         label="Control Mode", elem_id=f"{eid}_control_mode_radio")
    f[key(i, "resize_mode")] = gr.Radio([m.value for m in ResizeMode], value=ResizeMode.INNER_FIT.value,
                                        label="Resize Mode", elem_id=f"{eid}_resize_mode_radio")
    f[key(i, "hr_option")] = gr.Radio([o.value for o in HiresOption], value=HiresOption.BOTH.value,
                                      label="Hires-Fix Option", visible=tab == "txt2img",
                                      elem_id=f"{eid}_hr_option_radio")
    sliders = [f[key(i, n)] for n in ("processor_res", "threshold_a", "threshold_b")]

    def filter_type(name: str) -> list[Any]:
        chosen = preprocessors.control_type(name, _model_choices(rt)[1:])
        module = chosen.default_module if name != "All" else "none"
        return [gr.update(choices=chosen.modules, value=module),
                gr.update(choices=chosen.models, value=chosen.default_model if name != "All" else "None"),
                *_slider_updates(module)]

    control_type.change(filter_type, inputs=[control_type], outputs=[f[key(i, "module")], f[key(i, "model")], *sliders],
                        queue=False, show_progress="hidden")
    f[key(i, "module")].change(_slider_updates, inputs=[f[key(i, "module")]], outputs=sliders, queue=False,
                               show_progress="hidden")

    def refresh_models(current: str) -> Any:
        if getattr(rt, "controlnets", None) is not None:
            rt.controlnet_models(rescan=True)
        choices = _model_choices(rt)
        return gr.update(choices=choices, value=current if current in choices else "None")

    refresh.click(refresh_models, inputs=[f[key(i, "model")]], outputs=[f[key(i, "model")]], queue=False)

    def run_preprocessor(image: Any, mask: Any, module: str, res: float, a: float, b: float) -> Any:
        if image is None:
            raise gr.Error("Upload an image first")
        values = {"module": module, "image": image, "mask": mask, "processor_res": res, "threshold_a": a,
                  "threshold_b": b}
        try:
            unit = parse_unit(values, f"ControlNet Unit {i}")
            unavailable = unit.preprocessor.unavailable(rt.annotator_setup())
            if unavailable:
                raise ValueError(unavailable)
            detected = hints.detect(unit, hints.choose_input(unit), image.height, image.width,
                                    annotators=rt.annotator_setup())
        except ValueError as err:
            raise gr.Error(str(err)) from None
        return np.ascontiguousarray(hints.visible_map(detected))

    detect.click(run_preprocessor, inputs=[f[key(i, "image")], f[key(i, "mask")], f[key(i, "module")], *sliders],
                 outputs=[preview], show_progress="minimal")


def take_units(data: dict[str, Any], tab: str) -> list[Any]:
    """The accordion's values (removed from ``data``) as the job's units; an enabled unit's bad value is a
    readable error naming the unit."""
    indices = sorted({int(k[len(PREFIX):].split("_", 1)[0]) for k in data if k.startswith(PREFIX)})
    units = []
    for i in indices:
        values = {name: data.pop(key(i, name)) for name in UNIT_FIELDS if key(i, name) in data}
        if not values.get("enabled"):
            continue
        if tab != "txt2img":
            values.pop("hr_option", None)
        units.append(parse_unit(values, f"ControlNet Unit {i}"))
    return units


def values_from_infotext(parsed: Mapping[str, Any]) -> dict[str, Any]:
    """``ControlNet N: "Module: ..., ..."`` -> the accordion's fields (the unit enabled), as the extension pastes."""
    out: dict[str, Any] = {}
    for name, text in parsed.items():
        if not name.startswith("ControlNet ") or not name[len("ControlNet "):].isdigit():
            continue
        i = int(name[len("ControlNet "):])
        fields = parse_infotext(str(text))
        if not fields:
            continue
        out[key(i, "enabled")] = True
        for field in INFOTEXT_FIELDS:
            if field not in fields:
                continue
            value = fields[field]
            if field == "module":
                pre = preprocessors.find(str(value))
                value = pre.label if pre is not None else value
            out[key(i, field)] = value
    return out
