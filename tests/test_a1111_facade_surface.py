"""The A1111 modules community extensions import (issue 17 section 2): infotext_utils / generation_parameters_copypaste,
ui_components, sd_models, extra_networks, sd_hijack, ui_common, call_queue, progress, shared_items, safe, img2img,
extras, api.models, and the shared / processing names. Checked against independent oracles (hashlib on the files,
the tokenizer called directly, hand-made pixels, hand-written infotexts) and through an extension, written here the
way adetailer is, loaded by the real app: it imports everything at load time and inpaints each image of a job from
its postprocess_image hook."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path

import pytest
from PIL import Image, ImageChops

FACADE_MODULES = ["modules.infotext_utils", "modules.generation_parameters_copypaste", "modules.sd_models",
                  "modules.extra_networks", "modules.sd_hijack", "modules.ui_common", "modules.call_queue",
                  "modules.progress", "modules.shared_items", "modules.safe", "modules.img2img", "modules.extras",
                  "modules.api.models", "modules.shared"]

EXTENSION = '''
# An extension written against A1111's modules, the way adetailer uses them.
import copy

import gradio as gr
from PIL import Image

import modules
from modules import (call_queue, extra_networks, extras, generation_parameters_copypaste, img2img, infotext_utils,
                     progress, safe, scripts, sd_hijack, sd_models, shared, shared_items, ui_common, ui_components)
from modules.api import models as api_models
from modules.devices import NansException
from modules.processing import (Processed, StableDiffusionProcessingImg2Img, apply_overlay, create_binary_mask,
                                create_infotext, process_images, process_images_inner)
from modules.shared import cmd_opts, opts, state
from modules.ui_components import InputAccordion, ToolButton

SEEN = {"lora_dir": cmd_opts.lora_dir, "same_module": generation_parameters_copypaste is infotext_utils,
        "request_model": api_models.StableDiffusionTxt2ImgProcessingAPI.__name__}


class FacadeNet(extra_networks.ExtraNetwork):
    def __init__(self):
        super().__init__("facadenet")

    def activate(self, p, params_list):
        SEEN.setdefault("activated", []).append([x.items for x in params_list])

    def deactivate(self, p):
        SEEN["deactivated"] = SEEN.get("deactivated", 0) + 1


extra_networks.register_extra_network(FacadeNet())


class FacadeDetailer(scripts.Script):
    def title(self):
        return "Facade detailer"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        SEEN["tiles"] = modules.sd_models.checkpoint_tiles(use_short=True)  # as adetailer reads them
        SEEN["vae_items"] = modules.shared_items.sd_vae_items()
        with InputAccordion(False, label="Facade detailer") as enabled:
            with enabled.extra():
                ToolButton("R", tooltip="refresh")
            strength = gr.Slider(0.0, 1.0, value=0.6, label="Facade denoising")
        return [enabled, strength]

    def process(self, p, enabled, strength):
        if enabled:
            p.extra_generation_params["Facade"] = "on"

    def postprocess_image(self, p, pp, enabled, strength):
        if not enabled or getattr(p, "_facade_inner", False):
            return
        SEEN["enabled"] = enabled
        SEEN["infotext"] = create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, None, 0, 0)
        SEEN["dummy"] = len(Processed(p, [], p.seed, "").images)
        SEEN["state"] = (state.job_count, state.sampling_steps, state.interrupted, state.skipped)
        state.job_count += 1
        SEEN["job_count_after"] = state.job_count
        state.textinfo = "facade detailing"
        state.assign_current_image(pp.image)
        mask = Image.new("L", pp.image.size, 0)
        mask.paste(255, (24, 24, 40, 40))
        i2i = StableDiffusionProcessingImg2Img(
            init_images=[pp.image], resize_mode=0, denoising_strength=strength, mask=None, mask_blur=4,
            inpainting_fill=1, inpaint_full_res=True, inpaint_full_res_padding=32, inpainting_mask_invert=0,
            initial_noise_multiplier=None, sd_model=p.sd_model, outpath_samples=p.outpath_samples,
            outpath_grids=p.outpath_grids, prompt="", negative_prompt="", styles=p.styles, seed=p.all_seeds[0],
            subseed=p.all_subseeds[0], subseed_strength=p.subseed_strength, seed_resize_from_h=p.seed_resize_from_h,
            seed_resize_from_w=p.seed_resize_from_w, sampler_name=p.sampler_name, batch_size=1, n_iter=1,
            steps=p.steps, cfg_scale=p.cfg_scale, width=p.width, height=p.height, restore_faces=False,
            tiling=p.tiling, extra_generation_params=dict(p.extra_generation_params), do_not_save_samples=True,
            do_not_save_grid=True, override_settings={}, scheduler=getattr(p, "scheduler", "Automatic"))
        i2i.cached_c = [None, None]
        i2i.cached_uc = [None, None]
        i2i.scripts, i2i.script_args = copy.copy(p.scripts), p.script_args
        i2i._facade_inner = True
        SEEN["mask_after_init"] = (i2i.mask, i2i.image_mask)
        p2 = copy.copy(i2i)
        p2.image_mask = create_binary_mask(mask)
        p2.init_images[0] = p2.init_images[0].convert("RGB")
        p2.prompt = "a detail"
        try:
            processed = process_images(p2)
        except NansException:
            return
        finally:
            p2.close()
        SEEN["inner"] = (len(processed.images), processed.all_prompts, processed.all_negative_prompts,
                         processed.sd_model_name, processed.denoising_strength)
        SEEN["inner_infotext"] = (processed.infotext(p2, 0), processed.infotexts[processed.index_of_first_image])
        SEEN["before"] = pp.image.copy()
        pp.image = processed.images[0]
'''


def _tiny_embedding(path: Path, width: int, count: int = 2) -> None:
    import torch
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"emb_params": torch.randn(count, width, generator=torch.Generator().manual_seed(width))}, str(path))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The real app (API only) over two tiny checkpoints, two embeddings (one of the tiny model's width 32, one of
    SD1's 768) and the facade extension."""
    from tests.support.api_client import api_client
    from tests.support.tiny_checkpoints import write_tiny_checkpoint

    from modules import extra_networks, script_callbacks

    root = tmp_path_factory.mktemp("facade")
    write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion", "tiny")
    write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion", "tiny2", seed=1)
    _tiny_embedding(root / "embeddings" / "fits.safetensors", 32)
    _tiny_embedding(root / "embeddings" / "wide.safetensors", 768)
    scripts_dir = root / "extensions" / "facade-ext" / "scripts"
    scripts_dir.mkdir(parents=True)
    (scripts_dir / "facade.py").write_text(textwrap.dedent(EXTENSION), encoding="utf-8")
    script_callbacks.clear()
    with api_client(root) as client:
        rt = client.app.state.runtime
        rt.jobs.run("wait for the first load", lambda job: None, timeout=120)
        yield types.SimpleNamespace(client=client, rt=rt, root=root)
    extra_networks.initialize()
    script_callbacks.clear()


