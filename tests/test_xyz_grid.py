"""X/Y/Z plot: A1111's value syntax, the labelled grid, and a real 2x3 plot through /sdapi/v1 (grid size, each
cell equal to its own image, each image's infotext carrying its axis values)."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image, ImageChops

from modules.processing import xyz_grid


@pytest.mark.parametrize("text, expected", [
    ("1-5", [1, 2, 3, 4, 5]), ("1-10 (+2)", [1, 3, 5, 7, 9]), ("1-10 [5]", [1, 3, 5, 7, 10]),
    ("10-1 (-3)", [10, 7, 4, 1]), ("3, 7, 1-2", [3, 7, 1, 2]), ("-2-2", [-2, -1, 0, 1, 2]),
])
def test_integer_ranges(text, expected):
    assert xyz_grid.expand_ints(xyz_grid.split_values(text)) == expected


@pytest.mark.parametrize("text, expected", [
    ("0.5-1 (+0.25)", [0.5, 0.75, 1.0]), ("0-1 [5]", [0.0, 0.25, 0.5, 0.75, 1.0]), ("1.5, 7", [1.5, 7.0]),
    ("1-3", [1.0, 2.0, 3.0]),
])
def test_float_ranges(text, expected):
    assert xyz_grid.expand_floats(xyz_grid.split_values(text)) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["a", "1-10 (+0)", "1.5", "1-1000000"])
def test_bad_integer_values_are_refused_with_the_entry(text):
    with pytest.raises(xyz_grid.AxisValueError):
        xyz_grid.expand_ints(xyz_grid.split_values(text))


def test_quoted_values_keep_their_commas():
    assert xyz_grid.split_values('cat, "dog, running", bird') == ["cat", "dog, running", "bird"]


def test_grid_annotations_layout():
    cells = [Image.new("RGB", (40, 30), (i * 40, 0, 0)) for i in range(6)]
    grid = xyz_grid.cell_grid(cells, 3, 40, 30)
    hor = [[xyz_grid.GridAnnotation(f"Steps: {i}")] for i in range(3)]
    ver = [[xyz_grid.GridAnnotation(f"CFG: {i}")] for i in range(2)]
    out = xyz_grid.draw_grid_annotations(grid, 40, 30, hor, ver, margin=4)
    pad_top = out.height - 2 * 30 - 4
    assert out.width == 40 * 3 // 4 + 3 * 40 + 2 * 4 and pad_top > 0
    for i, cell in enumerate(cells):
        x, y = 30 + (i % 3) * 44, pad_top + (i // 3) * 34
        assert ImageChops.difference(out.crop((x, y, x + 40, y + 30)), cell).getbbox() is None
    plain = xyz_grid.draw_grid_annotations(grid, 40, 30, [[]] * 3, [[]] * 2)
    assert plain.size == grid.size  # no legend: no bands


def _has(infotext, entry):
    return entry in infotext.split("\n")[-1].split(", ")


def _decode(data):
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def test_xyz_plot_2x3_through_the_api(tiny_api_client):
    client = tiny_api_client
    assert "x/y/z plot" in client.get("/sdapi/v1/scripts").json()["txt2img"]
    args = ["Steps", "1-3", [], "CFG Scale", "3, 7", [], "Nothing", "", [], True, True, False, False, False,
            False, False, 0, False]
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "a cat", "seed": 11, "width": 64, "height": 64,
                                               "sampler_name": "Euler", "script_name": "X/Y/Z plot",
                                               "script_args": args})
    assert r.status_code == 200, r.text
    images = [_decode(i) for i in r.json()["images"]]
    info = json.loads(r.json()["info"])
    assert len(images) == 1 + 6
    grid, cells = images[0], images[1:]
    pad_left = 64 * 3 // 4
    pad_top = grid.height - 2 * 64
    assert grid.width == pad_left + 3 * 64 and pad_top > 0  # 3 columns (X), 2 rows (Y), legends
    texts = info["infotexts"]
    for i, cell in enumerate(cells):
        steps, cfg = (1, 2, 3)[i % 3], (3, 7)[i // 3]  # X varies fastest
        assert f"Steps: {steps}," in texts[1 + i] and f"CFG scale: {cfg}" in texts[1 + i]
        assert "Seed: 11," in texts[1 + i]  # one fixed seed for every cell
        x, y = pad_left + (i % 3) * 64, pad_top + (i // 3) * 64
        assert ImageChops.difference(grid.crop((x, y, x + 64, y + 64)), cell).getbbox() is None
    assert "Script: X/Y/Z plot" in texts[0] and "X Type: Steps" in texts[0] and 'X Values: "1, 2, 3"' in texts[0]
    # different steps really gave different images
    assert ImageChops.difference(cells[0], cells[2]).getbbox() is not None


def test_xyz_plot_with_a_z_axis_and_sub_grids(tiny_api_client):
    args = ["Seed", "1, 2", [], "Nothing", "", [], "Size", "64x64, 64x96", [], True, False, True, False, False,
            False, False, 0, False]
    data_dir = tiny_api_client.app.state.runtime.paths.data_dir
    r = tiny_api_client.post("/sdapi/v1/txt2img", json={"prompt": "a", "steps": 1, "width": 64, "height": 64,
                                                        "script_name": "x/y/z plot", "script_args": args,
                                                        "save_images": True})
    assert r.status_code == 200, r.text
    images = [_decode(i) for i in r.json()["images"]]
    assert len(images) == 3  # the whole plot, then one sub-grid per Z value
    main, first, second = images
    assert first.size == second.size and main.width == 2 * first.width and main.height > first.height
    grids = list((data_dir / "outputs" / "txt2img-grids").rglob("xyz_grid-*.png"))
    assert len(grids) == 1
    with Image.open(grids[0]) as saved:
        assert saved.size == main.size and "Script: X/Y/Z plot" in saved.info["parameters"]
    cells = list((data_dir / "outputs" / "txt2img-images").rglob("*.png"))
    assert len(cells) == 4  # every cell's image is saved as a sample, as A1111 does


@pytest.mark.parametrize("args, words", [
    (["Sampler", "Euler, Nope", []], "unknown sampler"),
    (["Steps", "1-a", []], "Steps"),
    (["Wobble", "1", []], "unknown axis type"),
    (["Checkpoint name", "missing.safetensors", []], "unknown checkpoint"),
    (["Prompt S/R", "dog, cat", []], "not in the prompt"),
])
def test_xyz_plot_bad_axes_are_422s_naming_script_args(tiny_api_client, args, words):
    full = args + ["Nothing", "", [], "Nothing", "", [], True, False, False, False, False, False, False, 0, False]
    r = tiny_api_client.post("/sdapi/v1/txt2img", json={"prompt": "a cat", "steps": 1, "width": 64, "height": 64,
                                                        "script_name": "x/y/z plot", "script_args": full})
    assert r.status_code == 422, r.text
    assert "script_args" in r.text and words in r.text


def test_xyz_plot_checkpoint_vae_clip_skip_prompt_sr_and_styles_axes(tmp_path):
    from tests.support.api_client import api_client
    from tests.support.tiny_checkpoints import tiny_diffusers_state_dicts, write_tiny_checkpoint
    from tests.support.tiny_files import perturbed, save_vae_file

    root = tmp_path / "data"
    write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion", "tiny")
    write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion", "zeta", seed=5)
    save_vae_file(root / "models" / "VAE" / "tinyvae.safetensors",
                  perturbed(tiny_diffusers_state_dicts("sd1")["vae"], 3))
    (root / "styles.csv").write_text('name,prompt,negative_prompt\nfancy,"{prompt}, fancy",\n', encoding="utf-8")
    rest = [True, True, False, False, False, False, False, 0, False]
    base = {"prompt": "a cat", "seed": 3, "steps": 1, "width": 64, "height": 64, "script_name": "x/y/z plot"}
    with api_client(root) as client:
        r = client.post("/sdapi/v1/txt2img", json={**base, "script_args": [
            "Checkpoint name", "tiny, zeta", [], "VAE", "None, tinyvae.safetensors", [], "Nothing", "", [], *rest]})
        assert r.status_code == 200, r.text
        texts = json.loads(r.json()["info"])["infotexts"][1:]
        cells = [_decode(i) for i in r.json()["images"][1:]]
        assert [_has(t, "Model: tiny") for t in texts] == [True, False, True, False]
        assert [_has(t, "Model: zeta") for t in texts] == [False, True, False, True]
        assert ["VAE: tinyvae" in t for t in texts] == [False, False, True, True]
        assert ImageChops.difference(cells[0], cells[1]).getbbox() is not None  # another checkpoint
        assert ImageChops.difference(cells[0], cells[2]).getbbox() is not None  # another VAE
        # the configured checkpoint is what the next plain job uses again
        plain = client.post("/sdapi/v1/txt2img", json={"prompt": "a cat", "seed": 3, "steps": 1, "width": 64,
                                                       "height": 64})
        assert _has(json.loads(plain.json()["info"])["infotexts"][0], "Model: tiny")

        r = client.post("/sdapi/v1/txt2img", json={**base, "script_args": [
            "Clip skip", "1, 2", [], "Prompt S/R", "cat, dog", [], "Styles", "fancy", [], *rest]})
        assert r.status_code == 200, r.text
        info = json.loads(r.json()["info"])
        texts = info["infotexts"][1:]
        assert [t.split("\n")[0] for t in texts] == ["a cat, fancy", "a cat, fancy", "a dog, fancy", "a dog, fancy"]
        assert ["Clip skip: 2" in t for t in texts] == [False, True, False, True]
