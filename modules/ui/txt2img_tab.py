"""The txt2img tab: A1111's controls, labels and defaults, one typed parameter object per click.

The Generate handler streams: it queues the job on the shared queue, then yields progress (step, total, ETA, queue
position, live preview) until the job ends, then the saved PNGs and their infotext.
"""

from __future__ import annotations

import html
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

import gradio as gr
from pydantic import ValidationError

from modules import samplers
from modules.jobs import DONE, JobFailed, QueueFull
from modules.processing.params import Txt2ImgParams
from modules.runtime import Runtime


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


def progress_html(step: int, steps: int, job_no: int, job_count: int, eta: float, textinfo: str,
                  queue_position: int) -> str:
    if queue_position > 0:
        return f'<div class="progress-text">In queue: position {queue_position}</div>'
    pct = 0 if not steps else min(100, int(100 * ((job_no + step / steps) / max(1, job_count))))
    batch = f" Batch {job_no + 1}/{job_count}" if job_count > 1 else ""
    text = html.escape(textinfo) if textinfo else f"Step {step}/{steps}{batch} · ETA {eta:.0f}s"
    return (f'<div class="progress-bar" role="progressbar" aria-valuenow="{pct}">'
            f'<div class="progress-fill" style="width:{pct}%"></div>'
            f'<span class="progress-text">{pct}% · {text}</span></div>')


def params_from_values(values: dict[str, Any]) -> Txt2ImgParams:
    """UI numbers arrive as floats; whole numbers go to int fields. Validation errors are user-readable."""
    data = dict(values)
    for key in ("seed", "subseed", "steps", "width", "height", "batch_size", "n_iter", "seed_resize_from_w",
                "seed_resize_from_h"):
        if data.get(key) is not None:
            data[key] = int(data[key])
    if isinstance(data.get("cfg_scale"), float) and data["cfg_scale"].is_integer():
        data["cfg_scale"] = int(data["cfg_scale"])
    data["styles"] = list(data.get("styles") or [])
    if not data.pop("show_extra", False):
        data.update(subseed=-1, subseed_strength=0.0, seed_resize_from_w=0, seed_resize_from_h=0)
    return Txt2ImgParams(**data)


