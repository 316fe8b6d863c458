"""The Interrogate tab (img2text, 图生文): one picture's caption by the chosen tagger, sent to txt2img's or img2img's
prompt; and a folder's pictures captioned into ``.txt`` files beside them. The work is
``Runtime.submit_interrogate`` / ``submit_interrogate_folder`` (the job queue).

Where a tagger's weights are missing, its button also shows a Download offer (``DownloadOffer``, here and in
img2img): the files ``sources`` knows, fetched on the job queue into their folders, SHA-256-checked."""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from modules.errors import FieldError
from modules.interrogate import sources
from modules.jobs import JobFailed, QueueFull
from modules.models.download import display_dir
from modules.runtime import Runtime
from modules.ui import common

# label shown -> the API's model name
MODELS = {"CLIP": "clip", "DeepBooru": "deepdanbooru", "WD14": "wd14"}


def _failure(err: Exception) -> str:
    return common.error_html(str(getattr(err, "cause", None) or err))


def _size(n: int | None) -> str:
    if n is None:
        return ""
    return f" ({n / 2**20:.0f} MB)" if n >= 2**20 else f" ({n / 1024:.0f} KB)"


def offer_update(rt: Runtime, model: str) -> tuple[Any, str, str]:
    """The Download button, the model it fetches and its message after ``model``'s button was pressed: shown with
    the files and where they go when ``model`` lacks files the table knows and the server allows downloads."""
    plan = rt.interrogator.downloads(model, rt.options.as_dict()) if rt.interrogator is not None else []
    if not plan or sources.refusal(rt.args):
        return gr.update(visible=False), "", ""
    files = "".join(f"<br>{html.escape(f'{p.source.file}{_size(p.source.size)} → {display_dir(p.dest.parent)}')}"
                    for p in plan)
    return gr.update(visible=True), model, _box(f"{common.words('Can be downloaded:')}{files}")


def _box(inner: str) -> str:
    # long folder paths wrap inside img2img's narrow button column instead of widening it
    return f"<div class='interrogate-download' style='overflow-wrap:anywhere'>{inner}</div>"


def download_missing(rt: Runtime, model: str) -> Iterator[tuple[str, Any]]:
    """Fetch ``model``'s missing files on the job queue, yielding (message, button update) with a progress bar."""
    refused = sources.refusal(rt.args)
    if refused:
        yield _box(common.error_html(f"Downloading models is {refused}.")), gr.update(visible=False)
        return
    plan = rt.interrogator.downloads(model, rt.options.as_dict()) if rt.interrogator is not None else []
    if not plan:
        yield f"<p>{common.words('Nothing to download: the files are in place.')}</p>", gr.update(visible=False)
        return
    state: dict[str, Any] = {"file": 0, "done": 0, "total": None}

    def report(index: int, count: int, done: int, total: int | None) -> None:
        state.update(file=index, done=done, total=total)

    try:
        job = rt.jobs.submit("download", lambda job: sources.fetch(plan, report),
                             description=f"Download the {model} interrogator's weights")
    except QueueFull as err:
        yield _box(common.error_html(str(err))), gr.update(visible=True)
        return
    while True:
        try:
            job.wait(0.5)
            break
        except TimeoutError:
            yield _progress(plan, state), gr.update(visible=False)
        except JobFailed as err:  # JobCancelled is one
            yield _box(common.error_html(str(err))), gr.update(visible=True)
            return
    names = ", ".join(p.source.file for p in plan)
    yield _box(f"{common.words('Downloaded. Press the Interrogate button again.')} {html.escape(names)}"), \
        gr.update(visible=False)


def _progress(plan: list[sources.Planned], state: dict[str, Any]) -> str:
    item, total, done = plan[state["file"]], state["total"], state["done"]
    pct = f"{100 * done / total:.1f}%" if total else f"{done / 2**20:.0f} MB"
    bar = f"<progress max='{total}' value='{done}'></progress> " if total else ""
    return _box(f"<div class='progress-text'>{common.words('Downloading…')} {bar}{html.escape(item.source.file)} "
                f"{pct} ({state['file'] + 1}/{len(plan)})</div>")


@dataclass
class DownloadOffer:
    """A hidden Download button, its message and the model it would fetch for (gr.State)."""
    button: Any
    message: Any
    model: Any

    @classmethod
    def build(cls, rt: Runtime, prefix: str) -> "DownloadOffer":
        message = gr.HTML("", elem_id=f"{prefix}_download_message")  # above its button: what it would fetch
        button = gr.Button("Download the missing files", visible=False, elem_id=f"{prefix}_download", size="sm")
        model = gr.State("")

        def run(name: str) -> Iterator[tuple[str, Any]]:
            yield from download_missing(rt, name)

        button.click(run, inputs=[model], outputs=[message, button], concurrency_limit=None, show_progress="hidden")
        return cls(button, message, model)

    def offer_on(self, rt: Runtime, trigger: Any, model: str | None = None, choice: Any = None) -> None:
        """Show the offer when ``trigger`` is pressed for ``model`` (or the label ``choice`` holds)."""
        outputs = [self.button, self.model, self.message]
        if choice is not None:
            trigger.click(lambda label: offer_update(rt, MODELS.get(label, label)), inputs=[choice], outputs=outputs,
                          queue=False, show_progress="hidden")
            # another interrogator chosen: the offer for the last one goes
            choice.change(lambda: (gr.update(visible=False), "", ""), outputs=outputs, queue=False,
                          show_progress="hidden")
        else:
            trigger.click(lambda: offer_update(rt, str(model)), outputs=outputs, queue=False, show_progress="hidden")


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
            offer = DownloadOffer.build(rt, "interrogate")
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
    offer.offer_on(rt, run, choice=model)
    run_folder.click(interrogate_folder, inputs=[folder, model, overwrite], outputs=[folder_message],
                     concurrency_limit=None, show_progress="hidden")
    for button, controls, tab in ((to_txt2img, txt2img, "txt2img"), (to_img2img, img2img, "img2img")):
        button.click(lambda text, tab=tab: (text, gr.Tabs(selected=tab)), inputs=[caption],
                     outputs=[controls.fields["prompt"], tabs], queue=False, show_progress="hidden")
