"""The Extensions tab: the installed extensions with their state, and "Apply and restart UI", which saves
``disabled_extensions`` and restarts the server on the same port (what A1111 users expect after enabling one)."""

from __future__ import annotations

import html
import logging
import os
import signal
import threading
from typing import Any

import gradio as gr

from modules.runtime import Runtime
from modules.ui import common

log = logging.getLogger(__name__)


def extensions_table(rt: Runtime) -> str:
    if not rt.extensions:
        return (f"<p class='comments'>{common.words('No extensions are installed. Put them in')} "
                f"<code>{html.escape(str(rt.paths.extensions_dir))}</code></p>")
    rows = []
    for ext in rt.extensions:
        state = "enabled" if ext.enabled else "disabled"
        errors = "".join(f"<pre class='error'>{html.escape(e)}</pre>" for e in ext.errors)
        scripts = ", ".join(html.escape(s) for s in ext.loaded_scripts)
        rows.append(f"<tr><td>{html.escape(ext.name)}</td><td>{common.words(state)}</td>"
                    f"<td>{'builtin' if ext.is_builtin else ''}</td><td>{scripts}</td><td>{errors}</td></tr>")
    head = "".join(f"<th>{common.words(h)}</th>" for h in ("Extension", "State", "", "Scripts", "Problems"))
    return f"<table id='extensions_table'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def build_extensions_tab(rt: Runtime) -> Any:
    names = [e.name for e in rt.extensions]
    enabled = [e.name for e in rt.extensions if e.enabled]
    with gr.Column():
        table = gr.HTML(extensions_table(rt), elem_id="extensions_installed_html")
        chosen = gr.CheckboxGroup(names, value=enabled, label="Enabled extensions",
                                  elem_id="extensions_enabled", visible=bool(names))
        apply = gr.Button("Apply and restart UI", variant="primary", elem_id="extensions_apply",
                          visible=bool(names))
        result = gr.HTML("", elem_id="extensions_result")

    def on_apply(selected: list[str]) -> str:
        disabled = [n for n in names if n not in (selected or [])]
        try:
            rt.options.apply({"disabled_extensions": disabled})
        except ValueError as err:
            return common.error_html(str(err))
        log.info("extensions changed (disabled: %s); restarting", ", ".join(disabled) or "none")
        rt.restart_requested = True
        threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        return f"<p class='comments'>{common.words('Restarting…')}</p>"

    apply.click(on_apply, inputs=[chosen], outputs=[result], queue=False)
    return table
