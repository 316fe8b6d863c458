"""PNG Info tab handlers, tested without a browser: image -> panel HTML and parameters -> txt2img field values."""

from __future__ import annotations

import io
from types import SimpleNamespace

import gradio as gr
import pytest
from PIL import Image

from modules.processing.saving import encode_image
from modules.styles import StyleDatabase
from modules.ui import pnginfo_tab as tab
from modules.ui.txt2img_tab import build_txt2img_tab, params_from_values

INFOTEXT = ("a castle on a hill\nNegative prompt: blurry, lowres\n"
            "Steps: 31, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6.5, Seed: 1234567890, Size: 640x768, "
            "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Variation seed: 42, Variation seed strength: 0.3, "
            "Seed resize from: 512x512, Batch size: 2, Version: v1.10.1")


def _opened(fmt: str, text: str | None, **kw) -> Image.Image:
    return Image.open(io.BytesIO(encode_image(Image.new("RGB", (8, 8)), fmt, text, **kw)))


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_read_image_info_from_pil_and_path(fmt, tmp_path, monkeypatch):
    panel, geninfo = tab.read_image_info(_opened(fmt, INFOTEXT))
    assert geninfo == INFOTEXT
    assert "<b>parameters</b>" in panel and "a castle on a hill<br>Negative prompt: blurry, lowres" in panel

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))  # this server's upload cache
    upload = tmp_path / "uploads" / "0123abcd" / f"x.{fmt}"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(encode_image(Image.new("RGB", (8, 8)), fmt, INFOTEXT))
    assert tab.read_image_info(str(upload))[1] == INFOTEXT
    # The page can name any path: one outside the upload cache is not opened (same answer as no image).
    outside = tmp_path / f"x.{fmt}"
    outside.write_bytes(upload.read_bytes())
    assert tab.read_image_info(str(outside)) == ("", None)
    assert tab.read_image_info(str(tmp_path / "uploads" / ".." / f"x.{fmt}")) == ("", None)


def test_panel_escapes_html_and_lists_other_items():
    evil = "<img src=x onerror=alert(1)>\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512"
    img = _opened("png", evil, extra_text={"<script>": "a & b <b>"})
    panel, geninfo = tab.read_image_info(img)
    assert geninfo == evil
    assert "<img" not in panel and "<script>" not in panel
    assert "&lt;img src=x onerror=alert(1)&gt;" in panel
    assert "<b>&lt;script&gt;</b>" in panel and "a &amp; b &lt;b&gt;" in panel


def test_panel_for_nothing_and_for_no_image(tmp_path, monkeypatch):
    panel, geninfo = tab.read_image_info(_opened("png", None))
    assert geninfo is None and "Nothing found in the image." in panel
    assert tab.read_image_info(None) == ("", None)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    panel, geninfo = tab.read_image_info(str(bad))
    assert geninfo is None and "Cannot read the image" in panel


def test_values_from_full_infotext():
    values = tab.txt2img_values_from_infotext(INFOTEXT)
    assert values == {
        "prompt": "a castle on a hill", "negative_prompt": "blurry, lowres", "sampler_name": "Euler a",
        "scheduler": "Automatic", "steps": 31, "cfg_scale": 6.5, "seed": 1234567890, "width": 640, "height": 768,
        "batch_size": 2, "subseed": 42, "subseed_strength": 0.3, "seed_resize_from_w": 512,
        "seed_resize_from_h": 512, "show_extra": True, "enable_hr": False,  # A1111 unticks hires on paste
        "refiner_enabled": False,
    }
    # The values make a valid generation request.
    params = params_from_values({**values, "styles": [], "n_iter": 1})
    assert params.subseed == 42 and params.width == 640 and params.cfg_scale == 6.5


def test_values_minimal_infotext_leaves_other_fields_alone():
    values = tab.txt2img_values_from_infotext(
        "a cat\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 5, Size: 512x512")
    assert values["negative_prompt"] == "" and values["cfg_scale"] == 7 and isinstance(values["cfg_scale"], int)
    # Karras is DPM++ 2M's own schedule: A1111 pastes it as Automatic.
    assert values["sampler_name"] == "DPM++ 2M" and values["scheduler"] == "Automatic"
    assert values["show_extra"] is False
    for absent in ("subseed", "subseed_strength", "seed_resize_from_w", "batch_size", "styles"):
        assert absent not in values
    assert tab.txt2img_values_from_infotext("") == {} and tab.txt2img_values_from_infotext(None) == {}


def test_sampler_fallbacks():
    legacy = tab.txt2img_values_from_infotext("x\nSteps: 20, Sampler: Euler a Exponential, CFG scale: 7, Seed: 1")
    assert (legacy["sampler_name"], legacy["scheduler"]) == ("Euler a", "Exponential")
    unknown = tab.txt2img_values_from_infotext("x\nSteps: 20, Sampler: Totally New, CFG scale: 7, Seed: 1")
    from modules import samplers
    assert unknown["sampler_name"] == samplers.resolve_sampler_lenient("Totally New", None)[0].name
    assert unknown["scheduler"] == "Automatic"


