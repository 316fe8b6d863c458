"""Extensions through git: install from an https URL (a real clone from a local HTTPS git server with its own
certificate), install.py run, listed with remote/branch/commit; check for updates and fast-forward; and every
refusal: http URLs, bad folder names, existing folders, network-exposed servers. metadata.ini load order."""

from __future__ import annotations

import functools
import http.server
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from modules import extension_git
from modules import extensions as ext_mod
from modules.cmd_args import parse_args


def _git(*args, cwd=None):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _commit(work: Path, bare: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text, encoding="utf-8")
    _git("add", "-A", cwd=work)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message, cwd=work)
    _git("push", "-q", str(bare), "HEAD:main", cwd=work)
    _git("update-server-info", cwd=bare)  # what git's "dumb" http clients read
    return _git("rev-parse", "HEAD", cwd=work)


@pytest.fixture()
def https_repo(tmp_path, monkeypatch):
    """A bare repo ``demo-remote.git`` served over HTTPS on 127.0.0.1 with a self-signed certificate that git is
    told to trust (GIT_SSL_CAINFO); yields (url, work tree, bare repo)."""
    served = tmp_path / "served"
    bare = served / "demo-remote.git"
    served.mkdir()
    _git("init", "-q", "--bare", "-b", "main", str(bare))
    work = tmp_path / "work"
    _git("init", "-q", "-b", "main", str(work))
    _commit(work, bare, {"install.py": "open('installed-by-git.txt', 'w').write('yes')\n",
                         "scripts/hello.py": "from modules import script_callbacks\n"}, "first")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("GIT_SSL_CAINFO", str(cert))
    yield f"https://127.0.0.1:{server.server_address[1]}/demo-remote.git", work, bare
    server.shutdown()


def _runtime(tmp_path, *flags):
    from modules.runtime import build_runtime

    return build_runtime(parse_args(["--data-dir", str(tmp_path / "data"), *flags], environ={}))


def test_install_from_url_check_and_update(https_repo, tmp_path):
    from modules.ui import extensions_tab

    url, work, bare = https_repo
    rt = _runtime(tmp_path)
    message = extensions_tab.install_extension(rt, url)
    target = rt.paths.extensions_dir / "demo-remote"
    assert "Installed into" in message and (target / "scripts" / "hello.py").is_file()
    assert (target / "installed-by-git.txt").read_text() == "yes"  # its install.py ran
    ext = rt.extensions[-1]
    item = ext.api_item()
    assert item["remote"] == url and item["branch"] == "main" and item["commit_hash"] == _git("rev-parse", "HEAD",
                                                                                             cwd=work)
    assert len(item["version"]) == 8 and item["commit_date"] > 0
    assert not list(rt.paths.extensions_dir.glob(".installing-*"))  # the staging folder is gone
    # installing again under the same name touches nothing
    assert "already installed" in extensions_tab.install_extension(rt, url)

    assert extensions_tab.check_updates(rt) == {"demo-remote": "latest"}
    newest = _commit(work, bare, {"scripts/hello.py": "# v2\n"}, "second")
    assert extensions_tab.check_updates(rt) == {"demo-remote": "1 new commit(s)"}
    assert extensions_tab.update_extensions(rt) == {"demo-remote": "updated, restart to load"}
    assert ext.git().commit_hash == newest and (target / "scripts" / "hello.py").read_text() == "# v2\n"
    # a local edit is never thrown away: the update is refused instead
    (target / "scripts" / "hello.py").write_text("# mine\n")
    _commit(work, bare, {"scripts/hello.py": "# v3\n"}, "third")
    result = extensions_tab.update_extensions(rt)["demo-remote"]
    assert result.startswith("error:") and (target / "scripts" / "hello.py").read_text() == "# mine\n"


