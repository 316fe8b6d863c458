"""The one script registry (``modules.script_registry``): built-in and A1111 scripts found by one lookup from the
UI and the API, the A1111 facade used only when a job needs it, and the API without the web UI importing no gradio."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modules.errors import FieldError
from modules.processing import builtin_scripts
from modules.processing.params import Txt2ImgParams

ROOT = Path(__file__).resolve().parent.parent
PLAIN = {"prompt": "a cat", "seed": 11, "steps": 2, "width": 64, "height": 64, "sampler_name": "Euler"}


@pytest.fixture(scope="module")
def scripts(tiny_api_client):
    return tiny_api_client.app.state.runtime.scripts


def test_lookup_is_case_insensitive_and_unknown_names_name_the_field(scripts):
    assert scripts.img2img.find("SD UPSCALE") is builtin_scripts.SD_UPSCALE
    assert scripts.txt2img.find("x/y/z plot").title() == "X/Y/Z plot"  # an A1111 Script class of ours
    assert scripts.txt2img.find("None") is None and scripts.txt2img.find("") is None
    with pytest.raises(FieldError) as err:
        scripts.txt2img.find("sd upscale")  # an img2img script is not offered in txt2img
    assert err.value.field == "script_name" and "X/Y/Z plot" in err.value.choices


def test_the_facade_runs_only_for_a_selected_a1111_script(scripts):
    params = Txt2ImgParams(**PLAIN)
    plain = scripts.txt2img.prepare_api(params, None, [], {}, ["None"])
    assert plain.scripts_call is None and plain.script is None and plain.params is params
    ours = scripts.txt2img.prepare_api(params, "prompts from file or textbox", [False, False, "start", "a dog"],
                                       {}, ["None"])
    assert ours.scripts_call is None and [line["prompt"] for line in ours.script.lines] == ["a dog"]
    xyz = scripts.txt2img.prepare_api(params, "X/Y/Z plot", ["Steps", "1,2"], {}, ["None"])
    script = scripts.txt2img.find("X/Y/Z plot")
    assert xyz.scripts_call is not None
    assert xyz.scripts_call.args[0] == 1 + scripts.txt2img.runner.selectable_scripts.index(script)
    assert xyz.scripts_call.args[script.args_from:script.args_from + 2] == ["Steps", "1,2"]  # A1111's flat list


def test_always_on_scripts_named_without_any_are_a_422(tiny_api_client):
    r = tiny_api_client.post("/sdapi/v1/txt2img", json={**PLAIN, "alwayson_scripts": {"nope": {"args": []}}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "alwayson_scripts"]


def test_skipping_the_facade_changes_nothing_in_the_result(tiny_api_client):
    """The same request through the facade (A1111's p built and turned back into parameters) and without it."""
    rt = tiny_api_client.app.state.runtime
    runner = rt.scripts.txt2img.runner
    direct = rt.submit_txt2img(Txt2ImgParams(**PLAIN)).wait()
    through = rt.submit_txt2img(Txt2ImgParams(**PLAIN), scripts_call=runner.call(runner.default_args())).wait()
    assert through.infotexts == direct.infotexts
    assert [im.tobytes() for im in through.images] == [im.tobytes() for im in direct.images]


def test_scripts_list_and_info_come_from_the_registry(tiny_api_client):
    listed = tiny_api_client.get("/sdapi/v1/scripts").json()
    assert listed["txt2img"][0] == "prompts from file or textbox"
    assert listed["img2img"][:3] == ["poor man's outpainting", "prompts from file or textbox", "sd upscale"]
    info = {(e["name"], e["is_img2img"]): e for e in tiny_api_client.get("/sdapi/v1/script-info").json()}
    outpaint = info[("poor man's outpainting", True)]["args"]
    assert [a["label"] for a in outpaint] == ["Pixels to expand", "Mask blur", "Masked content",
                                              "Outpainting direction"]
    assert (outpaint[0]["value"], outpaint[0]["minimum"], outpaint[0]["maximum"]) == (128, 8, 256)
    assert outpaint[3]["value"] == ["left", "right", "up", "down"]


def test_ui_values_become_the_script_args_the_api_takes():
    """The declared arguments give both the UI's field keys and A1111's script_args order."""
    fields = {"sdu_overlap": 32, "sdu_upscaler": "Lanczos", "sdu_scale": 1.5}
    assert builtin_scripts.SD_UPSCALE.values(fields, ["None", "Lanczos"]) == ["", 32, "Lanczos", 1.5]
    assert builtin_scripts.PROMPTS_FROM_FILE.values({}, []) == [False, False, "start", ""]  # the defaults


def test_the_api_alone_imports_no_gradio(tmp_path):
    """--nowebui with no extensions: generating, a built-in script and the script list never import gradio
    (ours import it only to draw their controls)."""
    program = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.support.api_client import api_client
        from tests.support.tiny_checkpoints import write_tiny_checkpoint
        from pathlib import Path
        root = Path({str(tmp_path)!r})
        write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion", "tiny")
        with api_client(root) as client:
            plain = client.post("/sdapi/v1/txt2img", json={json.dumps(PLAIN)})
            lines = client.post("/sdapi/v1/txt2img", json={{**{json.dumps(PLAIN)},
                                "script_name": "prompts from file or textbox",
                                "script_args": [False, False, "start", "a dog\\na bird"]}})
            listed = client.get("/sdapi/v1/scripts")
            print(json.dumps({{"status": [plain.status_code, lines.status_code, listed.status_code],
                              "images": len(lines.json()["images"]), "gradio": "gradio" in sys.modules}}))
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"status": [200, 200, 200], "images": 2, "gradio": False}
