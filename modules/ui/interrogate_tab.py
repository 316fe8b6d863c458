"""The Interrogate tab (img2text, 图生文): one picture's caption by the chosen tagger, sent to txt2img's or img2img's
prompt; and a folder's pictures captioned into ``.txt`` files beside them. The work is
``Runtime.submit_interrogate`` / ``submit_interrogate_folder`` (the job queue)."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from modules.errors import FieldError
from modules.jobs import JobFailed
from modules.runtime import Runtime
from modules.ui import common

# label shown -> the API's model name
MODELS = {"CLIP": "clip", "DeepBooru": "deepdanbooru", "WD14": "wd14"}


def _failure(err: Exception) -> str:
    return common.error_html(str(getattr(err, "cause", None) or err))


def build_interrogate_tab(rt: Runtime, txt2img: Any, img2img: Any, tabs: Any) -> None:
    with gr.Row():
        with gr.Column():
            image = gr.Image(None, type="pil", image_mode="RGBA", label="Image", sources=["upload", "clipboard"],
                             elem_id="interrogate_image", height=400)
            model = gr.Radio(list(MODELS), value="WD14", label="Interrogator", elem_id="interrogate_model")
            run = gr.Button("Interrogate", variant="primary", elem_id="interrogate_run")
        with gr.Column():
            caption = gr.Textbox(label="Caption", lines=6, elem_id="interrogate_caption", interactive=True)
            message = gr.HTML("", elem_id="interrogate_message")
            with gr.Row():
                to_txt2img = gr.Button("Send to txt2img", elem_id="interrogate_send_to_txt2img")
                to_img2img = gr.Button("Send to img2img", elem_id="interrogate_send_to_img2img")
    with gr.Accordion("Batch from a folder", open=False, elem_id="interrogate_batch"):
        folder = gr.Textbox(label="Input directory", elem_id="interrogate_batch_dir",
                            info="each picture's caption goes into a .txt file of its name beside it")
        overwrite = gr.Checkbox(False, label="Overwrite existing caption files", elem_id="interrogate_overwrite")
        run_folder = gr.Button("Interrogate folder", elem_id="interrogate_batch_run")
        folder_message = gr.HTML("", elem_id="interrogate_batch_message")

    def interrogate(picture: Any, label: str) -> tuple[Any, str]:
        if picture is None:
            return gr.update(), common.error_html("Upload an image first.")
        caption, message = common.caption_of(rt, picture, MODELS.get(label, label))
        return (gr.update() if caption is None else caption), message

    def interrogate_folder(text: str, label: str, replace: bool) -> str:
        try:
            report = rt.submit_interrogate_folder(text, MODELS.get(label, label), bool(replace)).wait()
        except (FieldError, JobFailed) as err:
            return _failure(err)
        return f"<p>{html.escape(report.summary())}</p>"

    run.click(interrogate, inputs=[image, model], outputs=[caption, message], concurrency_limit=None,
              show_progress="hidden")
    run_folder.click(interrogate_folder, inputs=[folder, model, overwrite], outputs=[folder_message],
                     concurrency_limit=None, show_progress="hidden")
    for button, controls, tab in ((to_txt2img, txt2img, "txt2img"), (to_img2img, img2img, "img2img")):
        button.click(lambda text, tab=tab: (text, gr.Tabs(selected=tab)), inputs=[caption],
                     outputs=[controls.fields["prompt"], tabs], queue=False, show_progress="hidden")
