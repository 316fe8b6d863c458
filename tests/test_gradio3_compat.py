"""The gradio 3 idioms of A1111 extensions on gradio 6 (modules/ui/gradio3_compat.py), each on real gradio Blocks:
the page config gradio sends and events run through gradio's own pre/postprocessing (``demo(..., api_name=)``).
Also A1111's internals we do not have (modules/a1111_internals.py): the import error, the probes that must still
say "not installed", and the one line an extension gets on the Extensions tab."""

from __future__ import annotations

import importlib.util
import logging
import sys
import textwrap

import gradio as gr
import pytest

from modules.ui import gradio3_compat


@pytest.fixture(scope="module", autouse=True)
def installed():
    gradio3_compat.install()
    gradio3_compat.install()  # idempotent


def dependency_js(demo: gr.Blocks) -> list:
    return [d["js"] for d in demo.get_config_file()["dependencies"]]


def test_underscore_js_on_every_kind_of_listener():
    with gr.Blocks() as demo:
        box = gr.Textbox()
        button = gr.Button()
        button.click(lambda x: x, inputs=[box], outputs=[box], _js="(x) => x.trim()") \
            .then(None, _js="() => 'then'").success(None, _js="() => 'success'")
        box.change(None, _js="() => 'change'")
        box.submit(fn=None, inputs=None, outputs=None, _js="() => 'submit'")
        gr.on([box.blur], None, _js="() => 'on'")
        demo.load(None, _js="() => 'load'")
    assert dependency_js(demo) == ["(x) => x.trim()", "() => 'then'", "() => 'success'", "() => 'change'",
                                   "() => 'submit'", "() => 'on'", "() => 'load'"]
    assert getattr(type(button).click, "event_name", None) == "click"  # gradio still reads the listener's name


def test_listener_keywords_gradio_6_dropped(caplog):
    with caplog.at_level(logging.WARNING, logger="modules.ui.gradio3_compat"), gr.Blocks() as demo:
        box = gr.Textbox()
        box.change(lambda x: x, inputs=[box], outputs=[box], show_api=False, every=5, status_tracker=None,
                   show_progress=False, api_name="hidden_one")
    fn = next(f for f in demo.fns.values() if f.api_name == "hidden_one")
    assert fn.api_visibility == "undocumented" and fn.show_progress == "hidden"
    assert "every=5 is not taken by gradio 6" in caplog.text and "status_tracker" not in caplog.text


def test_style_maps_what_gradio_6_has(caplog):
    with caplog.at_level(logging.WARNING, logger="modules.ui.gradio3_compat"), gr.Blocks():
        wide = gr.Button("wide")
        narrow = gr.Button("narrow")
        assert wide.style(full_width=True) is wide and wide.scale == 1
        assert narrow.style(full_width=False, size="sm", rounded=(True, False)).scale == 0 and narrow.size == "sm"
        gallery = gr.Gallery().style(grid=[2, 4], height="auto", object_fit="contain")
        sized = gr.Gallery().style(columns=3, height=300, preview=True)
        text = gr.Textbox().style(container=False, show_copy_button=True, margin=False)
        with gr.Row().style(equal_height=True) as row:
            pass
    assert (gallery.columns, gallery.height, gallery.object_fit) == (4, None, "contain")
    assert (sized.columns, sized.height, sized.preview) == (3, 300, True)
    assert text.container is False and row.equal_height is True
    assert "show_copy_button=...) has no gradio 6 equivalent" in caplog.text  # said, not raised
    assert "rounded" not in caplog.text and "margin" not in caplog.text  # cosmetic: nothing to say


def test_box_variable_iocomponent_and_update():
    assert gr.Box is gr.Group and gr.Variable is gr.State
    with gr.Blocks() as demo:
        with gr.Box(elem_id="boxed", visible=False):
            inner = gr.Textbox(elem_id="inner")
        state = gr.Variable(5)
    types = {c["props"].get("elem_id"): c["type"] for c in demo.get_config_file()["components"]}
    assert types["boxed"] == "group" and types["inner"] == "textbox"
    assert isinstance(inner, gr.components.IOComponent) and state.value == 5
    assert gr.Textbox.update(value="x", visible=False) == gr.update(value="x", visible=False)
    assert gr.Column.update(visible=False) == {"__type__": "update", "visible": False}
    assert gr.Row.update(visible=True) == {"visible": True, "__type__": "update"}  # gradio 6's own stays


