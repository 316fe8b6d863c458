"""Pieces every generation tab shares: the prompt row, sampling and seed controls, the output panel, and the
streaming Generate handler (queue the job, yield progress and previews, then the saved PNGs and their infotext).

Each tab is built from these with its own ``tab`` prefix (``txt2img``/``img2img``), giving A1111's element ids.
"""

from __future__ import annotations

import html
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import gradio as gr
from pydantic import ValidationError

from modules import samplers
from modules.ui import styles_editor
from modules.jobs import JobFailed, QueueFull
from modules.runtime import Runtime

INT_FIELDS = ("seed", "subseed", "steps", "width", "height", "batch_size", "n_iter", "seed_resize_from_w",
              "seed_resize_from_h", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y", "mask_blur",
              "inpaint_full_res_padding")

TEXT_FIELDS = ("prompt", "negative_prompt", "hr_prompt", "hr_negative_prompt")


@dataclass
class PromptRow:
    generate: Any
    interrupt: Any
    skip: Any
    paste: Any
    token_counter: Any
    negative_counter: Any
    refresh_styles: Any
    interrogate: dict[str, Any] | None = None  # img2img's Interrogate buttons by model (img2text into the prompt)
    styles_editor: Any = None  # styles_editor.StylesEditor: the 🖌️ dialog


@dataclass
class OutputPanel:
    progress: Any
    preview: Any
    gallery: Any
    infotext: Any
    generation_info: Any  # gr.State: the infotext of the shown results, for send-to and save
    open_folder: Any
    save: Any
    save_zip: Any
    download: Any
    send_buttons: dict[str, Any] = field(default_factory=dict)
    selected: Any = None  # gr.State: index of the gallery image the user clicked


def build_prompt_row(rt: Runtime, tab: str, f: dict[str, Any], interrogate: bool = False) -> PromptRow:
    """Prompt and negative prompt with token counters, styles, Generate / Interrupt / Skip and ↙; with
    ``interrogate`` (img2img) the caption button under them, as A1111's Interrogate buttons sit there."""
    with gr.Row(elem_id=f"{tab}_toprow"):
        with gr.Column(scale=6):
            # each counter at its box's top right, on the label's line, as A1111 shows them
            with gr.Column(elem_classes=["sd-prompt-box"]):
                f["prompt"] = gr.Textbox(label="Prompt", elem_id=f"{tab}_prompt", lines=3,
                                         placeholder="Prompt (press Ctrl+Enter to generate)")
                token_counter = gr.HTML("<span class='token-count'>0/75</span>", elem_id=f"{tab}_token_counter",
                                        elem_classes=["sd-token-counter"])
            with gr.Column(elem_classes=["sd-prompt-box"]):
                f["negative_prompt"] = gr.Textbox(label="Negative prompt", elem_id=f"{tab}_neg_prompt", lines=2,
                                                  placeholder="Negative prompt")
                negative_counter = gr.HTML("<span class='token-count'>0/75</span>",
                                           elem_id=f"{tab}_negative_token_counter", elem_classes=["sd-token-counter"])
            with gr.Row():
                f["styles"] = gr.Dropdown(style_names(rt), value=[], multiselect=True, label="Styles",
                                          elem_id=f"{tab}_styles", scale=4)
                refresh_styles = gr.Button("🔄", elem_id=f"{tab}_styles_refresh", min_width=40, scale=0)
                edit_styles = styles_editor.open_button(tab)
            editor = styles_editor.build(tab, style_names(rt), edit_styles)
        with gr.Column(scale=1, min_width=160):
            generate = gr.Button("Generate", variant="primary", elem_id=f"{tab}_generate")
            with gr.Row():
                interrupt = gr.Button("Interrupt", elem_id=f"{tab}_interrupt")
                skip = gr.Button("Skip", elem_id=f"{tab}_skip")
            # ↙: read generation parameters from the prompt, or from the last generation if the prompt is empty
            paste = gr.Button("↙️", elem_id=f"{tab}_paste", min_width=40)
            captions = None
            if interrogate:  # A1111's element ids for its two buttons ("interrogate", "deepbooru"); ours for WD14
                with gr.Row():
                    captions = {"clip": gr.Button("Interrogate CLIP", elem_id="interrogate", size="sm"),
                                "deepdanbooru": gr.Button("Interrogate DeepBooru", elem_id="deepbooru", size="sm")}
                captions["wd14"] = gr.Button("Interrogate WD14", elem_id="wd14_interrogate", size="sm")
                from modules.ui.interrogate_tab import DownloadOffer

                offer = DownloadOffer.build(rt, "img2img_interrogate")  # missing weights: a Download button
                for model, button in captions.items():
                    offer.offer_on(rt, button, model)
    return PromptRow(generate, interrupt, skip, paste, token_counter, negative_counter, refresh_styles, captions,
                     editor)


