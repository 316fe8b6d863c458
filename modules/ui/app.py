"""The Gradio front end: quick-settings bar (checkpoint with refresh), then the tabs.

Only this package imports gradio. Every handler goes through the Runtime (same queue and processing as the API).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from modules.jobs import JobFailed
from modules.models import weight_storage
from modules.models.manager import CheckpointNotFound, NoCheckpointError
from modules.options import OptionError
from modules.runtime import Runtime
from modules.ui.pnginfo_tab import build_pnginfo_tab
from modules.ui.settings_tab import build_settings_tab
from modules.ui.extras_tab import build_extras_tab
from modules.ui.img2img_tab import build_img2img_tab
from modules.ui import tool_buttons
from modules.ui.common import words
from modules.ui.txt2img_tab import build_txt2img_tab, error_html

UPLOAD_CACHE_CLEANUP = (3600, 86400)  # gradio delete_cache: (every N seconds, files older than M seconds)

CSS = """
.progress-bar{position:relative;height:1.6em;border-radius:6px;background:var(--block-background-fill);
 border:1px solid var(--border-color-primary);overflow:hidden}
.progress-fill{position:absolute;inset:0 auto 0 0;background:var(--color-accent-soft)}
.progress-text{position:relative;padding:0 .5em;font-size:.9em}
.infotext p{font-family:var(--font-mono);font-size:.85em;white-space:normal;word-break:break-word}
.error{color:var(--error-text-color, #c00)}
#quicksettings{align-items:flex-end}
.token-count{font-size:.8em;opacity:.7}
.live-preview img{width:100%;height:100%;object-fit:contain}
#first_run:not(:has(.prose > *)),#startup_notes:not(:has(.prose > *)),#model_status:not(:has(.prose > *)){display:none}
#settings_nav{flex:0 0 210px !important;min-width:170px !important;position:sticky;top:8px;align-self:flex-start;
 max-height:92vh;overflow:auto}
.settings-nav{list-style:none;padding:0 !important;margin:0 !important}
.settings-nav li{margin:0 !important;padding:0 !important}
.settings-nav li::marker{content:none}
.settings-nav a{display:block;padding:3px 8px;border-radius:4px;text-decoration:none !important;
 color:var(--body-text-color) !important;font-size:.92em}
.settings-nav a:hover,.settings-nav a.active{background:var(--color-accent-soft)}
.sd-hidden{display:none !important}
#available_extensions{width:100%;border-collapse:collapse}
#available_extensions td,#available_extensions th{padding:6px 8px;border-bottom:1px solid var(--border-color-primary);
 vertical-align:top;text-align:left}
.extension-tag{display:inline-block;margin:2px 4px 0 0;padding:0 6px;border-radius:8px;font-size:.8em;
 background:var(--color-accent-soft)}
.sd-prompt-box{position:relative}
.sd-prompt-box .sd-token-counter{position:absolute !important;top:6px;right:12px;z-index:3;width:auto !important;
 min-width:0 !important;padding:0 !important;margin:0 !important;background:none !important;border:none !important;
 box-shadow:none !important;overflow:visible !important}
.comments{font-size:.9em;color:var(--body-text-color-subdued)}
footer{display:none !important}
.sd-mounting-tabs #tabs .tabitem{visibility:hidden}
.setting-stored-only{position:relative}
.setting-stored-only::before{content:var(--stored-only-label,"stored only");position:absolute;top:2px;right:2.4em;
 z-index:2;font-size:.72em;padding:0 .45em;border-radius:4px;background:var(--color-accent-soft);
 color:var(--body-text-color-subdued);pointer-events:none}
