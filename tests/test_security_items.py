"""Security items: folder fields on an exposed server without a login, startup notes for unreadable settings files,
Referrer-Policy, private (0600) settings files, temp leftovers after kill -9, broken LoRA files in the comments,
the logged bind address, and malformed login flags.

Behaviour of a running server is checked on real ``webui.py`` subprocesses (``tests.support.server``); UI events
are called the way the page calls them (``tests.support.gradio_events``: queue/join + the SSE stream).
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from modules import fileio
from modules.cmd_args import checked_folder, folder_refusal, parse_args
from modules.errors import FieldError
from tests.support.gradio_events import PageEvents
from tests.support.server import REPO, make_data_dir, running_server, server_env, wait_for_model

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
EXPOSED = ["--listen", "--insecure-no-auth"]


def flags(data_dir: Path, *extra: str):
    return parse_args(["--data-dir", str(data_dir), *extra], environ={}, warn=False)


def red_png(path: Path, size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (200, 30, 30)).save(path)
    return path


# ------------------------------------------------------------------------------------------- the folder rule


def test_folder_rule_exposed_without_login_keeps_folders_inside_the_data_dir(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "elsewhere"
    (data / "inputs").mkdir(parents=True)
    outside.mkdir()
    (data / "escape").symlink_to(outside)  # a link inside the data folder pointing out of it
    ns = flags(data, *EXPOSED)
    assert folder_refusal(ns, data, data / "inputs") is None
    assert checked_folder(ns, data, "f", "inputs") == data / "inputs"  # relative: to the data folder
    assert checked_folder(ns, data, "f", "  ") is None
    for bad in (str(outside), "/etc", "../elsewhere", str(data / "escape"), str(data / "inputs" / ".." / "..")):
        with pytest.raises(FieldError) as refused:
            checked_folder(ns, data, "img2img_batch_input_dir", bad)
        assert refused.value.field == "img2img_batch_input_dir"
        assert "outside the data folder" in str(refused.value) and "--insecure-no-auth" in str(refused.value)


@pytest.mark.parametrize("extra", [[], ["--listen", "--gradio-auth", "u:p"], ["--listen", "--api-auth", "u:p"]])
def test_folder_rule_allows_any_folder_on_loopback_or_with_a_login(tmp_path, extra):
    ns = flags(tmp_path / "data", *extra)
    assert checked_folder(ns, tmp_path / "data", "f", str(tmp_path / "elsewhere")) == tmp_path / "elsewhere"


def test_folder_rule_hide_ui_dir_config_refuses_every_folder(tmp_path):
    ns = flags(tmp_path, "--hide-ui-dir-config")
    assert "--hide-ui-dir-config" in folder_refusal(ns, tmp_path, tmp_path / "inside")


@pytest.fixture
def exposed_runtime(tmp_path):
    from modules.runtime import build_runtime

    rt = build_runtime(flags(tmp_path / "data", *EXPOSED))
    yield rt
    rt.jobs.stop()


def _batch_error(outputs: list) -> str:
    return " ".join(str(o[1]) for o in outputs)


@pytest.mark.parametrize("field", ["input", "output", "mask", "png_info"])
def test_img2img_batch_handler_refuses_each_outside_folder_and_touches_nothing(exposed_runtime, tmp_path, field):
    from modules.ui import img2img_tab

    data, outside = exposed_runtime.paths.data_dir, tmp_path / "elsewhere"
    red_png(data / "in" / "a.png")
    red_png(outside / "a.png")
    folders = {"input": str(data / "in"), "output": str(data / "out"), "mask": "", "png_info": ""}
    folders[field] = str(outside if field != "output" else outside / "out")
    png_info = (folders["png_info"], ["Prompt"]) if folders["png_info"] else None
    before = sorted(outside.rglob("*"))
    submitted = []
    exposed_runtime.submit_img2img = lambda *a, **k: submitted.append(a)  # a job would read the images
    outputs = list(img2img_tab.run_batch(exposed_runtime, {"prompt": "x"}, None, folders["input"], folders["output"],
                                         folders["mask"], png_info))
    assert "outside the data folder" in _batch_error(outputs)
    assert {"input": "img2img_batch_input_dir", "output": "img2img_batch_output_dir",
            "mask": "img2img_batch_inpaint_mask_dir", "png_info": "img2img_batch_png_info_dir"}[field] \
        in _batch_error(outputs)
    assert submitted == [] and not (data / "out").exists()  # nothing read, nothing written
    assert sorted(outside.rglob("*")) == before


def test_img2img_batch_skips_links_out_of_an_allowed_folder(exposed_runtime, tmp_path):
    from modules.ui import img2img_tab

    data = exposed_runtime.paths.data_dir
    secret = red_png(tmp_path / "elsewhere" / "secret.png")
    (data / "in").mkdir()
    (data / "in" / "secret.png").symlink_to(secret)
    outputs = list(img2img_tab.run_batch(exposed_runtime, {"prompt": "x"}, None, str(data / "in"), "", ""))
    assert "no images to process" in _batch_error(outputs)


def test_extras_batch_from_directory_follows_the_same_rule(exposed_runtime, tmp_path):
    from modules.ui import extras_tab

    data = exposed_runtime.paths.data_dir
    red_png(data / "in" / "a.png")
    red_png(tmp_path / "elsewhere" / "b.png")
    images, target = extras_tab.folder_images(exposed_runtime, "in", "out")
    assert [name for _, name in images] == ["a"] and target == data / "out"
    for source, out in ((str(tmp_path / "elsewhere"), ""), ("in", str(tmp_path / "elsewhere"))):
        with pytest.raises(FieldError, match="outside the data folder"):
            extras_tab.folder_images(exposed_runtime, source, out)
    with pytest.raises(FieldError, match="input directory"):
        extras_tab.folder_images(exposed_runtime, "", "")  # an empty field is not "the current folder"


# ------------------------------------------------------------------------------------------- file modes and leftovers


def test_private_writes_are_0600_from_the_first_byte_and_keep_a_stricter_mode(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    modes = []
    real_write_all = fileio._write_all

    def spy(fd, data):
        modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        real_write_all(fd, data)

    monkeypatch.setattr(fileio, "_write_all", spy)
    old_umask = os.umask(0o022)
    try:
        fileio.atomic_write_text(target, "{}", private=True)
        assert modes == [0o600] and stat.S_IMODE(target.stat().st_mode) == 0o600
        target.chmod(0o644)  # written by an older version
        fileio.atomic_write_text(target, '{"a": 1}', private=True)
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "config.json.bak").stat().st_mode) == 0o600  # the backup holds them too
        target.chmod(0o400)  # the user's stricter choice is kept
        fileio.atomic_write_text(target, '{"a": 2}', private=True)
        assert stat.S_IMODE(target.stat().st_mode) == 0o400 and json.loads(target.read_text()) == {"a": 2}
        plain = tmp_path / "plain.txt"
        fileio.atomic_write_text(plain, "x")  # not private: the umask decides, as before
        assert stat.S_IMODE(plain.stat().st_mode) == 0o644
    finally:
        os.umask(old_umask)


def test_settings_and_ui_defaults_are_saved_0600(tmp_path):
    from modules.options import Options
    from modules.ui.ui_config import UiConfig

    options = Options(tmp_path / "config.json")
    options.load()
    options.apply({"samples_format": "jpg"})
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o600
    config = UiConfig(tmp_path / "ui-config.json")
    config._remember("txt2img/Steps/value", 20)
    config.save()
    assert stat.S_IMODE((tmp_path / "ui-config.json").stat().st_mode) == 0o600


def test_only_our_own_temp_names_are_removed(tmp_path):
    target = tmp_path / "config.json"
    ours = [tmp_path / ".config.json.0123456789ab.tmp", tmp_path / ".config.json.bak.ba9876543210.tmp"]
    others = [tmp_path / ".config.json.xyz.tmp", tmp_path / ".styles.csv.0123456789ab.tmp",
              tmp_path / "config.json.0123456789ab.tmp", tmp_path / ".config.json.0123456789ab.tmp.keep"]
    for path in ours + others:
        path.write_text("x")
    (tmp_path / ".config.json.fedcba987654.tmp").mkdir()  # not a file: left alone
    assert sorted(fileio.remove_temp_leftovers(target)) == sorted(ours)
    assert all(p.exists() for p in others) and not any(p.exists() for p in ours)


def test_a_writer_killed_with_sigkill_leaves_nothing_at_the_next_start(tmp_path):
    """A real ``kill -9`` while a temp file is half written: the next load removes it and keeps the last good file."""
    target = tmp_path / "config.json"
    target.write_text('{"samples_format": "png"}')
    writer = ("import os, sys, time\nfrom pathlib import Path\nimport modules.fileio as f\n"
              "def stuck(fd, data):\n    os.write(fd, data[:10])\n    print('writing', flush=True)\n"
              "    time.sleep(60)\n"
              "f._write_all = stuck\nf.atomic_write_text(Path(sys.argv[1]), '{\"samples_format\": \"jpg\"}' + ' ' * 99)\n")
    process = subprocess.Popen([sys.executable, "-c", writer, str(target)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "writing"
        process.kill()  # SIGKILL: no cleanup runs
    finally:
        process.wait(10)
    assert [p.name for p in tmp_path.glob(".config.json.*.tmp")]  # the crash left its temp file
    from modules.options import Options

    options = Options(target)
    options.load()
    assert options.get("samples_format") == "png" and not list(tmp_path.glob(".config.json.*.tmp"))


# ------------------------------------------------------------------------------------------- command line


@pytest.mark.parametrize("argv, words", [
    (["--api-auth", "nocolon"], "--api-auth: expected user:password"),
    (["--api-auth", ":"], "--api-auth: expected user:password"),
    (["--api-auth", "a:"], "--api-auth: the login 'a' has an empty password"),
    (["--gradio-auth", "alice"], "--gradio-auth: expected user:password"),
    (["--gradio-auth", ","], "--gradio-auth: no login given"),
    (["--gradio-auth-path", "/nonexistent/logins.txt"], "--gradio-auth-path: cannot read /nonexistent/logins.txt"),
])
def test_malformed_login_flags_are_one_line_and_exit_2(tmp_path, argv, words):
    done = subprocess.run([sys.executable, str(REPO / "webui.py"), "--data-dir", str(tmp_path), *argv], cwd=REPO,
                          env=server_env(tmp_path), capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in done.stderr, done.stderr


def test_an_auth_file_without_logins_is_refused(tmp_path, capsys):
    empty = tmp_path / "logins.txt"
    empty.write_text("\n\n")
    with pytest.raises(SystemExit) as exited:  # it would count as a login while letting everyone in
        parse_args(["--listen", "--gradio-auth-path", str(empty)], environ={}, warn=False)
    assert exited.value.code == 2 and "has no login in it" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- real servers


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with _NO_PROXY.open(request, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def _startup_notes(server) -> str:
    """The notes the page shows: the value the page's load event puts into #startup_notes."""
    events = PageEvents(server.url)
    target = events.component("startup_notes")
    initial = str(events.components[target]["props"].get("value") or "")
    loads = [d for d in events.config["dependencies"] if target in d["outputs"] and d["backend_fn"]]
    shown = [events.call(d).outputs for d in loads]
    return initial + " ".join(str(value) for outputs in shown for value in outputs)