def caption_of(rt: Runtime, image: Any, model: str) -> tuple[str | None, str]:
    """``model``'s caption of ``image`` (queued, waited for), or None and the page's message saying why not."""
    from modules.errors import FieldError

    try:
        return rt.submit_interrogate(image, model).wait(), ""
    except (FieldError, JobFailed) as err:
        return None, error_html(str(getattr(err, "cause", None) or err))


def build_sampler_controls(rt: Runtime, tab: str, f: dict[str, Any]) -> None:
    sampler_choices = [s.name for s in samplers.SAMPLERS if s.name not in rt.options.get("hide_samplers", [])]
    with gr.Row():
        f["sampler_name"] = gr.Dropdown(sampler_choices, value="DPM++ 2M", label="Sampling method",
                                        elem_id=f"{tab}_sampling")
        f["scheduler"] = gr.Dropdown([s.label for s in samplers.SCHEDULES], value="Automatic", label="Schedule type",
                                     elem_id=f"{tab}_scheduler")
    f["steps"] = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id=f"{tab}_steps")


def build_size_and_batch(tab: str, f: dict[str, Any]) -> Any:
    """Width/Height with ⇅, batch count and size. Returns the swap button."""
    with gr.Row():
        with gr.Column(scale=4):
            f["width"] = gr.Slider(64, 2048, value=512, step=8, label="Width", elem_id=f"{tab}_width")
            f["height"] = gr.Slider(64, 2048, value=512, step=8, label="Height", elem_id=f"{tab}_height")
        swap = gr.Button("⇅", elem_id=f"{tab}_res_switch_btn", min_width=40, scale=0)
        with gr.Column(scale=2):
            f["n_iter"] = gr.Slider(1, 100, value=1, step=1, label="Batch count", elem_id=f"{tab}_batch_count")
            f["batch_size"] = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id=f"{tab}_batch_size")
    swap.click(lambda w, h: (h, w), inputs=[f["width"], f["height"]], outputs=[f["width"], f["height"]])
    return swap


@dataclass
class SeedButtons:
    """♻️ for the seed and the variation seed; wired to the output panel by ``wire_reuse_seed`` once it exists."""

    reuse_seed: Any
    reuse_subseed: Any


def build_seed_controls(tab: str, f: dict[str, Any]) -> SeedButtons:
    """Seed with 🎲 (random) and ♻️ (the shown image's seed), and the "Extra" variation-seed section."""
    with gr.Row():
        f["seed"] = gr.Number(value=-1, label="Seed", precision=0, elem_id=f"{tab}_seed")
        random_seed = gr.Button("🎲️", elem_id=f"{tab}_random_seed", min_width=40, scale=0)
        reuse_seed = gr.Button("♻️", elem_id=f"{tab}_reuse_seed", min_width=40, scale=0)
        f["show_extra"] = gr.Checkbox(False, label="Extra", elem_id=f"{tab}_subseed_show")
    with gr.Group(visible=False) as extra_group:
        with gr.Row():
            f["subseed"] = gr.Number(value=-1, label="Variation seed", precision=0, elem_id=f"{tab}_subseed")
            random_subseed = gr.Button("🎲️", elem_id=f"{tab}_random_subseed", min_width=40, scale=0)
            reuse_subseed = gr.Button("♻️", elem_id=f"{tab}_reuse_subseed", min_width=40, scale=0)
            f["subseed_strength"] = gr.Slider(0, 1, value=0, step=0.01, label="Variation strength",
                                              elem_id=f"{tab}_subseed_strength")
        with gr.Row():
            f["seed_resize_from_w"] = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from width",
                                                elem_id=f"{tab}_seed_resize_from_w")
            f["seed_resize_from_h"] = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from height",
                                                elem_id=f"{tab}_seed_resize_from_h")
    random_seed.click(lambda: -1, outputs=[f["seed"]])
    random_subseed.click(lambda: -1, outputs=[f["subseed"]])
    f["show_extra"].change(lambda v: gr.update(visible=bool(v)), inputs=[f["show_extra"]], outputs=[extra_group])
    return SeedButtons(reuse_seed, reuse_subseed)