""" + tool_buttons.icon_css()

# A1111's shortcuts in a prompt box: Ctrl+Enter (Cmd+Enter) generates, Alt+Enter skips, Esc interrupts. Gradio's
# multi-line textboxes only submit on Shift+Enter, so this is wired in the browser.
INSTALL_QUESTION = "Install this extension? Its code will run on this computer with your rights."
SHORTCUTS_JS = """() => {
  if (window.__sdShortcuts) return;
  window.__sdShortcuts = true;
  const INSTALL_QUESTION = %s;
  document.addEventListener("keydown", (e) => {
    if (e.isComposing || !e.target.closest) return;
    const box = e.target.closest("[id$='_prompt'], [id$='_neg_prompt']");
    const tab = box && box.id.replace(/_(neg_)?prompt$/, "");
    if (!tab) return;
    let action = null;
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) action = "generate";
    else if (e.key === "Enter" && e.altKey) action = "skip";
    else if (e.key === "Escape") action = "interrupt";
    const button = action && document.getElementById(tab + "_" + action);
    if (!button) return;
    e.preventDefault();
    button.click();
  }, true);

  // Settings: a section in the side list opens that section and brings it into view
  document.addEventListener("click", (e) => {
    const link = e.target.closest && e.target.closest("[data-settings-section]");
    if (!link) return;
    e.preventDefault();
    const section = document.getElementById(link.dataset.settingsSection);
    if (!section) return;
    const content = section.querySelector(":scope > [data-testid=accordion-content]");
    if (content && content.style.display === "none") section.querySelector(":scope > .label-wrap")?.click();
    section.scrollIntoView({block: "start"});
    document.querySelectorAll("[data-settings-section].active").forEach((a) => a.classList.remove("active"));
    link.classList.add("active");
  });

  // Extensions > Available: Install asks first (an extension is code), then the hidden Install button runs it
  document.addEventListener("click", (e) => {
    const button = e.target.closest && e.target.closest(".sd-index-install[data-url]");
    if (!button) return;
    e.preventDefault();
    const ask = (window.localization || {})[INSTALL_QUESTION] || INSTALL_QUESTION;
    if (!window.confirm(`${ask}\n\n${button.dataset.name}\n${button.dataset.url}`)) return;
    const box = document.querySelector("#extensions_index_install_url textarea, #extensions_index_install_url input");
    if (!box) return;
    box.value = button.dataset.url;
    box.dispatchEvent(new Event("input", {bubbles: true}));
    button.disabled = true;
    setTimeout(() => document.getElementById("extensions_index_install")?.click(), 100);
  });

  // "Generate forever": right-click Generate (A1111's context menu). The flag lives in the page; after each run
  // the Generate event's .then() calls next(), which clicks Generate again while the flag is set.
  const forever = window.sdGenerateForever = {tabs: {},
    next(tab) { if (this.tabs[tab]) setTimeout(() => document.getElementById(tab + "_generate")?.click(), 200); }};
  const menu = document.createElement("div");
  menu.id = "context_menu";
  menu.style.cssText = "position:fixed;display:none;z-index:10000;background:var(--background-fill-primary);" +
    "border:1px solid var(--border-color-primary);border-radius:6px;padding:4px 0;box-shadow:0 2px 8px #0003";
  document.body.appendChild(menu);
  const hide = () => { menu.style.display = "none"; };
  // Only a person's click elsewhere closes it: Generate forever's own programmatic click on Generate (after each run)
  // must not shut the menu under the user's pointer.
  document.addEventListener("click", (e) => { if (e.isTrusted && !menu.contains(e.target)) hide(); });
  document.addEventListener("contextmenu", (e) => {
    const button = e.target.closest && e.target.closest("#txt2img_generate, #img2img_generate");
    if (!button) { hide(); return; }
    e.preventDefault();
    const tab = button.id.replace(/_generate$/, "");
    const item = (text, action) => {
      const div = document.createElement("div");
      div.className = "context-menu-item";
      div.textContent = text;
      div.style.cssText = "padding:4px 14px;cursor:pointer;white-space:nowrap";
      div.addEventListener("click", () => { action(); hide(); });
      return div;
    };
    menu.replaceChildren(forever.tabs[tab]
      ? item("Cancel generate forever", () => { forever.tabs[tab] = false; })
      : item("Generate forever", () => { forever.tabs[tab] = true; button.click(); }));
    menu.style.left = e.clientX + "px";
    menu.style.top = e.clientY + "px";
    menu.style.display = "block";
  });
}"""
SHORTCUTS_JS = SHORTCUTS_JS.replace("const INSTALL_QUESTION = %s;",
                                    f"const INSTALL_QUESTION = {json.dumps(INSTALL_QUESTION)};")


def footer_html(rt: Runtime) -> str:
    """A1111's footer: the API docs link when the API is on, and the version."""
    links = []
    if getattr(rt.args, "api", False):
        links.append("<a href='docs' target='_blank'>API</a>")
    if rt.version:
        # the word translates; the version is data
        links.append(f"<span class='ui-text'>version:</span> <span id='footer_version'>{html.escape(rt.version)}</span>")
    return f"<div id='footer' class='footer'>{' • '.join(links)}</div>" if links else ""