def _extension():
    return next(m for n, m in sys.modules.items() if n.endswith("facade_ext_facade"))


def test_importing_the_facade_modules_imports_neither_torch_nor_gradio():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in FACADE_MODULES) +
            "import modules.generation_parameters_copypaste as old, modules.infotext_utils as new\n"
            "import modules.processing as p\n"
            "p.create_infotext, p.create_binary_mask, p.process_images_inner, p.apply_overlay\n"
            "print('torch' in sys.modules, 'gradio' in sys.modules, old is new)\n"
            "import modules.ui_components\n"
            "print('gradio' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True", "True"]


def test_parse_generation_parameters_on_a_hand_written_infotext(app):
    from modules import infotext_utils
    from modules.styles import PromptStyle

    text = ('a photo of a cat, (masterpiece:1.2), sharp\n'
            'Negative prompt: blurry, lowres\n'
            'Steps: 25, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234, Size: 640x512, Model hash: abc123, '
            'Lora hashes: "detail: 0123456789ab, other: ba9876543210", Version: v1.10.1')
    res = infotext_utils.parse_generation_parameters(text)
    assert res["Prompt"] == "a photo of a cat, (masterpiece:1.2), sharp"
    assert res["Negative prompt"] == "blurry, lowres"
    assert (res["Steps"], res["CFG scale"], res["Seed"]) == ("25", "6.5", "1234")
    assert (res["Sampler"], res["Schedule type"]) == ("DPM++ 2M", "Karras")  # the legacy name is split
    assert (res["Size-1"], res["Size-2"]) == ("640", "512")
    assert res["Lora hashes"] == "detail: 0123456789ab, other: ba9876543210"  # the quoted value, unquoted
    assert res["Clip skip"] == "1" and res["Masked area padding"] == 32  # A1111's defaults, with its types
    assert res["Emphasis"] == "Original"  # the prompt has a weight
    assert "Styles array" not in res
    assert "Seed" not in infotext_utils.parse_generation_parameters(text, skip_fields=["Seed"])
    assert infotext_utils.unquote(infotext_utils.quote('a, "b": c')) == 'a, "b": c'
    assert infotext_utils.parse_generation_parameters("just a prompt")["Prompt"] == "just a prompt"
    # a style found in the prompts is taken out and listed ("Apply if any")
    styles = app.rt.styles
    styles.styles["Sharp"] = PromptStyle("Sharp", "{prompt}, sharp", "", None)
    try:
        res = infotext_utils.parse_generation_parameters("a dog, sharp\nSteps: 5, Seed: 1, Size: 64x64")
    finally:
        del styles.styles["Sharp"]
    assert res["Styles array"] == ["Sharp"] and res["Prompt"] == "a dog"