def seed_to_reuse(info: dict[str, Any] | None, selected: int | None, current: Any, subseed: bool = False) -> Any:
    """A1111's ♻️: the seed (or, with a variation strength, the variation seed) of the image selected in this
    page's gallery, else of the first image; the grid counts as the first. Nothing shown yet: -1 (random), as
    A1111. ``info`` is this browser session's own result (a ``gr.State``), never another session's."""
    if not isinstance(info, dict) or not info.get("all_seeds"):
        return -1
    if subseed and not info.get("subseed_strength"):
        return current
    seeds = list(info["all_subseeds" if subseed else "all_seeds"])
    index = (selected if isinstance(selected, int) else 0) - int(info.get("index_of_first_image", 0))
    return seeds[index if 0 <= index < len(seeds) else 0]


def wire_reuse_seed(buttons: SeedButtons, f: dict[str, Any], panel: OutputPanel) -> None:
    inputs = [panel.generation_info, panel.selected]
    buttons.reuse_seed.click(lambda info, sel, cur: seed_to_reuse(info, sel, cur), inputs=[*inputs, f["seed"]],
                             outputs=[f["seed"]], queue=False, show_progress="hidden")
    buttons.reuse_subseed.click(lambda info, sel, cur: seed_to_reuse(info, sel, cur, subseed=True),
                                inputs=[*inputs, f["subseed"]], outputs=[f["subseed"]], queue=False,
                                show_progress="hidden")


def build_refiner_controls(rt: Runtime, tab: str, f: dict[str, Any]) -> None:
    """A1111's Refiner accordion: a second checkpoint (an SDXL refiner) that takes over at "Switch at"."""
    titles = [c.title for c in rt.registry.list()]
    refiners = [t for t in titles if "refiner" in t.lower()]
    with gr.Accordion("Refiner", open=False, elem_id=f"{tab}_refiner"):
        f["refiner_enabled"] = gr.Checkbox(False, label="Refiner", elem_id=f"{tab}_enable_refiner")
        with gr.Row():
            f["refiner_checkpoint"] = gr.Dropdown(titles, value=(refiners or [None])[0], label="Checkpoint",
                                                  elem_id=f"{tab}_checkpoint", allow_custom_value=False)
            f["refiner_switch_at"] = gr.Slider(0.01, 1.0, value=0.8, step=0.01, label="Switch at",
                                               elem_id=f"{tab}_switch_at")


SEND_TARGETS = {"img2img": "🖼️", "inpaint": "🎨️", "extras": "📐"}
PREVIEW_HEIGHT = 512  # px: the live preview's box