_JS_DIR = Path(__file__).resolve().parent / "javascript"


def page_js(theme: str | None) -> str:
    """The one function gradio runs on page load: the forced theme (--theme), the localization, shortcuts."""
    theme_part = ""
    if theme in ("light", "dark"):
        theme_part = ("const url = new URL(window.location); if (url.searchParams.get('__theme') !== "
                      f"'{theme}') {{ url.searchParams.set('__theme', '{theme}'); window.location.replace(url); "
                      "return; }")
    localization = (_JS_DIR / "localization.js").read_text(encoding="utf-8")
    return f"async () => {{ {theme_part}\n{localization}\nawait applyLocalization(); }}"


def checkpoint_titles(rt: Runtime) -> list[str]:
    return [c.title for c in rt.registry.list()]


def current_checkpoint(rt: Runtime) -> str | None:
    """The loaded checkpoint, else the one loading now (a page opened during the startup load), else the setting."""
    status = rt.manager.status()
    title = status.loaded_title or status.loading_title or rt.options.get("sd_model_checkpoint")
    if title and rt.registry.get(title) is None and not status.loading_title:
        # Its file was deleted (and the list refreshed): show what the next job uses, not a title the list lacks.
        titles = checkpoint_titles(rt)
        return titles[0] if titles else None
    return title


def first_run_message(rt: Runtime) -> str:
    if rt.registry.list():
        return ""
    folder = html.escape(str(rt.paths.model_dir("checkpoints")))
    text = (f"<b>No checkpoint found.</b> Put a Stable Diffusion model (<code>.safetensors</code> or "
            f"<code>.ckpt</code>) into <code>{folder}</code>, then press 🔄 next to the checkpoint list.")
    if not getattr(rt.args, "no_download_sd_model", False):
        text += " Or download Stable Diffusion 1.5 (about 4 GB) with the button below."
    return f"<div id='first_run_notice'>{text}</div>"


def download_offered(rt: Runtime) -> bool:
    """The first-run download button: only while no checkpoint exists, and not with --no-download-sd-model."""
    return not rt.registry.list() and not getattr(rt.args, "no_download_sd_model", False)


def startup_notes_html(rt: Runtime) -> str:
    """What went wrong at start that the user must know (a settings or styles file kept aside, ...)."""
    if not rt.startup_notes:
        return ""
    items = "".join(f"<li>{html.escape(note)}</li>" for note in rt.startup_notes)
    return f"<div class='error' id='startup_notes_list'><ul>{items}</ul></div>"


def ui_config_path(rt: Runtime) -> Path:
    explicit = getattr(rt.args, "ui_config_file", None)
    if not explicit:
        return rt.paths.ui_config_file
    path = Path(explicit).expanduser()
    return path if path.is_absolute() else rt.paths.data_dir / path


