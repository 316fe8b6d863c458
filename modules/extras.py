"""A1111's ``modules.extras`` for extensions: ``run_pnginfo(image)`` (the PNG Info panel of an image). Checkpoint
merging (``run_modelmerger``) is not part of this app and raises NotImplementedError. No torch, no gradio.
"""

from __future__ import annotations

import html
from typing import Any


def run_pnginfo(image: Any) -> tuple[str, str | None, str]:
    """A1111's ``("", geninfo, info_html)``: the ``parameters`` text of a PIL image (None when it has none) and
    an HTML panel of it and every other text item (EXIF UserComment included), all HTML-escaped."""
    if image is None:
        return "", "", ""
    from modules.image_metadata import read_generation_info

    geninfo, items = read_generation_info(image)
    shown = {"parameters": geninfo} if geninfo is not None else {}
    shown.update(items)
    info = "".join(f"<div>\n<p><b>{_lines(key)}</b></p>\n<p>{_lines(text)}</p>\n</div>\n"
                   for key, text in shown.items())
    return "", geninfo, info or "<div><p>Nothing found in the image.<p></div>"


def _lines(text: Any) -> str:
    return "<br>\n".join(html.escape(line) for line in str(text).split("\n"))


def run_modelmerger(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("modules.extras.run_modelmerger: A1111's checkpoint merger is not part of this app; "
                              "merge checkpoints with an external tool and put the result in models/Stable-diffusion")


def create_config(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("modules.extras.create_config belongs to A1111's checkpoint merger, which this app "
                              "does not have")


def to_half(tensor: Any, enable: bool) -> Any:
    """A1111's merger helper: fp32 -> fp16 when ``enable``."""
    import torch

    return tensor.half() if enable and tensor.dtype == torch.float else tensor