def test_paste_registry_casts_values_and_reads_images(app, tmp_path):
    from modules import infotext_utils, script_callbacks

    field = types.SimpleNamespace
    fields = [(field(value=20), "Steps"), (field(value=7.0), "CFG scale"), (field(value=False), "Tiling"),
              (field(value=""), "Prompt"), (field(value=0), lambda d: int(d["Size-1"]) * 2), (field(value=0), "Nope")]
    pasted = []
    script_callbacks.on_infotext_pasted(lambda text, params: pasted.append(params["Steps"]))
    try:
        values = infotext_utils.paste_values("cat\nSteps: 12, CFG scale: 4.5, Tiling: False, Size: 64x32", fields)
        assert infotext_utils.infotext_pasted_callbacks
    finally:
        script_callbacks.clear()
    assert values == [12, 4.5, False, "cat", 128, None] and pasted == ["12"]
    binding = infotext_utils.ParamBinding(paste_button=object(), tabname="txt2img", source_tabname="img2img")
    infotext_utils.register_paste_params_button(binding)
    try:
        assert infotext_utils.registered_param_bindings[-1] is binding
    finally:
        infotext_utils.registered_param_bindings.remove(binding)
    # a base64 PNG comes back as the same pixels; a file outside the allowed folders is refused
    image = Image.new("RGB", (3, 2), (10, 20, 30))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    decoded = infotext_utils.image_from_url_text(data_url)
    assert decoded.size == (3, 2) and decoded.convert("RGB").getpixel((1, 1)) == (10, 20, 30)
    outside = tmp_path / "outside.png"
    image.save(outside)
    with pytest.raises(ValueError, match="outside of the allowed"):
        infotext_utils.image_from_url_text(str(outside))
    inside = app.root / "outputs" / "pasted.png"
    image.save(inside)
    assert infotext_utils.image_from_url_text({"path": str(inside)}).size == (3, 2)