def apply_ui_config(rt: Runtime, tabs: dict[str, dict[str, Any]]) -> Any:
    """ui-config.json's defaults onto the tabs' controls (missing keys are written back with the built-in ones)."""
    from modules.ui.ui_config import UiConfig

    config = UiConfig(ui_config_path(rt))
    note = config.startup_note()
    if note:
        rt.startup_notes.append(note)
    for tab, fields in tabs.items():
        config.apply_tab(tab, fields)
    config.save()
    return config


def gallery_roots(rt: Runtime) -> list[Path]:
    from modules.ui import output_actions

    return output_actions.readable_roots(rt.options.as_dict(), rt.paths.data_dir)


def wire_send_buttons(rt: Runtime, panels: list[Any], img2img: Any, tabs: Any, extras: Any = None) -> None:
    """🖼️ / 🎨️ / 📐 under every gallery: the chosen image and its infotext into img2img, Inpaint or Extras."""
    from modules.ui import output_actions, send_to

    for panel in panels:
        for target, button in panel.send_buttons.items():
            if target == "extras":
                if extras is None:
                    continue

                def on_extras(gallery: Any, selected: Any, info: Any) -> list[Any]:
                    image, _ = output_actions.image_and_infotext(gallery, selected, info, gallery_roots(rt))
                    if image is None:
                        return [gr.update()] * 4
                    return [gr.update(value=image), 0, gr.Tabs(selected="extras_single_tab"),
                            gr.Tabs(selected="extras")]

                button.click(on_extras, inputs=[panel.gallery, panel.selected, panel.generation_info],
                             outputs=[extras.image, extras.mode, extras.tabs, tabs], queue=False,
                             show_progress="hidden")
                continue
            def on_send(gallery: Any, selected: Any, info: Any, target: str = target) -> list[Any]:
                image, text = output_actions.image_and_infotext(gallery, selected, info, gallery_roots(rt))
                return send_to.updates(image, text, img2img, target, rt.styles)

            button.click(on_send, inputs=[panel.gallery, panel.selected, panel.generation_info],
                         outputs=send_to.outputs(img2img, target, tabs), queue=False, show_progress="hidden")


def extension_tabs() -> list[tuple[Any, str, str]]:
    """(blocks, title, elem_id) of the tabs extensions add through on_ui_tabs; built before the page's own Blocks,
    as in A1111, so each renders where it belongs."""
    from modules import script_callbacks
    from modules.ui.gradio3_compat import extension_ui

    tabs = []
    with extension_ui():
        results = script_callbacks.call("ui_tabs")
    for result in results:
        for item in result or []:
            if isinstance(item, (tuple, list)) and len(item) >= 2:
                tabs.append((item[0], str(item[1]), str(item[2]) if len(item) > 2 else str(item[1])))
    return tabs


def module_choices(rt: Runtime) -> list[str]:
    """The additional module files (text encoders, VAEs) Forge's "VAE / Text Encoder" choice offers."""
    return rt.modules.names() if rt.modules is not None else []


def chosen_modules(rt: Runtime) -> list[str]:
    """The chosen ones, as the dropdown names them (Forge stores full paths; the choices are folder-relative)."""
    names = module_choices(rt)
    shown = []
    for entry in rt.options.get("forge_additional_modules", []) or []:
        text = str(entry).replace("\\", "/")
        match = next((n for n in names if text == n or text.endswith("/" + n)), None)
        if match is not None:
            shown.append(match)
    return shown


