"""Extension scripts of the Extras tab (A1111's ``modules.scripts_postprocessing``; rembg's "Remove background" is
one): their controls in the tab, ``process(pp, **values)`` on every image after our upscaling, ``pp.info`` in the
``extras`` text, ``pp.extra_images`` saved beside it; defaults through the API; a failing script is reported and
the image still comes back. A real server, the page's own events, a test extension of ours."""

from __future__ import annotations

import base64
import io
import textwrap

import pytest
from PIL import Image

from tests.support.gradio_events import PageEvents
from tests.support.server import make_data_dir, running_server

PROBE = textwrap.dedent('''
    import gradio as gr
    from PIL import Image, ImageOps

    from modules import scripts_postprocessing
    from modules.ui_components import InputAccordion


    class Invert(scripts_postprocessing.ScriptPostprocessing):
        name = "Probe invert"
        order = 5000

        def ui(self):
            with InputAccordion(False, label="Probe invert", elem_id="pp_probe") as enable:
                amount = gr.Slider(0, 255, value=200, step=1, label="Red of the extra image",
                                   elem_id="pp_probe_amount")
            return {"enable": enable, "amount": amount}

        def process(self, pp, enable, amount):
            if not enable:
                return
            pp.image = ImageOps.invert(pp.image.convert("RGB"))
            pp.info["Probe invert"] = int(amount)
            pp.extra_images.append(Image.new("RGB", (8, 8), (int(amount), 0, 0)))


    class Broken(scripts_postprocessing.ScriptPostprocessing):
        name = "Probe broken"
        order = 6000

        def ui(self):
            return {"on": gr.Checkbox(True, label="Broken on", elem_id="pp_broken_on")}

        def process(self, pp, on):
            raise RuntimeError("probe broken on purpose")
''')


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("extras-scripts")
    data = make_data_dir(root / "data", ["tiny"])
    folder = data / "extensions" / "pp-probe" / "scripts"
    folder.mkdir(parents=True)
    (folder / "pp_probe.py").write_text(PROBE, encoding="utf-8")
    (data / "batch-in").mkdir()
    Image.new("RGB", (16, 16), (250, 10, 10)).save(data / "batch-in" / "red.png")
    with running_server(data) as running:
        running.data = data
        yield running


def _encode(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_the_scripts_controls_and_values_reach_process_and_what_it_adds_is_saved(server):
    events = PageEvents(server.url)
    fields = {**events.tab_select("extras_batch_directory_tab"), "extras_batch_input_dir": "batch-in",
              "extras_batch_output_dir": "batch-out", "pp_probe-checkbox": True, "pp_probe_amount": 77}
    result = events.call(events.dependency("extras_generate", with_input="extras_batch_input_dir"), fields)
    assert result.success, result.error
    written = sorted((server.data / "batch-out").iterdir())
    assert [p.name for p in written] == ["red-2.png", "red.png"]
    main, extra = Image.open(written[1]), Image.open(written[0])
    assert main.convert("RGB").getpixel((3, 3)) == (5, 245, 245)  # inverted by the script, after our upscale step
    assert extra.size == (8, 8) and extra.convert("RGB").getpixel((0, 0)) == (77, 0, 0)  # the value from the tab
    assert "Probe invert: 77" in main.info["extras"]
    assert "Probe invert: 77" in str(result.outputs)  # the infotext shown under the gallery


def test_the_api_runs_them_with_their_defaults_and_a_failing_one_is_reported(server):
    red = Image.new("RGB", (16, 16), (250, 10, 10))
    status, body = server.request("POST", "/sdapi/v1/extra-single-image", {"image": _encode(red)})
    assert status == 200, body
    out = Image.open(io.BytesIO(base64.b64decode(body["image"]))).convert("RGB")
    assert out.getpixel((3, 3)) == (250, 10, 10)  # enable defaults to False: untouched, as A1111's API leaves it
    # the broken script raised on every image (here and in the tab's run): reported, and the image went on
    log = server.log_tail(200_000)
    assert "process of postprocessing script 'Probe broken' raised" in log and "probe broken on purpose" in log
