"""The img2img tab: A1111's mode sub-tabs (img2img, Sketch, Inpaint, Inpaint sketch, Inpaint upload, Batch), resize
and inpaint controls, the Script dropdown (Poor man's outpainting), over the same queue and processing as the API.

``params_from_ui`` turns what the components hold (editor dicts, uploads) into one ``Img2ImgParams``; it is a plain
function so each mode is tested without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import gradio as gr
import numpy as np
from PIL import Image

from modules.errors import FieldError
from modules.processing import builtin_scripts, imageops, masking
from modules.processing.masking import INPAINT_AREAS, MASK_MODES, MASKED_CONTENT
from modules.processing.params import Img2ImgParams
from modules.runtime import Runtime
from modules.script_registry import Prepared, TabScripts
from modules.ui import common, controlnet_controls, extra_networks_panel, kontext_controls, script_controls

MODES = ("img2img", "Sketch", "Inpaint", "Inpaint sketch", "Inpaint upload", "Batch")
IMG2IMG, SKETCH, INPAINT, INPAINT_SKETCH, INPAINT_UPLOAD, BATCH = range(6)
INPAINT_MODES = (INPAINT, INPAINT_SKETCH, INPAINT_UPLOAD, BATCH)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass
class Img2ImgControls:
    fields: dict[str, Any]
    images: dict[str, Any]  # the image component of each mode, by A1111 elem_id
    mode: Any  # hidden gr.Number: index into MODES
    mode_tabs: Any
    generate: Any
    output: common.OutputPanel
    inpaint_controls: Any = None
    mode_outputs: list[Any] | None = None  # [mode, mode_tabs, inpaint controls, mask transparency]


TAB_IDS = ("img2img_img2img_tab", "img2img_img2img_sketch_tab", "img2img_inpaint_tab", "img2img_inpaint_sketch_tab",
           "img2img_inpaint_upload_tab", "img2img_batch_tab")


def mode_updates(index: int, switch_tab: bool = True) -> list[Any]:
    """Updates for ``Img2ImgControls.mode_outputs`` that make ``index`` the current mode."""
    return [index, gr.Tabs(selected=TAB_IDS[index]) if switch_tab else gr.update(),
            gr.update(visible=index in INPAINT_MODES), gr.update(visible=index == INPAINT_SKETCH)]


# ------------------------------------------------------------------------------------------ inputs -> params


def _editor_parts(value: Any) -> tuple[Image.Image | None, list[Image.Image], Image.Image | None]:
    """(background, layers, composite) of a gradio ImageEditor value (a dict), or of a plain image."""
    if value is None:
        return None, [], None
    if isinstance(value, Image.Image):
        return value, [], value
    return value.get("background"), [x for x in value.get("layers") or [] if x is not None], value.get("composite")


def brush_mask(layers: list[Image.Image], size: tuple[int, int]) -> Image.Image:
    """The union of the brush layers' opaque pixels: what the user painted in Inpaint."""
    mask = np.zeros((size[1], size[0]), dtype=np.uint8)
    for layer in layers:
        mask = np.maximum(mask, np.asarray(layer.convert("RGBA").split()[-1].resize(size)))
    return Image.fromarray(mask, "L")


def init_and_mask(mode: int, images: Mapping[str, Any], mask_transparency: float, mask_blur: int
                  ) -> tuple[Image.Image, Image.Image | None]:
    """The init image and mask a mode's components give (A1111's ``img2img`` mode switch)."""
    if mode == IMG2IMG:
        image, mask = images.get("img2img_image"), None
    elif mode == SKETCH:
        _, _, image = _editor_parts(images.get("img2img_sketch"))
        mask = None
    elif mode == INPAINT:
        background, layers, _ = _editor_parts(images.get("img2maskimg"))
        image = background
        mask = brush_mask(layers, background.size) if background is not None else None
    elif mode == INPAINT_SKETCH:
        background, _, composite = _editor_parts(images.get("inpaint_sketch"))
        if background is None or composite is None:
            image, mask = None, None
        else:
            image, mask = masking.inpaint_sketch(background, composite, mask_transparency, mask_blur)
    elif mode == INPAINT_UPLOAD:
        image, mask = images.get("img_inpaint_base"), images.get("img_inpaint_mask")
        if image is not None and mask is None:
            raise FieldError("mask", "upload a mask for Inpaint upload")
    else:
        raise FieldError("mode", f"unknown img2img mode {mode}")
    if image is None:
        raise FieldError("init_images", f"upload an image in the {MODES[mode]} tab first")
    return image, mask


