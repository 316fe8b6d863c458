"""A1111's ``/file=<path>`` for extensions' own files, over real HTTP against a real ``webui.py``: the forms
extensions use (tagcomplete: ``file=tmp/tagAutocompletePath.txt?<time>`` and ``file=<absolute tags folder>/x.csv
?<time>``; ``file=extensions/<name>/...``), and the refusals (outside the folders, ``..`` plain or encoded, a
symlink out, dotfiles, code and settings, a disabled extension). Also the page HTML that carries the extensions'
scripts and the settings for ``opts``, and ``/internal/page-options``.
"""

from __future__ import annotations

import base64
import http.client
import json
import uuid
from types import SimpleNamespace

import pytest

from modules.extensions import Extension
from modules.paths import INSTALL_DIR
from modules.ui import tool_buttons, untranslated
from tests.support.server import HOST, make_data_dir, running_server

CSV = "1girl,0,100\nsolo,0,90\n"
SECRET = "sk-not-for-the-login-page"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = make_data_dir(tmp_path_factory.mktemp("ext-files"), [])
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.csv").write_text("secret", encoding="utf-8")
    ext = root / "extensions" / "tags-ext"
    for folder in ("tags/temp", "images", "javascript", "scripts", ".git"):
        (ext / folder).mkdir(parents=True)
    (ext / "tags" / "danbooru.csv").write_text(CSV, encoding="utf-8")
    (ext / "tags" / "temp" / "emb.txt").write_text("emb", encoding="utf-8")
    (ext / "tags" / ".hidden.csv").write_text("hidden", encoding="utf-8")
    (ext / "images" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (ext / "javascript" / "x.js").write_text("window.tagsExt = 1;", encoding="utf-8")
    (ext / "style.css").write_text("#tags_ext{color:red}", encoding="utf-8")
    (ext / "scripts" / "helper.py").write_text("TOKEN = 'x'\n", encoding="utf-8")
    (ext / "settings.ini").write_text("[a]\nkey=1\n", encoding="utf-8")
    (ext / ".git" / "config").write_text("[remote]\nurl=https://token@host/x\n", encoding="utf-8")
    (ext / "tags" / "link-in.csv").symlink_to(ext / "tags" / "danbooru.csv")
    (ext / "tags" / "link-out.csv").symlink_to(outside / "secret.csv")
    (ext / "tags" / "dir-out").symlink_to(outside, target_is_directory=True)
    (ext / "tags" / "config.json").symlink_to(root / "config.json")
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "linked-ext"  # an extension folder that is a link
    (elsewhere / "data").mkdir(parents=True)
    (elsewhere / "data" / "a.json").write_text('{"a": 1}', encoding="utf-8")
    (root / "extensions" / "linked-ext").symlink_to(elsewhere, target_is_directory=True)
    (root / "extensions" / "off-ext" / "tags").mkdir(parents=True)
    (root / "extensions" / "off-ext" / "tags" / "x.csv").write_text("off", encoding="utf-8")
    (root / "extensions" / "off-ext" / "javascript").mkdir()
    (root / "extensions" / "off-ext" / "javascript" / "off.js").write_text("window.off = 1;", encoding="utf-8")
    config = {"disabled_extensions": ["off-ext"], "tac_api_key": SECRET}  # an extension's secret setting
    (root / "config.json").write_text(json.dumps(config), encoding="utf-8")
    tmp_dir = INSTALL_DIR / "tmp"  # A1111's <webui>/tmp, where tagcomplete writes its path file
    made_tmp = not tmp_dir.exists()
    tmp_dir.mkdir(exist_ok=True)
    path_file = tmp_dir / f"test-{uuid.uuid4().hex}.txt"
    path_file.write_text((ext / "tags").as_posix(), encoding="utf-8")
    try:
        with running_server(root, []) as server:
            yield SimpleNamespace(server=server, root=root, ext=ext, outside=outside, path_file=path_file)
    finally:
        path_file.unlink(missing_ok=True)
        if made_tmp:
            try:
                tmp_dir.rmdir()
            except OSError:
                pass


def fetch(site, path: str, method: str = "GET", headers: dict[str, str] | None = None
          ) -> tuple[int, bytes, dict[str, str]]:
    """The raw request line as given: no client-side normalising of ``..`` or percent-escapes."""
    connection = http.client.HTTPConnection(HOST, site.server.port, timeout=30)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def test_extension_files_in_the_forms_extensions_use(site):
    tags = (site.ext / "tags").as_posix()
    status, body, headers = fetch(site, "/file=extensions/tags-ext/tags/danbooru.csv?1700000000000")
    assert (status, body.decode()) == (200, CSV)
    assert headers["content-type"].startswith("text/csv")
    # tagcomplete: the path file in tmp/, then the tag list by the absolute folder it names
    status, body, _ = fetch(site, f"/file=tmp/{site.path_file.name}?1700000000000")
    assert (status, body.decode()) == (200, tags)
    assert fetch(site, f"/file={tags}/danbooru.csv?123")[:2] == (200, CSV.encode())
    assert fetch(site, f"/file={tags}/temp/emb.txt")[:2] == (200, b"emb")
    assert fetch(site, "/file=extensions/tags-ext/images/a.png")[0] == 200
    assert fetch(site, "/file=extensions/tags-ext/tags/link-in.csv")[:2] == (200, CSV.encode())  # a link inside
    assert fetch(site, "/file=extensions/linked-ext/data/a.json")[:2] == (200, b'{"a": 1}')  # a linked extension
    linked = (site.root / "extensions" / "linked-ext").as_posix()
    assert fetch(site, f"/file={linked}/data/a.json")[:2] == (200, b'{"a": 1}')
    status, body, headers = fetch(site, "/file=extensions/tags-ext/tags/danbooru.csv", "HEAD")
    assert (status, body, headers["content-length"]) == (200, b"", str(len(CSV)))
    # a script from /file= is never a page of this origin (the guard makes active types downloads)
    status, _, headers = fetch(site, "/file=extensions/tags-ext/javascript/x.js")
    assert status == 200 and headers["content-disposition"] == "attachment"


REFUSED = [
    "/file=/etc/passwd",
    "/file=%2fetc%2fpasswd",
    "/file=config.json",
    "/file=README.md",
    "/file=extensions/../config.json",
    "/file=extensions/%2e%2e/config.json",
    "/file=extensions/tags-ext/../../config.json",
    "/file=extensions/tags-ext/%2e%2e/%2E%2E/config.json",
    "/file=extensions/tags-ext/tags/..%2f..%2f..%2fconfig.json",
    "/file=extensions/tags-ext/tags/..\\..\\..\\config.json",
    "/file=extensions/tags-ext/tags/link-out.csv",  # a symlink out of the extension
    "/file=extensions/tags-ext/tags/dir-out/secret.csv",  # through a linked folder out of it
    "/file=extensions/tags-ext/tags/config.json",  # a link to the data folder's settings
    "/file=extensions/tags-ext/.git/config",
    "/file=extensions/tags-ext/tags/.hidden.csv",
    "/file=extensions/tags-ext/scripts/helper.py",
    "/file=extensions/tags-ext/settings.ini",
    "/file=extensions/tags-ext/tags",
    "/file=extensions/tags-ext/tags/danbooru.csv%00.png",
    "/file=extensions/off-ext/tags/x.csv",  # a disabled extension
    "/file=extensions/nosuch/tags/x.csv",
    "/file=extensions-builtin/tags-ext/tags/danbooru.csv",  # not a builtin one
    "/file=tmp/../config.json",
    "/file=https://example.com/a.png",
]


@pytest.mark.parametrize("path", REFUSED)
def test_refused(site, path):
    status, body, _ = fetch(site, path)
    assert (status, json.loads(body)) == (404, {"error": "Not found"}), path  # the same answer for every refusal


def test_refused_absolute_paths(site):
    data, ext, outside = site.root.as_posix(), site.ext.as_posix(), site.outside.as_posix()
    for path in (f"{data}/config.json", f"{ext}/../../config.json", f"{ext}/tags/%2e%2e/%2e%2e/%2e%2e/config.json",
                 f"{outside}/secret.csv", f"{ext}/scripts/helper.py", f"{ext}/.git/config",
                 f"{INSTALL_DIR.as_posix()}/README.md", f"{INSTALL_DIR.as_posix()}/webui.py"):
        assert fetch(site, "/file=" + path)[0] == 404, path


def test_a_builtin_extension_is_served_by_its_form(tmp_path):
    from modules.ui.extension_assets import file_path

    builtin = tmp_path / "builtin-ext"
    (builtin / "tags").mkdir(parents=True)
    (builtin / "tags" / "a.csv").write_text("a", encoding="utf-8")
    rt = SimpleNamespace(extensions=[Extension("builtin-ext", builtin, is_builtin=True)])
    assert file_path(rt, "extensions-builtin/builtin-ext/tags/a.csv") == (builtin / "tags" / "a.csv").resolve()
    assert file_path(rt, "extensions/builtin-ext/tags/a.csv") is None
    rt.extensions[0].enabled = False
    assert file_path(rt, "extensions-builtin/builtin-ext/tags/a.csv") is None


def test_page_carries_helpers_scripts_and_settings_in_a1111_order(site):
    status, body, headers = fetch(site, "/")
    page = body.decode()
    assert status == 200 and int(headers["content-length"]) == len(body)
    head_end, body_end = page.rindex("</head>"), page.rindex("</body>")
    data = page.index("window.__sdPage = ")
    helpers = page.index("w.gradioApp = function")
    script = page.index('<script src="./extension-assets/tags-ext/javascript/x.js"></script>')
    style = page.index('href="./extension-assets/tags-ext/style.css"')
    assert data < helpers < script < head_end < style < body_end  # scripts in the head, styles after gradio's
    start = data + len("window.__sdPage = ")
    # an extension script is in the page: every tab is built before onUiLoaded
    assert json.loads(page[start:page.index(";</script>", start)]) == {"localization": {}, "mountTabs": True,
                                                                        "untranslated": untranslated.page_data(),
                                                                        **tool_buttons.page_data()}
    # the settings are not in the page, which gradio also serves as its login page
    assert SECRET not in page and SECRET in fetch(site, "/internal/page-options")[1].decode()
    assert "/extension-assets/off-ext/" not in page  # a disabled extension's script stays out


def test_page_options_follow_changes(site):
    status, body, headers = fetch(site, "/internal/page-options")
    first = json.loads(body)
    assert status == 200 and headers["cache-control"] == "no-store"
    assert first["opts"]["CLIP_stop_at_last_layers"] == 1
    assert fetch(site, f"/internal/page-options?known={first['version']}")[:2] == (204, b"")
    assert site.server.request("POST", "/sdapi/v1/options", {"CLIP_stop_at_last_layers": 2})[0] == 200
    try:
        status, body, _ = fetch(site, f"/internal/page-options?known={first['version']}")
        changed = json.loads(body)
        assert status == 200 and changed["version"] != first["version"]
        assert changed["opts"]["CLIP_stop_at_last_layers"] == 2
    finally:
        site.server.request("POST", "/sdapi/v1/options", {"CLIP_stop_at_last_layers": 1})



def test_with_a_login_the_files_and_settings_need_it(tmp_path):
    from modules import script_callbacks
    from modules.cmd_args import parse_args
    from tests.support.local_client import LocalClient
    from webui import create_app

    root = make_data_dir(tmp_path / "auth", [])
    (root / "extensions" / "tags-ext" / "tags").mkdir(parents=True)
    (root / "extensions" / "tags-ext" / "tags" / "a.csv").write_text(CSV, encoding="utf-8")
    (root / "config.json").write_text(json.dumps({"tac_api_key": SECRET}), encoding="utf-8")
    app = create_app(parse_args(["--data-dir", str(root), "--gradio-auth", "user:pass"], environ={}))
    try:
        client = LocalClient(app)
        page = client.get("/")  # gradio's login page: the same HTML, without the settings
        assert page.status_code == 200 and "window.__sdPage" in page.text and SECRET not in page.text
        assert client.get("/internal/page-options").status_code == 401
        assert client.get("/file=extensions/tags-ext/tags/a.csv").status_code == 401
        login = {"Authorization": "Basic " + base64.b64encode(b"user:pass").decode()}
        served = client.get("/file=extensions/tags-ext/tags/a.csv", headers=login)
        assert (served.status_code, served.text) == (200, CSV)
        assert SECRET in client.get("/internal/page-options", headers=login).text
    finally:
        app.state.runtime.jobs.stop()
        script_callbacks.clear()
