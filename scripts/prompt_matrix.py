"""Built-in Prompt matrix (A1111's script): ``a cat|red|wearing a hat`` makes one image for every combination of
the optional parts after the first ``|`` (2^n images), all with one seed unless asked otherwise, and a grid whose
legend greys out the parts an image lacks."""

from __future__ import annotations

import math
from typing import Any

from modules import scripts, shared
from modules.errors import FieldError
from modules.images import image_grid, save_image
from modules.processing import compat
from modules.processing.compat import Processed, process_images
from modules.processing.xyz_grid import GridAnnotation, draw_grid_annotations

MAX_PARTS = 10  # 2^10 images already


def combinations(text: str, put_at_start: bool, delimiter: str) -> list[str]:
    parts = text.split("|")
    if len(parts) - 1 > MAX_PARTS:
        raise FieldError("script_args", f"Prompt matrix: at most {MAX_PARTS} optional parts (| separated)")
    prompts = []
    for number in range(2 ** (len(parts) - 1)):
        chosen = [part.strip().strip(",") for n, part in enumerate(parts[1:]) if number & (1 << n)]
        ordered = chosen + [parts[0]] if put_at_start else [parts[0]] + chosen
        prompts.append(delimiter.join(ordered))
    return prompts


def draw_prompt_matrix(grid: Any, width: int, height: int, parts: list[str], margin: int = 0) -> Any:
    """Columns for the first half of the optional parts, rows for the rest; absent parts in grey."""
    optional = [p.strip().strip(",").strip() for p in parts[1:]]
    boundary = math.ceil(len(optional) / 2)
    horizontal, vertical = optional[:boundary], optional[boundary:]
    hor = [[GridAnnotation(x, is_active=bool(pos & (1 << i))) for i, x in enumerate(horizontal)]
           for pos in range(1 << len(horizontal))]
    ver = [[GridAnnotation(x, is_active=bool(pos & (1 << i))) for i, x in enumerate(vertical)]
           for pos in range(1 << len(vertical))]
    return draw_grid_annotations(grid, width, height, hor, ver, margin)


class Script(scripts.Script):
    def title(self) -> str:
        return "Prompt matrix"

    def ui(self, is_img2img: bool) -> list[Any]:
        import gradio as gr  # here: importing the script (the API alone) needs no gradio

        with gr.Row():
            put_at_start = gr.Checkbox(False, label="Put variable parts at start of prompt",
                                       elem_id=self.elem_id("put_at_start"))
            different_seeds = gr.Checkbox(False, label="Use different seed for each picture",
                                          elem_id=self.elem_id("different_seeds"))
        with gr.Row():
            prompt_type = gr.Radio(["positive", "negative"], value="positive", label="Select prompt",
                                   elem_id=self.elem_id("prompt_type"))
            delimiter = gr.Radio(["comma", "space"], value="comma", label="Select joining char",
                                 elem_id=self.elem_id("variations_delimiter"))
        margin = gr.Slider(0, 500, value=0, step=2, label="Grid margins (px)", elem_id=self.elem_id("margin_size"))
        return [put_at_start, different_seeds, prompt_type, delimiter, margin]

    def run(self, p: Any, put_at_start: bool = False, different_seeds: bool = False, prompt_type: str = "positive",
            variations_delimiter: str = "comma", margin_size: int = 0) -> Processed:
        compat.fix_seed(p)
        save_grid = not p.do_not_save_grid and shared.opts is not None and shared.opts.get("grid_save")
        if prompt_type not in ("positive", "negative"):
            raise FieldError("script_args", "Prompt matrix: the prompt type is 'positive' or 'negative'")
        original = p.prompt if prompt_type == "positive" else p.negative_prompt
        delimiter = ", " if variations_delimiter == "comma" else " "
        parts = original.split("|")
        prompts = combinations(original, bool(put_at_start), delimiter)
        batch_size = max(1, int(p.batch_size))
        p.n_iter = math.ceil(len(prompts) / batch_size)
        prompts += [prompts[-1]] * (p.n_iter * batch_size - len(prompts))  # fill the last batch
        p.do_not_save_grid = True
        if prompt_type == "positive":
            p.prompt = prompts
        else:
            p.negative_prompt = prompts
        p.seed = [p.seed + (i if different_seeds else 0) for i in range(len(prompts))]
        processed = process_images(p)
        cells = processed.images[processed.index_of_first_image:][:2 ** (len(parts) - 1)]
        if not cells:
            return processed
        grid = image_grid(cells, batch_size, rows=1 << ((len(parts) - 1) // 2))
        grid = draw_prompt_matrix(grid, cells[0].width, cells[0].height, parts, int(margin_size or 0))
        texts = processed.infotexts[processed.index_of_first_image:]
        processed.images = [grid, *processed.images[processed.index_of_first_image:]]
        processed.infotexts = [texts[0], *texts]
        processed.saved_paths = [None, *processed.saved_paths[processed.index_of_first_image:]]
        processed.index_of_first_image = 1
        if save_grid:
            save_image(grid, p.outpath_grids, "prompt_matrix", processed.seed, original, info=texts[0], grid=True,
                       p=p)
        return processed