UI_ONLY_FIELDS = ("scale_by", "resize_tab", "mask_alpha", "script_name", *builtin_scripts.ui_keys())
RADIOS = (("inpainting_fill", MASKED_CONTENT), ("inpaint_full_res", INPAINT_AREAS),
          ("inpainting_mask_invert", MASK_MODES), ("resize_mode", imageops.RESIZE_MODES))


def split_values(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Img2ImgParams fields, UI-only values). Radios hold labels; the parameters take their indices."""
    data = common.ui_values(dict(values))
    data["controlnet_units"] = controlnet_controls.take_units(data, "img2img")
    data["kontext"] = kontext_controls.take_request(data)
    ui = {key: data.pop(key) for key in UI_ONLY_FIELDS if key in data}
    for key, choices in RADIOS:
        if isinstance(data.get(key), str):
            data[key] = choices.index(data[key]) if data[key] in choices else 0
    data["inpaint_full_res"] = bool(data.get("inpaint_full_res", 0))
    return data, ui


def params_from_ui(mode: int, images: Mapping[str, Any], values: Mapping[str, Any]) -> Img2ImgParams:
    """One typed parameter object from the tab: the mode's image and mask, the radios' indices, resize by/to, and
    what a chosen built-in script (outpainting) makes of them."""
    return prepare_from_ui(mode, images, values, script_controls.ScriptControls(TabScripts("img2img"))).params


def prepare_from_ui(mode: int, images: Mapping[str, Any], values: Mapping[str, Any],
                    scripts: script_controls.ScriptControls, upscaler_names: Sequence[str] = ("None",)) -> Prepared:
    """The parameters, the chosen built-in script's runner and the facade's call (``script_registry.Prepared``)."""
    values = dict(values)
    chosen = scripts.take(values)
    data, ui = split_values(values)
    image, mask = init_and_mask(mode, images, float(ui.get("mask_alpha") or 0), int(data.get("mask_blur") or 0))
    if mode not in INPAINT_MODES:
        mask = None
    image = imageops.normalize_input(image)
    if ui.get("resize_tab") == 1:  # "Resize by": the init image's size times the scale
        scale = float(ui.get("scale_by") or 1.0)
        data["width"] = imageops.snap_size(image.width * scale)
        data["height"] = imageops.snap_size(image.height * scale)
    return scripts.prepare(Img2ImgParams(**data, init_images=[image], mask=mask), chosen, upscaler_names)


@dataclass(frozen=True)
class BatchFolders:
    """The Batch tab's folder fields, each already passed through the one folder rule (None: field empty)."""

    input: Path | None = None
    output: Path | None = None
    masks: Path | None = None
    png_info: Path | None = None


def batch_folders(rt: Any, input_dir: str | None, output_dir: str | None, mask_dir: str | None,
                  png_info_dir: str | None = None) -> BatchFolders:
    """Every folder field through ``cmd_args.checked_folder`` (FieldError naming the refused one), before any
    file is read or written."""
    from modules.cmd_args import checked_folder

    def check(field: str, text: str | None) -> Path | None:
        return checked_folder(rt.args, rt.paths.data_dir, field, text)

    return BatchFolders(check("img2img_batch_input_dir", input_dir), check("img2img_batch_output_dir", output_dir),
                        check("img2img_batch_inpaint_mask_dir", mask_dir),
                        check("img2img_batch_png_info_dir", png_info_dir))