def test_ui_components_in_a_blocks(app):
    import gradio as gr

    from modules import ui_common, ui_components

    with gr.Blocks() as demo:
        button = ui_components.ToolButton("R", elem_id="facade_tool", tooltip="ignored")
        multi = ui_components.DropdownMulti(choices=["a", "b"], value=["a"], label="multi")
        editable = ui_components.DropdownEditable(choices=["a"], value="typed", label="editable")
        with ui_components.FormRow():
            html = ui_components.FormHTML("hi")
        with ui_components.InputAccordion(True, label="Feature", elem_id="facade_acc") as acc:
            with acc.extra():
                extra_html = ui_components.FormHTML("extra")
            inside = gr.Slider(1, 5, value=2)
        dropdown = gr.Dropdown(choices=["x"], label="Things")
        refresh = ui_common.create_refresh_button(dropdown, lambda: None, lambda: {"choices": ["x", "y"]},
                                                  "facade_refresh")
    config = demo.get_config_file()
    by_id = {c["id"]: c for c in config["components"]}
    assert by_id[button._id]["type"] == "button" and "tool" in button.elem_classes
    assert multi.multiselect is True and editable.allow_custom_value is True and by_id[html._id]["type"] == "html"
    assert isinstance(acc, gr.Checkbox) and acc.value is True and acc.accordion.open is True
    assert by_id[acc._id]["type"] == "checkbox" and acc.elem_id == "facade_acc-checkbox"
    assert by_id[acc.accordion._id]["type"] == "accordion" and acc.accordion.elem_id == "facade_acc"

    def children(node, target):  # the layout tree: is ``target`` somewhere under ``node``?
        return node["id"] == target or any(children(c, target) for c in node.get("children", []))

    def find(node, target):
        if node["id"] == target:
            return node
        return next((f for c in node.get("children", []) if (f := find(c, target))), None)

    accordion_node = find(config["layout"], acc.accordion._id)
    assert children(accordion_node, inside._id) and children(accordion_node, extra_html._id)
    # setting the value opens/closes the accordion (paste, defaults): the change handler's update
    handler = next(fn for fn in demo.fns.values() if fn.fn is not None and any(o._id == acc.accordion._id
                                                                                 for o in fn.outputs))
    assert handler.fn(False).open is False and handler.fn(True).open is True
    refresh_fn = next(fn for fn in demo.fns.values() if any(o._id == dropdown._id for o in fn.outputs))
    assert refresh_fn.fn()["choices"] == ["x", "y"] and refresh.value == ui_common.refresh_symbol
    assert not Path(ui_components.__file__).with_suffix(".pyi").exists()  # gradio's stub writer was skipped
    assert ui_common.plaintext_to_html("a<b\nc") == "<p>a&lt;b<br>\nc</p>"
    info = json.dumps({"infotexts": ["first", "second"]})
    assert ui_common.update_generation_info(info, "old", 1)[0] == "<p>second</p>"
    assert ui_common.update_generation_info("not json", "old", 0)[0] == "old"


def test_checkpoints_hashes_and_switching_the_model(app):
    from modules import sd_models, shared, shared_items

    rt = app.rt
    folder = app.root / "models" / "Stable-diffusion"
    tiny, tiny2 = folder / "tiny.safetensors", folder / "tiny2.safetensors"
    assert rt.manager.info.path == tiny2  # the first in A1111's (natural) order loaded at start
    info = sd_models.get_closet_checkpoint_match("tiny.safetensors")
    assert info.filename == str(tiny) and info.name == "tiny.safetensors" and info.model_name == "tiny"
    assert info.sha256 is None and info.title == "tiny.safetensors"  # not hashed yet: never loaded
    data = tiny.read_bytes()
    assert info.calculate_shorthash() == hashlib.sha256(data).hexdigest()[:10]  # oracle: hashlib on the file
    assert info.sha256 == hashlib.sha256(data).hexdigest() and info.title == f"tiny.safetensors [{info.shorthash}]"
    assert info.hash == sd_models.model_hash(tiny) == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    assert info.title in sd_models.checkpoints_list and sd_models.checkpoints_list[info.title] == info
    assert sd_models.checkpoint_aliases[info.sha256] == info and info.sha256 in info.ids
    assert len(sd_models.checkpoints_list) == 2 and sd_models.model_path == str(folder)
    assert shared_items.list_checkpoint_tiles() == sd_models.checkpoint_tiles() == list(sd_models.checkpoints_list)
    assert sd_models.checkpoint_tiles(use_short=True)[1] == f"tiny [{info.shorthash}]"
    assert sd_models.get_closet_checkpoint_match("no such model") is None
    assert sd_models.select_checkpoint().filename == str(tiny2)  # the configured (loaded) one
    assert shared.sd_model is rt.manager.model and shared.sd_model.sd_checkpoint_info.filename == str(tiny2)
    with pytest.raises(AttributeError, match="ldm model loading"):
        sd_models.load_model  # noqa: B018

    first = rt.manager.model
    model = sd_models.reload_model_weights(info=info)
    try:
        assert model is rt.manager.model and model is not first and rt.manager.info.path == tiny
        assert sd_models.model_data.get_sd_model() is model and model.sd_model_hash == info.shorthash
        assert model.is_sd1 is True and model.is_sdxl is False
    finally:
        back = sd_models.reload_model_weights(info=sd_models.get_closet_checkpoint_match("tiny2"))
    assert rt.manager.info.path == tiny2 and back is rt.manager.model
    sd_models.unload_model_weights()
    assert rt.manager.model is None and sd_models.model_data.sd_model is None and shared.sd_model is None
    sd_models.reload_model_weights()  # select_checkpoint(): the configured one comes back
    assert rt.manager.info.path == tiny2


