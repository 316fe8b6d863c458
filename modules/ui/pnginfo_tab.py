"""The PNG Info tab: drop an image, see its infotext and other text items, send the parameters to txt2img.

Wiring (the lead adds this to modules/ui/app.py, build_ui):

    from modules.ui.pnginfo_tab import build_pnginfo_tab
        with gr.Tabs(elem_id="tabs") as tabs:                       # name the Tabs
            with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"):
                txt2img = build_txt2img_tab(rt)                      # keep the controls
            with gr.Tab("PNG Info", id="pnginfo", elem_id="tab_pnginfo"):
                build_pnginfo_tab(rt, txt2img, tabs)

The handlers are plain functions (``pnginfo_html``, ``read_image_info``, ``txt2img_values_from_infotext``,
``send_to_txt2img_updates``) so they are tested without a browser.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from modules import browser_files, infotext, samplers
from modules.image_metadata import read_generation_info


@dataclass
class PngInfoControls:
    image: Any
    html: Any
    generation_info: Any  # gr.State holding the ``parameters`` text of the shown image
    send_to_txt2img: Any


def plaintext_to_html(text: str) -> str:
    return "<br>".join(html.escape(line) for line in text.split("\n"))


def pnginfo_html(geninfo: str | None, items: Mapping[str, str]) -> str:
    """A1111's ``run_pnginfo`` panel: ``parameters`` first, then every other item; everything HTML-escaped."""
    shown: dict[str, str] = {}
    if geninfo is not None:
        shown["parameters"] = geninfo
    shown.update(items)
    if not shown:
        return "<div><p>Nothing found in the image.</p></div>"
    return "\n".join(f"<div><p><b>{plaintext_to_html(str(key))}</b></p><p>{plaintext_to_html(str(text))}</p></div>"
                     for key, text in shown.items())


def uploaded(value: Any) -> Path | None:
    """The uploaded file's path, only when it lies in this server's upload cache (the page can name any path)."""
    return browser_files.checked_upload(value, [browser_files.upload_cache_dir()])


def read_image_info(image: Image.Image | str | None) -> tuple[str, str | None]:
    """Panel HTML and the ``parameters`` text of an uploaded image (a PIL image with its ``.info``, or a path)."""
    if image is None:
        return "", None
    if isinstance(image, Image.Image):
        geninfo, items = read_generation_info(image)
    else:
        path = uploaded(image)
        if path is None:
            return "", None
        try:
            with Image.open(path) as opened:
                geninfo, items = read_generation_info(opened)
        except (OSError, ValueError) as err:
            return f"<div class='error'><p>Cannot read the image: {html.escape(str(err))}</p></div>", None
    return pnginfo_html(geninfo, items), geninfo


def _int(value: object) -> int | None:
    try:
        return int(float(str(value).strip()))
    except (TypeError, ValueError):
        return None


def _float(value: object) -> float | int | None:
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else number


def script_values_from_infotext(parsed: dict[str, Any], components: Mapping[str, Any]) -> dict[str, Any]:
    """Values for the scripts' controls among ``components`` that their ``infotext_fields`` ((component, key or
    function) pairs) fill from the parsed infotext."""
    from modules import scripts

    keys = {id(component): key for runner in (scripts.scripts_txt2img, scripts.scripts_img2img)
            for script in runner.scripts for component, key in (script.infotext_fields or [])}
    out: dict[str, Any] = {}
    for name, component in components.items():
        key = keys.get(id(component))
        if key is None:
            continue
        try:
            value = key(parsed) if callable(key) else parsed.get(key)
        except Exception:  # noqa: BLE001 - a script's paste function must not break pasting
            continue
        if value is not None:
            out[name] = value
    return out


