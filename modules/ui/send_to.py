"""Send-to: an image and its parameters into the img2img tab (img2img or Inpaint mode), as A1111's buttons do.

Used by the output panels of txt2img/img2img and by PNG Info. The parameters fill every img2img field the infotext
sets (same parsing as paste to txt2img).
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from PIL import Image

from modules.ui import img2img_tab
from modules.ui.pnginfo_tab import send_to_txt2img_updates

TARGET_COMPONENT = {"img2img": "img2img_image", "inpaint": "img2maskimg"}
TARGET_MODE = {"img2img": img2img_tab.IMG2IMG, "inpaint": img2img_tab.INPAINT}


def outputs(img2img: img2img_tab.Img2ImgControls, target: str, tabs: Any) -> list[Any]:
    """The components a send-to handler updates, in the order ``updates`` returns values."""
    return [img2img.images[TARGET_COMPONENT[target]], *img2img.fields.values(), *(img2img.mode_outputs or []), tabs]


def updates(image: Image.Image | None, text: str | None, img2img: img2img_tab.Img2ImgControls, target: str,
            styles: Any = None) -> list[Any]:
    count = 1 + len(img2img.fields) + len(img2img.mode_outputs or []) + 1
    if image is None:
        return [gr.update()] * count
    value: Any = image.convert("RGBA")
    if target == "inpaint":  # the editor starts with the picture and no strokes
        value = {"background": value, "layers": [], "composite": value}
    fields = send_to_txt2img_updates(text, img2img.fields, styles) if text else [gr.update()] * len(img2img.fields)
    return [gr.update(value=value), *fields, *img2img_tab.mode_updates(TARGET_MODE[target]),
            gr.Tabs(selected="img2img")]