def test_token_counter_and_embeddings(app):
    from modules import sd_hijack

    tokenizer = app.rt.manager.model.tokenizer

    def ids(text):  # the oracle: the tokenizer itself, without special tokens
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    hijack = sd_hijack.model_hijack
    assert len(ids("a cat")) == 2 and hijack.get_prompt_lengths("a cat") == (2, 75)
    assert hijack.get_prompt_lengths("(a cat:1.3)") == (2, 75)  # emphasis brackets are not tokens
    long = "cat " * 80
    assert len(ids(long)) == 80 and hijack.get_prompt_lengths(long, object()) == (80, 150)
    db = hijack.embedding_db
    loaded, skipped = db.word_embeddings, db.skipped_embeddings
    assert list(loaded) == ["fits"] and "wide" in skipped
    fits = loaded["fits"]
    assert (fits.shape, fits.vectors) == (32, 2) and fits.filename.endswith("fits.safetensors")
    assert tuple(fits.vec.shape) == (2, 32) and skipped["wide"].shape == 768
    hijack.comments.append("note")
    hijack.clear_comments()
    assert hijack.comments == [] and hijack.optimization_method is None
    with pytest.raises(AttributeError, match="ldm internals"):
        sd_hijack.EmbeddingsWithFixes  # noqa: B018


def test_create_binary_mask_and_apply_overlay_on_hand_made_pixels():
    from modules.processing import apply_overlay, create_binary_mask

    rgba = Image.new("RGBA", (4, 1))
    for x, alpha in enumerate((0, 100, 129, 255)):
        rgba.putpixel((x, 0), (255, 255, 255, alpha))
    assert list(create_binary_mask(rgba).getdata()) == [0, 0, 255, 255]  # alpha thresholded at 128
    assert list(create_binary_mask(rgba, round=False).getdata()) == [0, 100, 129, 255]
    opaque = Image.new("RGBA", (2, 1), (100, 100, 100, 255))  # no transparency: its luminance, as it is
    assert create_binary_mask(opaque).mode == "L" and list(create_binary_mask(opaque).getdata()) == [100, 100]
    grey = Image.new("L", (1, 1), 200)
    assert list(create_binary_mask(grey).getdata()) == [200]  # A1111 leaves non-RGBA masks unthresholded

    original = Image.new("RGBA", (8, 8), (0, 0, 255, 255))  # blue, opaque outside the masked square
    for x in range(2, 6):
        for y in range(2, 6):
            original.putpixel((x, y), (0, 0, 0, 0))
    generated = Image.new("RGB", (4, 4), (255, 0, 0))
    result, before = apply_overlay(generated, (2, 2, 4, 4), original)
    assert result.mode == "RGB" and result.getpixel((0, 0)) == (0, 0, 255) and result.getpixel((3, 3)) == (255, 0, 0)
    assert before.getpixel((3, 3))[:3] == (255, 0, 0) and before.getpixel((0, 0))[3] == 0
    same, copy_of = apply_overlay(generated, None, None)
    assert same is generated and copy_of is not generated


