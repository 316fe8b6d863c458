"""The Download offer for missing img2text weights (issue 20): the source table's files fetched from a real HTTP
server on 127.0.0.1 (the table is data: the tests point a copy of it at the loopback server, no outside network),
checked against their SHA-256, placed in A1111's folders, then used by the interrogators; refused with
--no-download-interrogate-models and on an exposed server; never offered over the API."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.server
import io
import re
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from modules.cmd_args import parse_args
from modules.interrogate import sources
from modules.interrogate.service import Interrogator
from modules.models.download import HashMismatchError, download_file
from tests.test_ui_browser import browser, js_errors, page, page_errors  # noqa: F401  (this module's server)

RED = Image.new("RGB", (32, 32), (255, 0, 0))
DANBOORU_TAGS = ["1girl", "solo", "smile", "rating:safe"]
WD14_TAGS = [("general", 9), ("1girl", 0), ("smile", 0), ("hatsune_miku", 4)]


class _Files(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    files: dict[str, bytes] = {}
    requests: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.requests.append(self.path)
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, bytes]:
    """The tiny test models' bytes, by the file name they are published under."""
    import torch

    from modules.interrogate import deepbooru
    from tests.support import tiny_blip_clip, tiny_deepbooru, tiny_wd14

    root = tmp_path_factory.mktemp("published")
    tiny_deepbooru.write(root / deepbooru.FILE, DANBOORU_TAGS)
    blip = tiny_blip_clip.write_blip(root / "blip", tiny_blip_clip.blip())
    torch.save(tiny_blip_clip.clip_openai(tiny_blip_clip.clip()), str(root / "ViT-L-14.pt"))
    weights = np.random.RandomState(1).normal(0.0, 0.02, (3, len(WD14_TAGS)))
    tiny_wd14.write(root / "wd", WD14_TAGS, weights, np.zeros(len(WD14_TAGS)), size=32)
    return {deepbooru.FILE: (root / deepbooru.FILE).read_bytes(), blip.name: blip.read_bytes(),
            "vocab.txt": (root / "blip" / "vocab.txt").read_bytes(), "ViT-L-14.pt": (root / "ViT-L-14.pt").read_bytes(),
            "model.onnx": (root / "wd" / "model.onnx").read_bytes(),
            "selected_tags.csv": (root / "wd" / "selected_tags.csv").read_bytes()}


@pytest.fixture
def origin(weights) -> Iterator[str]:
    _Files.files = {f"/{name}": data for name, data in weights.items()}
    _Files.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def loopback(origin: str, weights: dict[str, bytes], bad: str = "") -> tuple[sources.Source, ...]:
    """The real table with each address moved to the loopback server and each hash that of the tiny file served
    there (``bad``: the file whose hash is wrong)."""
    out = []
    for src in sources.SOURCES:
        data = weights[src.file]
        digest = "0" * 64 if src.file == bad else hashlib.sha256(data).hexdigest()
        out.append(dataclasses.replace(src, url=f"{origin}/{src.file}", sha256=digest, size=len(data)))
    return tuple(out)


def test_the_table_names_a1111s_usual_places_and_a_sha256_for_each_file():
    urls = {s.name: s.url for s in sources.SOURCES}
    assert urls["model_base_caption_capfilt_large.pth"].startswith(
        "https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/")
    assert urls["model-resnet_custom_v3.pt"] == (
        "https://github.com/AUTOMATIC1111/TorchDeepDanbooru/releases/download/v1/model-resnet_custom_v3.pt")
    assert urls["wd-vit-tagger-v3/model.onnx"] == (
        "https://huggingface.co/SmilingWolf/wd-vit-tagger-v3/resolve/main/model.onnx")
    for src in sources.SOURCES:
        assert re.fullmatch(r"[0-9a-f]{64}", src.sha256) and src.url.startswith("https://") and src.hash_from
    clip = next(s for s in sources.SOURCES if s.file == "ViT-L-14.pt")
    assert clip.url.split("/")[-2] == clip.sha256  # OpenAI's address carries the file's SHA-256