def describe_validation(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        field = ".".join(str(x) for x in e.get("loc", ()))
        parts.append(f"{field}: {e.get('msg')}")
    return "; ".join(parts)


def build_txt2img_tab(rt: Runtime) -> Txt2ImgControls:
    sampler_choices = [s.name for s in samplers.SAMPLERS if s.name not in rt.options.get("hide_samplers", [])]
    schedule_choices = [s.label for s in samplers.SCHEDULES]
    f: dict[str, Any] = {}
    with gr.Row(elem_id="txt2img_toprow"):
        with gr.Column(scale=6):
            f["prompt"] = gr.Textbox(label="Prompt", elem_id="txt2img_prompt", lines=3,
                                     placeholder="Prompt (press Ctrl+Enter to generate)")
            f["negative_prompt"] = gr.Textbox(label="Negative prompt", elem_id="txt2img_neg_prompt", lines=2,
                                              placeholder="Negative prompt")
            with gr.Row():
                token_counter = gr.HTML("<span class='token-count'>0/75</span>", elem_id="txt2img_token_counter")
                negative_counter = gr.HTML("<span class='token-count'>0/75</span>",
                                           elem_id="txt2img_negative_token_counter")
            with gr.Row():
                f["styles"] = gr.Dropdown(style_names(rt), value=[], multiselect=True, label="Styles",
                                          elem_id="txt2img_styles", scale=4)
                refresh_styles = gr.Button("🔄", elem_id="txt2img_styles_refresh", min_width=40, scale=0)
        with gr.Column(scale=1, min_width=160):
            generate = gr.Button("Generate", variant="primary", elem_id="txt2img_generate")
            with gr.Row():
                interrupt = gr.Button("Interrupt", elem_id="txt2img_interrupt")
                skip = gr.Button("Skip", elem_id="txt2img_skip")
            # ↙: read generation parameters from the prompt, or from the last generation if the prompt is empty
            paste = gr.Button("↙️", elem_id="txt2img_paste", min_width=40)
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Row():
                f["sampler_name"] = gr.Dropdown(sampler_choices, value="DPM++ 2M", label="Sampling method",
                                                elem_id="txt2img_sampling")
                f["scheduler"] = gr.Dropdown(schedule_choices, value="Automatic", label="Schedule type",
                                             elem_id="txt2img_scheduler")
            f["steps"] = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id="txt2img_steps")
            with gr.Row():
                with gr.Column(scale=4):
                    f["width"] = gr.Slider(64, 2048, value=512, step=8, label="Width", elem_id="txt2img_width")
                    f["height"] = gr.Slider(64, 2048, value=512, step=8, label="Height", elem_id="txt2img_height")
                swap = gr.Button("⇅", elem_id="txt2img_res_switch_btn", min_width=40, scale=0)
                with gr.Column(scale=2):
                    f["n_iter"] = gr.Slider(1, 100, value=1, step=1, label="Batch count", elem_id="txt2img_batch_count")
                    f["batch_size"] = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id="txt2img_batch_size")
            f["cfg_scale"] = gr.Slider(1, 30, value=7, step=0.5, label="CFG Scale", elem_id="txt2img_cfg_scale")
            with gr.Row():
                f["seed"] = gr.Number(value=-1, label="Seed", precision=0, elem_id="txt2img_seed")
                random_seed = gr.Button("🎲️", elem_id="txt2img_random_seed", min_width=40, scale=0)
                reuse_seed = gr.Button("♻️", elem_id="txt2img_reuse_seed", min_width=40, scale=0)
                f["show_extra"] = gr.Checkbox(False, label="Extra", elem_id="txt2img_subseed_show")
            with gr.Group(visible=False) as extra_group:
                with gr.Row():
                    f["subseed"] = gr.Number(value=-1, label="Variation seed", precision=0, elem_id="txt2img_subseed")
                    f["subseed_strength"] = gr.Slider(0, 1, value=0, step=0.01, label="Variation strength",
                                                      elem_id="txt2img_subseed_strength")
                with gr.Row():
                    f["seed_resize_from_w"] = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from width",
                                                        elem_id="txt2img_seed_resize_from_w")
                    f["seed_resize_from_h"] = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from height",
                                                        elem_id="txt2img_seed_resize_from_h")
        with gr.Column(scale=1):
            progress = gr.HTML("", elem_id="txt2img_progress")
            preview = gr.Image(label="Preview", visible=False, interactive=False, elem_id="txt2img_preview",
                               format="png")
            gallery = gr.Gallery(label="Output", format="png", columns=2, elem_id="txt2img_gallery",
                                 interactive=False)
            infotext = gr.HTML("", elem_id="html_info_txt2img")

    swap.click(lambda w, h: (h, w), inputs=[f["width"], f["height"]], outputs=[f["width"], f["height"]])
    f["prompt"].change(lambda text, steps: token_counter_html(rt, text, steps), inputs=[f["prompt"], f["steps"]],
                       outputs=[token_counter], queue=False, show_progress="hidden")
    f["negative_prompt"].change(lambda text, steps: token_counter_html(rt, text, steps),
                                inputs=[f["negative_prompt"], f["steps"]], outputs=[negative_counter], queue=False,
                                show_progress="hidden")

    def reload_styles(selected: list[str]) -> Any:
        rt.styles.reload()
        names = style_names(rt)
        return gr.update(choices=names, value=[s for s in selected or [] if s in names])

    refresh_styles.click(reload_styles, inputs=[f["styles"]], outputs=[f["styles"]], queue=False)
    random_seed.click(lambda: -1, outputs=[f["seed"]])
    f["show_extra"].change(lambda v: gr.update(visible=bool(v)), inputs=[f["show_extra"]], outputs=[extra_group])
    last_seed: dict[str, int] = {}
    reuse_seed.click(lambda s: last_seed.get("seed", s), inputs=[f["seed"]], outputs=[f["seed"]])

    inputs = list(f.values())
    names = list(f.keys())

    def paste_params(prompt: str) -> list[Any]:
        """A1111's ↙ button: the infotext in the prompt box, or params.txt (the last generation) when it is empty."""
        from modules.ui.pnginfo_tab import send_to_txt2img_updates

        text = prompt or ""
        if not text.strip():
            try:
                text = rt.paths.params_file.read_text(encoding="utf-8")
            except OSError:
                text = ""
        return send_to_txt2img_updates(text, f, rt.styles)

    paste.click(paste_params, inputs=[f["prompt"]], outputs=inputs, queue=False)

    def generate_fn(*values: Any) -> Iterator[tuple[Any, Any, Any, Any]]:
        try:
            params = params_from_values(dict(zip(names, values)))
            job = rt.submit_txt2img(params)
        except ValidationError as err:
            yield gr.update(), error_html(describe_validation(err)), "", gr.update(visible=False)
            return
        except (ValueError, QueueFull, RuntimeError) as err:
            yield gr.update(), error_html(str(err)), "", gr.update(visible=False)
            return
        shown_preview = -1
        while not job._done.wait(0.25):
            snap = job.progress.snapshot()
            update_preview: Any = gr.update()
            if snap.preview_id != shown_preview:
                image = job.progress.preview_image()
                if image is not None:
                    shown_preview = snap.preview_id
                    update_preview = gr.update(value=image, visible=True)
            yield (gr.update(), "", progress_html(snap.sampling_step, snap.sampling_steps, snap.job_no, snap.job_count,
                                                  snap.eta_relative, snap.textinfo, rt.jobs.position(job)),
                   update_preview)
        try:
            processed = job.wait()
        except JobFailed as err:
            yield gr.update(), error_html(str(err)), "", gr.update(visible=False)
            return
        if processed.all_seeds:
            last_seed["seed"] = processed.all_seeds[0]
        shown = gallery_items(processed)
        text = processed.infotexts[processed.index_of_first_image] if processed.infotexts else ""
        notes = list(processed.comments)
        if processed.interrupted:
            notes.append("Interrupted: finished images were kept.")
        note = "".join(f"<p class='comments'>{html.escape(n)}</p>" for n in notes)
        yield shown, note + infotext_html(text), "", gr.update(visible=False)

    generate.click(generate_fn, inputs=inputs, outputs=[gallery, infotext, progress, preview],
                   concurrency_limit=None, show_progress="hidden")
    interrupt.click(lambda: rt.jobs.interrupt_current(), queue=False)
    skip.click(lambda: rt.jobs.skip_current(), queue=False)
    return Txt2ImgControls(f, generate, interrupt, skip, gallery, infotext, progress, preview)