def build_output_panel(tab: str, info_id: str | None = None,
                       send_targets: tuple[str, ...] = tuple(SEND_TARGETS)) -> OutputPanel:
    """The gallery with A1111's buttons under it (📂 💾 🗃️ and send-to), the progress line, the live preview and
    the infotext (``info_id``: its elem_id, A1111's ``html_info_<tab>`` by default)."""
    progress = gr.HTML("", elem_id=f"{tab}_progress")
    # The live preview takes the gallery's place while a job runs (A1111 draws it over the gallery), scaled up to
    # the box whatever the method's own size (Approx cheap: the latent's); pictures are shown whole (contain).
    preview = gr.Image(label="Preview", visible=False, interactive=False, elem_id=f"{tab}_preview", format="png",
                       height=PREVIEW_HEIGHT, elem_classes=["live-preview"])
    gallery = gr.Gallery(label="Output", format="png", columns=2, elem_id=f"{tab}_gallery", interactive=False,
                         object_fit="contain")
    with gr.Row(elem_id=f"image_buttons_{tab}"):
        open_folder = gr.Button("📂", elem_id=f"{tab}_open_folder", min_width=40)
        save = gr.Button("💾", elem_id=f"save_{tab}", min_width=40, elem_classes=["sd-tip-save-image"])
        save_zip = gr.Button("🗃️", elem_id=f"save_zip_{tab}", min_width=40)
        send = {target: gr.Button(SEND_TARGETS[target], elem_id=f"{tab}_send_to_{target}", min_width=40,
                                  elem_classes=[f"sd-tip-send-{target}"])
                for target in send_targets}
    download = gr.File(label=None, show_label=False, visible=False, interactive=False, elem_id=f"download_files_{tab}")
    infotext = gr.HTML("", elem_id=info_id or f"html_info_{tab}")
    generation_info = gr.State(None)
    selected = gr.State(None)
    return OutputPanel(progress, preview, gallery, infotext, generation_info, open_folder, save, save_zip, download,
                       send, selected)


def page_set_number(value: int, elem_id: str) -> Any:
    """A hidden number that the page's own script sets (which tab is selected), for the tabs' ``select_in_page``.
    A JS function cannot set a ``gr.State``; it can set this."""
    return gr.Number(value, precision=0, visible=False, elem_id=elem_id)


def select_in_page(tab: Any, outputs: list[Any], values: list[Any]) -> None:
    """Selecting ``tab`` sets ``outputs`` to ``values`` (JSON: numbers, ``gr.update(...)`` dicts) in the page, no
    server call: gradio 6's page spends O(all components) on every server event, seconds per tab click on a page
    with the large extension tabs (images-browser), and opening each tab once is how the page starts."""
    tab.select(None, js=f"() => {json.dumps(values)}", outputs=outputs, queue=False, show_progress="hidden")


def wire_output_panel(rt: Runtime, panel: OutputPanel, kind: Any) -> None:
    """📂 / 💾 / 🗃️ and the gallery selection (send-to buttons are wired by the app, which knows the tabs)."""
    from modules.ui import output_actions as actions

    def on_select(evt: gr.SelectData) -> int:
        return int(evt.index) if isinstance(evt.index, int) else int(evt.index[0])

    panel.gallery.select(on_select, outputs=[panel.selected], queue=False, show_progress="hidden")
    panel.gallery.change(lambda: None, outputs=[panel.selected], queue=False, show_progress="hidden")

    def on_open() -> str:
        if getattr(rt.args, "hide_ui_dir_config", False):
            return error_html("Opening folders is disabled (--hide-ui-dir-config).")
        folder = actions.output_folder(rt.options.as_dict(), rt.paths.data_dir, kind)
        return f"<p class='comments'>{html.escape(actions.open_folder(folder))}</p>"

    def on_save(gallery: Any, selected: int | None, info: Any) -> tuple[Any, Any]:
        try:
            files = actions.save_images(gallery, selected, info, rt.options.as_dict(), rt.paths.data_dir)
        except OSError as err:
            return gr.update(visible=False), error_html(f"Could not save: {err}")
        return gr.update(value=files or None, visible=bool(files)), (
            f"<p class='comments'>💾 {len(files)}</p>" if files else "")

    def on_zip(gallery: Any) -> Any:
        archive = actions.zip_images(gallery, actions.readable_roots(rt.options.as_dict(), rt.paths.data_dir))
        return gr.update(value=archive, visible=archive is not None)

    panel.open_folder.click(on_open, outputs=[panel.progress], queue=False)
    panel.save.click(on_save, inputs=[panel.gallery, panel.selected, panel.generation_info],
                     outputs=[panel.download, panel.progress], queue=False)
    panel.save_zip.click(on_zip, inputs=[panel.gallery], outputs=[panel.download], queue=False)