def test_missing_deepbooru_is_downloaded_into_its_folder_and_then_interrogates(origin, weights, tmp_path):
    folder = tmp_path / "models" / "torch_deepdanbooru"
    service = Interrogator(deepbooru_dirs=[folder], table=loopback(origin, weights))
    plan = service.downloads("deepdanbooru", {})
    assert [p.dest for p in plan] == [folder / "model-resnet_custom_v3.pt"]
    seen: list[tuple[int, int, int, int | None]] = []
    sources.fetch(plan, lambda *a: seen.append(a))
    assert (folder / "model-resnet_custom_v3.pt").read_bytes() == weights["model-resnet_custom_v3.pt"]
    assert seen[-1] == (0, 1, len(weights["model-resnet_custom_v3.pt"]), len(weights["model-resnet_custom_v3.pt"]))
    assert list(folder.iterdir()) == [folder / "model-resnet_custom_v3.pt"]  # no .partial left
    assert service.downloads("deepdanbooru", {}) == []  # nothing more to offer
    caption = service.interrogate(RED, "deepdanbooru", {"interrogate_deepbooru_score_threshold": 0.0})
    assert "1girl" in caption and "rating" not in caption


def test_a_wrong_hash_leaves_no_file_and_says_so(origin, weights, tmp_path):
    folder = tmp_path / "models" / "torch_deepdanbooru"
    service = Interrogator(deepbooru_dirs=[folder], table=loopback(origin, weights, bad="model-resnet_custom_v3.pt"))
    with pytest.raises(HashMismatchError) as err:
        sources.fetch(service.downloads("deepdanbooru", {}))
    assert "corrupt or not the expected file" in str(err.value) and "model-resnet_custom_v3.pt" in str(err.value)
    assert "partial file was deleted" in str(err.value)
    assert not folder.exists() or list(folder.iterdir()) == []


def test_an_existing_file_is_never_replaced(origin, weights, tmp_path):
    dest = tmp_path / "model-resnet_custom_v3.pt"
    url = f"{origin}/model-resnet_custom_v3.pt"
    digest = hashlib.sha256(weights["model-resnet_custom_v3.pt"]).hexdigest()
    dest.write_bytes(b"the user's own copy")
    download_file(url, dest, digest, overwrite=False)
    assert dest.read_bytes() == b"the user's own copy" and _Files.requests == []  # not even fetched

    # a file that takes the name while the download runs (another download, the user) is kept too
    other = tmp_path / "other.pt"

    def arrives(done: int, total: int | None) -> None:
        if done and not other.exists():
            other.write_bytes(b"arrived meanwhile")

    download_file(url, other, digest, arrives, overwrite=False)
    assert other.read_bytes() == b"arrived meanwhile" and not (tmp_path / "other.pt.partial").exists()