@pytest.mark.parametrize("url, dirname, words", [
    ("http://example.com/a.git", "", "only https"),
    ("file:///etc", "", "only https"),
    ("--upload-pack=touch /tmp/x", "", "only https"),
    ("https://example.com/a.git", "../escape", "cannot be an extension folder name"),
    ("https://example.com/.hidden.git", "", "cannot be an extension folder name"),
    ("https://example.com/a b.git", "", "spaces"),
])
def test_install_refuses_bad_urls_and_names(tmp_path, url, dirname, words):
    from modules.ui import extensions_tab

    rt = _runtime(tmp_path)
    message = extensions_tab.install_extension(rt, url, "", dirname)
    assert words in message
    assert not (tmp_path / "escape").exists() and list(rt.paths.extensions_dir.iterdir()) == []


def test_install_is_refused_on_a_network_exposed_server(https_repo, tmp_path):
    from modules.ui import extensions_tab

    url, _, _ = https_repo
    exposed = _runtime(tmp_path, "--listen", "--gradio-auth", "ann:pw")
    assert "--enable-insecure-extension-access" in extensions_tab.install_extension(exposed, url)
    assert not (exposed.paths.extensions_dir / "demo-remote").exists()
    # without a login, not even the flag opens installing to the network
    no_login = _runtime(tmp_path, "--listen", "--insecure-no-auth", "--enable-insecure-extension-access")
    assert "without a login" in extensions_tab.install_extension(no_login, url)
    assert not (no_login.paths.extensions_dir / "demo-remote").exists()
    allowed = _runtime(tmp_path, "--listen", "--gradio-auth", "ann:pw", "--enable-insecure-extension-access")
    assert "Installed into" in extensions_tab.install_extension(allowed, url)


def test_metadata_requires_orders_loading_and_reports_missing(tmp_path):
    root = tmp_path / "extensions"
    for name, meta in (("a-first", "[Extension]\nName = a\nRequires = zed-lib\n"),
                       ("b-needs-ghost", "[Extension]\nRequires = ghost\n"),
                       ("c-loop", "[Extension]\nRequires = d-loop\n"), ("d-loop", "[Extension]\nRequires = c-loop\n"),
                       ("zed-lib", "[Extension]\nName = zed-lib\n"), ("e-broken", "[Extension\nnot ini")):
        (root / name).mkdir(parents=True)
        (root / name / "metadata.ini").write_text(meta, encoding="utf-8")
    found = ext_mod.discover(tmp_path, {})
    order = [e.name for e in ext_mod.load_order(found)]
    assert order.index("zed-lib") < order.index("a-first")
    assert set(order) == {e.name for e in found}
    by_name = {e.name: e for e in found}
    assert "requires ghost" in by_name["b-needs-ghost"].errors[0]
    assert any("cycle" in e for e in by_name["c-loop"].errors + by_name["d-loop"].errors)
    assert by_name["e-broken"].errors == []  # an unreadable metadata.ini only costs its ordering


def test_folder_names_come_from_the_url():
    assert extension_git.folder_name_for("https://github.com/u/sd-webui-thing.git") == "sd-webui-thing"
    assert extension_git.folder_name_for("https://github.com/u/thing/") == "thing"
    assert extension_git.folder_name_for("https://github.com/u/thing", "my.thing") == "my.thing"


def test_extension_names_and_errors_are_escaped_in_the_table(tmp_path):
    """Campaign B23: a folder name or an error message with markup is shown as text."""
    from modules.ui import extensions_tab

    rt = _runtime(tmp_path)
    evil = "<img src=x onerror=alert(1)>"
    ext = ext_mod.Extension(evil, tmp_path / "x")
    ext.errors.append(f"boom {evil}")
    ext.notes.append(f"installed without its {evil} extra")  # a note is shown beside the problems, as text too
    ext.loaded_scripts.append(f"{evil}.py")
    rt.extensions.append(ext)
    table = extensions_tab.extensions_table(rt, {evil: evil})
    assert "<img" not in table and table.count("&lt;img src=x onerror=alert(1)&gt;") == 5
    assert "<p class='comments'>installed without its &lt;img" in table
