"""The Extensions tab's "Available" list (issue 21 item 10): A1111's index format read from a real HTTP server on
this machine, filtered, searched and ordered as A1111 does; bad addresses and answers are readable errors. The
browser part drives the tab: Load, the tag filter, search, and Install (confirmed, then refused for a non-https git
URL with nothing written)."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading

import pytest
from playwright.sync_api import Page, expect

from modules import extension_index as ix
from tests.support.server import free_port, make_data_dir, running_server
from tests.test_ui_browser import browser, js_errors, page, page_errors  # noqa: F401 (fixtures)

INDEX = {
    "tags": {"script": "a script", "ads": "has ads", "localization": "a translation", "tab": "adds a tab"},
    "extensions": [
        {"name": "Alpha Tool", "url": "https://github.com/someone/alpha.git", "description": "draws alphas",
         "tags": ["script"], "added": "2023-01-05", "created_at": "2022-12-01T00:00:00Z",
         "pushed_at": "2024-03-01T00:00:00Z", "stars": 10},
        {"name": "beta-browser", "url": "https://github.com/someone/beta", "description": "a tab to browse",
         "tags": ["tab"], "added": "2023-06-01", "created_at": "2023-05-01T00:00:00Z",
         "pushed_at": "2023-07-01T00:00:00Z", "stars": 300},
        {"name": "Gamma zh_CN", "url": "https://github.com/someone/gamma", "description": "translation",
         "tags": ["localization"], "added": "2022-11-20", "stars": 5},
        {"name": "no url"},  # broken: skipped, not the whole list
        {"name": "Delta", "url": "http://127.0.0.1:9/delta.git", "description": "served over plain http",
         "tags": [], "added": "2023-02-02", "stars": 1},
    ],
}


@contextlib.contextmanager
def serving(routes: dict[str, tuple[int, bytes]]):
    """A real HTTP server on a free 127.0.0.1 port answering ``routes`` (path -> (status, body))."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            status, body = routes.get(self.path, (404, b"not found"))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_index_is_read_from_a_real_server_and_broken_entries_are_skipped():
    with serving({"/index.json": (200, json.dumps(INDEX).encode())}) as base:
        index = ix.fetch_index(base + "/index.json")
    assert [e.name for e in index.entries] == ["Alpha Tool", "beta-browser", "Gamma zh_CN", "Delta"]
    assert index.tags["tab"] == "adds a tab" and index.entries[1].stars == 300


@pytest.mark.parametrize("url", ["ftp://example.com/index.json", "file:///etc/passwd", "http://example.com/i.json",
                                 "", "javascript:alert(1)"])
def test_addresses_that_are_refused(url):
    with pytest.raises(ix.IndexError_, match="https://"):
        ix.check_index_url(url)


def test_http_is_accepted_only_on_this_machine():
    assert ix.check_index_url("http://127.0.0.1:8000/i.json") and ix.check_index_url("http://localhost/i.json")
    assert ix.check_index_url("https://raw.githubusercontent.com/x/y/master/index.json")


def test_failures_are_readable():
    with pytest.raises(ix.IndexError_, match="could not load the extension index.*git URL"):
        ix.fetch_index(f"http://127.0.0.1:{free_port()}/index.json", timeout=5)
    with serving({"/bad.json": (200, b"<html>not json</html>"), "/odd.json": (200, b'{"extensions": 3}')}) as base:
        with pytest.raises(ix.IndexError_, match="not JSON"):
            ix.fetch_index(base + "/bad.json")
        with pytest.raises(ix.IndexError_, match="no \"extensions\" list"):
            ix.fetch_index(base + "/odd.json")
        with pytest.raises(ix.IndexError_, match="could not load"):
            ix.fetch_index(base + "/missing.json")


def test_a_too_large_index_is_refused(monkeypatch):
    monkeypatch.setattr(ix, "MAX_INDEX_BYTES", 100)
    with serving({"/big.json": (200, json.dumps(INDEX).encode())}) as base:
        with pytest.raises(ix.IndexError_, match="larger than"):
            ix.fetch_index(base + "/big.json")