def test_interrogate_clip_and_wd14_work_after_their_download(origin, weights, tmp_path):
    blip_dir, clip_dir, wd14_dir = tmp_path / "BLIP", tmp_path / "CLIP", tmp_path / "wd14"
    blip_dir.mkdir()
    (blip_dir / "vocab.txt").write_bytes(weights["vocab.txt"])  # BERT's vocabulary is not offered (no published hash)
    service = Interrogator([wd14_dir], blip_dirs=[blip_dir], clip_dirs=[clip_dir], table=loopback(origin, weights))
    plan = service.downloads("clip", {})
    assert [p.dest for p in plan] == [blip_dir / "model_base_caption_capfilt_large.pth", clip_dir / "ViT-L-14.pt"]
    sources.fetch(plan)
    assert service.downloads("clip", {}) == []
    assert service.interrogate(RED, "clip", {"interrogate_clip_dict_limit": 5}).count(", ") >= 2
    # WD14: the setting's tagger when the table knows it, else wd-vit-tagger-v3, both files into its own folder
    assert {p.dest for p in service.downloads("wd14", {"interrogate_wd14_model": "wd-v1-4-moat-tagger-v2"})} == {
        wd14_dir / "wd-v1-4-moat-tagger-v2" / "model.onnx", wd14_dir / "wd-v1-4-moat-tagger-v2" / "selected_tags.csv"}
    assert service.downloads("wd14", {"interrogate_wd14_model": "someone-elses-tagger"}) == []  # unknown: no offer
    sources.fetch(service.downloads("wd14", {}))
    assert (wd14_dir / "wd-vit-tagger-v3" / "model.onnx").read_bytes() == weights["model.onnx"]
    assert (wd14_dir / "wd-vit-tagger-v3" / "selected_tags.csv").read_bytes() == weights["selected_tags.csv"]
    assert service.downloads("wd14", {}) == []
    assert "1girl" in service.interrogate(RED, "wd14", {"interrogate_wd14_general_threshold": 0.0})


def test_the_messages_say_which_file_goes_where_and_where_to_get_it(tmp_path):
    from modules.errors import FieldError

    service = Interrogator([tmp_path / "wd14"], deepbooru_dirs=[tmp_path / "dd"], blip_dirs=[tmp_path / "BLIP"],
                           clip_dirs=[tmp_path / "CLIP"])
    expected = {"deepdanbooru": ["model-resnet_custom_v3.pt", str(tmp_path / "dd"),
                                 "https://github.com/AUTOMATIC1111/TorchDeepDanbooru/releases/download/v1/"],
                "clip": ["model_base_caption_capfilt_large.pth", str(tmp_path / "BLIP"),
                         "https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/"],
                "wd14": ["model.onnx", "selected_tags.csv", str(tmp_path / "wd14" / "wd-vit-tagger-v3"),
                         "https://huggingface.co/SmilingWolf/wd-vit-tagger-v3/resolve/main/"]}
    for model, words in expected.items():
        with pytest.raises(FieldError) as err:
            service.interrogate(RED, model, {})
        assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize("flags", [["--no-download-interrogate-models"], ["--listen", "--insecure-no-auth"]])
def test_downloads_are_refused_with_the_flag_and_on_an_exposed_server(flags, origin, weights, tmp_path):
    from modules.runtime import build_runtime
    from modules.ui.interrogate_tab import download_missing, offer_update

    rt = build_runtime(parse_args(["--data-dir", str(tmp_path), *flags], environ={}))
    rt.interrogator.sources = loopback(origin, weights)
    assert sources.refusal(rt.args)
    button, _, _ = offer_update(rt, "deepdanbooru")
    assert button["visible"] is False  # not offered
    message, _ = list(download_missing(rt, "deepdanbooru"))[-1]  # a page that sends the click anyway
    assert "Downloading models is" in message and flags[-1] in message
    assert not (tmp_path / "models" / "torch_deepdanbooru" / "model-resnet_custom_v3.pt").exists()
    assert _Files.requests == []
    assert sources.refusal(parse_args(["--listen", "--gradio-auth", "u:p"], environ={})) is None  # a login: allowed