def test_img2img_p_keeps_its_mask_as_image_mask():
    from modules.processing import StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img
    from modules.processing.params import Img2ImgParams

    image, mask = Image.new("RGB", (64, 64)), Image.new("L", (64, 64), 255)
    p = StableDiffusionProcessingImg2Img.from_params(Img2ImgParams(init_images=[image], mask=mask, width=64,
                                                                   height=64))
    assert p.image_mask is mask and p.mask is None  # A1111's __post_init__
    assert p.to_params().mask is mask and p.mask is None
    p.image_mask = None
    assert p.to_params().mask is None
    q = StableDiffusionProcessingImg2Img(init_images=[image], mask_blur=3, inpaint_full_res=True, cached_c=[1, 2])
    assert q.to_params().mask_blur == 3 and q.cached_c == [1, 2] and q.get_token_merging_ratio() == 0.0
    t = StableDiffusionProcessingTxt2Img(prompt=["a", "b"], n_iter=2)
    t.setup_prompts()
    assert t.all_prompts == ["a", "b"] and t.main_prompt == "a" and t.all_negative_prompts == ["", ""]


def test_shared_state_cmd_opts_and_styles(app):
    from modules import shared

    rt = app.rt
    root = app.root
    assert shared.cmd_opts.lora_dir == str(root / "models" / "Lora") and rt.args.lora_dir is None
    assert shared.cmd_opts.embeddings_dir == str(root / "embeddings")
    assert shared.cmd_opts.ckpt_dir == str(root / "models" / "Stable-diffusion")
    assert shared.cmd_opts.hypernetwork_dir == str(root / "models" / "hypernetworks")
    assert shared.cmd_opts.gfpgan_models_path == str(root / "models" / "GFPGAN")
    assert shared.cmd_opts.data_dir == str(root) and shared.cmd_opts.models_dir == str(root / "models")
    assert shared.cmd_opts.disable_safe_unpickle is False  # adetailer patches it
    # /file= serves the extensions folder: prompt-all-in-one looks for its folder in --gradio-allowed-path
    assert shared.cmd_opts.gradio_allowed_path == [str(rt.paths.extensions_dir)]
    assert rt.args.gradio_allowed_path in (None, [])
    assert shared.prompt_styles is rt.styles and shared.demo is None and shared.hypernetworks == {}
    assert shared.prompt_styles.apply_styles_to_prompt("cat", []) == "cat"
    assert str(shared.device) == "cpu" and shared.list_checkpoint_tiles() == list(rt.registry.titles())
    shared.total_tqdm.updateTotal(3)
    shared.total_tqdm.update()
    shared.total_tqdm.clear()
    # idle: plain values, as A1111's State
    state = shared.state
    state.begin(job="facade")
    state.job_count = 3
    state.nextjob()
    assert (state.job, state.job_no, state.job_count, state.sampling_step) == ("facade", 1, 3, 0)
    assert state.dict()["job_count"] == 3 and set(state.dict()) >= {"skipped", "interrupted", "job_timestamp"}
    state.end()
    assert (state.job, state.job_count) == ("", 0) and state.server_start <= time.time()
    state.server_command = "stop"
    assert state.wait_for_server_command(0.1) == "stop" and state.server_command is None
    # during a job: the job's progress; interrupt() interrupts it
    seen = {}
    started = threading.Event()

    def work(job):
        job.progress.begin(job_count=4, steps=9)
        state.textinfo = "working"
        seen["values"] = (state.job_count, state.sampling_steps, state.job, state.textinfo)
        state.job_count += 2
        seen["after"] = state.job_count
        started.set()  # the values are read; now the test interrupts
        deadline = time.monotonic() + 60
        while not state.interrupted and time.monotonic() < deadline:
            time.sleep(0.01)
        seen["interrupted"] = state.interrupted

    job = rt.jobs.submit("facade-work", work)
    assert started.wait(30)
    state.interrupt()
    job.wait(30)
    assert seen == {"values": (4, 9, "facade-work", "working"), "after": 6, "interrupted": True}