def test_prompt_only_text():
    from modules import samplers

    values = tab.txt2img_values_from_infotext("just a prompt, with a comma")
    # As A1111: no Sampler key -> the default sampler, schedule Automatic.
    assert values == {"prompt": "just a prompt, with a comma", "negative_prompt": "", "show_extra": False,
                      "sampler_name": samplers.DEFAULT_SAMPLER, "scheduler": "Automatic", "enable_hr": False,
                      "refiner_enabled": False}


def test_hires_and_inpaint_values_are_pasted():
    text = ("a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, Denoising strength: 0.55, "
            "Hires upscale: 1.5, Hires steps: 12, Hires upscaler: Latent (bicubic)")
    values = tab.txt2img_values_from_infotext(text)
    assert values["enable_hr"] is True and values["hr_scale"] == 1.5 and values["hr_second_pass_steps"] == 12
    assert values["hr_upscaler"] == "Latent (bicubic)" and values["denoising_strength"] == 0.55
    assert values["hr_sampler_name"] == "Use same sampler"
    inpaint = tab.txt2img_values_from_infotext(
        "x\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, Denoising strength: 0.75, "
        "Mask blur: 8, Masked content: latent noise, Inpaint area: Only masked, Masked area padding: 16")
    assert inpaint["enable_hr"] is False and inpaint["mask_blur"] == 8
    assert (inpaint["inpainting_fill"], inpaint["inpaint_full_res"], inpaint["inpaint_full_res_padding"],
            inpaint["inpainting_mask_invert"]) == ("latent noise", "Only masked", 16, "Inpaint masked")


def test_styles_only_when_they_exist(tmp_path):
    csv = tmp_path / "styles.csv"
    csv.write_text("name,prompt,negative_prompt\nShiny,\"{prompt}, shiny\",ugly\nUnused,zzz,\n", encoding="utf-8")
    db = StyleDatabase([csv])
    text = "a cat, shiny\nNegative prompt: blurry, ugly\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1"
    values = tab.txt2img_values_from_infotext(text, db)
    assert values["styles"] == ["Shiny"]
    assert values["prompt"] == "a cat" and values["negative_prompt"] == "blurry"
    plain = tab.txt2img_values_from_infotext("a dog\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1", db)
    assert "styles" not in plain and plain["prompt"] == "a dog"


def _fake_rt(tmp_path):
    csv = tmp_path / "styles.csv"
    csv.write_text("name,prompt,negative_prompt\n", encoding="utf-8")
    return SimpleNamespace(options={}, styles=StyleDatabase([csv]), manager=SimpleNamespace(model=None),
                           registry=SimpleNamespace(list=lambda: []), args=SimpleNamespace())  # no checkpoints


def test_tab_builds_and_send_switches_to_txt2img(tmp_path):
    rt = _fake_rt(tmp_path)
    with gr.Blocks() as demo, gr.Tabs(elem_id="tabs") as tabs:
        with gr.Tab("txt2img", id="txt2img"):
            txt2img = build_txt2img_tab(rt)
        with gr.Tab("PNG Info", id="pnginfo"):
            controls = tab.build_pnginfo_tab(rt, txt2img, tabs)
    assert controls.image.elem_id == "pnginfo_image" and controls.html.elem_id == "pnginfo_html"
    assert controls.send_to_txt2img.elem_id == "pnginfo_send_to_txt2img"
    assert controls.image.sources == ["upload", "clipboard"]

    fns = list(demo.fns.values())
    send = next(f for f in fns if tabs in f.outputs)
    assert send.outputs[:-1] == list(txt2img.fields.values())
    names = list(txt2img.fields)
    updates = send.fn(INFOTEXT)
    assert len(updates) == len(names) + 1
    by_name = dict(zip(names, updates))
    assert by_name["prompt"]["value"] == "a castle on a hill"
    assert by_name["width"]["value"] == 640 and by_name["show_extra"]["value"] is True
    assert by_name["n_iter"] == gr.update() and by_name["styles"] == gr.update()
    assert updates[-1].selected == "txt2img"
    # Nothing to send: nothing changes, no tab switch.
    assert all(u == gr.update() for u in send.fn(None))

    show = next(f for f in fns if controls.image in f.inputs)
    assert show.outputs == [controls.html, controls.generation_info]


def test_slider_widens_for_large_values(tmp_path):
    with gr.Blocks():
        width = gr.Slider(64, 2048, value=512, step=8)
        steps = gr.Slider(1, 150, value=20, step=1)
    updates = tab.send_to_txt2img_updates("x\nSteps: 200, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 4096x512",
                                          {"width": width, "steps": steps})
    assert updates[0] == gr.update(value=4096, maximum=4096)
    assert updates[1] == gr.update(value=200, maximum=200)


def test_browser_roundtrip_note():
    """A browser test (upload -> panel -> Send -> txt2img filled) needs app.py wiring; see the module docstring."""
    assert "build_pnginfo_tab(rt, txt2img, tabs)" in tab.__doc__