def build_ui(rt: Runtime) -> gr.Blocks:
    from modules.ui import gradio3_compat

    gradio3_compat.install()  # the page is built on the same gradio whether or not extension scripts loaded
    added_tabs = extension_tabs()
    # delete_cache: uploads and gradio's copies of results older than a day go, checked hourly (a page left open
    # that long re-uploads); the per-client upload quota is in modules/api/event_files.py.
    with gr.Blocks(title="Stable Diffusion", analytics_enabled=False, delete_cache=UPLOAD_CACHE_CLEANUP) as demo:
        with gr.Row(elem_id="quicksettings"):
            checkpoint = gr.Dropdown(checkpoint_titles(rt), value=current_checkpoint(rt),
                                     label="Stable Diffusion checkpoint", elem_id="setting_sd_model_checkpoint",
                                     allow_custom_value=False, scale=4)
            refresh = gr.Button("🔄", elem_id="refresh_sd_model_checkpoint", min_width=40, scale=0)
            vae = gr.Dropdown(rt.vaes.choices(), value=rt.options.get("sd_vae", "Automatic"), label="SD VAE",
                              elem_id="setting_sd_vae", allow_custom_value=False, scale=2)
            modules = gr.Dropdown(module_choices(rt), value=chosen_modules(rt), multiselect=True,
                                  label="VAE / Text Encoder", elem_id="setting_forge_additional_modules", scale=2,
                                  info="for checkpoints without them (Flux); none chosen: found in the folders")
            low_bits = gr.Dropdown(list(weight_storage.CHOICES),
                                   value=rt.options.get("forge_unet_storage_dtype", weight_storage.AUTOMATIC),
                                   label="Diffusion in Low Bits", elem_id="setting_forge_unet_storage_dtype",
                                   allow_custom_value=False, scale=2,
                                   info="Flux weights in memory: Automatic keeps fp8 / GGUF files as stored")
            clip_skip = gr.Slider(1, 12, step=1, value=int(rt.options.get("CLIP_stop_at_last_layers", 1)),
                                  label="Clip skip", elem_id="setting_CLIP_stop_at_last_layers", scale=2)
            model_status = gr.HTML("", elem_id="model_status")
        notice = gr.HTML(first_run_message(rt), elem_id="first_run")
        startup = gr.HTML("", elem_id="startup_notes")
        download = gr.Button("Download v1-5-pruned-emaonly.safetensors", elem_id="download_sd_model",
                             visible=download_offered(rt))
        with gr.Tabs(elem_id="tabs") as tabs:  # A1111's order; Extras arrives with its issue
            with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"):
                txt2img = build_txt2img_tab(rt)
            with gr.Tab("img2img", id="img2img", elem_id="tab_img2img"):
                img2img = build_img2img_tab(rt)
            with gr.Tab("Extras", id="extras", elem_id="tab_extras"):
                extras = build_extras_tab(rt)
            with gr.Tab("PNG Info", id="pnginfo", elem_id="tab_pnginfo"):
                build_pnginfo_tab(rt, txt2img, tabs, img2img, extras)
            with gr.Tab("Interrogate", id="interrogate", elem_id="tab_interrogate"):
                from modules.ui.interrogate_tab import build_interrogate_tab

                build_interrogate_tab(rt, txt2img, img2img, tabs)
            for blocks, title, elem_id in added_tabs:
                with gr.Tab(title, id=elem_id, elem_id=f"tab_{elem_id}"):
                    blocks.render()
            with gr.Tab("Settings", id="settings", elem_id="tab_settings"):
                settings = build_settings_tab(rt)
            with gr.Tab("Extensions", id="extensions", elem_id="tab_extensions"):
                from modules.ui.extensions_tab import build_extensions_tab

                build_extensions_tab(rt)

        gr.HTML(footer_html(rt), elem_id="footer_block")
        apply_ui_config(rt, {"txt2img": txt2img.fields, "img2img": img2img.fields})
        wire_send_buttons(rt, [txt2img.output, img2img.output, extras.output], img2img, tabs, extras)

        def on_refresh() -> tuple[Any, str, Any, Any, Any]:
            rt.registry.refresh()
            rt.vaes.refresh()
            return (gr.update(choices=checkpoint_titles(rt), value=current_checkpoint(rt)), first_run_message(rt),
                    gr.update(visible=download_offered(rt)),
                    gr.update(choices=rt.vaes.choices(), value=rt.options.get("sd_vae", "Automatic")),
                    gr.update(choices=module_choices(rt), value=chosen_modules(rt)))

        def on_select(title: str) -> Iterator[str]:
            if not title or title == (rt.manager.info.title if rt.manager.info else None):
                yield ""
                return
            try:
                job = rt.select_checkpoint(title)
            except (CheckpointNotFound, NoCheckpointError, OptionError) as err:
                yield error_html(str(err))
                return
            while not job._done.wait(0.3):
                yield f"<span class='progress-text'>{words('Loading')} {html.escape(title)}…</span>"
            try:
                job.wait()
                seconds = rt.manager.load_seconds or 0
                yield f"<span class='progress-text'>{words('Loaded in')} {seconds:.1f} s</span>"
            except JobFailed as err:
                yield error_html(f"{err}. The previous model stays loaded.")

        def on_download() -> Iterator[tuple[str, Any]]:
            from modules.cmd_args import admin_refusal
            from modules.models import download as dl

            refused = admin_refusal(rt.args)
            if refused:
                yield error_html(f"Downloading models is {refused}."), gr.update()
                return

            target = rt.paths.model_dir("checkpoints") / dl.DEFAULT_SD_MODEL["filename"]
            state: dict[str, Any] = {"done": 0, "total": None}

            def report(done: int, total: int | None) -> None:
                state.update(done=done, total=total)

            job = rt.jobs.submit("download", lambda job: dl.download_file(
                dl.DEFAULT_SD_MODEL["url"], target, dl.DEFAULT_SD_MODEL["sha256"], progress=report))
            while not job._done.wait(0.5):
                total = state["total"]
                pct = f"{100 * state['done'] / total:.1f}%" if total else f"{state['done'] / 2**20:.0f} MiB"
                yield f"<span class='progress-text'>{words('Downloading…')} {pct}</span>", gr.update()
            try:
                job.wait()
            except JobFailed as err:
                yield error_html(str(err)), gr.update()
                return
            rt.registry.refresh()
            yield (f"<span class='progress-text'>{words('Downloaded. Select it in the checkpoint list.')}</span>",
                   gr.update(visible=download_offered(rt)))

        def on_setting(key: str, label: str) -> Any:
            def apply(value: Any) -> str:
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                try:
                    rt.options.apply({key: value})
                except ValueError as err:
                    return error_html(str(err))
                return (f"<span class='progress-text'>{words(label)}: {html.escape(str(value))} "
                        f"{words('(from the next image)')}</span>")
            return apply

        on_vae = on_setting("sd_vae", "VAE")
        clip_skip.input(on_setting("CLIP_stop_at_last_layers", "Clip skip"), inputs=[clip_skip],
                          outputs=[model_status], queue=False, show_progress="hidden")

        refresh.click(on_refresh, outputs=[checkpoint, notice, download, vae, modules], queue=False)
        vae.input(on_vae, inputs=[vae], outputs=[model_status], queue=False, show_progress="hidden")
        modules.input(on_setting("forge_additional_modules", "VAE / Text Encoder"), inputs=[modules],
                      outputs=[model_status], queue=False, show_progress="hidden")
        low_bits.input(on_setting("forge_unet_storage_dtype", "Diffusion in Low Bits"), inputs=[low_bits],
                       outputs=[model_status], queue=False, show_progress="hidden")
        checkpoint.input(on_select, inputs=[checkpoint], outputs=[model_status], concurrency_limit=None,
                         show_progress="hidden")
        download.click(on_download, outputs=[notice, download], concurrency_limit=None, show_progress="hidden")
        demo.load(lambda: (gr.update(choices=checkpoint_titles(rt), value=current_checkpoint(rt)),
                           first_run_message(rt), gr.update(visible=download_offered(rt))),
                  outputs=[checkpoint, notice, download], queue=False)
        demo.load(None, js=SHORTCUTS_JS)
        demo.load(lambda: startup_notes_html(rt), outputs=[startup], queue=False, show_progress="hidden")
        demo.load(settings.refresh_fn, outputs=settings.refresh_outputs, queue=False)  # fresh values and choices
    return demo