def wire_prompt_row(rt: Runtime, row: PromptRow, f: dict[str, Any]) -> None:
    f["prompt"].change(lambda text, steps: token_counter_html(rt, text, steps), inputs=[f["prompt"], f["steps"]],
                       outputs=[row.token_counter], queue=False, show_progress="hidden")
    f["negative_prompt"].change(lambda text, steps: token_counter_html(rt, text, steps, is_positive=False),
                                inputs=[f["negative_prompt"], f["steps"]], outputs=[row.negative_counter],
                                queue=False, show_progress="hidden")

    def reload_styles(selected: list[str]) -> Any:
        rt.styles.reload()
        names = style_names(rt)
        return gr.update(choices=names, value=[s for s in selected or [] if s in names])

    row.refresh_styles.click(reload_styles, inputs=[f["styles"]], outputs=[f["styles"]], queue=False)
    if row.styles_editor is not None:
        styles_editor.wire(rt, row.styles_editor, f)
    row.interrupt.click(lambda: rt.jobs.interrupt_current(), queue=False)
    row.skip.click(lambda: rt.jobs.skip_current(), queue=False)


def continue_forever(event: Any, tab: str) -> None:
    """After a Generate finishes, "Generate forever" (right-click menu on Generate, see app.SHORTCUTS_JS) clicks
    it again; the browser keeps the flag, the server does nothing special."""
    event.then(None, js=f"() => {{ if (window.sdGenerateForever) window.sdGenerateForever.next('{tab}'); }}")


def ui_values(values: dict[str, Any]) -> dict[str, Any]:
    """UI numbers arrive as floats; whole numbers go to int fields, the hidden "Extra" section counts as unset."""
    data = dict(values)
    for key in INT_FIELDS:
        if data.get(key) is not None:
            data[key] = int(data[key])
    if isinstance(data.get("cfg_scale"), float) and data["cfg_scale"].is_integer():
        data["cfg_scale"] = int(data["cfg_scale"])
    for key in TEXT_FIELDS:
        if key in data and data[key] is None:  # an untouched textbox may arrive as None
            data[key] = ""
    data["styles"] = list(data.get("styles") or [])
    if not data.pop("refiner_enabled", True):
        data.update(refiner_checkpoint=None, refiner_switch_at=None)
    if not data.pop("show_extra", False):
        data.update(subseed=-1, subseed_strength=0.0, seed_resize_from_w=0, seed_resize_from_h=0)
    return data


Outputs = tuple[Any, Any, Any, Any, Any]  # gallery, infotext html, progress html, preview, generation info


def stream_job(rt: Runtime, submit: Callable[[], Any]) -> Iterator[Outputs]:
    """Queue the job ``submit()`` returns and yield (gallery, infotext, progress, preview, info) until it ends.
    Bad input becomes a readable message in the infotext area; nothing else on the page changes."""
    shown = gr.update(visible=True)  # the gallery back in place of the preview
    try:
        job = submit()
    except ValidationError as err:
        yield shown, error_html(describe_validation(err)), "", gr.update(visible=False), gr.update()
        return
    except (ValueError, QueueFull, RuntimeError, OSError) as err:
        yield shown, error_html(str(err)), "", gr.update(visible=False), gr.update()
        return
    shown_preview = -1
    while not job._done.wait(0.25):
        snap = job.progress.snapshot()
        update_preview: Any = gr.update()
        update_gallery: Any = gr.update()
        if snap.preview_id != shown_preview:
            image = job.progress.preview_image()
            if image is not None:
                if shown_preview == -1:
                    update_gallery = gr.update(visible=False)  # the preview takes its place
                shown_preview = snap.preview_id
                update_preview = gr.update(value=image, visible=True)
        yield (update_gallery, "", progress_html(snap.sampling_step, snap.sampling_steps, snap.job_no,
                                                 snap.job_count, snap.eta_relative, snap.textinfo,
                                                 rt.jobs.position(job)),
               update_preview, gr.update())
    try:
        processed = job.wait()
    except JobFailed as err:
        yield shown, error_html(str(err)), "", gr.update(visible=False), gr.update()
        return
    text = processed.infotexts[processed.index_of_first_image] if processed.infotexts else ""
    notes = list(processed.comments)
    if processed.interrupted:
        notes.append("Interrupted: finished images were kept.")
    note = "".join(f"<p class='comments'>{words(n)}</p>" for n in notes)
    info = {"infotexts": list(processed.infotexts), "index_of_first_image": processed.index_of_first_image,
            "paths": [str(p) if p is not None else None for p in processed.saved_paths],
            "all_seeds": list(processed.all_seeds), "all_subseeds": list(processed.all_subseeds),
            "subseed_strength": processed.params.subseed_strength}
    yield (gr.update(value=gallery_items(processed), visible=True), note + infotext_html(text), "",
           gr.update(visible=False), info)


