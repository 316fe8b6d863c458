"""Files named by the page's events (security issue, item 1): a real server, its events called the way the page calls
them (``/gradio_api/queue/join`` with every input's value). Every event taking a gallery, image, editor or file
input accepts only files in this server's upload cache or output folders; anything else is refused before it is
read or copied, with the same answer whether it exists or not. Uploads are bounded per client."""

from __future__ import annotations

import io
import json
import os
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from modules import browser_files
from tests.support.gradio_events import PageEvents
from tests.support.server import make_data_dir, running_server

FILE_INPUTS = ("gallery", "image", "imageeditor", "file", "uploadbutton")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
REFUSED = "files outside this server's uploads and output folders cannot be used"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = make_data_dir(tmp_path_factory.mktemp("event-files"), ["tiny"])
    with running_server(data_dir, ["--max-upload-mb-per-hour", "3"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def events(server):
    return PageEvents(server.url)


def cache_dir(server) -> Path:
    return server.log_dir / "gradio-tmp"  # tests.support.server gives each server its own GRADIO_TEMP_DIR


def file_data(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def hostile_value(kind: str, path: str):
    """What a page could send for an input of ``kind``, naming ``path``."""
    if kind == "gallery":
        return [{"image": file_data(path), "caption": None}]
    if kind == "imageeditor":
        return {"background": file_data(path), "layers": [], "composite": file_data(path), "id": None}
    return file_data(path)


def file_events(events: PageEvents) -> list[tuple[dict, int, str]]:
    """(event, input index, input kind) for every backend event with a file-carrying input, from the page's own
    config: a handler added later is covered without touching this test."""
    out = []
    for dep in events.config["dependencies"]:
        if not dep["backend_fn"]:
            continue
        for index, component_id in enumerate(dep["inputs"]):
            kind = events.components[component_id]["type"]
            if kind in FILE_INPUTS:
                out.append((dep, index, kind))
    return out


def upload(server, name: str, content: bytes, route: str = "upload") -> tuple[int, object]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{server.url}/gradio_api/{route}", data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", "Origin": server.url})
    try:
        with _NO_PROXY.open(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, {"detail": err.read().decode(errors="replace"), "retry-after": err.headers.get("retry-after")}


def png_with_parameters(text: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_every_file_input_of_every_event_refuses_files_outside_our_folders(server, events, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the browser")
    outside_link = server.data_dir / "outputs" / "txt2img-images" / "link.png"
    outside_link.parent.mkdir(parents=True, exist_ok=True)
    outside_link.symlink_to(secret)  # inside an output folder by name, outside it once resolved
    hostile = [str(secret), "/etc/passwd", str(server.data_dir / "config.json"), "/no/such/file.png",
               str(outside_link), f"{server.url}/internal/ping", "../../../../etc/passwd"]
    cases = file_events(events)
    kinds = {kind for _, _, kind in cases}
    assert {"gallery", "image", "imageeditor", "file"} <= kinds, kinds  # the page really has these events
    assert len(cases) >= 20
    for dep, index, kind in cases:
        for path in hostile:
            data = events.default_inputs(dep)
            data[index] = hostile_value(kind, path)
            result = events.call(dep, data)
            assert result.status == 403, (dep["api_name"], path, result.status, result.body[:300])
            # the same words whether the file exists or not: no existence oracle
            assert json.loads(result.body) == {"detail": REFUSED}, (dep["api_name"], path)
    copied = [p for p in cache_dir(server).rglob("*") if p.is_file() and p.name in ("secret.txt", "passwd")]
    assert copied == []
    assert not (server.data_dir / "log").exists()  # 💾 saved nothing
    assert server.get_json("/internal/ping") == {}  # and the server is fine


def test_a_payload_nesting_a_path_anywhere_is_refused(server, events):
    dep = events.dependency("save_zip_txt2img")
    nested = [{"image": {"deep": [{"x": file_data("/etc/passwd")}]}, "caption": None}]
    assert events.call(dep, [nested]).status == 403
    assert events.call(dep, [[{"image": {"path": 12345}, "caption": None}]]).status == 403  # not a path at all


def test_uploaded_files_and_output_files_still_work(server, events):
    """What the page really sends (paths in the upload cache, results in the output folders) is accepted."""
    status, paths = upload(server, "photo.png", png_with_parameters("a red square\nSteps: 5, Sampler: Euler, "
                                                                   "CFG scale: 7, Seed: 1, Size: 8x8"))
    assert status == 200, paths
    uploaded = paths[0]
    assert browser_files.is_allowed(uploaded, [cache_dir(server)])
    info = events.call(events.dependency("pnginfo_image", "change"), {"pnginfo_image": file_data(uploaded)})
    assert info.success, info.error
    assert "a red square" in info.outputs[0]

    status, paths = upload(server, "prompts.txt", b"a cat\na dog\n")
    assert status == 200
    lines = events.call(events.dependency("txt2img_pff_file", "change"), {"txt2img_pff_file": file_data(paths[0])})
    assert lines.success and lines.outputs[0] == "a cat\na dog\n"

    result = server.data_dir / "outputs" / "txt2img-images" / "00000-1.png"
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_bytes(png_with_parameters("saved before"))
    gallery = [{"image": file_data(str(result)), "caption": None}]
    saved = events.call(events.dependency("save_txt2img"), {"txt2img_gallery": gallery})
    assert saved.success, saved.error
    copies = list((server.data_dir / "log" / "images").iterdir())
    assert [p.read_bytes() for p in copies] == [result.read_bytes()]
    zipped = events.call(events.dependency("save_zip_txt2img"), {"txt2img_gallery": gallery})
    assert zipped.success and zipped.outputs[0]["value"]["path"].endswith(".zip")


def test_uploads_are_bounded_per_client(server):
    """--max-upload-mb-per-hour 3: a client that uploaded that much gets 429 with Retry-After; nothing is lost."""
    chunk = os.urandom(1024 * 1024)
    statuses = [upload(server, f"big{i}.bin", chunk)[0] for i in range(3)]
    assert statuses[:2] == [200, 200]
    status, answer = upload(server, "one-too-many.bin", chunk)
    assert status == 429 and "upload limit" in answer["detail"] and int(answer["retry-after"]) > 0
    # refused before its body is read: the client still gets the 429, never a broken pipe mid-upload
    assert [upload(server, f"again{i}.bin", chunk * 4)[0] for i in range(6)] == [429] * 6
    # the image editor's blobs (multipart component_server calls, kept in memory) count against the same quota
    status, answer = upload(server, "layer.png", chunk, route="component_server")
    assert status == 429 and "upload limit" in answer["detail"]
    assert server.get_json("/internal/ping") == {}


def test_a_private_upload_cache_is_made_and_stale_ones_removed(tmp_path, monkeypatch):
    dead = tmp_path / "sd-webui-uploads-999999999-abc"  # a pid that cannot be running
    dead.mkdir()
    (dead / "left.png").write_bytes(b"x")
    alive = tmp_path / f"sd-webui-uploads-{os.getppid()}-abc"
    alive.mkdir()
    mine_before_restart = tmp_path / f"sd-webui-uploads-{os.getpid()}-old"
    mine_before_restart.mkdir()
    other = tmp_path / "sd-webui-uploads-notapid"
    other.mkdir()
    removed = browser_files.remove_stale_upload_caches(tmp_path)
    assert sorted(removed) == sorted([dead, mine_before_restart])
    assert alive.is_dir() and other.is_dir() and not dead.exists()

    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    folder = browser_files.use_private_upload_cache()
    assert folder.parent == tmp_path and os.environ["GRADIO_TEMP_DIR"] == str(folder)
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert browser_files.upload_cache_dir() == folder
