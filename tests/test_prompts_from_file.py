"""The "Prompts from file or textbox" script: line syntax, refusals, one generation per line (tiny model)."""

from __future__ import annotations

import pytest

from modules.errors import FieldError
from modules.processing import prompts_from_file as pff
from modules.processing.context import CheckpointIdentity, ProcessingContext
from modules.processing.params import Txt2ImgParams
from modules.processing.txt2img import txt2img
from tests.support.api_client import api_client
from tests.support.engine import default_settings, load_tiny
from tests.support.tiny_checkpoints import write_tiny_checkpoint


def test_line_syntax():
    assert pff.parse_line("a cat, sitting", 1) == {"prompt": "a cat, sitting"}
    line = pff.parse_line('--prompt "a dog on a hill" --steps 3 --cfg_scale 4.5 --styles one two --tiling true', 1)
    assert line == {"prompt": "a dog on a hill", "steps": 3, "cfg_scale": 4.5, "styles": ["one", "two"],
                    "tiling": True}


@pytest.mark.parametrize("line,part", [("--outpath_samples /etc", "not allowed"), ("--sd_model other", "checkpoint"),
                                       ("--stepz 3", "unknown key"), ("--steps many", "steps"),
                                       ('--prompt "unclosed', "line 1")])
def test_bad_lines_name_the_line(line, part):
    with pytest.raises(FieldError) as err:
        pff.parse_args([False, False, "start", line])
    assert err.value.field == "script_args" and part in str(err.value)


def test_values_out_of_range_are_caught_before_queueing():
    script = pff.parse_args([False, False, "start", "ok\n--steps 9999"])
    with pytest.raises(FieldError) as err:
        pff.check(Txt2ImgParams(prompt="x"), script)
    assert "line 2" in str(err.value) and "steps" in str(err.value)


def test_empty_list_is_refused():
    with pytest.raises(FieldError):
        pff.parse_args([False, False, "start", "\n  \n"])


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return load_tiny(write_tiny_checkpoint("sd1", tmp_path_factory.mktemp("ckpt"), "tiny"))


def test_one_generation_per_line_with_iterated_seeds(sd1, tmp_path):
    ctx = ProcessingContext(model=sd1, checkpoint=CheckpointIdentity("tiny [0123456789]", "tiny", "0123456789"),
                            settings=default_settings(), data_dir=tmp_path)
    script = pff.parse_args([True, False, "end", "a red barn\n--prompt \"a blue boat\" --steps 2 --batch_size 2"])
    p = Txt2ImgParams(prompt="photo of", width=64, height=64, steps=3, seed=10, sampler_name="Euler")
    out = pff.run(p, script, ctx, txt2img)
    assert len(out.images) == 3 and out.index_of_first_image == 0  # no grids
    assert out.all_prompts == ["photo of a red barn", "photo of a blue boat", "photo of a blue boat"]
    assert out.all_seeds == [10, 11, 12]  # iterate: the next line starts after the previous line's images
    assert "Steps: 2," in out.infotexts[1] and "Steps: 3," in out.infotexts[0]


def test_api_script(tmp_path):
    write_tiny_checkpoint("sd1", tmp_path / "models" / "Stable-diffusion", "tiny")
    with api_client(tmp_path) as client:
        r = client.post("/sdapi/v1/txt2img", json={
            "prompt": "", "width": 64, "height": 64, "steps": 2, "seed": 5,
            "script_name": "prompts from file or textbox", "script_args": [False, True, "start", "one\ntwo"]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["images"]) == 2
        import json

        info = json.loads(body["info"])
        assert info["all_prompts"] == ["one", "two"] and info["all_seeds"] == [5, 5]
        bad = client.post("/sdapi/v1/txt2img", json={"script_name": "prompts from file or textbox",
                                                     "script_args": [False, False, "start", "--sd_model x"]})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "script_args"]