def test_index_dropdown_and_class_update_through_a_real_event():
    with gr.Blocks() as demo:
        choice = gr.Dropdown(["zero", "one", "two"], value="zero", type="index", elem_id="pick")
        radio = gr.Radio(["a", "b"], value="a", type="index")
        out = gr.Textbox()
        other = gr.Dropdown(["a"], value="a")
        choice.change(lambda i, r: (f"{i}{r}", gr.Dropdown.update(choices=["x", "y"], value="y", visible=True)),
                      inputs=[choice, radio], outputs=[out, other], api_name="pick")
    text, update = demo("two", "b", api_name="pick")
    assert text == "21"  # both gave their index
    assert update == {"choices": [["x", "x"], ["y", "y"]], "value": "y", "visible": True, "__type__": "update"}


def test_hidden_extension_components_stay_in_the_page():
    """gradio 3 rendered visible=False components hidden; extensions' page scripts look them up. Built as extension
    code, they are gradio 6's "hidden" (in the page), also when a handler hides them later; our own UI keeps
    gradio 6's visible=False (left out of the page)."""
    def hide(_):
        return gr.update(visible=False), gr.Textbox(visible=False, value="rebuilt")

    def hide_each(_):
        yield {"__type__": "update", "visible": False}
        yield gr.Button.update(visible=True)

    async def hide_later(_):
        return [gr.update(visible=False, value="a")]

    with gr.Blocks() as demo:
        ours = gr.Textbox(visible=False, elem_id="ours")
        with gradio3_compat.extension_ui():
            with gr.Group(visible=False) as group:
                theirs = gr.Button("x", visible=False)
            with gr.Tab("t"):
                in_tab = gr.Textbox(visible=False)
            shown = gr.Textbox(elem_id="shown")
            first = gr.Textbox()
            shown.change(hide, inputs=[shown], outputs=[first, shown], api_name="hide")
            gr.on([shown.submit], hide_each, inputs=[shown], outputs=[theirs], api_name="each")
            shown.blur(fn=hide_later, inputs=[shown], outputs=[first], api_name="later")
        plain = gr.Button()
        plain.click(lambda _: gr.update(visible=False), inputs=[ours], outputs=[ours], api_name="ours")
    assert (group.visible, theirs.visible, shown.visible, ours.visible) == ("hidden", "hidden", True, False)
    assert in_tab.visible == "hidden"
    update, rebuilt = demo("x", api_name="hide")
    assert update == {"__type__": "update", "visible": "hidden"}
    assert rebuilt["visible"] == "hidden" and rebuilt["value"] == "rebuilt"
    fns = {f.api_name: f.fn for f in demo.fns.values()}
    steps = fns["each"]("x")
    assert next(steps) == {"__type__": "update", "visible": "hidden"}
    assert gr.Textbox(visible=False).visible is False  # between two steps this thread builds as our own UI again
    assert list(steps) == [{"__type__": "update", "visible": True}]
    import asyncio
    assert asyncio.run(fns["later"]("x")) == [{"__type__": "update", "visible": "hidden", "value": "a"}]
    assert demo("x", api_name="ours") == {"__type__": "update", "visible": False}  # ours: gradio 6 as it is
    assert gradio3_compat.hidden_in_page(["a", 1]) == ["a", 1]  # plain values pass through


def test_components_beside_tabs_move_before_the_tab_set():
    """gradio 6 takes a component placed directly in a gr.Tabs for a tab (images-browser's hidden textbox there
    made its tab bar show "txt2img" twice and lose "img2img"); gradio 3 showed it above the bar."""
    with gr.Blocks() as demo:
        with gr.Column() as column:
            with gr.Tabs() as tabs:
                stray = gr.Textbox(visible="hidden", elem_id="stray")
                with gr.Tab("a") as a:
                    gr.Textbox()
                with gr.Tab("b") as b:
                    gr.Textbox()
    assert tabs.children == [a, b]
    assert column.children.index(tabs) == 1 and column.children[0].children == [stray]  # in its form, before
    assert stray.parent.parent is column
    layout = demo.get_config_file()["layout"]
    assert "stray" in str(demo.get_config_file()["components"]) and layout  # still in the page


