"""A1111's styles editor (the 🖌️ beside the Styles dropdown): pick or type a style's name, edit its prompt and
negative prompt, save or delete it, copy the main prompts into it, or apply the selected styles to the main
prompts. Saving writes styles.csv atomically through ``StyleDatabase`` (a failed write changes nothing); the Styles
dropdowns of every tab follow. Element ids are A1111's (``{tab}_styles_edit_button``, ``{tab}_edit_style_save``...).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr

from modules.runtime import Runtime

STYLE_SAVED, STYLE_DELETED = "Style saved:", "Style deleted:"


@dataclass
class StylesEditor:
    open_button: Any
    dialog: Any
    selection: Any
    prompt: Any
    negative_prompt: Any
    save: Any
    delete: Any
    copy: Any
    apply: Any
    close: Any
    message: Any


def open_button(tab: str) -> Any:
    """The 🖌️ beside the Styles dropdown."""
    return gr.Button("🖌️", elem_id=f"{tab}_styles_edit_button", min_width=40, scale=0)


def build(tab: str, names: list[str], opener: Any) -> StylesEditor:
    """The dialog, hidden until ``opener`` (``open_button``) opens it."""
    with gr.Column(visible=False, variant="panel", elem_id=f"{tab}_styles_dialog",
                   elem_classes=["styles-dialog"]) as dialog:
        with gr.Row():
            selection = gr.Dropdown(names, value=None, label="Styles", allow_custom_value=True,
                                    elem_id=f"{tab}_styles_edit_select", scale=4,
                                    info="choose a style, or type a new name")
            save = gr.Button("💾", elem_id=f"{tab}_edit_style_save", min_width=40, scale=0,
                             elem_classes=["sd-tip-save-style"])
            delete = gr.Button("🗑️", elem_id=f"{tab}_edit_style_delete", min_width=40, scale=0,
                               elem_classes=["sd-tip-delete-style"])
            copy = gr.Button("📝", elem_id=f"{tab}_style_copy", min_width=40, scale=0,
                             elem_classes=["sd-tip-copy-style"])
            apply = gr.Button("📋", elem_id=f"{tab}_style_apply_dialog", min_width=40, scale=0,
                              elem_classes=["sd-tip-apply-styles"])
        prompt = gr.Textbox(label="Prompt", lines=3, elem_id=f"{tab}_edit_style_prompt")
        negative_prompt = gr.Textbox(label="Negative prompt", lines=2, elem_id=f"{tab}_edit_style_neg_prompt")
        message = gr.HTML("", elem_id=f"{tab}_edit_style_message")
        close = gr.Button("Close", elem_id=f"{tab}_edit_style_close", size="sm")
    return StylesEditor(opener, dialog, selection, prompt, negative_prompt, save, delete, copy, apply, close,
                        message)


def wire(rt: Runtime, editor: StylesEditor, f: dict[str, Any]) -> None:
    """The dialog's actions; ``f``: the tab's fields (prompt, negative_prompt, styles)."""
    from modules.ui.common import error_html, style_names, words

    def editable_names() -> list[str]:
        return [n for n in style_names(rt) if rt.styles.editable(n)]

    def main_choices(selected: list[str] | None) -> Any:
        names = style_names(rt)
        return gr.update(choices=names, value=[s for s in selected or [] if s in names])

    def on_open() -> tuple[Any, Any]:
        return gr.update(visible=True), gr.update(choices=editable_names())

    def on_select(name: str) -> tuple[Any, Any, str]:
        style = rt.styles.styles.get((name or "").strip())
        if style is None:  # a new name being typed: keep what is in the boxes, and the message of a save that the
            return gr.update(), gr.update(), gr.update()  # same Enter may have raced
        return style.prompt or "", style.negative_prompt or "", ""

    def on_save(name: str, prompt: str, negative: str, selected: list[str]) -> tuple[Any, Any, str]:
        try:
            style = rt.styles.save_style(name, prompt, negative)
        except (ValueError, OSError) as err:
            return gr.update(), gr.update(), error_html(f"Could not save the style: {err}")
        return (main_choices(selected), gr.update(choices=editable_names()),
                f"<p class='comments'>{words(STYLE_SAVED)} {html.escape(style.name)}</p>")

    def on_delete(name: str, selected: list[str]) -> tuple[Any, Any, Any, Any, str]:
        try:
            rt.styles.delete_style(name)
        except (KeyError, OSError) as err:
            text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
            return gr.update(), gr.update(), gr.update(), gr.update(), error_html(f"Could not delete the style: {text}")
        main = main_choices([s for s in selected or [] if s != (name or "").strip()])
        own = gr.update(choices=editable_names(), value=None)
        return main, own, "", "", f"<p class='comments'>{words(STYLE_DELETED)} {html.escape((name or '').strip())}</p>"

    def on_apply(prompt: str, negative: str, selected: list[str]) -> tuple[str, str, Any]:
        """A1111's materialize: the selected styles written into the prompts, and the selection emptied."""
        chosen = list(selected or [])
        return (rt.styles.apply_styles_to_prompt(prompt or "", chosen),
                rt.styles.apply_negative_styles_to_prompt(negative or "", chosen), gr.update(value=[]))

    editor.open_button.click(on_open, outputs=[editor.dialog, editor.selection], queue=False)
    editor.close.click(lambda: gr.update(visible=False), outputs=[editor.dialog], queue=False)
    editor.selection.change(on_select, inputs=[editor.selection],
                            outputs=[editor.prompt, editor.negative_prompt, editor.message], queue=False)
    editor.save.click(on_save, inputs=[editor.selection, editor.prompt, editor.negative_prompt, f["styles"]],
                      outputs=[f["styles"], editor.selection, editor.message], queue=False)
    editor.delete.click(on_delete, inputs=[editor.selection, f["styles"]],
                        outputs=[f["styles"], editor.selection, editor.prompt, editor.negative_prompt,
                                 editor.message], queue=False)
    editor.copy.click(lambda p, n: (p or "", n or ""), inputs=[f["prompt"], f["negative_prompt"]],
                      outputs=[editor.prompt, editor.negative_prompt], queue=False)
    editor.apply.click(on_apply, inputs=[f["prompt"], f["negative_prompt"], f["styles"]],
                       outputs=[f["prompt"], f["negative_prompt"], f["styles"]], queue=False)