# Text shown while or after a job runs. Fixed words sit in their own elements, apart from the numbers, so the page's
# localization translates them like any label (``LATER_STRINGS`` are checked against zh_CN.json by the tests).
LATER_STRINGS = ("In queue: position", "Step", "Batch", "ETA", "Interrupted: finished images were kept.", "Error:",
                 "Loading model", "Loading", "Loaded in", "Downloading…",
                 "Downloaded. Select it in the checkpoint list.", "(from the next image)", "Generate forever",
                 "Cancel generate forever", "GFPGAN weights are not installed: put them in",
                 "CodeFormer weights are not installed: put them in",
                 "The face detector detection_Resnet50_Final.pth is not installed: put it in",
                 "CodeFormer needs the spandrel_extra_arches package (non-commercial licence): pip install "
                 "spandrel_extra_arches", "No extensions are installed. Put them in", "enabled", "disabled",
                 "Extension", "State", "Scripts", "Problems", "Restarting…", "Style saved:", "Style deleted:",
                 "Installed", "Install", "Added:", "Extensions hidden by their tags:", "Description", "Action",
                 "Install this extension? Its code will run on this computer with your rights.",
                 "Can be downloaded:", "Nothing to download: the files are in place.",
                 "Downloaded. Press the Interrogate button again.")


def words(text: str) -> str:
    """A fixed UI phrase as its own element (translatable as a whole)."""
    return f"<span class='ui-text'>{html.escape(text)}</span>"


def progress_html(step: int, steps: int, job_no: int, job_count: int, eta: float, textinfo: str,
                  queue_position: int) -> str:
    if queue_position > 0:
        return f'<div class="progress-text">{words("In queue: position")} {queue_position}</div>'
    pct = 0 if not steps else min(100, int(100 * ((job_no + step / steps) / max(1, job_count))))
    batch = f" {words('Batch')} {job_no + 1}/{job_count}" if job_count > 1 else ""
    text = words(textinfo) if textinfo else f"{words('Step')} {step}/{steps}{batch} · {words('ETA')} {eta:.0f}s"
    return (f'<div class="progress-bar" role="progressbar" aria-valuenow="{pct}">'
            f'<div class="progress-fill" style="width:{pct}%"></div>'
            f'<span class="progress-text">{pct}% · {text}</span></div>')


def describe_validation(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e.get("loc", ()))
        parts.append(f"{loc}: {e.get('msg')}")
    return "; ".join(parts)


def style_names(rt: Runtime) -> list[str]:
    return list(rt.styles.styles) if rt.styles is not None else []


def token_counter_html(rt: Runtime, text: str, steps: float | None, is_positive: bool = True) -> str:
    """A1111's ``N/75`` counter, with the loaded model's tokenizer (or the bundled CLIP one before any load);
    extensions' ``on_before_token_counter`` may change the prompt and steps it counts."""
    from modules import script_callbacks
    from modules.processing.conditioning import prompt_token_count

    if script_callbacks.callbacks("before_token_counter"):
        params = script_callbacks.BeforeTokenCounterParams(text or "", int(steps or 20), [], is_positive)
        script_callbacks.call("before_token_counter", params)
        text, steps = params.prompt, params.steps
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
    return f"<div class='error'><p><b>{html.escape('Error:')}</b> {html.escape(message)}</p></div>"


def distilled_cfg_slider(tab: str) -> Any:
    """Forge's "Distilled CFG Scale": Flux dev's guidance embedding (SD checkpoints do not read it)."""
    return gr.Slider(0, 30, value=3.5, step=0.1, label="Distilled CFG Scale", elem_id=f"{tab}_distilled_cfg_scale",
                     info="Flux dev only; its CFG Scale stays 1 unless a negative prompt is wanted")