def _names(rows):
    return [entry.name for entry, _installed in rows]


def test_filter_search_and_every_order():
    index = ix.parse_index("x", json.dumps(INDEX))
    installed = ["https://github.com/someone/BETA.git/"]  # the same repository, spelt differently
    rows, hidden = ix.shown(index, ix.HIDDEN_BY_DEFAULT, "newest first", "", installed)
    assert _names(rows) == ["Delta", "Alpha Tool"] and hidden == 2  # beta installed, gamma a localization
    rows, hidden = ix.shown(index, [], "newest first", "", installed)
    assert _names(rows) == ["beta-browser", "Delta", "Alpha Tool", "Gamma zh_CN"] and hidden == 0
    assert [flag for _e, flag in rows] == [True, False, False, False]
    expected = {"oldest first": ["Gamma zh_CN", "Alpha Tool", "Delta", "beta-browser"],
                "a-z": ["Alpha Tool", "beta-browser", "Delta", "Gamma zh_CN"],
                "z-a": ["Gamma zh_CN", "Delta", "beta-browser", "Alpha Tool"],
                "internal order": ["Alpha Tool", "beta-browser", "Gamma zh_CN", "Delta"],
                "stars": ["beta-browser", "Alpha Tool", "Gamma zh_CN", "Delta"],
                "update time": ["Alpha Tool", "beta-browser", "Gamma zh_CN", "Delta"]}
    for order, names in expected.items():
        assert _names(ix.shown(index, [], order, "", [])[0]) == names, order
    assert _names(ix.shown(index, [], "a-z", "BROWSE", [])[0]) == ["beta-browser"]  # name, description, tags
    assert _names(ix.shown(index, [], "a-z", "tab", [])[0]) == ["beta-browser"]


# -- in the browser ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(make_data_dir(tmp_path_factory.mktemp("e2e-ext-index"), [])) as srv:
        yield srv


def test_available_tab_loads_filters_and_installs_only_what_the_rules_allow(page: Page, server, js_errors):
    with serving({"/index.json": (200, json.dumps(INDEX).encode())}) as base:
        page.get_by_role("tab", name="Extensions").first.click()
        page.get_by_role("tab", name="Available").first.click()
        box = page.locator("#extensions_index_url textarea, #extensions_index_url input").first
        expect(box).to_have_value(ix.DEFAULT_INDEX_URL)

        box.fill(f"http://127.0.0.1:{free_port()}/index.json")  # offline: one readable line
        page.locator("#extensions_available_load").click()
        expect(page.locator("#extensions_available_result")).to_contain_text("could not load the extension index")

        box.fill(base + "/index.json")
        page.locator("#extensions_available_load").click()
        rows = page.locator("#available_extensions tbody tr")
        expect(rows).to_have_count(3)  # the localization one hidden by default
        expect(page.locator("#extensions_available_html")).to_contain_text("hidden by their tags: 1")
        page.locator("#extensions_search input, #extensions_search textarea").first.fill("browse")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("beta-browser")
        page.locator("#extensions_search input, #extensions_search textarea").first.fill("")
        expect(rows).to_have_count(3)

        install = page.locator("#available_extensions button[data-name='Delta']")
        page.once("dialog", lambda dialog: dialog.dismiss())  # "no": nothing happens
        install.click()
        expect(install).to_be_enabled()
        questions = []

        def accept(dialog):
            questions.append(dialog.message)
            dialog.accept()

        page.once("dialog", accept)
        install.click()
        expect(page.locator("#extensions_available_result")).to_contain_text("only https:// git URLs")
        assert "Its code will run on this computer" in questions[0] and "http://127.0.0.1:9/delta.git" in questions[0]
    assert not any((server.data_dir / "extensions").glob("*delta*"))
    page.get_by_role("tab", name="txt2img").first.click()
    assert js_errors == []
