"""A1111's "Poor man's outpainting" script: extend the picture on chosen sides and inpaint the new area.

The image is put on a larger canvas (new bands pre-coloured from its edges), the new area plus a seam of
``mask_blur`` pixels is masked, and the job runs as whole-picture inpainting at the canvas size, so the output is
the extended picture. Script arguments are A1111's, in its order: pixels, mask blur, masked content, directions.
"""

from __future__ import annotations

from typing import Any, Sequence

from modules.errors import FieldError
from modules.processing import imageops, masking
from modules.processing.params import MAX_SIDE, Img2ImgParams

TITLE = "Poor man's outpainting"
DIRECTIONS = ("left", "right", "up", "down")
DEFAULT_ARGS: tuple[Any, ...] = (128, 4, 0, list(DIRECTIONS))
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")


def parse_args(args: Sequence[Any]) -> tuple[int, int, int, list[str]]:
    """``script_args`` with A1111's defaults for the ones not given; errors name ``script_args``."""
    values = list(args) + list(DEFAULT_ARGS[len(args):])
    try:
        pixels, blur = int(values[0]), int(values[1])
    except (TypeError, ValueError) as err:
        raise FieldError("script_args", "pixels and mask blur must be numbers") from err
    fill = values[2]
    fill = MASKED_CONTENT.index(fill) if isinstance(fill, str) and fill in MASKED_CONTENT else fill
    directions = values[3]
    if isinstance(directions, str):
        directions = [directions]
    if not isinstance(fill, int) or not 0 <= fill <= 3:
        raise FieldError("script_args", f"masked content must be 0-3 or one of {', '.join(MASKED_CONTENT)}")
    if not isinstance(directions, list) or any(d not in DIRECTIONS for d in directions):
        raise FieldError("script_args", f"directions must be a list of {', '.join(DIRECTIONS)}")
    if not 8 <= pixels <= 256 or not 0 <= blur <= 64:
        raise FieldError("script_args", "pixels must be 8-256 and mask blur 0-64")
    return pixels, blur, fill, list(directions)


def apply(p: Img2ImgParams, args: Sequence[Any]) -> Img2ImgParams:
    """The img2img parameters that outpaint ``p.init_images[0]`` as the script asks."""
    if not p.init_images:
        raise FieldError("init_images", "outpainting needs an init image")
    pixels, blur, fill, directions = parse_args(args)
    image = imageops.normalize_input(p.init_images[0])
    sides = {d: (pixels if d in directions else 0) for d in DIRECTIONS}
    # Round the canvas up to the latent grid by growing the sides being extended (or right/bottom).
    width = image.width + sides["left"] + sides["right"]
    height = image.height + sides["up"] + sides["down"]
    sides["right" if sides["right"] or not sides["left"] else "left"] += -width % 8
    sides["down" if sides["down"] or not sides["up"] else "up"] += -height % 8
    canvas, mask = masking.outpaint_canvas(image, sides["left"], sides["right"], sides["up"], sides["down"], blur)
    if max(canvas.size) > MAX_SIDE:
        raise FieldError("init_images", f"the outpainted picture would be {canvas.width}x{canvas.height}; "
                                        f"the limit is {MAX_SIDE} per side")
    return p.model_copy(update={
        "init_images": [canvas], "mask": mask, "width": canvas.width, "height": canvas.height,
        "mask_blur": blur, "mask_blur_x": blur, "mask_blur_y": blur, "inpainting_fill": fill,
        "inpaint_full_res": False, "inpainting_mask_invert": 0, "resize_mode": imageops.JUST_RESIZE})
