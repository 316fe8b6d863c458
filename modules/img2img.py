"""A1111's ``modules.img2img`` for extensions: ``process_batch(p, input, output_dir, inpaint_mask_dir, args, ...)``,
img2img over a folder of images (or a list of files), with a mask of the same name from ``inpaint_mask_dir``
and, optionally, each image's own parameters (``use_png_info``). It runs inside a generation job (a script's
``run``), like ``process_images``; results go to ``output_dir`` by the rules of ``modules.images.save_image``
(inside the output folders only).

A1111's ``img2img(id_task, request, mode, prompt, ...)`` is its tab's gradio handler with ~40 positional
arguments; our tab has its own (``modules/ui/img2img_tab.py``), so calling it raises NotImplementedError. No torch,
no gradio at import.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Sequence

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def img2img(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("modules.img2img.img2img is A1111's img2img tab handler; submit an img2img job with "
                              "modules.processing.process_images(StableDiffusionProcessingImg2Img(...)) inside a "
                              "script, or POST /sdapi/v1/img2img")


def _images_of(source: Any) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if folder.is_dir():
            return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        return [folder]
    return [Path(getattr(f, "name", getattr(f, "path", f))) for f in source or []]


def _mask_for(image_path: Path, mask_dir: str | None) -> Path | None:
    if not mask_dir:
        return None
    masks = _images_of(mask_dir)
    if len(masks) == 1 and not Path(mask_dir).is_dir():
        return masks[0]
    return next((m for m in masks if m.stem == image_path.stem), None)


def process_batch(p: Any, input: Any, output_dir: str | None, inpaint_mask_dir: str | None,  # noqa: A002
                  args: Sequence[Any], to_scale: bool = False, scale_by: float = 1.0, use_png_info: bool = False,
                  png_info_props: list[str] | None = None, png_info_dir: str | None = None) -> Any:
    """Run img2img ``p`` once per image of ``input`` (a folder or a list of files); returns a ``Processed`` of
    every result (None when there was nothing to do). ``args``: the tab's script arguments (entry 0 selects a
    script, whose ``run`` then replaces the generation, as in A1111)."""
    from PIL import Image, ImageOps

    from modules import images, scripts, shared
    from modules.processing import compat

    paths = _images_of(input)
    results: list[Any] = []
    infotexts: list[str] = []
    last: Any = None
    for image_path in paths:
        with Image.open(image_path) as opened:
            image = ImageOps.exif_transpose(opened).copy()
            image.info = dict(opened.info)
        job_p = copy.copy(p)
        job_p.init_images = [image] * int(p.batch_size)
        if to_scale:
            job_p.width, job_p.height = int(image.width * scale_by) // 8 * 8, int(image.height * scale_by) // 8 * 8
        mask_path = _mask_for(image_path, inpaint_mask_dir)
        if mask_path is not None:
            with Image.open(mask_path) as mask:
                job_p.image_mask = mask.copy()
        if use_png_info:
            source = image
            if png_info_dir:
                info_path = Path(png_info_dir) / image_path.name
                if info_path.is_file():
                    with Image.open(info_path) as info_image:
                        source = info_image.copy()
                        source.info = dict(info_image.info)
            _apply_png_info(job_p, source.info.get("parameters"), png_info_props or [])
        job_p.do_not_save_samples = True
        processed = scripts.scripts_img2img.run(job_p, *args) if args else None
        if processed is None:
            processed = compat.process_images(job_p)
        last = processed
        for index, (result, text) in enumerate(zip(processed.images[processed.index_of_first_image:],
                                                   processed.infotexts[processed.index_of_first_image:])):
            results.append(result)
            infotexts.append(text)
            if output_dir:
                name = image_path.stem if len(processed.images) - processed.index_of_first_image == 1 \
                    else f"{image_path.stem}-{index}"
                images.save_image(result, output_dir, "", info=text, p=job_p, forced_filename=name,
                                  save_to_dirs=False, extension=str(shared.opts.get("samples_format", "png")))
    if last is None:
        return None
    return compat.Processed(p, results, last.seed, infotexts[0] if infotexts else "", infotexts=infotexts)


def _apply_png_info(p: Any, geninfo: str | None, props: list[str]) -> None:
    """A1111's batch "PNG info": the chosen parameters of the image's own infotext (its prompts are added to
    ``p``'s, the others replace them)."""
    from modules import infotext

    if not geninfo:
        return
    parsed = {k: v for k, v in infotext.parse_infotext(geninfo).items() if not props or k in props}
    if "Prompt" in parsed:
        p.prompt = f"{p.prompt} {parsed['Prompt']}".strip()
    if "Negative prompt" in parsed:
        p.negative_prompt = f"{p.negative_prompt} {parsed['Negative prompt']}".strip()
    for field, key, convert in (("seed", "Seed", int), ("cfg_scale", "CFG scale", float), ("steps", "Steps", int),
                                ("sampler_name", "Sampler", str)):
        if key in parsed:
            try:
                setattr(p, field, convert(float(parsed[key])) if convert is not str else str(parsed[key]))
            except (TypeError, ValueError):
                pass