def test_call_queue_serialises_with_the_job_queue(app):
    from modules import call_queue, progress

    rt = app.rt
    with call_queue.queue_lock:
        probe = rt.jobs.submit("probe", lambda job: "ran")
        holder = rt.jobs.current  # the lock is held: its job is running on the worker, the probe waits behind it
        assert holder is not None and holder.description == "extension (queue_lock)" and holder.status == "running"
        assert rt.jobs.position(probe) == 1 and probe.status == "queued"
    assert probe.wait(30) == "ran"

    gpu = call_queue.wrap_gradio_gpu_call(lambda task, x: (threading.current_thread().name, x * 2),
                                          extra_outputs=[None])
    task = progress.create_task_id("facade")
    assert task.startswith("task(facade-") and task.endswith(")")
    assert gpu(task, 3)[0] == "job-worker"  # ran on the job worker
    assert task in progress.finished_tasks and progress.restore_progress(task)[1] == 6
    assert progress.progressapi(progress.ProgressRequest(id_task=task)).completed is True
    assert progress.progressapi(progress.ProgressRequest(id_task=probe.id)).completed is True

    def boom(x):
        raise ValueError("broken <input>")

    failed = call_queue.wrap_gradio_gpu_call(boom, extra_outputs=[None])("x")
    assert failed[0] is None and failed[1] == "<div class='error'>ValueError: broken &lt;input&gt;</div>"
    assert call_queue.wrap_queued_call(lambda: 5)() == 5


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_safe_load_never_runs_pickled_code(tmp_path):
    import torch

    from modules import safe
    from modules.models.types import UnsafeFileError

    good = tmp_path / "embedding.pt"
    torch.save({"string_to_param": {"*": torch.ones(2, 3)}, "name": "x", "step": 5}, good)
    loaded = safe.load(good, map_location="cpu")
    assert loaded["name"] == "x" and loaded["step"] == 5 and torch.equal(loaded["string_to_param"]["*"],
                                                                          torch.ones(2, 3))
    marker = tmp_path / "PWNED"
    evil = tmp_path / "detector.pt"
    torch.save({"model": Evil(marker)}, evil)
    for load in (safe.load, safe.unsafe_torch_load, lambda f: safe.load_with_extra(f, lambda *a: True)):
        with pytest.raises(UnsafeFileError, match="posix.system"):
            load(evil)
    with open(evil, "rb") as f, pytest.raises(Exception):
        safe.unsafe_torch_load(f)
    assert not marker.exists()


def test_pnginfo_api_models_and_extra_networks(app):
    from PIL import PngImagePlugin

    from modules import extra_networks, extras, shared_items
    from modules.api import models, schemas

    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", "a <cat>\nSteps: 3, Seed: 1, Size: 64x64")
    meta.add_text("note", "hello")
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG", pnginfo=meta)
    buffer.seek(0)
    with Image.open(buffer) as image:
        empty, geninfo, html_info = extras.run_pnginfo(image)
    assert empty == "" and geninfo == "a <cat>\nSteps: 3, Seed: 1, Size: 64x64"
    assert "a &lt;cat&gt;" in html_info and "<b>note</b>" in html_info and "hello" in html_info
    with pytest.raises(NotImplementedError, match="merger"):
        extras.run_modelmerger()

    request = models.StableDiffusionTxt2ImgProcessingAPI(prompt="x")
    assert isinstance(request, schemas.Txt2ImgRequest) and request.steps == 50  # A1111's API default
    assert models.TextToImageResponse is models.ImageToImageResponse is schemas.ImagesResponse
    assert models.PNGInfoRequest(image="abc").image == "abc"
    assert models.EmbeddingItem(shape=32, vectors=2).vectors == 2
    assert shared_items.sd_vae_items()[:2] == ["Automatic", "None"]
    assert "scripts" in list(shared_items.ui_reorder_categories())

    # the extension's network is registered; batch_networks calls it around a batch (activate, deactivate)
    assert "facadenet" in extra_networks.extra_network_registry
    ext = _extension()
    ext.SEEN.pop("activated", None)
    ext.SEEN.pop("deactivated", None)
    prompt, networks = extra_networks.parse_prompt("a cat <facadenet:one:0.5> <lora:x:1>")
    assert prompt == "a cat  " and [p.items for p in networks["facadenet"]] == [["one", "0.5"]]
    job = types.SimpleNamespace(ctx=types.SimpleNamespace(job_hooks=types.SimpleNamespace(
        p=types.SimpleNamespace(extra_generation_params={"Net": "1"}, scripts=None))), extra={})
    with extra_networks.batch_networks(job, networks):
        assert ext.SEEN["activated"] == [[["one", "0.5"]]] and "deactivated" not in ext.SEEN
    assert ext.SEEN["deactivated"] == 1 and job.extra == {"Net": "1"}


