"""Built-in X/Y/Z plot (A1111's script of the same name): one generation per combination of up to three axes'
values, assembled into a labelled grid.

Written as an ordinary ``Script`` over the public facade (``process_images``, ``p.override_settings``), so it
behaves exactly like an extension's script in the UI and the API. ``script_args`` follow A1111's order; an axis
type is its name (``"Steps"``) or its index in ``AXES``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

from modules import scripts, shared
from modules.errors import FieldError
from modules.images import save_image
from modules.processing import compat, xyz_grid
from modules.processing.compat import Processed, process_images
from modules.processing.params import check_budget

MAX_CELLS = 1000


@dataclass(frozen=True)
class Axis:
    label: str
    kind: type  # int, float or str
    apply: Callable[[Any, Any], None] | None
    choices: Callable[[], list[str]] | None = None
    confirm: Callable[[list[Any]], None] | None = None
    cost: int = 0  # axes that reload something (checkpoint, VAE) are looped outermost
    txt2img_only: bool = False
    img2img_only: bool = False


def _field(name: str) -> Callable[[Any, Any], None]:
    return lambda p, value: setattr(p, name, value)


def _setting(name: str) -> Callable[[Any, Any], None]:
    return lambda p, value: p.override_settings.__setitem__(name, value)


def _prompt_sr(p: Any, value: str) -> None:
    """The first value is the text to find; each cell replaces it with its value in both prompts."""
    search = p._xyz_search
    if search not in p.prompt and search not in p.negative_prompt:
        raise FieldError("script_args", f"X/Y/Z plot: Prompt S/R: {search!r} is not in the prompt")
    p.prompt = p.prompt.replace(search, value)
    p.negative_prompt = p.negative_prompt.replace(search, value)


def _size(p: Any, value: str) -> None:
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError as err:
        raise FieldError("script_args", f"X/Y/Z plot: Size {value!r} is not WIDTHxHEIGHT") from err
    p.width, p.height = width, height


def _styles(p: Any, value: str) -> None:
    p.styles = list(p.styles) + [s.strip() for s in value.split(",") if s.strip()]


def _sampler_names() -> list[str]:
    from modules import samplers

    return [s.name for s in samplers.SAMPLERS]


def _schedule_names() -> list[str]:
    from modules import samplers

    return [s.label for s in samplers.SCHEDULES]


def _checkpoint_names() -> list[str]:
    return [c.title for c in shared.runtime.registry.list()] if shared.runtime is not None else []


def _vae_names() -> list[str]:
    choices = getattr(getattr(shared.runtime, "vaes", None), "choices", None)
    return list(choices()) if callable(choices) else []


def _style_names() -> list[str]:
    styles = getattr(shared.runtime, "styles", None)
    return list(styles.styles) if styles is not None and hasattr(styles, "styles") else []


def _known(label: str, names: Callable[[], list[str]]) -> Callable[[list[Any]], None]:
    def confirm(values: list[Any]) -> None:
        known = names()
        lowered = {n.lower() for n in known}
        for value in values:
            if str(value).lower() not in lowered:
                raise FieldError("script_args", f"X/Y/Z plot: unknown {label} {value!r}", known)
    return confirm


def _known_checkpoints(values: list[Any]) -> None:
    from modules.models.manager import CheckpointNotFound

    for value in values:
        try:
            shared.runtime.manager.resolve(value)
        except CheckpointNotFound as err:
            raise FieldError("script_args", f"X/Y/Z plot: unknown checkpoint {value!r}", err.choices) from err


AXES: list[Axis] = [
    Axis("Nothing", str, None),
    Axis("Seed", int, _field("seed")),
    Axis("Var. seed", int, _field("subseed")),
    Axis("Var. strength", float, _field("subseed_strength")),
    Axis("Steps", int, _field("steps")),
    Axis("Hires steps", int, _field("hr_second_pass_steps"), txt2img_only=True),
    Axis("CFG Scale", float, _field("cfg_scale")),
    Axis("Prompt S/R", str, _prompt_sr),
    Axis("Sampler", str, _field("sampler_name"), _sampler_names, _known("sampler", _sampler_names)),
    Axis("Checkpoint name", str, _setting("sd_model_checkpoint"), _checkpoint_names, _known_checkpoints, cost=2),
    Axis("Schedule type", str, _field("scheduler"), _schedule_names, _known("schedule type", _schedule_names)),
    Axis("Clip skip", int, _setting("CLIP_stop_at_last_layers")),
    Axis("Denoising", float, _field("denoising_strength")),
    Axis("Hires upscaler", str, _field("hr_upscaler"), txt2img_only=True),
    Axis("VAE", str, _setting("sd_vae"), _vae_names, _known("VAE", _vae_names), cost=1),
    Axis("Styles", str, _styles, _style_names),
    Axis("Size", str, _size),
    Axis("Distilled CFG Scale", float, _field("distilled_cfg_scale")),  # Forge's, for Flux dev (appended: indices stay)
]


def axes_for(is_img2img: bool) -> list[Axis]:
    return [a for a in AXES if not (a.txt2img_only and is_img2img) and not (a.img2img_only and not is_img2img)]


def find_axis(kind: Any, is_img2img: bool) -> Axis:
    options = axes_for(is_img2img)
    if isinstance(kind, bool):
        kind = int(kind)
    if isinstance(kind, (int, float)) or (isinstance(kind, str) and kind.isdigit()):
        index = int(kind)
        if 0 <= index < len(options):
            return options[index]
    else:
        for axis in options:
            if axis.label.lower() == str(kind or "nothing").lower():
                return axis
    raise FieldError("script_args", f"X/Y/Z plot: unknown axis type {kind!r}", [a.label for a in options])


def axis_values(axis: Axis, text: str, picked: list[Any] | None, csv_mode: bool = False) -> list[Any]:
    """The values of one axis: the dropdown's picks when it has any, else the text in A1111's syntax."""
    if axis.apply is None:
        return [None]
    entries = [str(v) for v in picked] if picked and axis.choices is not None else xyz_grid.split_values(text or "")
    if not entries:
        raise FieldError("script_args", f"X/Y/Z plot: no values for {axis.label}")
    try:
        values: list[Any] = (xyz_grid.expand_ints(entries) if axis.kind is int else
                             xyz_grid.expand_floats(entries) if axis.kind is float else entries)
    except xyz_grid.AxisValueError as err:
        raise FieldError("script_args", f"X/Y/Z plot: {axis.label}: {err}") from err
    if axis.confirm is not None:
        axis.confirm(values)
    return values


def label(axis: Axis, value: Any) -> str:
    if axis.apply is None:
        return ""
    if axis.label == "Prompt S/R":
        return str(value)
    if isinstance(value, float):
        value = f"{value:g}"
    return f"{axis.label}: {value}"


class Script(scripts.Script):
    def title(self) -> str:
        return "X/Y/Z plot"

    def ui(self, is_img2img: bool) -> list[Any]:
        import gradio as gr  # here: importing the script (the API alone) needs no gradio

        names = [a.label for a in axes_for(is_img2img)]
        controls: list[Any] = []
        for axis_name, default in (("x", "Seed"), ("y", "Nothing"), ("z", "Nothing")):
            with gr.Row():
                kind = gr.Dropdown(names, value=default, label=f"{axis_name.upper()} type",
                                   elem_id=self.elem_id(f"{axis_name}_type"))
                values = gr.Textbox(label=f"{axis_name.upper()} values", lines=1,
                                    elem_id=self.elem_id(f"{axis_name}_values"))
                picked = gr.Dropdown([], value=[], multiselect=True, label=f"{axis_name.upper()} values",
                                     visible=False, elem_id=self.elem_id(f"{axis_name}_values_dropdown"))

            def choices_of(name: str) -> Any:
                axis = find_axis(name, is_img2img)
                options = axis.choices() if axis.choices is not None else []
                return gr.update(choices=options, value=[], visible=bool(options))

            kind.change(choices_of, inputs=[kind], outputs=[picked], queue=False, show_progress="hidden")
            controls += [kind, values, picked]
        with gr.Row():
            draw_legend = gr.Checkbox(True, label="Draw legend", elem_id=self.elem_id("draw_legend"))
            lone = gr.Checkbox(False, label="Include Sub Images", elem_id=self.elem_id("include_lone_images"))
            sub_grids = gr.Checkbox(False, label="Include Sub Grids", elem_id=self.elem_id("include_sub_grids"))
            no_fixed = gr.Checkbox(False, label="Keep -1 for seeds", elem_id=self.elem_id("no_fixed_seeds"))
        with gr.Row():
            vary_x = gr.Checkbox(False, label="Vary seeds for X", elem_id=self.elem_id("vary_seeds_x"))
            vary_y = gr.Checkbox(False, label="Vary seeds for Y", elem_id=self.elem_id("vary_seeds_y"))
            vary_z = gr.Checkbox(False, label="Vary seeds for Z", elem_id=self.elem_id("vary_seeds_z"))
        margin = gr.Slider(0, 500, value=0, step=2, label="Grid margins (px)", elem_id=self.elem_id("margin_size"))
        csv_mode = gr.Checkbox(False, label="Use text inputs instead of dropdowns", elem_id=self.elem_id("csv_mode"))
        # A1111's paste targets: a grid's infotext ("X Type: Steps, X Values: \"2,4\"") fills the axes back in.
        self.infotext_fields = [(controls[i * 3 + j], f"{axis} {key}") for i, axis in enumerate("XYZ")
                                for j, key in ((0, "Type"), (1, "Values"))]
        return controls + [draw_legend, lone, sub_grids, no_fixed, vary_x, vary_y, vary_z, margin, csv_mode]

    def run(self, p: Any, x_type: Any, x_values: str, x_picked: Any, y_type: Any, y_values: str, y_picked: Any,
            z_type: Any, z_values: str, z_picked: Any, draw_legend: bool = True, include_lone_images: bool = False,
            include_sub_grids: bool = False, no_fixed_seeds: bool = False, vary_seeds_x: bool = False,
            vary_seeds_y: bool = False, vary_seeds_z: bool = False, margin_size: int = 0,
            csv_mode: bool = False) -> Processed:
        axes = [find_axis(t, self.is_img2img) for t in (x_type, y_type, z_type)]
        texts, picks = (x_values, y_values, z_values), (x_picked, y_picked, z_picked)
        values = [axis_values(a, t, None if csv_mode else list(k or []), csv_mode) for a, t, k in
                  zip(axes, texts, picks)]
        cells = len(values[0]) * len(values[1]) * len(values[2])
        if cells > MAX_CELLS:
            raise FieldError("script_args", f"X/Y/Z plot: {cells} cells is more than {MAX_CELLS}")
        ctx = compat.active_context()
        if ctx is not None:  # the whole plot counts against the job budgets (megapixel-steps and seconds)
            whole = p.to_params()
            check_budget(whole, float(ctx.settings.get("max_job_megapixel_steps") or 0), cells)
            if ctx.check_budget is not None:
                ctx.check_budget(whole, cells)
        if not no_fixed_seeds:
            compat.fix_seed(p)
        for axis, axis_vals in zip(axes, values):
            if axis.label == "Prompt S/R":
                p._xyz_search = str(axis_vals[0])
        vary = (vary_seeds_x, vary_seeds_y, vary_seeds_z)
        xs, ys, zs = values
        results: dict[tuple[int, int, int], tuple[Any, str]] = {}
        # The costliest axis changes least often (a checkpoint or VAE reload per value, not per cell).
        order = sorted(range(3), key=lambda i: -axes[i].cost)
        state = shared.state
        for index in _indices([len(v) for v in values], order):
            if state is not None and state.interrupted:
                break
            ix, iy, iz = index
            cell = copy.copy(p)
            cell.override_settings = dict(p.override_settings or {})
            cell.extra_generation_params = dict(p.extra_generation_params)
            cell.styles = list(p.styles)
            cell.scripts, cell.do_not_save_grid = p.scripts, True
            for axis, position, axis_vals in zip(axes, index, values):
                if axis.apply is not None:
                    axis.apply(cell, axis_vals[position])
            offset = (ix if vary[0] else 0) + (iy * len(xs) if vary[1] else 0) + (iz * len(xs) * len(ys)
                                                                                   if vary[2] else 0)
            if offset and cell.seed != -1:
                cell.seed = int(cell.seed) + offset
            processed = process_images(cell)
            if not processed.images:
                break
            first = processed.index_of_first_image if len(processed.images) > 1 and \
                cell.batch_size * cell.n_iter == 1 else 0
            results[index] = (processed.images[first], processed.infotexts[first])
        if not results:
            return Processed(p, [], p.seed, "")
        return self._assemble(p, axes, values, results, draw_legend, include_lone_images, include_sub_grids,
                              int(margin_size or 0))

    def _assemble(self, p: Any, axes: list[Axis], values: list[list[Any]],
                  results: dict[tuple[int, int, int], tuple[Any, str]], draw_legend: bool, lone: bool,
                  sub_grids: bool, margin: int) -> Processed:
        xs, ys, zs = values
        first_image, first_text = next(iter(results.values()))
        width, height = first_image.size
        grids, grid_texts = [], []
        for iz in range(len(zs)):
            cells = []
            for iy in range(len(ys)):
                for ix in range(len(xs)):
                    found = results.get((ix, iy, iz))  # missing after an interrupt: a black cell
                    cells.append(found[0] if found is not None else _black(width, height))
            grid = xyz_grid.cell_grid(cells, len(xs), width, height)
            hor = [[xyz_grid.GridAnnotation(label(axes[0], x))] for x in xs]
            ver = [[xyz_grid.GridAnnotation(label(axes[1], y))] for y in ys]
            if draw_legend:
                grid = xyz_grid.draw_grid_annotations(grid, width, height, hor, ver, margin)
            elif margin:
                grid = xyz_grid.draw_grid_annotations(grid, width, height, [[]] * len(xs), [[]] * len(ys), margin)
            grids.append(grid)
            grid_texts.append(next((t for (ix, iy, iz2), (_, t) in results.items() if iz2 == iz), first_text))
        if len(zs) > 1:
            sub_w, sub_h = max(g.width for g in grids), max(g.height for g in grids)
            row = xyz_grid.cell_grid(grids, len(grids), sub_w, sub_h)
            top = [[xyz_grid.GridAnnotation(label(axes[2], z))] for z in zs] if draw_legend else [[]] * len(zs)
            main = xyz_grid.draw_grid_annotations(row, sub_w, sub_h, top, [[]], margin)
            images, texts = [main], [first_text]
            if sub_grids:
                images, texts = images + grids, texts + grid_texts
        else:
            images, texts = [grids[0]], [grid_texts[0]]
        grid_info = _with_plot_params(texts[0], axes, values)
        texts[0] = grid_info
        options = shared.opts
        grid_path = None
        if options is not None and options.get("grid_save") and not p.do_not_save_grid:
            grid_path, _ = save_image(images[0], p.outpath_grids, "xyz_grid", p.seed, p.prompt, info=grid_info,
                                      grid=True, p=p)
        index_of_first_image = len(images)
        if lone:
            for index in sorted(results, key=lambda i: (i[2], i[1], i[0])):
                image, text = results[index]
                images.append(image)
                texts.append(text)
        else:
            index_of_first_image = 0
        processed = Processed(p, images, p.seed, grid_info, infotexts=texts,
                              index_of_first_image=index_of_first_image)
        if grid_path is not None:
            from pathlib import Path

            processed.saved_paths[0] = Path(grid_path)  # the gallery offers the saved file, infotext included
        return processed


def _black(width: int, height: int) -> Any:
    from PIL import Image

    return Image.new("RGB", (width, height), "black")


def _indices(lengths: list[int], order: list[int]) -> list[tuple[int, int, int]]:
    """Every (ix, iy, iz), the axis ``order[0]`` varying slowest."""
    out: list[tuple[int, int, int]] = []

    def walk(level: int, current: list[int]) -> None:
        if level == 3:
            out.append((current[0], current[1], current[2]))
            return
        axis = order[level]
        for i in range(lengths[axis]):
            current[axis] = i
            walk(level + 1, current)

    walk(0, [0, 0, 0])
    # within equal cost, A1111's order: x fastest, then y, then z
    if all(o == i for i, o in enumerate(order)):
        out.sort(key=lambda t: (t[2], t[1], t[0]))
    return out


def _with_plot_params(text: str, axes: list[Axis], values: list[list[Any]]) -> str:
    """The grid's infotext: its first cell's, plus A1111's Script / X Type / X Values entries."""
    from modules import infotext

    extra = {"Script": "X/Y/Z plot"}
    for name, axis, axis_vals in zip("XYZ", axes, values):
        if axis.apply is not None:
            extra[f"{name} Type"] = axis.label
            extra[f"{name} Values"] = ", ".join(str(v) for v in axis_vals)
    return f"{text}, {infotext.params_line(extra)}"