def style_names(rt: Runtime) -> list[str]:
    return list(rt.styles.styles) if rt.styles is not None else []


def token_counter_html(rt: Runtime, text: str, steps: float | None) -> str:
    """A1111's ``N/75`` counter, with the loaded model's tokenizer (or the bundled CLIP one before any load)."""
    from modules.processing.conditioning import prompt_token_count

    model = rt.manager.model
    try:
        tokenizer = (model.tokenizer or model.tokenizer_2) if model is not None else _bundled_tokenizer()
        count, most = prompt_token_count(tokenizer, text or "", int(steps or 20),
                                         emphasis=str(rt.options.get("emphasis", "Original")),
                                         comma_backtrack=int(rt.options.get("comma_padding_backtrack", 20)))
    except Exception:  # a counter must never break typing
        return "<span class='token-count'>?/75</span>"
    return f"<span class='token-count'>{count}/{most}</span>"


_TOKENIZER: list[Any] = []
_TOKENIZER_LOCK = threading.Lock()  # both counters may ask at once; transformers' lazy import is not thread-safe


def _bundled_tokenizer() -> Any:
    with _TOKENIZER_LOCK:
        if not _TOKENIZER:
            from modules.models import configs

            _TOKENIZER.append(configs.load_tokenizer())
        return _TOKENIZER[0]


def gallery_items(processed: Any) -> list[Any]:
    """Saved PNG files when they exist (their infotext survives download), else the in-memory images."""
    return [str(path) if path is not None else image
            for image, path in zip(processed.images, processed.saved_paths)]


def infotext_html(text: str) -> str:
    return f"<div class='infotext'><p>{html.escape(text).replace(chr(10), '<br>')}</p></div>"


def error_html(message: str) -> str:
    return f"<div class='error'><p><b>Error:</b> {html.escape(message)}</p></div>"


def wait_for(job: Any, timeout: float = 600) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if job._done.wait(0.5):
            return job
    return job


__all__ = ["build_txt2img_tab", "params_from_values", "DONE"]