def txt2img_values_from_infotext(text: str | None, styles: Any = None,
                                 components: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Values for the txt2img fields (Txt2ImgControls.fields names) that the infotext sets, as A1111 pastes them.

    Fields the infotext does not mention are absent (left unchanged), except the sampler and schedule type (see
    below) and ``show_extra``, which A1111 always set (Extra is on when a variation seed or seed resize is present). ``styles`` is a StyleDatabase: styles found in the
    prompts are taken out of them and selected (A1111's "Apply if any"); with none found, styles are left alone.
    """
    if not text or not text.strip():
        return {}
    d = infotext.parse_infotext(text)
    from modules import script_callbacks

    script_callbacks.call("infotext_pasted", text, d)  # extensions may add or change parsed values (A1111)
    out: dict[str, Any] = {"prompt": str(d.get("Prompt", "")), "negative_prompt": str(d.get("Negative prompt", ""))}
    if components is not None:
        out.update(script_values_from_infotext(d, components))
        # A1111 selects the infotext's "Script" (an X/Y/Z plot grid's, say), so that its pasted controls show.
        script = components.get("script_name")
        titles = [c[1] if isinstance(c, (tuple, list)) else c for c in (getattr(script, "choices", None) or [])]
        if "Script" in d and str(d["Script"]) in titles:
            out["script_name"] = str(d["Script"])

    if styles is not None and getattr(styles, "styles", None):
        found, prompt, negative = styles.extract_styles_from_prompt(out["prompt"], out["negative_prompt"])
        if found:
            out.update(styles=found, prompt=prompt, negative_prompt=negative)

    # A1111 always pastes a sampler and schedule: a missing or unknown sampler becomes the default one, an unknown
    # schedule "Automatic", and a schedule equal to the sampler's own default becomes "Automatic" too.
    sampler, schedule = samplers.resolve_sampler_lenient(str(d.get("Sampler") or ""), str(d.get("Schedule type") or ""))
    out["sampler_name"] = sampler.name
    out["scheduler"] = schedule.label

    conversions: tuple[tuple[str, str, Any], ...] = (
        ("steps", "Steps", _int),
        ("cfg_scale", "CFG scale", _float),
        ("distilled_cfg_scale", "Distilled CFG Scale", _float),  # Forge's, for Flux dev
        ("seed", "Seed", _int),
        ("width", "Size-1", _int),
        ("height", "Size-2", _int),
        ("batch_size", "Batch size", _int),
        ("subseed", "Variation seed", _int),
        ("subseed_strength", "Variation seed strength", _float),
        ("seed_resize_from_w", "Seed resize from-1", _int),
        ("seed_resize_from_h", "Seed resize from-2", _int),
    )
    for field, key, convert in conversions:
        if key in d:
            value = convert(d[key])
            if value is not None:
                out[field] = value
    out["show_extra"] = "Variation seed" in d or "Seed resize from-1" in d
    out.update(_hires_values(d))
    out.update(_img2img_values(d))
    from modules.ui import controlnet_controls

    out.update(controlnet_controls.values_from_infotext(d))  # "ControlNet N": the accordion's unit N
    out["refiner_enabled"] = "Refiner" in d
    if "Refiner switch at" in d and _float(d["Refiner switch at"]) is not None:
        out["refiner_switch_at"] = _float(d["Refiner switch at"])
    return out


HIRES_KEYS = ("Hires upscale", "Hires upscaler", "Hires steps")  # "Hires resize-1" is always filled in (0)


def _hires_values(d: Mapping[str, Any]) -> dict[str, Any]:
    """The hires fix fields: a denoising strength with hires keys turns the checkbox on (A1111's paste rule)."""
    if "Denoising strength" not in d or not (any(k in d for k in HIRES_KEYS) or d.get("Hires resize-1")):
        return {"enable_hr": False}
    out: dict[str, Any] = {"enable_hr": True, "hr_sampler_name": str(d.get("Hires sampler") or "Use same sampler"),
                           "hr_scheduler": str(d.get("Hires schedule type") or "Use same scheduler"),
                           "hr_prompt": str(d.get("Hires prompt", "")),
                           "hr_negative_prompt": str(d.get("Hires negative prompt", ""))}
    for field, key, convert in (("hr_scale", "Hires upscale", _float), ("hr_second_pass_steps", "Hires steps", _int),
                                ("hr_resize_x", "Hires resize-1", _int), ("hr_resize_y", "Hires resize-2", _int),
                                ("denoising_strength", "Denoising strength", _float)):
        value = convert(d.get(key)) if key in d else None
        if value is not None:
            out[field] = value
    if "Hires upscaler" in d:
        out["hr_upscaler"] = str(d["Hires upscaler"])
    return out


def _img2img_values(d: Mapping[str, Any]) -> dict[str, Any]:
    """img2img/inpaint fields; radios take their labels (A1111's defaults fill what is absent)."""
    out: dict[str, Any] = {}
    if "Denoising strength" in d:
        value = _float(d["Denoising strength"])
        if value is not None:
            out["denoising_strength"] = value
    if "Mask blur" in d and _int(d["Mask blur"]) is not None:
        out["mask_blur"] = _int(d["Mask blur"])
    if "Mask blur" in d:  # parsing fills in the other inpaint keys' defaults; Mask blur means a mask was used
        out["inpainting_mask_invert"] = str(d.get("Mask mode", "Inpaint masked"))
        out["inpainting_fill"] = str(d.get("Masked content", "original"))
        out["inpaint_full_res"] = str(d.get("Inpaint area", "Whole picture"))
        padding = _int(d.get("Masked area padding", 32))
        out["inpaint_full_res_padding"] = 32 if padding is None else padding
    return out


def send_to_txt2img_updates(text: str | None, field_components: Mapping[str, Any], styles: Any = None) -> list[Any]:
    """One gradio update per txt2img field (in ``field_components`` order); sliders widen to fit a larger value."""
    try:
        values = txt2img_values_from_infotext(text, styles, field_components)
    except infotext.InfotextTooLongError as err:
        raise gr.Error(str(err)) from None
    updates: list[Any] = []
    for name, component in field_components.items():
        if name not in values:
            updates.append(gr.update())
            continue
        value = values[name]
        maximum = getattr(component, "maximum", None)
        if isinstance(component, gr.Slider) and isinstance(value, (int, float)) and maximum is not None \
                and value > maximum:
            updates.append(gr.update(value=value, maximum=value))
        else:
            updates.append(gr.update(value=value))
    return updates


def wire_paste_button(rt: Any, button: Any, fields: Mapping[str, Any]) -> None:
    """A1111's ↙️ button of a generation tab (txt2img and img2img alike): the infotext in the prompt box into the
    tab's fields, or params.txt (the last generation) when the box is empty."""
    def paste_params(prompt: str) -> list[Any]:
        text = prompt or ""
        if not text.strip():
            try:
                text = rt.paths.params_file.read_text(encoding="utf-8")
            except OSError:
                text = ""
        return send_to_txt2img_updates(text, fields, rt.styles)

    button.click(paste_params, inputs=[fields["prompt"]], outputs=list(fields.values()), queue=False)


def build_pnginfo_tab(rt: Any, txt2img_controls: Any, tabs: Any = None,
                      img2img_controls: Any = None, extras_controls: Any = None) -> PngInfoControls:
    """Build the tab inside the current ``gr.Tab``. With ``tabs`` (the app's ``gr.Tabs``), sending switches to the
    txt2img tab (id ``"txt2img"``)."""
    with gr.Row(equal_height=False):
        with gr.Column(variant="panel"):
            # type="filepath" with image_mode=None hands over the uploaded file itself, so its metadata is intact
            # (a PIL image would be converted to RGB first, and clipboard/data-URL paths re-encode).
            image = gr.Image(label="Source", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                             elem_id="pnginfo_image", height=512)
        with gr.Column(variant="panel"):
            info = gr.HTML("", elem_id="pnginfo_html", elem_classes=["infotext"])
            generation_info = gr.State(None)
            with gr.Row():
                send = gr.Button("Send to txt2img", elem_id="pnginfo_send_to_txt2img")
                send_img2img = gr.Button("Send to img2img", elem_id="pnginfo_send_to_img2img",
                                         visible=img2img_controls is not None)
                send_inpaint = gr.Button("Send to inpaint", elem_id="pnginfo_send_to_inpaint",
                                         visible=img2img_controls is not None)
                send_extras = gr.Button("Send to extras", elem_id="pnginfo_send_to_extras",
                                        visible=extras_controls is not None)

    image.change(read_image_info, inputs=[image], outputs=[info, generation_info], queue=False,
                 show_progress="hidden")

    fields: dict[str, Any] = dict(txt2img_controls.fields)
    outputs = list(fields.values())
    if tabs is not None:
        outputs.append(tabs)

    def on_send(text: str | None) -> list[Any]:
        updates = send_to_txt2img_updates(text, fields, getattr(rt, "styles", None))
        if tabs is not None:
            updates.append(gr.Tabs(selected="txt2img") if text else gr.update())
        return updates

    send.click(on_send, inputs=[generation_info], outputs=outputs, queue=False, show_progress="hidden")
    if img2img_controls is not None and tabs is not None:
        from modules.ui import send_to

        for button, target in ((send_img2img, "img2img"), (send_inpaint, "inpaint")):
            def on_send_image(path: str | None, text: str | None, target: str = target) -> list[Any]:
                picture = None
                if path := uploaded(path):
                    with Image.open(path) as opened:
                        picture = opened.copy()
                return send_to.updates(picture, text, img2img_controls, target, getattr(rt, "styles", None))

            button.click(on_send_image, inputs=[image, generation_info],
                         outputs=send_to.outputs(img2img_controls, target, tabs), queue=False,
                         show_progress="hidden")
    if extras_controls is not None and tabs is not None:
        def on_send_extras(path: str | None) -> list[Any]:
            if not (path := uploaded(path)):
                return [gr.update()] * 4
            with Image.open(path) as opened:
                picture = opened.copy()
                picture.info = dict(opened.info)  # the parameters chunk travels with it
            return [gr.update(value=picture), 0, gr.Tabs(selected="extras_single_tab"), gr.Tabs(selected="extras")]

        send_extras.click(on_send_extras, inputs=[image],
                          outputs=[extras_controls.image, extras_controls.mode, extras_controls.tabs, tabs],
                          queue=False, show_progress="hidden")
    return PngInfoControls(image, info, generation_info, send)


__all__ = [
    "PngInfoControls",
    "build_pnginfo_tab",
    "pnginfo_html",
    "read_image_info",
    "send_to_txt2img_updates",
    "txt2img_values_from_infotext",
]
