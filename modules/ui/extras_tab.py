"""The Extras tab: upscale single images, uploads or a folder with upscaler 1 and 2, as A1111's Extras tab does.

Results go to ``outputs/extras-images`` (or the batch's output folder) with an ``extras`` chunk beside the original
``parameters``. Face restoration controls say why they cannot run when their weights or detector are missing.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr
from PIL import Image
from pydantic import ValidationError

from modules.errors import FieldError
from modules.jobs import JobFailed, QueueFull
from modules.processing import postprocessing
from modules.runtime import Runtime
from modules.ui import common

NOTHING_TO_DO = "Nothing was changed: choose Upscaler 1 (or enable a face restorer)."
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass
class ExtrasControls:
    fields: dict[str, Any]
    image: Any  # the single-image input, target of "send to extras"
    mode: Any  # hidden gr.Number: 0 single, 1 batch, 2 directory
    tabs: Any
    generate: Any
    gallery: Any
    info: Any
    output: Any  # common.OutputPanel: the buttons under the result


def restorer_note(parts: tuple[str, Path | None] | None) -> str:
    if parts is None:  # it can run
        return ""
    phrase, folder = parts
    where = f" <code>{html.escape(str(folder))}</code>" if folder is not None else ""
    return f"<p class='comments'>{common.words(phrase)}{where}</p>"


def params_from_values(values: dict[str, Any]) -> postprocessing.ExtrasParams:
    data = dict(values)
    for key in ("upscaling_resize_w", "upscaling_resize_h", "max_side_length", "resize_mode"):
        if data.get(key) is not None:
            data[key] = int(data[key])
    return postprocessing.ExtrasParams(**data)


def directory_images(input_dir: str | Path, allowed: Callable[[Path], bool] = lambda _path: True) -> list[Path]:
    """The images in ``input_dir``; ``allowed``: the folder rule for each (a symlink may point elsewhere)."""
    folder = Path(input_dir).expanduser()
    if not folder.is_dir():
        raise FieldError("extras_batch_input_dir", f"{folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and allowed(p))


def batch_directories(rt: Any, input_dir: str | None, output_dir: str | None) -> tuple[Path, Path | None]:
    """"Batch from Directory"'s folders through the one folder rule (``cmd_args.checked_folder``), before
    anything is read or written: (input folder, output folder or None for the usual extras folder)."""
    from modules.cmd_args import checked_folder

    source = checked_folder(rt.args, rt.paths.data_dir, "extras_batch_input_dir", input_dir)
    if source is None:
        raise FieldError("extras_batch_input_dir", "choose an input directory")
    return source, checked_folder(rt.args, rt.paths.data_dir, "extras_batch_output_dir", output_dir)


def folder_images(rt: Any, input_dir: str | None, output_dir: str | None) -> tuple[list[tuple[Any, str]],
                                                                                    Path | None]:
    """The opened images of the input folder (each file checked by the folder rule) and the output folder."""
    from modules.cmd_args import file_allowed

    source, target = batch_directories(rt, input_dir, output_dir)
    allowed = file_allowed(rt.args, rt.paths.data_dir)
    return [(_open(p), p.stem) for p in directory_images(source, allowed)], target


def _open(path: Path | str) -> Image.Image:
    with Image.open(path) as opened:
        opened.load()
        image = opened.copy()
        image.info = dict(opened.info)
    return image


def build_extras_tab(rt: Runtime) -> ExtrasControls:
    f: dict[str, Any] = {}
    mode = common.page_set_number(0, "extras_mode_index")
    names = postprocessing.upscaler_names(rt.upscalers)
    restorers = rt.face_restorers.status() if rt.face_restorers is not None else {}
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Tabs(elem_id="mode_extras") as tabs:
                with gr.Tab("Single Image", id="extras_single_tab") as single_tab:
                    image = gr.Image(label="Source", type="pil", image_mode=None, sources=["upload", "clipboard"],
                                     elem_id="extras_image", format="png")
                with gr.Tab("Batch Process", id="extras_batch_process_tab") as batch_tab:
                    files = gr.File(label="Batch Process", file_count="multiple", file_types=["image"],
                                    elem_id="extras_image_batch")
                with gr.Tab("Batch from Directory", id="extras_batch_directory_tab") as dir_tab:
                    hidden = bool(getattr(rt.args, "hide_ui_dir_config", False))
                    input_dir = gr.Textbox(label="Input directory", elem_id="extras_batch_input_dir",
                                           interactive=not hidden)
                    output_dir = gr.Textbox(label="Output directory", elem_id="extras_batch_output_dir",
                                            interactive=not hidden)
                    show_results = gr.Checkbox(True, label="Show result images", elem_id="extras_show_extras_results")
            generate = gr.Button("Generate", variant="primary", elem_id="extras_generate")
            with gr.Accordion("Upscale", open=True, elem_id="extras_upscale"):
                with gr.Tabs(elem_id="extras_resize_mode"):
                    with gr.Tab("Scale by", id="extras_scale_by_tab") as scale_by:
                        f["upscaling_resize"] = gr.Slider(1.0, 8.0, value=4, step=0.05, label="Resize",
                                                          elem_id="extras_upscaling_resize")
                        f["max_side_length"] = gr.Number(0, label="Max side length", precision=0,
                                                         elem_id="extras_upscale_max_side_length")
                    with gr.Tab("Scale to", id="extras_scale_to_tab") as scale_to:
                        with gr.Row():
                            f["upscaling_resize_w"] = gr.Slider(64, 8192, value=512, step=8, label="Width",
                                                                elem_id="extras_upscaling_resize_w")
                            f["upscaling_resize_h"] = gr.Slider(64, 8192, value=512, step=8, label="Height",
                                                                elem_id="extras_upscaling_resize_h")
                        f["upscaling_crop"] = gr.Checkbox(True, label="Crop to fit", elem_id="extras_upscaling_crop")
                f["resize_mode"] = common.page_set_number(0, "extras_resize_mode_index")
                with gr.Row():
                    f["upscaler_1"] = gr.Dropdown(names, value="None", label="Upscaler 1", elem_id="extras_upscaler_1")
                    f["upscaler_2"] = gr.Dropdown(names, value="None", label="Upscaler 2", elem_id="extras_upscaler_2")
                f["extras_upscaler_2_visibility"] = gr.Slider(0.0, 1.0, value=0.0, step=0.001,
                                                              label="Upscaler 2 visibility",
                                                              elem_id="extras_upscaler_2_visibility")
            with gr.Accordion("GFPGAN", open=False, elem_id="extras_gfpgan"):
                f["gfpgan_enabled"] = gr.Checkbox(False, label="GFPGAN", elem_id="extras_enable_gfpgan")
                f["gfpgan_visibility"] = gr.Slider(0.0, 1.0, value=1.0, step=0.001, label="Visibility",
                                                   elem_id="extras_gfpgan_visibility")
                gr.HTML(restorer_note(restorers.get("GFPGAN")))
            with gr.Accordion("CodeFormer", open=False, elem_id="extras_codeformer"):
                f["codeformer_enabled"] = gr.Checkbox(False, label="CodeFormer", elem_id="extras_enable_codeformer")
                f["codeformer_visibility"] = gr.Slider(0.0, 1.0, value=1.0, step=0.001, label="Visibility",
                                                       elem_id="extras_codeformer_visibility")
                f["codeformer_weight"] = gr.Slider(0.0, 1.0, value=0.0, step=0.001,
                                                   label="Weight (0 = maximum effect, 1 = minimum effect)",
                                                   elem_id="extras_codeformer_weight")
                gr.HTML(restorer_note(restorers.get("CodeFormer")))
            postprocess = getattr(getattr(rt, "scripts", None), "extras", None)
            script_inputs = postprocess.setup_ui() if postprocess is not None and postprocess.scripts else []
        with gr.Column(scale=1):
            # A1111's output panel, as under txt2img's gallery (send to img2img / inpaint; the infotext in
            # #html_info_x, A1111's id)
            output = common.build_output_panel("extras", info_id="html_info_x", send_targets=("img2img", "inpaint"))
            progress, gallery, info = output.progress, output.gallery, output.infotext

    for index, tab in enumerate((single_tab, batch_tab, dir_tab)):
        common.select_in_page(tab, [mode], [index])
    common.select_in_page(scale_by, [f["resize_mode"]], [0])
    common.select_in_page(scale_to, [f["resize_mode"]], [1])
    field_names = list(f)

    def generate_fn(mode_index: int, single: Any, uploads: Any, in_dir: str, out_dir: str, show: bool,
                    *values: Any) -> Iterator[tuple[Any, Any, Any, Any]]:
        from modules import scripts_postprocessing

        data = dict(zip(field_names, values))
        scripts_call = scripts_postprocessing.call_for(postprocess, values[len(field_names):]) \
            if script_inputs else None
        if not data.pop("gfpgan_enabled"):
            data["gfpgan_visibility"] = 0.0
        if not data.pop("codeformer_enabled"):
            data["codeformer_visibility"] = 0.0
        try:
            params = params_from_values(data)
            target = None
            if mode_index == 0:
                if single is None:
                    raise FieldError("image", "upload an image first")
                images = [(single, "")]
            elif mode_index == 1:
                images = [(_open(getattr(u, "name", u)), Path(getattr(u, "name", u)).stem) for u in uploads or []]
            else:
                images, target = folder_images(rt, in_dir, out_dir)
            if not images:
                raise FieldError("image", "no images to process")
            job = rt.submit_extras(params, images, output_dir=target, postprocess=scripts_call)
        except ValidationError as err:
            yield gr.update(), common.error_html(common.describe_validation(err)), "", gr.update()
            return
        except (ValueError, QueueFull, OSError) as err:
            yield gr.update(), common.error_html(str(err)), "", gr.update()
            return
        while not job._done.wait(0.25):
            snap = job.progress.snapshot()
            yield gr.update(), gr.update(), common.progress_html(snap.job_no, max(1, snap.job_count), 0, 1, 0, "",
                                                                 rt.jobs.position(job)), gr.update()
        try:
            results, paths = job.wait()
        except JobFailed as err:
            yield gr.update(), common.error_html(str(err)), "", gr.update()
            return
        shown = [str(p) if p is not None else r.image for r, p in zip(results, paths)]
        text = "".join(f"<p>{html.escape(r.infotext)}</p>" for r in results[:1] if r.infotext)
        if not text:  # no upscaler chosen and no restoration: the image is unchanged, say so
            text = f"<p class='comments'>{common.words(NOTHING_TO_DO)}</p>"
        listed = mode_index != 2 or show
        saved = {"infotexts": [r.infotext for r in results] if listed else [], "index_of_first_image": 0,
                 "paths": [str(p) if p is not None else None for p in paths] if listed else []}
        yield (shown if listed else []), f"<div class='infotext'>{text}</div>", "", saved

    generate.click(generate_fn, inputs=[mode, image, files, input_dir, output_dir, show_results, *f.values(),
                                        *script_inputs],
                   outputs=[gallery, info, progress, output.generation_info], concurrency_limit=None,
                   show_progress="hidden")
    common.wire_output_panel(rt, output, postprocessing.EXTRAS)
    return ExtrasControls(f, image, mode, tabs, generate, gallery, info, output)