def test_gradio_inputs_and_outputs():
    import gradio.inputs
    from gradio.outputs import Image as OutputImage

    with gr.Blocks():
        slider = gr.inputs.Slider(0, 10, 1, 3, label="s")
        text = gr.inputs.Textbox(lines=2, placeholder="p", default="q", label="t", optional=True)
        check = gr.inputs.Checkbox(default=True, label="c")
        drop = gr.inputs.Dropdown(["a", "b"], type="index", default="b", label="d")
        radio = gr.inputs.Radio(["a", "b"], default="a")
        number = gr.inputs.Number(default=4)
        group = gr.inputs.CheckboxGroup(["a", "b"], default=["b"])
        image = gradio.inputs.Image(shape=(8, 8), image_mode="RGBA", source="webcam", tool="editor", type="pil")
        files = gr.inputs.File(file_count="multiple", type="file")
        state = gr.inputs.State(default=1)
        shown = OutputImage(type="pil", label="o")
        carousel = gr.outputs.Carousel(["image"], label="c")
        html = gr.outputs.HTML(label="h")
        label = gr.outputs.Label(num_top_classes=3)
        out_text = gr.outputs.Textbox(type="auto", label="x")
    assert isinstance(slider, gr.Slider) and (slider.minimum, slider.maximum, slider.step, slider.value) == (0, 10, 1, 3)
    assert (text.lines, text.placeholder, text.value) == (2, "p", "q")
    assert check.value is True and (drop.type, drop.value) == ("index", "b") and radio.value == "a"
    assert number.value == 4 and group.value == ["b"] and state.value == 1
    assert (image.image_mode, image.sources, image.type) == ("RGBA", ["webcam"], "pil")
    assert (files.file_count, files.type) == ("multiple", "filepath")
    assert isinstance(shown, gr.Image) and shown.type == "pil" and shown.interactive is False
    assert isinstance(carousel, gr.Gallery) and isinstance(html, gr.HTML) and label.num_top_classes == 3
    assert isinstance(out_text, gr.Textbox)
    with pytest.raises(TypeError):
        gr.inputs.Number(1, "label", "one too many")


def test_constructor_keywords_of_gradio_3(caplog):
    with caplog.at_level(logging.WARNING, logger="modules.ui.gradio3_compat"), gr.Blocks() as demo:
        upload = gr.Image(source="upload", type="pil", tool="sketch", brush_radius=5, elem_id="img")
        canvas = gr.Image(source="canvas")
        copy = gr.Textbox(show_copy_button=True, tooltip="a hint", visible=False, elem_id="copy")
        tool = gr.Button("🔄", variant="tool", elem_classes="mine")
        data = gr.File(type="bytes")
        slid = gr.Slider(0, 5, default=2)
    assert upload.sources == ["upload"] and upload.type == "pil"
    assert canvas.sources == ["upload", "webcam", "clipboard"]  # gradio 6's default
    assert copy.buttons == ["copy"] and copy.webui_tooltip == "a hint" and copy.visible is False
    assert tool.variant == "secondary" and tool.elem_classes == ["mine", "tool"]
    assert data.type == "binary" and slid.value == 2
    assert "tool='sketch' is not a gradio 6 parameter" in caplog.text and "brush_radius=5" in caplog.text
    assert "source='canvas' has no gradio 6 equivalent" in caplog.text
    ids = {c["props"].get("elem_id") for c in demo.get_config_file()["components"]}
    assert {"img", "copy"} <= ids


# -- A1111 internals ---------------------------------------------------------------------------------------------


@pytest.fixture()
def hook():
    from modules import a1111_internals

    a1111_internals.install()
    yield a1111_internals


