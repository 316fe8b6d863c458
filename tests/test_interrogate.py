"""img2text: A1111's tag formatting, the WD14 tagger on a tiny ONNX model whose scores are known in closed form
(``tests/support/tiny_wd14.py``), and ``POST /sdapi/v1/interrogate`` on a real server."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from modules.errors import FieldError
from modules.interrogate import tags, wd14
from modules.interrogate.service import Interrogator
from tests.support import tiny_wd14
from tests.test_ui_browser import browser, js_errors, page, page_errors  # noqa: F401  (this module's server)

TAGS = [("general", 9), ("sensitive", 9), ("questionable", 9), ("explicit", 9), ("1girl", 0), ("long_hair", 0),
        ("smile", 0), ("^_^", 0), ("bow_(weapon)", 0), ("solo", 0), ("hatsune_miku", 4), ("kagamine_rin", 4)]
# Scores of a pure red picture (BGR mean 0, 0, 255), set through the bias; other colours move them by the weights.
AT_RED = [0.6, 0.3, 0.05, 0.01, 0.99, 0.2, 0.45, 0.8, 0.7, 0.31, 0.9, 0.5]
WEIGHTS = np.random.RandomState(7).normal(0.0, 6.0 / 255.0, (3, len(TAGS)))
BIAS = np.log(np.array(AT_RED) / (1 - np.array(AT_RED))) - np.array([0.0, 0.0, 255.0]) @ WEIGHTS


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models") / "wd14"
    tiny_wd14.write(root / "wd-vit-tagger-v3", TAGS, WEIGHTS, BIAS, size=32)
    return root


def _scores(mean_bgr) -> dict[str, float]:
    return dict(zip([t for t, _ in TAGS], tiny_wd14.expected_scores(mean_bgr, WEIGHTS, BIAS)))


def test_a1111s_tag_formatting():
    scores = {"long_hair": 0.9, "smile": 0.6, "bow_(weapon)": 0.7, "^_^": 0.8, "solo": 0.55}
    assert tags.caption(scores, tags.TagFormat()) == "^_^, bow \\(weapon\\), long hair, smile, solo"  # A1111's defaults
    by_score = tags.TagFormat(sort_alpha=False, use_spaces=False, escape=False, filter_tags="solo, long hair",
                              include_ranks=True)
    assert tags.caption(scores, by_score) == "(^_^:0.800), (bow_(weapon):0.700), (smile:0.600)"
    assert tags.selected([("a", 0.5), ("b", 0.49), ("a", 0.1)], 0.5) == {"a": 0.5}  # at the threshold: kept
    style = tags.TagFormat.of({"deepbooru_sort_alpha": False, "deepbooru_escape": False,
                               "interrogate_return_ranks": True})
    assert (style.sort_alpha, style.use_spaces, style.escape, style.include_ranks) == (False, True, False, True)


def test_wd14_scores_the_image_as_the_reference_tagger_prepares_it(tagger_dir):
    tagger = wd14.load(tagger_dir / "wd-vit-tagger-v3")
    assert (tagger.size, tagger.input_name, len(tagger.names)) == (32, "input", len(TAGS))
    red = Image.new("RGB", (32, 32), (255, 0, 0))
    got = wd14.predict(tagger, red)
    expected = _scores([0, 0, 255])  # BGR
    for name, score in {**got.ratings, **got.general, **got.characters}.items():
        assert abs(score - expected[name]) < 1e-5, name
    assert set(got.ratings) == {"general", "sensitive", "questionable", "explicit"}
    assert set(got.characters) == {"hatsune_miku", "kagamine_rin"}
    assert got.rating == max(got.ratings, key=got.ratings.get)
    # a 32x16 picture is centred on a white square: 8 white rows above and below
    wide = wd14.predict(tagger, Image.new("RGB", (32, 16), (0, 0, 255)))
    half = _scores([(255 + 255) / 2, 255 / 2, 255 / 2])
    assert all(abs(wide.general[t] - half[t]) < 1e-5 for t in wide.general)
    # transparency is white; a larger picture is resized to the model's size (uniform colour: the same means)
    clear = wd14.predict(tagger, Image.new("RGBA", (64, 64), (10, 20, 30, 0)))
    white = _scores([255, 255, 255])
    assert all(abs(clear.general[t] - white[t]) < 1e-4 for t in clear.general)


def test_wd14_caption_takes_both_thresholds_and_a1111s_format(tagger_dir):
    service = Interrogator([tagger_dir])
    red = Image.new("RGB", (32, 32), (255, 0, 0))
    settings = {"interrogate_wd14_general_threshold": 0.3, "interrogate_wd14_character_threshold": 0.6,
                "deepbooru_sort_alpha": False, "deepbooru_use_spaces": True, "deepbooru_escape": True}
    expected = _scores([0, 0, 255])
    general = [t for t, c in TAGS if c == 0 and expected[t] >= 0.3]
    characters = [t for t, c in TAGS if c == 4 and expected[t] >= 0.6]
    chosen = sorted(general + characters, key=lambda t: -expected[t])
    assert chosen, "the fixture's weights must give some tags"
    assert chosen == ["1girl", "hatsune_miku", "^_^", "bow_(weapon)", "smile", "solo"]  # AT_RED, by score
    caption = service.interrogate(red, "wd14", settings)
    assert caption == "1girl, hatsune miku, ^_^, bow \\(weapon\\), smile, solo"
    assert not any(r in service.interrogate(red, "wd14", settings) for r in ("sensitive", "questionable"))


def test_interrogate_errors_name_the_field_and_the_files(tagger_dir, tmp_path):
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    with pytest.raises(FieldError) as err:
        Interrogator([tmp_path / "nothing"]).interrogate(red, "wd14", {})
    assert err.value.field == "model" and "model.onnx" in str(err.value) and "nothing" in str(err.value)
    with pytest.raises(FieldError) as err:
        Interrogator([tagger_dir]).interrogate(red, "wd14", {"interrogate_wd14_model": "wd-missing"})
    assert "wd-vit-tagger-v3" in str(err.value)
    broken = tmp_path / "wd14" / "broken"
    broken.mkdir(parents=True)
    (broken / "model.onnx").write_bytes(b"not onnx")
    (broken / "selected_tags.csv").write_text("tag_id,name,category,count\n1,a,0,1\n")
    with pytest.raises(FieldError) as err:
        Interrogator([tmp_path / "wd14"]).interrogate(red, "wd14", {})
    assert "broken" in str(err.value) and "model.onnx" in str(err.value)
    with pytest.raises(FieldError):
        Interrogator([tagger_dir]).interrogate(red, "blip2", {})


def _b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def server(tagger_dir, tmp_path_factory):
    import shutil

    from tests.support.server import make_data_dir, running_server, wait_for_model

    from modules.interrogate import deepbooru
    from tests.support import tiny_deepbooru

    data = make_data_dir(tmp_path_factory.mktemp("interrogate-server"))
    shutil.copytree(tagger_dir, data / "models" / "wd14")
    tiny_deepbooru.write(data / "models" / "torch_deepdanbooru" / deepbooru.FILE, DANBOORU_TAGS)
    from tests.support import tiny_blip_clip

    tiny_blip_clip.write_blip(data / "models" / "BLIP", tiny_blip_clip.blip())
    tiny_blip_clip.clip().save_pretrained(data / "models" / "CLIP" / "clip-vit-tiny")
    with running_server(data) as srv:
        wait_for_model(srv)
        yield srv


def test_interrogate_api_answers_as_a1111(server):
    red = _b64(Image.new("RGB", (32, 32), (255, 0, 0)))
    status, body = server.request("POST", "/sdapi/v1/interrogate", {"image": red, "model": "wd14"})
    assert status == 200 and set(body) == {"caption"}, body
    assert body["caption"] == "1girl, ^_^, bow \\(weapon\\), hatsune miku, smile"  # defaults: 0.35 / 0.85, a-z
    status, body = server.request("POST", "/sdapi/v1/interrogate", {"image": red, "model": "blip2"})
    assert status == 404 and body["detail"][0]["loc"] == ["body", "model"]  # A1111's answer
    status, body = server.request("POST", "/sdapi/v1/interrogate", {"image": red, "model": "clip"})
    # BLIP's words, then the bundled lists' best medium and movement (tiny random models: any words)
    assert status == 200 and body["caption"].count(", ") >= 2, body
    status, body = server.request("POST", "/sdapi/v1/interrogate", {"image": red, "model": "deepdanbooru"})
    assert status == 200 and set(body) == {"caption"} and "rating" not in body["caption"], body
    status, body = server.request("POST", "/sdapi/v1/interrogate", {"image": "not base64!", "model": "wd14"})
    assert 400 <= status < 500 and "image" in str(body)
    status, body = server.request("POST", "/sdapi/v1/options", {"interrogate_wd14_general_threshold": 0.9,
                                                                 "interrogate_return_ranks": True})
    assert status == 200, body
    status, body = server.request("POST", "/sdapi/v1/interrogate", {"image": red, "model": "wd14"})
    assert status == 200 and body["caption"] == "(1girl:0.990), (hatsune miku:0.900)"  # the server is still there
    status, body = server.request("POST", "/sdapi/v1/options", {"interrogate_wd14_general_threshold": 0.35,
                                                                 "interrogate_return_ranks": False})
    assert status == 200, body


def test_interrogate_button_puts_the_caption_into_the_img2img_prompt(page, server, js_errors, tmp_path):
    from playwright.sync_api import expect

    picture = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (255, 0, 0)).save(picture)
    page.get_by_role("tab", name="img2img").first.click()
    button = page.locator("#wd14_interrogate")
    button.click()  # no image yet: a readable message, the prompt untouched
    expect(page.locator("#img2img_results, #html_info_img2img, body").first).to_contain_text("upload an image")
    page.locator("#img2img_image input[type=file]").set_input_files(str(picture))
    expect(page.locator("#img2img_image img")).to_be_visible()
    page.locator("#img2img_prompt textarea").fill("old prompt")
    button.click()
    expect(page.locator("#img2img_prompt textarea")).to_have_value("1girl, ^_^, bow \\(weapon\\), hatsune miku, smile",
                                                                  timeout=60_000)
    page.locator("#deepbooru").click()  # A1111's DeepBooru button: the tiny model's tags, none a rating
    expect(page.locator("#img2img_prompt textarea")).not_to_have_value("1girl, ^_^, bow \\(weapon\\), hatsune miku, "
                                                                      "smile", timeout=60_000)
    assert "rating" not in page.locator("#img2img_prompt textarea").input_value()
    assert js_errors == []


# -- DeepBooru -------------------------------------------------------------------------------------------------------

DANBOORU_TAGS = ["1girl", "solo", "long_hair", "rating:safe", "smile", "(9)", "blue_eyes"]


def _same_padded(x, kernel: int, stride: int, value: float = 0.0):
    """TensorFlow's "same" padding from its formula: total = max((ceil(n / s) - 1) s + k - n, 0), the extra
    one at the end."""
    import math

    import torch.nn.functional as F

    pads = []
    for n in (x.shape[3], x.shape[2]):
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


def _reference_forward(weights, images):
    """The network computed from its description (not from modules.interrogate.deepbooru's forward): convs by
    their numbers, "same" padding from TensorFlow's formula, the blocks' residual sums."""
    import torch
    import torch.nn.functional as F

    from modules.interrogate.deepbooru import plan

    def conv(i, x, stride=1):
        w = weights[f"n_Conv_{i}.weight"]
        return F.conv2d(_same_padded(x, w.shape[-1], stride), w, weights.get(f"n_Conv_{i}.bias"), stride=stride)

    x = F.relu(conv(0, images.permute(0, 3, 1, 2), 2))
    x = F.max_pool2d(_same_padded(x, 3, 2, float("-inf")), 3, 2)
    for block in plan():
        stride = 1 if block.kind in ("first1", "identity") else 2
        a, b, c = block.convs
        y = conv(c, F.relu(conv(b, F.relu(conv(a, x)), stride)))
        shortcut = x if block.shortcut is None else conv(block.shortcut, x, 1 if block.kind == "first1" else 2)
        x = F.relu(y + shortcut)
    return torch.sigmoid(conv(178, x).mean(dim=(2, 3)))


def test_deepbooru_reads_the_released_layout_and_computes_its_network(tmp_path):
    import torch

    from modules.interrogate import deepbooru
    from tests.support import tiny_deepbooru

    path = tmp_path / "torch_deepdanbooru" / deepbooru.FILE
    weights = tiny_deepbooru.write(path, DANBOORU_TAGS)
    model = deepbooru.load(path)
    assert model.tags == DANBOORU_TAGS and sum(1 for _ in model.parameters()) == 2 * deepbooru.CONVS - 1
    picture = Image.fromarray(np.random.RandomState(2).randint(0, 255, (300, 200, 3)).astype(np.uint8))
    images = deepbooru.prepare(picture)
    assert images.shape == (1, 512, 512, 3) and 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    with torch.inference_mode():
        ours, theirs = model(images), _reference_forward(weights, images)
    assert torch.allclose(ours, theirs, atol=1e-5)
    scores = deepbooru.predict(model, picture)
    assert "rating:safe" not in scores and set(scores) == set(DANBOORU_TAGS) - {"rating:safe"}


def test_deepbooru_caption_and_a_file_of_another_layout(tmp_path):
    import torch

    from modules.interrogate import deepbooru
    from tests.support import tiny_deepbooru

    folder = tmp_path / "torch_deepdanbooru"
    tiny_deepbooru.write(folder / deepbooru.FILE, DANBOORU_TAGS)
    service = Interrogator([], deepbooru_dirs=[folder])
    picture = Image.new("RGB", (64, 64), (200, 30, 30))
    scores = deepbooru.predict(deepbooru.load(folder / deepbooru.FILE), picture)
    for threshold in (0.0, 0.5, 1.01):
        expected = tags.caption({t: p for t, p in scores.items() if p >= threshold}, tags.TagFormat())
        got = service.interrogate(picture, "deepdanbooru", {"interrogate_deepbooru_score_threshold": threshold})
        assert got == expected
    assert "\\(9\\)" in service.interrogate(picture, "deepdanbooru", {"interrogate_deepbooru_score_threshold": 0.0})
    torch.save({"n_Conv_0.weight": torch.zeros(1)}, str(tmp_path / "other.pt"))
    with pytest.raises(ValueError, match="tag list"):
        deepbooru.load(tmp_path / "other.pt")
    with pytest.raises(FieldError) as err:
        Interrogator([], deepbooru_dirs=[tmp_path / "none"]).interrogate(picture, "deepdanbooru", {})
    assert deepbooru.FILE in str(err.value) and "none" in str(err.value)
    unsafe = tmp_path / "unsafe" / deepbooru.FILE  # a pickle that would run code: refused, named, nothing else lost
    unsafe.parent.mkdir()
    import pickle

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    unsafe.write_bytes(pickle.dumps({"tags": ["a"], "x": Boom()}))
    with pytest.raises(FieldError) as err:
        Interrogator([], deepbooru_dirs=[unsafe.parent]).interrogate(picture, "deepdanbooru", {})
    assert deepbooru.FILE in str(err.value)


def test_the_interrogate_benchmark_runs_in_its_dry_run(capsys):
    from tests.benchmarks import interrogate_speed

    assert interrogate_speed.main(["--dry-run", "--repeats", "1"]) == 0
    assert "caption" in capsys.readouterr().out


def test_a_folder_is_captioned_beside_its_pictures_and_nothing_is_overwritten(tagger_dir, tmp_path):
    from modules.interrogate import batch

    folder = tmp_path / "dataset"
    folder.mkdir()
    Image.new("RGB", (32, 32), (255, 0, 0)).save(folder / "a.png")
    Image.new("RGB", (32, 32), (255, 0, 0)).save(folder / "b.jpg")
    (folder / "b.txt").write_text("my own caption\n")
    (folder / "c.png").write_bytes(b"not a picture")
    (folder / "notes.md").write_text("not a picture either")
    service = Interrogator([tagger_dir])
    seen = []
    report = batch.caption_folder(folder, lambda image: service.interrogate(image, "wd14", {}), False,
                                  lambda done, total: seen.append((done, total)))
    assert report.written == ["a.png"] and report.kept == ["b.jpg"] and set(report.failed) == {"c.png"}
    assert (folder / "a.txt").read_text() == "1girl, ^_^, bow \\(weapon\\), hatsune miku, smile\n"
    assert (folder / "b.txt").read_text() == "my own caption\n"  # kept
    assert not (folder / "c.txt").exists() and seen == [(1, 3), (2, 3), (3, 3)]
    report = batch.caption_folder(folder, lambda image: "new", True)
    assert (folder / "b.txt").read_text() == "new\n" and report.written == ["a.png", "b.jpg"]
    assert "2 captions written" in report.summary() and "c.png" in report.summary()


def test_the_interrogate_tab_captions_a_picture_and_a_folder(page, server, js_errors, tmp_path):
    from playwright.sync_api import expect

    picture = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (255, 0, 0)).save(picture)
    page.get_by_role("tab", name="Interrogate").first.click()
    page.locator("#interrogate_image input[type=file]").set_input_files(str(picture))
    expect(page.locator("#interrogate_image img")).to_be_visible()
    page.locator("#interrogate_model").get_by_text("WD14").click()
    page.locator("#interrogate_run").click()
    caption = "1girl, ^_^, bow \\(weapon\\), hatsune miku, smile"
    expect(page.locator("#interrogate_caption textarea")).to_have_value(caption, timeout=60_000)
    page.locator("#interrogate_send_to_txt2img").click()
    expect(page.locator("#txt2img_prompt textarea")).to_have_value(caption)
    page.get_by_role("tab", name="Interrogate").first.click()
    folder = server.data_dir / "captions"
    folder.mkdir()
    Image.new("RGB", (32, 32), (255, 0, 0)).save(folder / "one.png")
    page.locator("#interrogate_batch").get_by_text("Batch from a folder").click()
    page.locator("#interrogate_batch_dir textarea, #interrogate_batch_dir input").first.fill(str(folder))
    page.locator("#interrogate_batch_run").click()
    expect(page.locator("#interrogate_batch_message")).to_contain_text("1 captions written", timeout=60_000)
    assert (folder / "one.txt").read_text() == caption + "\n"
    page.locator("#interrogate_batch_dir textarea, #interrogate_batch_dir input").first.fill(str(tmp_path / "none"))
    page.locator("#interrogate_batch_run").click()
    expect(page.locator("#interrogate_batch_message")).to_contain_text("no such folder")
    assert js_errors == []
