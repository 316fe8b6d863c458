"""Built-in Loopback (A1111's img2img script): each result becomes the next loop's input, the denoising strength
moving toward a final value along a linear, aggressive or lazy curve; the loops are shown in a grid."""

from __future__ import annotations

import math
from typing import Any

from modules import scripts, shared
from modules.errors import FieldError
from modules.images import image_grid, save_image
from modules.processing import compat
from modules.processing.compat import Processed, process_images

CURVES = ("Aggressive", "Linear", "Lazy")
MAX_LOOPS = 32


def denoising_at(loop: int, loops: int, initial: float, final: float, curve: str) -> float:
    """The strength of loop ``loop`` (0-based; loop 0 uses ``initial``), A1111's curves."""
    if loops <= 1:
        return initial
    progress = loop / (loops - 1)
    if curve == "Aggressive":
        shape = math.sin(progress * math.pi * 0.5)
    elif curve == "Lazy":
        shape = 1 - math.cos(progress * math.pi * 0.5)
    else:
        shape = progress
    return initial + (final - initial) * shape


class Script(scripts.Script):
    def title(self) -> str:
        return "Loopback"

    def show(self, is_img2img: bool) -> bool:
        return is_img2img

    def ui(self, is_img2img: bool) -> list[Any]:
        import gradio as gr  # here: importing the script (the API alone) needs no gradio

        loops = gr.Slider(1, MAX_LOOPS, value=4, step=1, label="Loops", elem_id=self.elem_id("loops"))
        final = gr.Slider(0, 1, value=0.5, step=0.01, label="Final denoising strength",
                          elem_id=self.elem_id("final_denoising_strength"))
        curve = gr.Dropdown(list(CURVES), value="Linear", label="Denoising strength curve",
                            elem_id=self.elem_id("curve"))
        interrogation = gr.Dropdown(["None"], value="None", label="Append interrogated prompt at each iteration",
                                    elem_id=self.elem_id("append_interrogation"))
        return [loops, final, curve, interrogation]

    def run(self, p: Any, loops: int = 4, final_denoising_strength: float = 0.5, denoising_curve: str = "Linear",
            append_interrogation: str = "None") -> Processed:
        loops = int(loops)
        if not 1 <= loops <= MAX_LOOPS:
            raise FieldError("script_args", f"Loopback: loops must be 1 to {MAX_LOOPS}")
        if denoising_curve not in CURVES:
            raise FieldError("script_args", f"Loopback: unknown curve {denoising_curve!r}", list(CURVES))
        if append_interrogation not in (None, "None"):
            raise FieldError("script_args", "Loopback: interrogation is not available", ["None"])
        final = float(final_denoising_strength)
        compat.fix_seed(p)
        save_grid = not p.do_not_save_grid and shared.opts is not None and shared.opts.get("grid_save")
        batch_count = int(p.n_iter)
        p.extra_generation_params = {**p.extra_generation_params, "Final denoising strength": final,
                                     "Denoising curve": denoising_curve}
        p.batch_size = p.n_iter = 1
        initial_strength = float(p.denoising_strength)
        original_images, original_fill = list(p.init_images), p.inpainting_fill
        first_seed, first_info = None, ""
        history: list[Any] = []
        texts: list[str] = []
        state = shared.state
        for _ in range(batch_count):
            p.init_images, p.denoising_strength = original_images, initial_strength
            last, last_text = None, ""
            for loop in range(loops):
                p.n_iter = p.batch_size = 1
                p.do_not_save_grid = True
                processed = process_images(p)
                if not processed.images or (state is not None and state.interrupted):
                    break
                if first_seed is None:
                    first_seed, first_info = processed.seed, processed.infotexts[0]
                p.seed = processed.seed + 1
                p.denoising_strength = denoising_at(loop + 1, loops, initial_strength, final, denoising_curve)
                last = processed.images[processed.index_of_first_image]
                last_text = processed.infotexts[processed.index_of_first_image]
                p.init_images = [last]
                p.inpainting_fill = 1  # "original": the next loop starts from this result
                if batch_count == 1:
                    history.append(last)
                    texts.append(last_text)
            if batch_count > 1 and last is not None:
                history.append(last)
                texts.append(last_text)
            p.inpainting_fill = original_fill
            if state is not None and state.interrupted:
                break
        images = list(history)
        if len(history) > 1:
            texts.insert(0, first_info)
            grid = image_grid(history, rows=1)
            if save_grid:
                save_image(grid, p.outpath_grids, "grid", first_seed, p.prompt, info=first_info, grid=True, p=p)
            if shared.opts is None or shared.opts.get("return_grid", True):
                images.insert(0, grid)
            else:
                texts.pop(0)
        return Processed(p, images, first_seed if first_seed is not None else p.seed, first_info, infotexts=texts,
                         index_of_first_image=1 if len(images) > len(history) else 0)