def batch_inputs(files: list[Any] | None, input_dir: str | Path | None, mask_dir: str | Path | None,
                 allowed: Callable[[Path], bool] = lambda _path: True) -> list[tuple[Path, Path | None]]:
    """Batch images (uploads, or every image in ``input_dir``) with the mask of the same name in ``mask_dir``.
    ``allowed``: the folder rule for each file found (a symlink in an allowed folder may point elsewhere)."""
    if input_dir:
        folder = Path(input_dir).expanduser()
        if not folder.is_dir():
            raise FieldError("img2img_batch_input_dir", f"{folder} is not a folder")
        paths = sorted(p for p in folder.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and allowed(p))
    else:
        paths = [Path(getattr(f, "name", f)) for f in files or []]
    if not paths:
        raise FieldError("img2img_batch_input_dir", "no images to process")
    masks = Path(mask_dir).expanduser() if mask_dir else None
    out = []
    for path in paths:
        mask = None
        if masks is not None:
            mask = next((m for m in sorted(masks.glob(path.stem + ".*"))
                         if m.suffix.lower() in IMAGE_EXTENSIONS and allowed(m)), None)
        out.append((path, mask))
    return out


PNG_INFO_PROPS = ("Prompt", "Negative prompt", "Seed", "CFG scale", "Sampler", "Steps", "Model hash")


def apply_png_info(data: dict[str, Any], geninfo: str | None, props: list[str]) -> dict[str, Any]:
    """Batch "PNG info": take the chosen parameters from an image's infotext (A1111: its prompts are appended to
    the tab's, the others replace them; a model hash selects that checkpoint for the image)."""
    from modules import infotext

    if not geninfo:
        return data
    parsed = {k: v for k, v in infotext.parse_infotext(geninfo).items() if k in props}
    out = dict(data)
    if "Prompt" in parsed:
        out["prompt"] = f"{data.get('prompt', '')} {parsed['Prompt']}".strip()
    if "Negative prompt" in parsed:
        out["negative_prompt"] = f"{data.get('negative_prompt', '')} {parsed['Negative prompt']}".strip()
    for field, key, convert in (("seed", "Seed", int), ("cfg_scale", "CFG scale", float), ("steps", "Steps", int),
                                ("sampler_name", "Sampler", str)):
        if key in parsed:
            try:
                out[field] = convert(float(parsed[key])) if convert is not str else str(parsed[key])
            except (TypeError, ValueError):
                pass
    if "Model hash" in parsed:
        out["override_settings"] = {**data.get("override_settings", {}), "sd_model_checkpoint": str(parsed["Model hash"])}
    return out


# ------------------------------------------------------------------------------------------------------- UI


def postprocessing_names(rt: Any) -> list[str]:
    from modules.processing.postprocessing import upscaler_names

    return upscaler_names(getattr(rt, "upscalers", None))


def _editor(label: str, elem_id: str, colour_brush: bool) -> Any:
    """An image editor; PNG so the pixels outside the mask arrive exactly. Inpaint's brush is plain white (the
    mask); the sketch modes get a colour brush."""
    brush = gr.Brush(color_mode="defaults") if colour_brush else gr.Brush(colors=["#ffffff"], color_mode="fixed")
    return gr.ImageEditor(label=label, type="pil", image_mode="RGBA", sources=["upload", "clipboard"],
                          elem_id=elem_id, format="png", height=480, brush=brush, layers=False)


def _copy_buttons(tab_ids: list[str]) -> dict[str, Any]:
    with gr.Row(elem_classes=["copy-image-to"]):
        gr.HTML("<span class='copy-to-label'>Copy image to:</span>")
        return {target: gr.Button(MODES[index], elem_id=f"copy_to_{target}", min_width=60, size="sm")
                for target, index in zip(tab_ids, (IMG2IMG, SKETCH, INPAINT, INPAINT_SKETCH))}