def test_missing_internals_raise_an_import_error_naming_them(hook):
    with pytest.raises(hook.MissingA1111Internals) as caught:
        from ldm.modules.diffusionmodules.openaimodel import UNetModel  # noqa: F401
    assert isinstance(caught.value, ModuleNotFoundError)
    assert caught.value.missing == "ldm.modules.diffusionmodules.openaimodel"
    assert "ldm.modules.diffusionmodules.openaimodel is an A1111 internal" in str(caught.value)
    for statement, name in (("from modules import sd_samplers_kdiffusion", "modules.sd_samplers_kdiffusion"),
                            ("import modules.sd_hijack_optimizations", "modules.sd_hijack_optimizations"),
                            ("from modules.sd_hijack_unet import apply", "modules.sd_hijack_unet"),
                            ("import k_diffusion.sampling", "k_diffusion.sampling")):
        with pytest.raises(ImportError) as caught:
            exec(statement, {})
        assert hook.summary_of(caught.value) == f"needs A1111 internals not in this web UI: {name}", statement
    guarded = {}
    exec("try:\n import k_diffusion\nexcept ImportError:\n k_diffusion = None", guarded)
    assert guarded["k_diffusion"] is None  # extensions that guard the import go on


def test_probes_and_real_modules_are_untouched(hook, tmp_path, monkeypatch):
    assert importlib.util.find_spec("k_diffusion") is None and importlib.util.find_spec("ldm") is None
    with pytest.raises(ModuleNotFoundError) as caught:
        import modules.no_such_module  # noqa: F401
    assert type(caught.value) is ModuleNotFoundError  # not one of A1111's: the usual error
    (tmp_path / "sgm").mkdir()
    (tmp_path / "sgm" / "__init__.py").write_text("REAL = True\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sgm", raising=False)
    import sgm  # an installed package of that name wins over the hook

    assert sgm.REAL is True
    monkeypatch.delitem(sys.modules, "sgm")
    assert sys.meta_path[-1] is hook._FINDER
    try:
        raise RuntimeError("wrapped") from hook.MissingA1111Internals("modules.sd_unet")
    except RuntimeError as err:
        assert hook.summary_of(err) == "needs A1111 internals not in this web UI: modules.sd_unet"


def test_an_extension_needing_internals_gets_one_line(hook, tmp_path):
    from modules import extensions, script_callbacks, scripts
    from modules.ui.extensions_tab import problems

    folder = tmp_path / "needs-internals" / "scripts"
    folder.mkdir(parents=True)
    (folder / "a.py").write_text("from modules import sd_samplers_kdiffusion\n", encoding="utf-8")
    (folder / "b.py").write_text("import modules.sd_samplers_kdiffusion\n", encoding="utf-8")
    (folder / "c.py").write_text("import ldm\n", encoding="utf-8")
    (folder / "d.py").write_text("raise ValueError('its own bug')\n", encoding="utf-8")
    (folder / "e.py").write_text(textwrap.dedent("""
        try:
            import k_diffusion
        except ImportError:
            k_diffusion = None
    """), encoding="utf-8")
    ext = extensions.Extension("needs-internals", folder.parent)
    try:
        extensions.load_scripts([ext])
        scripts.errors.append("needs-internals: ui() of script 'X' raised:\nTraceback (most recent call last):\n"
                              "modules.a1111_internals.MissingA1111Internals: ldm is an A1111 internal this web "
                              "UI does not have (it runs diffusers models, not A1111's ldm/k-diffusion code)\n")
        shown = problems(ext)
    finally:
        scripts.errors.clear()
        script_callbacks.clear()
    assert ext.loaded_scripts == ["e.py"]
    assert shown[0] == "needs A1111 internals not in this web UI: modules.sd_samplers_kdiffusion (a.py, b.py)"
    # the ui() failure on ldm is the same line again, not a traceback; d.py's own error is left to the log: an
    # extension built on A1111's internals gets the line that says so, not the tracebacks that follow from it
    assert shown[1] == ("needs A1111 internals not in this web UI: ldm (c.py); 1 other import error of its scripts "
                        "(is in the server log)")
    assert len(shown) == 2
    assert any(e.startswith("d.py raised at import:") and "its own bug" in e for e in ext.errors)
