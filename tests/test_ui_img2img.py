"""The img2img tab's handlers without a browser: each mode's components -> one Img2ImgParams, batch inputs, and the
output-panel actions (save, zip, send-to)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from PIL import Image

from modules.errors import FieldError
from modules.processing import saving
from modules.ui import img2img_tab as tab
from modules.ui import output_actions as actions

VALUES = {"prompt": "a cat", "negative_prompt": "", "styles": [], "resize_mode": "Crop and resize", "mask_blur": 0,
          "inpainting_mask_invert": "Inpaint not masked", "inpainting_fill": "latent noise",
          "inpaint_full_res": "Only masked", "inpaint_full_res_padding": 8, "sampler_name": "Euler",
          "scheduler": "Automatic", "steps": 4.0, "width": 64.0, "height": 64.0, "n_iter": 1.0, "batch_size": 1.0,
          "cfg_scale": 7.0, "denoising_strength": 0.5, "seed": -1.0, "show_extra": False, "subseed": -1.0,
          "subseed_strength": 0.0, "seed_resize_from_w": 0.0, "seed_resize_from_h": 0.0, "scale_by": 1.0,
          "resize_tab": 0, "mask_alpha": 0, "script_name": "None", "outpaint_pixels": 32, "outpaint_mask_blur": 4,
          "outpaint_fill": "fill", "outpaint_directions": ["left"]}


def picture(w=80, h=48, colour=(10, 120, 200)) -> Image.Image:
    return Image.new("RGBA", (w, h), colour + (255,))


def stroke_layer(size, box) -> Image.Image:
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), box)
    return layer


def test_img2img_mode_uses_the_image_and_no_mask():
    p = tab.params_from_ui(tab.IMG2IMG, {"img2img_image": picture()}, VALUES)
    assert p.init_images[0].size == (80, 48) and p.mask is None
    assert (p.resize_mode, p.inpainting_fill, p.inpaint_full_res, p.inpainting_mask_invert) == (1, 2, True, 1)
    assert p.steps == 4 and isinstance(p.steps, int) and p.cfg_scale == 7


def test_inpaint_mode_mask_is_the_brush_strokes():
    editor = {"background": picture(), "layers": [stroke_layer((80, 48), (10, 10, 30, 20))], "composite": picture()}
    p = tab.params_from_ui(tab.INPAINT, {"img2maskimg": editor}, VALUES)
    mask = np.asarray(p.mask)
    assert mask[15, 20] == 255 and mask[40, 70] == 0 and mask.sum() == 255 * 20 * 10


def test_sketch_mode_uses_the_composite():
    composite = picture(colour=(200, 0, 0))
    p = tab.params_from_ui(tab.SKETCH, {"img2img_sketch": {"background": picture(), "layers": [],
                                                           "composite": composite}}, VALUES)
    assert p.init_images[0].getpixel((0, 0))[:3] == (200, 0, 0) and p.mask is None


def test_inpaint_sketch_mask_is_the_changed_pixels():
    background = picture()
    sketched = background.copy()
    sketched.paste((255, 0, 0, 255), (40, 10, 60, 30))
    p = tab.params_from_ui(tab.INPAINT_SKETCH, {"inpaint_sketch": {"background": background, "layers": [],
                                                                   "composite": sketched}}, VALUES)
    mask = np.asarray(p.mask)
    assert mask[20, 50] == 255 and mask[5, 5] == 0
    transparent = tab.params_from_ui(tab.INPAINT_SKETCH, {"inpaint_sketch": {
        "background": background, "layers": [], "composite": sketched}}, {**VALUES, "mask_alpha": 50})
    assert 120 <= np.asarray(transparent.mask)[20, 50] <= 135  # Mask transparency 50% halves the mask


def test_inpaint_upload_needs_both_images():
    mask = Image.new("L", (80, 48), 255)
    p = tab.params_from_ui(tab.INPAINT_UPLOAD, {"img_inpaint_base": picture(), "img_inpaint_mask": mask}, VALUES)
    assert p.mask is mask
    with pytest.raises(FieldError) as err:
        tab.params_from_ui(tab.INPAINT_UPLOAD, {"img_inpaint_base": picture(), "img_inpaint_mask": None}, VALUES)
    assert err.value.field == "mask"


def test_missing_image_is_a_readable_error():
    with pytest.raises(FieldError) as err:
        tab.params_from_ui(tab.INPAINT, {"img2maskimg": None}, VALUES)
    assert "Inpaint" in str(err.value)


def test_resize_by_scales_the_init_image_size():
    p = tab.params_from_ui(tab.IMG2IMG, {"img2img_image": picture(100, 60)},
                           {**VALUES, "resize_tab": 1, "scale_by": 1.5})
    assert (p.width, p.height) == (144, 88)  # 150x90 onto the latent grid (multiples of 8)


def test_outpainting_script_extends_the_canvas():
    p = tab.params_from_ui(tab.IMG2IMG, {"img2img_image": picture(64, 64)},
                           {**VALUES, "script_name": "Poor man's outpainting"})
    assert (p.width, p.height) == (96, 64) and p.mask is not None and p.init_images[0].size == (96, 64)
    assert np.asarray(p.mask)[:, :32].min() == 255 and p.inpaint_full_res is False


def test_batch_inputs_pairs_masks_by_name(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("b.png", "a.jpg"):
        picture().convert("RGB").save(tmp_path / "in" / name)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    Image.new("L", (8, 8)).save(tmp_path / "masks" / "a.png")
    pairs = tab.batch_inputs(None, str(tmp_path / "in"), str(tmp_path / "masks"))
    assert [(p.name, m.name if m else None) for p, m in pairs] == [("a.jpg", "a.png"), ("b.png", None)]
    with pytest.raises(FieldError):
        tab.batch_inputs(None, str(tmp_path / "missing"), "")


# --------------------------------------------------------------------------------------------- output actions


def saved_gallery(tmp_path, n=3):
    paths = []
    for i in range(n):
        image = Image.new("RGB", (8, 8), (i * 40, 0, 0))
        paths.append(saving.save_image(image, tmp_path / "out", settings={"save_to_dirs": False}, fields={"seed": i},
                                       infotext=f"image {i}"))
    return [(str(p), None) for p in paths], {"infotexts": [f"image {i}" for i in range(n)],
                                             "index_of_first_image": 1}


def test_save_copies_the_selected_image_with_its_infotext(tmp_path):
    gallery, info = saved_gallery(tmp_path)
    copies = actions.save_images(gallery, 2, info, {"save_selected_only": True, "outdir_save": "log/images",
                                                    "outdir_samples": "out"}, tmp_path)
    assert len(copies) == 1 and "log/images" in copies[0].replace("\\", "/")
    assert Image.open(copies[0]).info["parameters"] == "image 2"
    again = actions.save_images(gallery, 2, info, {"save_selected_only": True, "outdir_samples": "out"}, tmp_path)
    assert again[0] != copies[0]  # never over an earlier save
    every = actions.save_images(gallery, None, info, {"save_selected_only": False, "outdir_samples": "out"},
                                tmp_path)
    assert len(every) == 3


def test_zip_holds_every_image(tmp_path):
    gallery, _ = saved_gallery(tmp_path)
    archive = actions.zip_images(gallery, [tmp_path / "out"])
    with zipfile.ZipFile(archive) as z:
        assert len(z.namelist()) == 3
    assert actions.zip_images([], [tmp_path]) is None


def test_send_to_picks_the_selection_or_the_first_non_grid_image(tmp_path):
    gallery, info = saved_gallery(tmp_path)
    roots = [tmp_path / "out"]
    image, text = actions.image_and_infotext(gallery, None, info, roots)
    assert text == "image 1" and image.getpixel((0, 0)) == (40, 0, 0)
    _, text = actions.image_and_infotext(gallery, 0, info, roots)
    assert text == "image 0"
    assert actions.image_and_infotext([], None, None, roots) == (None, "")


def test_gallery_files_from_outside_the_output_folders_are_ignored(tmp_path):
    """The gallery value comes from the browser: a path to config.json or /etc/passwd must not be read, copied or
    zipped (campaign B21), and a symlink out of the folder does not count as inside."""
    (tmp_path / "config.json").write_text('{"secret": 1}')
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link.png").symlink_to(tmp_path / "config.json")
    hostile = [(str(tmp_path / "config.json"), None), ("/etc/passwd", None), (str(tmp_path / "out" / "link.png"),
                                                                             None), (str(tmp_path / "nope.png"), None)]
    roots = [tmp_path / "out"]
    assert actions.gallery_paths(hostile, roots) == []
    assert actions.zip_images(hostile, roots) is None
    assert actions.image_and_infotext(hostile, 0, None, roots) == (None, "")
    assert actions.save_images(hostile, 0, None, {"outdir_txt2img_samples": "out"}, tmp_path) == []
    assert not (tmp_path / "log").exists()


def test_batch_png_info_takes_the_chosen_parameters():
    geninfo = "a red barn\nNegative prompt: fog\nSteps: 33, Sampler: Euler a, CFG scale: 5.5, Seed: 42, Model hash: abc1234567"
    base = {"prompt": "photo of", "negative_prompt": "blurry", "seed": -1, "steps": 20, "cfg_scale": 7}
    out = tab.apply_png_info(base, geninfo, ["Prompt", "Seed", "Sampler"])
    assert out["prompt"] == "photo of a red barn" and out["seed"] == 42 and out["sampler_name"] == "Euler a"
    assert out["steps"] == 20 and out["negative_prompt"] == "blurry" and "override_settings" not in out
    every = tab.apply_png_info(base, geninfo, list(tab.PNG_INFO_PROPS))
    assert every["negative_prompt"] == "blurry fog" and every["cfg_scale"] == 5.5 and every["steps"] == 33
    assert every["override_settings"] == {"sd_model_checkpoint": "abc1234567"}
    assert tab.apply_png_info(base, None, ["Prompt"]) == base


def test_batch_from_directory_writes_results_under_the_input_names(tmp_path):
    from modules.cmd_args import parse_args
    from modules.runtime import build_runtime
    from tests.support.tiny_checkpoints import write_tiny_checkpoint

    write_tiny_checkpoint("sd1", tmp_path / "data" / "models" / "Stable-diffusion", "tiny")
    rt = build_runtime(parse_args(["--data-dir", str(tmp_path / "data")], environ={}))
    try:
        source, masks, target = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
        source.mkdir()
        masks.mkdir()
        for name in ("one", "two"):
            Image.new("RGB", (64, 64), (200, 30, 30)).save(source / f"{name}.png")
        mask = Image.new("L", (64, 64))
        mask.paste(255, (0, 0, 32, 32))
        mask.save(masks / "one.png")
        (source / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
        values = {**VALUES, "inpaint_full_res": "Whole picture", "inpainting_mask_invert": "Inpaint masked",
                  "inpainting_fill": "original", "denoising_strength": 0.8, "steps": 2.0}
        outputs = list(tab.run_batch(rt, values, None, str(source), str(target), str(masks)))
        written = sorted(p.name for p in target.iterdir())
        assert written == ["one.png", "two.png"]  # the unreadable file is reported, the others are done
        assert any("Error" in str(o[1]) for o in outputs)
        one = np.asarray(Image.open(target / "one.png").convert("RGB")).astype(int)
        assert (one[40:, 40:] == (200, 30, 30)).all()  # outside its mask: the input
        assert Image.open(target / "two.png").info["parameters"].startswith("a cat")
        again = list(tab.run_batch(rt, values, None, str(source), str(target), ""))
        assert again and len(list(target.iterdir())) == 4  # a second run never overwrites the first
    finally:
        rt.jobs.stop()


def test_batch_runs_the_chosen_script_on_each_image(tmp_path):
    """A1111's batch applies the Script dropdown's choice to every image: outpainting widens each one."""
    from modules.cmd_args import parse_args
    from modules.runtime import build_runtime
    from modules.script_registry import TabScripts
    from modules.ui.script_controls import ScriptControls
    from tests.support.tiny_checkpoints import write_tiny_checkpoint

    write_tiny_checkpoint("sd1", tmp_path / "data" / "models" / "Stable-diffusion", "tiny")
    rt = build_runtime(parse_args(["--data-dir", str(tmp_path / "data")], environ={}))
    try:
        source, target = tmp_path / "in", tmp_path / "out"
        source.mkdir()
        for name in ("one", "two"):
            Image.new("RGB", (64, 64), (200, 30, 30)).save(source / f"{name}.png")
        values = {**VALUES, "steps": 1.0, "script_name": "Poor man's outpainting", "outpaint_pixels": 16,
                  "outpaint_directions": ["right"]}
        controls = ScriptControls(TabScripts("img2img"))
        chosen = controls.take(values)
        list(tab.run_batch(rt, values, None, str(source), str(target), "",
                           prepare=lambda params: controls.prepare(params, chosen, ["None"])))
        assert sorted((p.name, Image.open(p).size) for p in target.iterdir()) == [("one.png", (80, 64)),
                                                                                   ("two.png", (80, 64))]
    finally:
        rt.jobs.stop()