def build_img2img_tab(rt: Runtime) -> Img2ImgControls:
    tab = "img2img"
    f: dict[str, Any] = {}
    images: dict[str, Any] = {}
    row = common.build_prompt_row(rt, tab, f, interrogate=True)
    mode = common.page_set_number(IMG2IMG, "img2img_mode_index")
    extra = extra_networks_panel.begin(tab)  # A1111 1.6+: Generation beside the Extra Networks tabs
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Tabs(elem_id="mode_img2img") as mode_tabs:
                with gr.Tab("img2img", id="img2img_img2img_tab") as t0:
                    images["img2img_image"] = gr.Image(label="Image for img2img", type="pil", image_mode="RGBA",
                                                       sources=["upload", "clipboard"], elem_id="img2img_image",
                                                       format="png", height=480)
                with gr.Tab("Sketch", id="img2img_img2img_sketch_tab") as t1:
                    images["img2img_sketch"] = _editor("Image for img2img", "img2img_sketch", colour_brush=True)
                with gr.Tab("Inpaint", id="img2img_inpaint_tab") as t2:
                    images["img2maskimg"] = _editor("Image for inpainting with mask", "img2maskimg",
                                                    colour_brush=False)
                with gr.Tab("Inpaint sketch", id="img2img_inpaint_sketch_tab") as t3:
                    images["inpaint_sketch"] = _editor("Color sketch inpainting", "inpaint_sketch", colour_brush=True)
                with gr.Tab("Inpaint upload", id="img2img_inpaint_upload_tab") as t4:
                    images["img_inpaint_base"] = gr.Image(label="Image for img2img", type="pil", image_mode="RGBA",
                                                          sources=["upload"], elem_id="img_inpaint_base",
                                                          format="png")
                    images["img_inpaint_mask"] = gr.Image(label="Mask", type="pil", image_mode="RGBA",
                                                          sources=["upload"], elem_id="img_inpaint_mask",
                                                          format="png")
                with gr.Tab("Batch", id="img2img_batch_tab") as t5:
                    with gr.Tabs():
                        with gr.Tab("Upload", id="img2img_batch_upload_tab"):
                            batch_files = gr.File(label="Files", file_count="multiple", file_types=["image"],
                                                  elem_id="img2img_batch_upload")
                        with gr.Tab("From directory", id="img2img_batch_directory_tab"):
                            hidden = bool(getattr(rt.args, "hide_ui_dir_config", False))
                            batch_input = gr.Textbox(label="Input directory", elem_id="img2img_batch_input_dir",
                                                     interactive=not hidden)
                            batch_output = gr.Textbox(label="Output directory", elem_id="img2img_batch_output_dir",
                                                      interactive=not hidden)
                            batch_masks = gr.Textbox(label="Inpaint batch mask directory (required for inpaint "
                                                           "batch processing only)",
                                                     elem_id="img2img_batch_inpaint_mask_dir", interactive=not hidden)
                    with gr.Accordion("PNG info", open=False):
                        png_info_on = gr.Checkbox(False, label="Append png info to prompts",
                                                  elem_id="img2img_batch_use_png_info")
                        png_info_dir = gr.Textbox(label="PNG info directory", elem_id="img2img_batch_png_info_dir",
                                                  placeholder="Leave empty to use input directory",
                                                  interactive=not hidden)
                        png_info_props = gr.CheckboxGroup(list(PNG_INFO_PROPS), value=[],
                                                          label="Parameters to take from png info",
                                                          elem_id="img2img_batch_png_info_props")
            copy = _copy_buttons(["img2img_image", "img2img_sketch", "img2maskimg", "inpaint_sketch"])
            f["resize_mode"] = gr.Radio(list(imageops.RESIZE_MODES), value="Just resize", label="Resize mode",
                                        elem_id="resize_mode")
            with gr.Group(visible=False) as inpaint_controls:
                with gr.Row():
                    f["mask_blur"] = gr.Slider(0, 64, value=4, step=1, label="Mask blur", elem_id="img2img_mask_blur")
                    f["mask_alpha"] = gr.Slider(0, 100, value=0, step=1, label="Mask transparency",
                                                elem_id="img2img_mask_alpha", visible=False)
                f["inpainting_mask_invert"] = gr.Radio(list(MASK_MODES), value=MASK_MODES[0], label="Mask mode",
                                                       elem_id="img2img_mask_mode")
                f["inpainting_fill"] = gr.Radio(list(MASKED_CONTENT), value="original", label="Masked content",
                                                elem_id="img2img_inpainting_fill")
                with gr.Row():
                    f["inpaint_full_res"] = gr.Radio(list(INPAINT_AREAS), value=INPAINT_AREAS[0],
                                                     label="Inpaint area", elem_id="img2img_inpaint_full_res")
                    f["inpaint_full_res_padding"] = gr.Slider(0, 256, value=32, step=4,
                                                              label="Only masked padding, pixels",
                                                              elem_id="img2img_inpaint_full_res_padding")
            common.build_sampler_controls(rt, tab, f)
            script_controls.section(rt, tab, "sampler")
            with gr.Tabs(elem_id="img2img_tabs_resize"):
                with gr.Tab("Resize to", id="img2img_tab_resize_to") as resize_to:
                    common.build_size_and_batch(tab, f)
                    detect = gr.Button("📐", elem_id="img2img_detect_image_size_btn", min_width=40,
                                       elem_classes=["sd-tip-detect-size"])
                with gr.Tab("Resize by", id="img2img_tab_resize_by") as resize_by:
                    f["scale_by"] = gr.Slider(0.05, 4.0, value=1.0, step=0.05, label="Scale",
                                              elem_id="img2img_scale")
            f["resize_tab"] = common.page_set_number(0, "img2img_resize_tab_index")
            script_controls.section(rt, tab, "dimensions")
            script_controls.section(rt, tab, "batch")
            f["cfg_scale"] = gr.Slider(1, 30, value=7, step=0.5, label="CFG Scale", elem_id=f"{tab}_cfg_scale")
            f["distilled_cfg_scale"] = common.distilled_cfg_slider(tab)
            script_controls.section(rt, tab, "cfg")
            f["denoising_strength"] = gr.Slider(0, 1, value=0.75, step=0.01, label="Denoising strength",
                                                elem_id="img2img_denoising_strength")
            seed_buttons = common.build_seed_controls(tab, f)
            script_controls.section(rt, tab, "seed")
            common.build_refiner_controls(rt, tab, f)
            controlnet_controls.build_accordion(rt, tab, f)
            kontext_controls.build_accordion(tab, f)
            script_controls.scripts_area(rt, tab)
            f["script_name"] = script_controls.dropdown(rt, tab, "img2img_script")
            scripts = script_controls.selectable(rt, tab, f, postprocessing_names(rt))
        with gr.Column(scale=1):
            output = common.build_output_panel(tab)
    extra_networks_panel.end(rt, tab, extra)
    common.wire_prompt_row(rt, row, f)
    from modules.processing import saving

    common.wire_output_panel(rt, output, saving.IMG2IMG)
    common.wire_reuse_seed(seed_buttons, f, output)
    from modules.ui.pnginfo_tab import wire_paste_button

    wire_paste_button(rt, row.paste, f)  # img2img's ↙️ did nothing: it was never wired
    mode_outputs = [mode, mode_tabs, inpaint_controls, f["mask_alpha"]]

    # Mode tabs: remember the mode, show the inpaint controls where they apply (A1111's visibility rule).
    for index, tab_component in enumerate((t0, t1, t2, t3, t4, t5)):
        updates = mode_updates(index, switch_tab=False)
        common.select_in_page(tab_component, [mode, inpaint_controls, f["mask_alpha"]], [updates[0], *updates[2:]])
    common.select_in_page(resize_to, [f["resize_tab"]], [0])
    common.select_in_page(resize_by, [f["resize_tab"]], [1])

    image_list = list(images.values())
    image_keys = list(images.keys())

    def detect_size(mode_index: int, *values: Any) -> tuple[Any, Any]:
        """📐: the width and height of the current mode's image, on the latent grid."""
        try:
            image, _ = init_and_mask(mode_index, dict(zip(image_keys, values)), 0, 0)
        except FieldError:
            return gr.update(), gr.update()
        return imageops.snap_size(image.width), imageops.snap_size(image.height)

    detect.click(detect_size, inputs=[mode, *image_list], outputs=[f["width"], f["height"]], queue=False)

    def interrogate(model: str, mode_index: int, prompt: str, *values: Any) -> tuple[Any, str]:
        """The current mode's image captioned by ``model``, into the prompt (A1111's Interrogate buttons)."""
        try:
            image, _ = init_and_mask(mode_index, dict(zip(image_keys, values)), 0, 0)
        except FieldError as err:
            return gr.update(value=prompt), common.error_html(str(err))
        caption, message = common.caption_of(rt, image, model)
        return gr.update(value=prompt if caption is None else caption), message

    for model, button in (row.interrogate or {}).items():
        button.click(lambda *values, model=model: interrogate(model, *values), inputs=[mode, f["prompt"], *image_list],
                     outputs=[f["prompt"], output.progress], concurrency_limit=None, show_progress="hidden")

    target_modes = {"img2img_image": IMG2IMG, "img2img_sketch": SKETCH, "img2maskimg": INPAINT,
                    "inpaint_sketch": INPAINT_SKETCH}
    for target, button in copy.items():
        def copy_to(mode_index: int, *values: Any, target: str = target) -> list[Any]:
            try:
                image, _ = init_and_mask(mode_index, dict(zip(image_keys, values)), 0, 0)
            except FieldError:
                return [gr.update()] * 5
            return [gr.update(value=image.copy()), *mode_updates(target_modes[target])]

        button.click(copy_to, inputs=[mode, *image_list], outputs=[images[target], *mode_outputs], queue=False)

    names = list(f.keys())
    inputs = list(f.values())
    batch_components = [batch_files, batch_input, batch_output, batch_masks, png_info_on, png_info_dir,
                        png_info_props]

    def generate_fn(mode_index: int, *values: Any) -> Iterator[common.Outputs]:
        n_images, n_fields = len(image_keys), len(names)
        image_values = dict(zip(image_keys, values[:n_images]))
        field_values = dict(zip(names, values[n_images:n_images + n_fields]))
        files, input_dir, output_dir, mask_dir, use_png, png_dir, props = values[n_images + n_fields:]
        if mode_index == BATCH:
            png_info = (png_dir or "", list(props or [])) if use_png else None
            chosen = scripts.take(field_values)
            upscaler_names = postprocessing_names(rt)
            yield from run_batch(rt, field_values, files, input_dir, output_dir, mask_dir, png_info,
                                 lambda params: scripts.prepare(params, chosen, upscaler_names))
            return

        def submit() -> Any:
            run = prepare_from_ui(mode_index, image_values, field_values, scripts, postprocessing_names(rt))
            return rt.submit_img2img(run.params, script=run.script, scripts_call=run.scripts_call)

        yield from common.stream_job(rt, submit)

    generating = row.generate.click(generate_fn, inputs=[mode, *image_list, *inputs, *batch_components],
                       outputs=[output.gallery, output.infotext, output.progress, output.preview,
                                output.generation_info],
                       concurrency_limit=None, show_progress="hidden")
    common.continue_forever(generating, "img2img")
    return Img2ImgControls(f, images, mode, mode_tabs, row.generate, output, inpaint_controls, mode_outputs)