def test_corrupt_settings_files_start_with_the_notes_on_the_page_and_leftovers_gone(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.json").write_text("{broken", encoding="utf-8")
    (data / "ui-config.json").write_text("[1, 2", encoding="utf-8")
    leftovers = [data / ".config.json.0123456789ab.tmp", data / ".ui-config.json.0123456789ab.tmp",
                 data / ".styles.csv.0123456789ab.tmp", data / ".config.json.bak.0123456789ab.tmp"]
    for path in leftovers:
        path.write_text("half a write")
    foreign = data / ".my-notes.tmp"
    foreign.write_text("not ours")
    with running_server(data) as server:
        notes = _startup_notes(server)
        status, _, page = _get(server.url + "/")
        assert status == 200 and b"startup_notes" in page
    kept = sorted(p.name for p in data.iterdir() if ".corrupt-" in p.name)
    assert [n.split(".corrupt-")[0] for n in kept] == ["config.json", "ui-config.json"]
    for name in kept:
        assert name in notes  # the page names where each file went
    assert (data / kept[0]).read_text() == "{broken"  # the user's bytes are kept
    assert not any(p.exists() for p in leftovers) and foreign.exists()


def test_a_config_json_that_is_a_folder_starts_and_says_so(tmp_path):
    data = tmp_path / "data"
    (data / "config.json").mkdir(parents=True)
    (data / "ui-config.json").mkdir()
    with running_server(data) as server:
        notes = _startup_notes(server)
        status, _ = server.request("GET", "/sdapi/v1/options")
        assert status == 200
    assert "config.json could not be read" in notes and "defaults are in use" in notes
    assert (data / "config.json").is_dir()  # left alone: we do not move the user's folder


def _lora_files(folder: Path, marker: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json here!}")

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(folder / "evil.pt", "wb") as f:
        pickle.dump({"lora_te_x.lora_down.weight": Evil()}, f, protocol=2)


@pytest.fixture(scope="module")
def exposed_server(tmp_path_factory):
    """A server bound to 0.0.0.0 without a login (--insecure-no-auth), a tiny checkpoint and two bad LoRAs."""
    root = tmp_path_factory.mktemp("exposed")
    data = make_data_dir(root / "data", ["tiny"])
    _lora_files(data / "models" / "Lora", root / "pwned")
    with running_server(data, ["--server-name", "0.0.0.0", "--insecure-no-auth"]) as server:
        server.root = root
        yield server


def test_the_log_names_the_real_bind_address(exposed_server):
    log = exposed_server.log_tail(200_000)
    assert f"Running on http://0.0.0.0:{exposed_server.port}/" in log
    assert f"Running on http://127.0.0.1:{exposed_server.port}" not in log


def test_every_answer_has_referrer_policy_same_origin(exposed_server):
    for path, headers, expected in (("/", {}, 200), ("/internal/ping", {}, 200), ("/sdapi/v1/options", {}, 200),
                                    ("/internal/ping", {"Host": "evil.example"}, 421),
                                    ("/no/such/route", {}, 404)):
        status, answer, _ = _get(exposed_server.url + path, headers)
        assert status == expected, path
        assert answer.get("referrer-policy") == "same-origin", (path, answer)


def _batch_call(events: PageEvents, trigger: str, tab_id: str, fields: dict[str, object]):
    selected = events.tab_select(tab_id)
    return events.call(events.dependency(trigger, with_input=next(iter(fields))), {**selected, **fields})


def test_extras_batch_from_directory_through_the_page_events(exposed_server):
    root, data = exposed_server.root, exposed_server.data_dir
    red_png(root / "elsewhere" / "private.png")
    red_png(data / "batch-in" / "mine.png")
    events = PageEvents(exposed_server.url)
    refused = [("extras_batch_input_dir", str(root / "elsewhere"), "extras_batch_output_dir", "batch-out"),
               ("extras_batch_input_dir", "batch-in", "extras_batch_output_dir", str(root / "elsewhere" / "out"))]
    for in_id, in_dir, out_id, out_dir in refused:
        result = _batch_call(events, "extras_generate", "extras_batch_directory_tab", {in_id: in_dir, out_id: out_dir,
                                                            "extras_upscaler_1": "Lanczos"})
        assert result.success, result.error
        assert "outside the data folder" in json.dumps(result.outputs)
    assert not (data / "batch-out").exists() and not (root / "elsewhere" / "out").exists()
    allowed = _batch_call(events, "extras_generate", "extras_batch_directory_tab", {"extras_batch_input_dir": "batch-in",
                                                         "extras_batch_output_dir": "batch-out",
                                                         "extras_upscaler_1": "Lanczos",
                                                         "extras_upscaling_resize": 2})
    assert allowed.success, allowed.error
    written = list((data / "batch-out").iterdir())
    assert [p.name for p in written] == ["mine.png"] and Image.open(written[0]).size == (32, 32)


def test_img2img_batch_through_the_page_events(exposed_server):
    root = exposed_server.root
    red_png(root / "elsewhere2" / "private.png")
    events = PageEvents(exposed_server.url)
    for field in ("img2img_batch_input_dir", "img2img_batch_output_dir", "img2img_batch_inpaint_mask_dir"):
        values = {"img2img_batch_input_dir": "batch-in", field: str(root / "elsewhere2")}
        result = _batch_call(events, "img2img_generate", "img2img_batch_tab", values)
        assert result.success, result.error
        assert "outside the data folder" in json.dumps(result.outputs) and field in json.dumps(result.outputs)
    assert sorted(p.name for p in (root / "elsewhere2").iterdir()) == ["private.png"]


def test_broken_and_unsafe_loras_are_named_in_the_comments_and_the_server_stays_up(exposed_server):
    wait_for_model(exposed_server)
    body = {"prompt": "a cat <lora:bad:1> <lora:evil:1>", "width": 64, "height": 64, "steps": 2, "seed": 3,
            "sampler_name": "Euler"}
    status, answer = exposed_server.request("POST", "/sdapi/v1/txt2img", body, timeout=300)
    assert status == 200, answer
    image = Image.open(io.BytesIO(base64.b64decode(answer["images"][0])))
    assert image.size == (64, 64)
    comments = json.loads(answer["info"])["comments"]
    bad = [c for c in comments if "bad.safetensors" in c]
    evil = [c for c in comments if "evil.pt" in c]
    assert bad and "bad.safetensors: damaged safetensors" in bad[0], comments
    assert evil and "evil.pt: unsafe pickle" in evil[0], comments
    assert not (exposed_server.root / "pwned").exists()  # the pickle never ran
    assert exposed_server.request("GET", "/internal/ping")[0] == 200