def test_an_adetailer_style_extension_inpaints_each_image(app):
    from modules import infotext, infotext_utils

    rt = app.rt
    ext = _extension()
    assert rt.extensions[0].loaded_scripts == ["facade.py"] and rt.extensions[0].errors == []
    assert ext.SEEN["lora_dir"] == str(app.root / "models" / "Lora") and ext.SEEN["same_module"] is True
    body = {"prompt": "a cat", "negative_prompt": "dog", "width": 64, "height": 64, "steps": 2, "seed": 77,
            "sampler_name": "Euler", "alwayson_scripts": {"facade detailer": {"args": [True, 0.6]}}}
    r = app.client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text
    seen = ext.SEEN
    assert seen["tiles"][0].startswith("tiny2 [") and seen["vae_items"][:2] == ["Automatic", "None"]
    assert seen["enabled"] is True  # the InputAccordion's value
    assert seen["mask_after_init"] == (None, None) and seen["dummy"] == 0
    assert seen["state"] == (1, 2, False, False) and seen["job_count_after"] == 2
    # create_infotext(p, ...) as adetailer calls it: the request's values, the script's extra parameter
    parsed = infotext_utils.parse_generation_parameters(seen["infotext"])
    assert (parsed["Prompt"], parsed["Negative prompt"], parsed["Seed"], parsed["Steps"]) == ("a cat", "dog", "77", "2")
    assert (parsed["Size-1"], parsed["Sampler"], parsed["Facade"]) == ("64", "Euler", "on")
    # the nested img2img ran on the masked square only, in the same job
    count, prompts, negatives, model_name, strength = seen["inner"]
    assert (count, prompts, negatives, model_name, strength) == (1, ["a detail"], [""], "tiny2", 0.6)
    by_index, listed = seen["inner_infotext"]  # processed.infotext(p, 0), as Ultimate SD upscale reads it
    assert by_index == listed and by_index.startswith("a detail\n")
    result = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))).convert("RGB")
    before = seen["before"].convert("RGB")
    corner = (0, 0, 12, 12)
    assert ImageChops.difference(result.crop(corner), before.crop(corner)).getbbox() is None  # untouched
    assert ImageChops.difference(result.crop((24, 24, 40, 40)), before.crop((24, 24, 40, 40))).getbbox() is not None
    info = json.loads(r.json()["info"])
    assert infotext.parse_infotext(info["infotexts"][0])["Facade"] == "on"


def test_a_registered_extension_network_is_activated_around_each_batch_of_a_real_job(app):
    """A1111 calls an extension's ExtraNetwork.activate with the tags of the batch's first prompt and deactivate
    after it; the tag is not reported as unsupported (a real request through the generation job)."""
    import json

    ext = _extension()
    ext.SEEN.pop("activated", None)
    ext.SEEN.pop("deactivated", None)
    body = {"prompt": "a cat <facadenet:two:1.5>", "width": 64, "height": 64, "steps": 2, "n_iter": 2}
    r = app.client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text
    assert ext.SEEN["activated"] == [[["two", "1.5"]], [["two", "1.5"]]] and ext.SEEN["deactivated"] == 2
    comments = json.loads(r.json()["info"])["comments"]
    assert not any("facadenet" in c for c in comments), comments


def test_torch_utils_finds_the_parameter_through_a_wrapper():
    import pytest
    import torch

    from modules import torch_utils

    linear = torch.nn.Linear(2, 3)
    wrapper = types.SimpleNamespace(model=linear)  # spandrel's ModelDescriptor keeps the module as .model
    assert torch_utils.get_param(linear) is linear.weight and torch_utils.get_param(wrapper) is linear.weight
    with pytest.raises(ValueError, match="No parameters"):
        torch_utils.get_param(torch.nn.ReLU())
    assert torch_utils.float64(torch.zeros(1)) == torch.float64
