"""A1111's Extra Networks tabs (1.6+ layout): under the prompt, the txt2img and img2img settings sit in a
"Generation" tab (``{tab}_generation``) of ``{tab}_extra_tabs``, and beside it one tab per page (Textual Inversion,
Hypernetworks, Checkpoints, Lora, an extension's page) holding ``{tab}_{page}_cards_html``.

Each page's gr.HTML is a placeholder that ``javascript/extra_networks.js`` fills from ``/sd_extra_networks/pane``
when the tab is first shown (and again each time it is shown), so the cards are those on disk now, not those of
the moment the UI was built. Use::

    extra = extra_networks_panel.begin(tab)     # before the settings/output row
    ...                                         # the tab's row, unchanged
    extra_networks_panel.end(rt, tab, extra)    # after it
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import gradio as gr

from modules import extra_networks_html, extra_networks_pages

_JS_DIR = Path(__file__).resolve().parent / "javascript"


@dataclass
class ExtraTabs:
    tabs: Any
    generation: Any


@lru_cache(maxsize=1)
def on_load_js() -> str:
    """The panel script (defined once per page) and the mount of the gr.HTML it runs in (``element``)."""
    css = (_JS_DIR / "extra_networks.css").read_text(encoding="utf-8")
    script = (_JS_DIR / "extra_networks.js").read_text(encoding="utf-8")
    return f"window.__sdExtraNetworksCss = {json.dumps(css)};\n{script}\nwindow.sdExtraNetworks.mount(element);"


def placeholder_html(tab: str, page_id: str) -> str:
    return (f"<div class='sd-extra-networks-body' data-tabname='{html.escape(tab, quote=True)}' "
            f"data-page='{html.escape(page_id, quote=True)}'><div class='extra-network-note'>Loading…</div></div>")


def begin(tab: str) -> ExtraTabs:
    """Open ``{tab}_extra_tabs`` and its Generation tab (entered without a ``with`` so that the tab's own code
    keeps its indentation, as A1111's ui.py does)."""
    tabs = gr.Tabs(elem_id=f"{tab}_extra_tabs", elem_classes=["extra-networks"])
    tabs.__enter__()
    generation = gr.Tab("Generation", id=f"{tab}_generation", elem_id=f"{tab}_generation_tab")
    generation.__enter__()
    return ExtraTabs(tabs, generation)


def end(rt: Any, tab: str, extra: ExtraTabs) -> None:
    """Close the Generation tab, add a tab per extra networks page, close the tab set."""
    extra.generation.__exit__(None, None, None)
    order = str(rt.options.get("ui_extra_networks_tab_reorder", "") or "")
    for page in extra_networks_pages.panel_pages(order):
        pid = extra_networks_html.page_id(page)
        with gr.Tab(page.title, id=f"{tab}_{pid}", elem_id=f"{tab}_{pid}"):
            gr.HTML(placeholder_html(tab, pid), elem_id=f"{tab}_{pid}_cards_html", js_on_load=on_load_js(),
                    elem_classes=["extra-networks-html"])
    extra.tabs.__exit__(None, None, None)
