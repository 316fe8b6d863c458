"""Flux Kontext's accordion in txt2img and img2img, laid out as Forge's forge2_flux_kontext: an Enable checkbox in
the header's place, two reference images, the size/crop choice and the halving checkbox. Its controls are fields
of the tab (``kontext_<field>``); ``take_request`` turns them into the job's ``KontextRequest``."""

from __future__ import annotations

from typing import Any

import gradio as gr

from modules.processing.families import flux_kontext

PREFIX = "kontext_"
FIELDS = ("enabled", "image1", "image2", "sizing", "reduce")


def build_accordion(tab: str, f: dict[str, Any]) -> None:
    """The accordion inside the current column; adds its controls to ``f``."""
    with gr.Accordion(flux_kontext.TITLE, open=False, elem_id=f"{tab}_kontext"):
        f[PREFIX + "enabled"] = gr.Checkbox(False, label="Enable", elem_id=f"{tab}_kontext_enabled")
        gr.Markdown("Select a Flux.1 Kontext checkpoint. Add reference image(s) here.")
        with gr.Row():
            f[PREFIX + "image1"] = gr.Image(None, type="pil", show_label=False, sources=["upload", "clipboard"],
                                            height=300, elem_id=f"{tab}_kontext_image1")
            f[PREFIX + "image2"] = gr.Image(None, type="pil", show_label=False, sources=["upload", "clipboard"],
                                            height=300, elem_id=f"{tab}_kontext_image2")
        with gr.Row():
            f[PREFIX + "sizing"] = gr.Dropdown(list(flux_kontext.SIZINGS), value=flux_kontext.DEFAULT_SIZING,
                                               label="Kontext image size/crop", elem_id=f"{tab}_kontext_sizing")
            f[PREFIX + "reduce"] = gr.Checkbox(False, label="reduce to half width and height",
                                               info="This reduction is independent of the size/crop setting.",
                                               elem_id=f"{tab}_kontext_reduce")


def take_request(data: dict[str, Any]) -> flux_kontext.KontextRequest | None:
    """The accordion's values (removed from ``data``) as the job's references; None when off or empty."""
    values = [data.pop(PREFIX + name, None) for name in FIELDS]
    return flux_kontext.parse_args(values, flux_kontext.TITLE, _no_text)


def _no_text(_data: str, field: str) -> Any:
    raise ValueError(f"{field}: the page sends pictures, not text")