def test_the_page_offers_downloads_with_progress_then_interrogates(origin, weights, tmp_path):
    from modules.runtime import build_runtime
    from modules.ui.interrogate_tab import download_missing, offer_update

    rt = build_runtime(parse_args(["--data-dir", str(tmp_path)], environ={}))
    rt.interrogator.sources = loopback(origin, weights)
    folder = tmp_path / "models" / "torch_deepdanbooru"
    button, model, message = offer_update(rt, "deepdanbooru")
    assert button["visible"] is True and model == "deepdanbooru"
    assert "model-resnet_custom_v3.pt" in message and "torch_deepdanbooru" in message
    steps = list(download_missing(rt, "deepdanbooru"))
    assert "Downloaded" in steps[-1][0] and steps[-1][1]["visible"] is False
    assert (folder / "model-resnet_custom_v3.pt").read_bytes() == weights["model-resnet_custom_v3.pt"]
    assert offer_update(rt, "deepdanbooru")[0]["visible"] is False
    caption = rt.submit_interrogate(RED, "deepdanbooru").wait()  # the tiny random model: some of its tags
    assert set(filter(None, caption.split(", "))) <= {"1girl", "solo", "smile"}
    # a failed download says why and keeps the button for another try
    rt.interrogator.sources = loopback(origin, weights, bad="model.onnx")
    message, button = list(download_missing(rt, "wd14"))[-1]
    assert "corrupt or not the expected file" in message and button["visible"] is True
    assert not (tmp_path / "models" / "wd14" / "wd-vit-tagger-v3" / "model.onnx").exists()


def test_the_api_answers_422_naming_the_file_and_downloads_nothing(tmp_path):
    from tests.support.local_client import LocalClient
    from webui import create_app

    client = LocalClient(create_app(parse_args(["--data-dir", str(tmp_path), "--nowebui"], environ={})))
    buffer = io.BytesIO()
    RED.save(buffer, format="PNG")
    r = client.post("/sdapi/v1/interrogate", json={"image": base64.b64encode(buffer.getvalue()).decode(),
                                                     "model": "deepdanbooru"})
    assert r.status_code == 422 and "model-resnet_custom_v3.pt" in r.text and "torch_deepdanbooru" in r.text
    assert not (tmp_path / "models" / "torch_deepdanbooru" / "model-resnet_custom_v3.pt").exists()


def test_a_progress_readout_shows_the_file_and_its_share(tmp_path):
    from modules.ui.interrogate_tab import _progress

    plan = [sources.Planned(s, tmp_path / s.name) for s in sources.SOURCES if s.model == "clip"]
    text = _progress(plan, {"file": 1, "done": 50, "total": 200})
    assert "ViT-L-14.pt" in text and "25.0%" in text and "(2/2)" in text and "<progress max='200' value='50'>" in text


# -- the page ----------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server without any img2text weights whose downloads go through a proxy that refuses them (a dead loopback
    port): what an offline user sees, and never a real download from the test."""
    from tests.support.server import free_port, make_data_dir, running_server

    data_dir = make_data_dir(tmp_path_factory.mktemp("interrogate-download"))
    with pytest.MonkeyPatch.context() as env:
        dead = f"http://127.0.0.1:{free_port()}"
        for key in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
            env.setenv(key, dead)
        with running_server(data_dir) as srv:
            yield srv


def test_the_buttons_offer_the_download_and_offline_it_says_which_file_goes_where(page, server, js_errors):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="img2img").first.click()
    page.locator("#deepbooru").click()
    offer = page.locator("#img2img_interrogate_download")
    expect(offer).to_be_visible()
    expect(page.locator("#img2img_interrogate_download_message")).to_contain_text("model-resnet_custom_v3.pt")
    offer.click()
    message = page.locator("#img2img_interrogate_download_message")
    expect(message).to_contain_text("you appear to be offline", timeout=60_000)
    expect(message).to_contain_text("download model-resnet_custom_v3.pt yourself and put it in")
    expect(message).to_contain_text("torch_deepdanbooru")
    expect(offer).to_be_visible()  # another try stays possible
    assert not (server.data_dir / "models" / "torch_deepdanbooru" / "model-resnet_custom_v3.pt").exists()
    page.get_by_role("tab", name="Interrogate").first.click()
    page.locator("#interrogate_model").get_by_text("CLIP").click()
    page.locator("#interrogate_run").click()
    expect(page.locator("#interrogate_download")).to_be_visible()
    expect(page.locator("#interrogate_download_message")).to_contain_text("ViT-L-14.pt")
    assert js_errors == []