def run_batch(rt: Runtime, values: dict[str, Any], files: list[Any] | None, input_dir: str, output_dir: str,
              mask_dir: str, png_info: tuple[str, list[str]] | None = None,
              prepare: Callable[[Img2ImgParams], Prepared] | None = None) -> Iterator[common.Outputs]:
    """Batch mode: one job per image (its mask by name when a mask folder is given), results shown together; with
    an output directory the results are also written there under the input's name, never over a file. With
    ``png_info`` (folder, parameters), each image's infotext (or that of the same name in the folder) supplies
    those parameters; ``prepare`` applies the chosen script to each image's job. Every folder field follows
    ``cmd_args.folder_refusal``: a refused one is an error message, and nothing is read or written."""
    from modules.cmd_args import file_allowed
    from modules.image_metadata import read_generation_info
    from modules import fileio
    from modules.processing.saving import encode_image

    allowed = file_allowed(rt.args, rt.paths.data_dir)

    try:
        folders = batch_folders(rt, input_dir, output_dir, mask_dir, png_info[0] if png_info else None)
        items = batch_inputs(files, folders.input, folders.masks, allowed)
    except FieldError as err:
        yield gr.update(), common.error_html(str(err)), "", gr.update(visible=False), gr.update()
        return
    gallery: list[Any] = []
    last: common.Outputs | None = None
    for number, (path, mask_path) in enumerate(items):
        def submit(path: Path = path, mask_path: Path | None = mask_path) -> Any:
            with Image.open(path) as opened:
                geninfo, _ = read_generation_info(opened)
                image = imageops.normalize_input(opened)
                image.load()
            mask = None
            if mask_path is not None:
                with Image.open(mask_path) as opened:
                    mask = opened.copy()
            data, _ = split_values(values)
            if png_info is not None:
                props = png_info[1]
                if folders.png_info is not None:
                    info_path = folders.png_info / path.name
                    info_text = None
                    if info_path.is_file() and allowed(info_path):
                        with Image.open(info_path) as opened:
                            info_text, _ = read_generation_info(opened)
                else:
                    info_text = geninfo
                data = apply_png_info(data, info_text, props)
                wanted = data.get("override_settings", {}).get("sd_model_checkpoint")
                if wanted and rt.registry.get(wanted) is None:  # an unknown model hash is ignored, as in A1111
                    data["override_settings"].pop("sd_model_checkpoint")
            params = Img2ImgParams(**data, init_images=[image], mask=mask)
            run = prepare(params) if prepare is not None else Prepared(params)  # the chosen script, per image
            return rt.submit_img2img(run.params, script=run.script, scripts_call=run.scripts_call)

        for out in common.stream_job(rt, submit):
            last = out
            gallery_update, info_html, progress, preview, info = out
            if isinstance(info, dict) and "infotexts" in info:  # finished (gr.update() is a dict too)
                if folders.output is not None:
                    target = folders.output
                    target.mkdir(parents=True, exist_ok=True)
                    for saved, text in zip(info["paths"][info["index_of_first_image"]:],
                                           info["infotexts"][info["index_of_first_image"]:]):
                        if saved:
                            with Image.open(saved) as im:
                                fileio.write_new_file(target / f"{path.stem}.png", encode_image(im, "png", text))
                items = gallery_update.get("value") if isinstance(gallery_update, dict) else gallery_update
                gallery.extend(items if isinstance(items, list) else [])
                yield gallery, info_html, f"<span class='progress-text'>{number + 1}/{len(items)}</span>", \
                    gr.update(visible=False), info
            else:
                yield gr.update(), info_html, progress, preview, gr.update()
    if last is None:
        yield gr.update(), "", "", gr.update(visible=False), gr.update()
