"""Real A1111 extensions in a real server: what loads, what shows, what answers, and the start-up time.

    venv/bin/python tests/benchmarks/real_extensions.py EXTENSIONS_FOLDER [--data-dir DIR] [--skip-install]
        [--starts 3] [--each] [--no-browser] [--json FILE] [--chromium /usr/bin/chromium] [--attach PORT]

``EXTENSIONS_FOLDER`` holds cloned extensions (one folder each, as ``git clone`` leaves them). They are copied into
the ``extensions/`` folder of a fresh data dir (``--data-dir``, else a temp dir) beside a tiny random checkpoint, and
``webui.py --api`` is started on it with the interpreter running this script (run the script with the venv the
extensions' packages should go to: their installers pip-install into it). Nothing here installs anything itself.

1. First start: the extensions' ``install.py`` run (unless ``--skip-install``); how long that took is printed.
2. Per extension: loaded or not and every problem the Extensions tab shows (install, import, callback errors),
   the scripts it loaded, its Script entries in ``/sdapi/v1/scripts``, its ``javascript/*.js`` and ``style.css`` in
   the page head and whether each is served, and, for the extensions of issue 17 section 1, probes of what they
   do: their HTTP API (infinite-image-browsing's ``/infinite_image_browsing/*``, prompt-all-in-one's
   ``/physton_prompt/*``, tagcomplete's ``/tacapi/v1/*`` and its tag CSV through ``/file=``), dynamic prompts
   expanding ``{a|b}`` in a txt2img request through ``alwayson_scripts``, adetailer's failure message, the zh_CN
   localization merged.
3. In Debian's chromium (Playwright, no browser download): the page with all of them, every console error, page
   error and failed request (attributed to an extension by the URL or stack naming its folder), and whether each
   extension's UI element is visible (its tab, accordion, autocomplete popup, ...).
4. ``--starts`` more starts (installs done, so cached): seconds from starting ``webui.py`` until ``GET /`` returns the
   page ("first page"), and until the page is interactive in the browser (Generate visible and enabled).
   ``--each``: the same with one extension at a time (the others disabled), to see which one costs what.

``--attach PORT --data-dir DIR`` checks a server already running on DIR instead (steps 2 and 3 only).

Exit status 0 when the server started every time; the findings are a report, not a pass/fail verdict. Not a test:
pytest does not collect it, and it may take minutes (installers reach the network).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.support.server import (  # noqa: E402
    HOST, Server, _die_with_parent, free_port, make_data_dir, server_env, stop_process, wait_for_model,
)

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--no-proxy-server"]
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
FIRST_START_TIMEOUT = 1800.0  # installers may pip-install for many minutes
START_TIMEOUT = 180.0


@dataclass
class Check:
    what: str
    ok: bool | None  # None: not applicable / could not be decided
    detail: str = ""


@dataclass
class Report:
    name: str
    remote: str = ""
    enabled: bool = True
    scripts_loaded: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # done differently, not wrong (an extra left out)
    script_titles: list[str] = field(default_factory=list)
    assets: list[Check] = field(default_factory=list)
    api: list[Check] = field(default_factory=list)
    ui: list[Check] = field(default_factory=list)
    console: list[str] = field(default_factory=list)


# -- HTTP ----------------------------------------------------------------------------------------------------------


def http(server: Server, method: str, path: str, body: Any = None, timeout: float = 120) -> tuple[int, bytes, str]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with _NO_PROXY.open(req, timeout=timeout) as r:
            return r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("content-type", "")
    except (OSError, urllib.error.URLError) as err:
        return 0, str(err).encode(), ""


def get_json(server: Server, path: str) -> Any:
    status, raw, _ = http(server, "GET", path)
    if status != 200:
        raise RuntimeError(f"GET {path}: {status} {raw[:300]!r}")
    return json.loads(raw)


def _text(raw: bytes, limit: int = 200) -> str:
    return raw[:limit].decode("utf-8", errors="replace").replace("\n", " ")


# -- the server ----------------------------------------------------------------------------------------------------


def spawn(data_dir: Path, extra: list[str], log_dir: Path) -> tuple[Server, float]:
    """webui.py on a free port; returns the server and the moment it was started (perf_counter)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [sys.executable, str(REPO / "webui.py"), "--api", "--data-dir", str(data_dir), "--server-name", HOST,
           "--port", str(port), *extra]
    out = open(log_dir / "stdout.log", "wb")  # noqa: SIM115 - closed with the process
    err = open(log_dir / "stderr.log", "wb")  # noqa: SIM115
    started = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=REPO, env=server_env(log_dir), stdin=subprocess.DEVNULL, stdout=out,
                               stderr=err, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    return Server(process, port, data_dir, log_dir), started


def wait_first_page(server: Server, started: float, timeout: float) -> float:
    """Seconds from ``started`` until ``GET /`` returns the page (status 200, gradio's app in it)."""
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"webui.py exited with {server.process.returncode}:\n{server.log_tail()}")
        status, raw, _ = http(server, "GET", "/", timeout=10)
        if status == 200 and b"gradio" in raw.lower():
            return time.perf_counter() - started
        if time.monotonic() > deadline:
            raise RuntimeError(f"no page within {timeout:.0f} s:\n{server.log_tail()}")
        time.sleep(0.1)


# -- what the Extensions tab says ----------------------------------------------------------------------------------


def extension_table(server: Server) -> dict[str, dict[str, Any]]:
    """Per extension: scripts loaded and the problems of the Extensions tab (read from the page's /config)."""
    import html as html_module

    config = get_json(server, "/config")
    table = next((c["props"]["value"] for c in config.get("components", [])
                  if c.get("props", {}).get("elem_id") == "extensions_installed_html"), "")
    out: dict[str, dict[str, Any]] = {}
    for row in re.findall(r"<tr><td>(.*?)</tr>", table, re.S):
        cells = re.findall(r"<td>(.*?)</td>", "<td>" + row, re.S)
        if len(cells) < 10:
            continue
        problems = [html_module.unescape(p) for p in
                    re.findall(r"<(?:pre|p) class='error[^']*'>(.*?)</(?:pre|p)>", cells[9], re.S)]
        notes = [html_module.unescape(p) for p in re.findall(r"<p class='comments'>(.*?)</p>", cells[9], re.S)]
        scripts = [html_module.unescape(s.strip()) for s in cells[8].split(",") if s.strip()]
        out[html_module.unescape(cells[0])] = {"scripts": scripts, "problems": problems, "notes": notes,
                                               "enabled": "disabled" not in cells[1]}
    return out


# -- probes of the extensions of issue 17 section 1 ----------------------------------------------------------------


def _saved_image(server: Server) -> Path | None:
    status, raw, _ = http(server, "POST", "/sdapi/v1/txt2img", {
        "prompt": "a lighthouse, probe", "width": 64, "height": 64, "steps": 1, "save_images": True})
    if status != 200:
        return None
    found = sorted((server.data_dir / "outputs").rglob("*.png"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def probe_dynamic_prompts(server: Server, r: Report, ctx: dict[str, Any]) -> None:
    info = [s for s in get_json(server, "/sdapi/v1/script-info") if s["name"].startswith("dynamic prompts")
            and not s["is_img2img"]]
    if not info:
        r.api.append(Check("its always-on script is listed in /sdapi/v1/script-info", False, "not listed"))
        return
    script = info[0]
    r.api.append(Check("always-on script listed", True, script["name"]))
    args = [a.get("value") for a in script["args"]]
    labels = [a.get("label") or "" for a in script["args"]]
    combinatorial = next((i for i, lb in enumerate(labels) if lb.startswith("Combinatorial generation")), None)
    for mode, prompt, expected in (("random", "a {red|blue} cube", None),
                                   ("combinatorial", "a {red|blue} {cube|ball}",
                                    ["a red cube", "a red ball", "a blue cube", "a blue ball"])):
        chosen = list(args)
        if combinatorial is not None:
            chosen[combinatorial] = mode == "combinatorial"
        body = {"prompt": prompt, "width": 64, "height": 64, "steps": 1, "seed": 7,
                "batch_size": 2 if mode == "random" else 1,
                "alwayson_scripts": {script["name"]: {"args": chosen}}}
        status, raw, _ = http(server, "POST", "/sdapi/v1/txt2img", body, timeout=300)
        if status != 200:
            r.api.append(Check(f"txt2img expands {prompt!r} ({mode})", False, f"{status} {_text(raw, 400)}"))
            continue
        prompts = json.loads(json.loads(raw)["info"])["all_prompts"]
        if expected is None:
            ok = all("{" not in p and p in ("a red cube", "a blue cube") for p in prompts)
        else:
            ok = prompts == expected
        r.api.append(Check(f"txt2img expands {prompt!r} ({mode})", ok, f"all_prompts={prompts}"))


def probe_iib(server: Server, r: Report, ctx: dict[str, Any]) -> None:
    status, raw, _ = http(server, "GET", "/infinite_image_browsing/hello")
    r.api.append(Check("GET /infinite_image_browsing/hello", status == 200 and b"hello" in raw,
                       f"{status} {_text(raw)}"))
    status, raw, _ = http(server, "GET", "/infinite_image_browsing/global_setting")
    setting = json.loads(raw) if status == 200 else {}
    outdir = setting.get("global_setting", {}).get("outdir_txt2img_samples")
    r.api.append(Check("GET /infinite_image_browsing/global_setting", status == 200,
                       f"{status}; it sees outdir_txt2img_samples={outdir!r}, resolved against its "
                       f"os.getcwd()={setting.get('sd_cwd')!r}"))
    status, raw, _ = http(server, "GET", "/infinite_image_browsing/fe-static/index.html")
    r.api.append(Check("its app is served (/infinite_image_browsing/fe-static/index.html)", status == 200,
                       f"{status}"))
    image = ctx.get("image")
    if image is None:
        r.api.append(Check("an output image to browse", False, "txt2img with save_images failed"))
        return
    q = urllib.request.quote
    status, raw, _ = http(server, "GET", f"/infinite_image_browsing/image_geninfo?path={q(str(image))}")
    r.api.append(Check("reads a generated image's infotext (image_geninfo)", status == 200 and b"Steps:" in raw,
                       f"{status} {_text(raw, 100)}"))
    status, raw, _ = http(server, "GET", f"/infinite_image_browsing/files?folder_path={q(str(image.parent))}")
    names = [f.get("name") for f in json.loads(raw).get("files", [])] if status == 200 else []
    r.api.append(Check("lists the txt2img output folder (files)", image.name in names,
                       f"{status} {names if status == 200 else _text(raw)}"))
    status, raw, _ = http(server, "GET", f"/infinite_image_browsing/image-thumbnail?path={q(str(image))}"
                                         "&size=64x64&t=1")
    r.api.append(Check("serves a thumbnail of it", status == 200,
                       f"{status} {_text(raw, 80) if status != 200 else ''}"))


def probe_tagcomplete(server: Server, r: Report, ctx: dict[str, Any]) -> None:
    status, raw, _ = http(server, "GET", "/file=tmp/tagAutocompletePath.txt")
    r.api.append(Check("GET /file=tmp/tagAutocompletePath.txt (where its JS finds the tags)", status == 200,
                       f"{status} {_text(raw)}"))
    if status == 200:
        base = raw.decode().strip()
        status, raw, ctype = http(server, "GET", f"/file={base}/danbooru.csv")
        r.api.append(Check("GET /file=<tags>/danbooru.csv", status == 200 and raw.startswith(b"1girl"),
                           f"{status} {ctype} {len(raw)} bytes"))
    for path in ("/tacapi/v1/get-all-use-counts", "/tacapi/v1/refresh-styles-if-changed"):
        status, raw, _ = http(server, "GET", path)
        r.api.append(Check(f"GET {path}", status in (200, 304), f"{status} {_text(raw, 80)}"))


def probe_prompt_all_in_one(server: Server, r: Report, ctx: dict[str, Any]) -> None:
    for path in ("/physton_prompt/get_version", "/physton_prompt/get_config", "/physton_prompt/get_extensions"):
        status, raw, _ = http(server, "GET", path)
        r.api.append(Check(f"GET {path}", status == 200, f"{status} {_text(raw, 100)}"))
    status, raw, _ = http(server, "GET", "/physton_prompt/get_extra_networks")
    pages = {p["name"]: len(p["items"]) for p in json.loads(raw)["extra_networks"]} if status == 200 else {}
    r.api.append(Check("GET /physton_prompt/get_extra_networks (ui_extra_networks pages)",
                       status == 200 and "checkpoints" in pages, f"{status} {pages or _text(raw)}"))
    status, raw, _ = http(server, "POST", "/physton_prompt/token_counter", {"text": "a cat, a dog", "steps": 20})
    r.api.append(Check("POST /physton_prompt/token_counter", status == 200, f"{status} {_text(raw, 120)}"))


def probe_adetailer(server: Server, r: Report, ctx: dict[str, Any]) -> None:
    text = "\n".join(r.problems)
    r.api.append(Check("fails with ONE problem naming ultralytics/torchvision",
                       len(r.problems) == 1 and ("ultralytics" in text or "torchvision" in text),
                       f"{len(r.problems)} problem(s): "
                       + " | ".join(p.splitlines()[0] if p else "" for p in r.problems)))


def probe_localization(server: Server, r: Report, ctx: dict[str, Any]) -> None:
    before = get_json(server, "/sdapi/v1/options").get("localization", "None")
    status, raw, _ = http(server, "POST", "/sdapi/v1/options", {"localization": "zh_CN"})
    if status != 200:
        r.api.append(Check("localization zh_CN can be chosen", False, f"{status} {_text(raw)}"))
        return
    try:
        mapping = get_json(server, "/internal/localization")
        ext_file = next((server.data_dir / "extensions" / r.name / "localizations").glob("zh_CN.json"), None)
        ext_map = json.loads(ext_file.read_text(encoding="utf-8")) if ext_file else {}
        overlap = [k for k, v in ext_map.items() if isinstance(v, str) and mapping.get(k) == v]
        r.api.append(Check("its zh_CN.json is merged into /internal/localization",
                           bool(ext_map) and len(overlap) >= 0.95 * len(ext_map),
                           f"{len(overlap)} of its {len(ext_map)} strings in the merged {len(mapping)}"))
    finally:
        http(server, "POST", "/sdapi/v1/options", {"localization": before})


# -- UI checks in the page ------------------------------------------------------------------------------------------


def open_tab(page: Any, tab: str) -> bool:
    button = page.get_by_role("tab", name=tab, exact=True)
    if button.count() == 0:
        return False
    button.first.click()
    page.wait_for_timeout(500)
    return True


def look(what: str, tab: str | None, selector: str, wait_s: float = 15) -> Callable[[Any], Check]:
    """A check that ``selector`` is visible (after opening ``tab``)."""

    def check(page: Any) -> Check:
        if tab and not open_tab(page, tab):
            return Check(what, False, f"no tab named {tab!r}")
        found = page.locator(selector).first
        found.wait_for(state="visible", timeout=wait_s * 1000)
        return Check(what, True, (found.inner_text(timeout=2000) or "").strip().replace("\n", " ")[:80])

    check.what = what  # type: ignore[attr-defined]
    return check


def named(what: str) -> Callable[[Callable[[Any], Check]], Callable[[Any], Check]]:
    def mark(func: Callable[[Any], Check]) -> Callable[[Any], Check]:
        func.what = what  # type: ignore[attr-defined]
        return func

    return mark


@named("autocomplete popup on typing '1gi' in the txt2img prompt")
def ui_tagcomplete(page: Any) -> Check:
    open_tab(page, "txt2img")
    box = page.locator("#txt2img_prompt textarea").first
    box.click()
    box.fill("")
    box.type("1gi", delay=80)
    results = page.locator(".autocompleteResults li").first
    results.wait_for(state="visible", timeout=15_000)
    return Check("autocomplete popup on typing '1gi' in the txt2img prompt", True, results.inner_text()[:60])


@named('ratio dropdown: 16:9 and width 640 make the height 360')
def ui_aspect_ratio(page: Any) -> Check:
    """Its JS dropdown beside Width/Height: pick 16:9, type a width, the height follows (its accordion of buttons
    is hidden by default, arh_hide_accordion_by_default)."""
    open_tab(page, "txt2img")
    page.locator("#txt2img_select_aspect_ratio").wait_for(state="visible", timeout=15_000)
    page.select_option("#txt2img_select_aspect_ratio", "16:9")
    width = page.locator("#txt2img_width input[type=number]").first
    width.fill("640")
    width.press("Enter")
    page.wait_for_timeout(800)
    height = page.locator("#txt2img_height input[type=number]").first.input_value()
    return Check("ratio dropdown: 16:9 and width 640 make the height 360", height == "360", f"height={height}")


@named('Wildcards Manager tab loads its tree')
def ui_dynamic_prompts_wildcards(page: Any) -> Check:
    if not open_tab(page, "Wildcards Manager"):
        return Check("Wildcards Manager tab loads its tree", False, "no tab named 'Wildcards Manager'")
    tree = page.locator("#sddp-wildcard-tree").first
    tree.wait_for(state="visible", timeout=15_000)
    started = time.monotonic()
    try:  # a server round trip; with images-browser's ~1,500 components each one costs seconds in gradio 6's page
        page.wait_for_function("() => !document.querySelector('#sddp-wildcard-tree').innerText.includes('Loading')",
                               timeout=40_000)
    except Exception:  # noqa: BLE001
        present = page.evaluate("() => ['sddp-wildcard-c2s-message-textbox', 'sddp-wildcard-load-tree-button']"
                                ".map(i => i + (document.getElementById(i) ? ' present' : ' NOT in the DOM'))")
        return Check("Wildcards Manager tab loads its tree", False,
                     "stays 'Loading...'; its hidden (visible=False) message boxes: " + ", ".join(present))
    return Check("Wildcards Manager tab loads its tree", True,
                 f"in {time.monotonic() - started:.1f} s: {tree.inner_text()[:60] or '(no wildcards yet)'}")


@named('its tab shows the app (in its iframe)')
def ui_iib(page: Any) -> Check:
    if not open_tab(page, "Infinite image browsing"):
        return Check("its tab shows the app (in its iframe)", False, "no tab named 'Infinite image browsing'")
    page.locator("#infinite_image_browsing_container_wrapper iframe").first.wait_for(state="attached",
                                                                                     timeout=15_000)
    body = page.frame_locator("#infinite_image_browsing_container_wrapper iframe").locator("body")
    page.wait_for_timeout(3000)
    text = body.inner_text(timeout=15_000)
    return Check("its tab shows the app (in its iframe)", "It seems to have failed" not in text and len(text) > 50,
                 text.strip().replace("\n", " ")[:80])


@named('its tab lists the txt2img outputs (First Page)')
def ui_images_browser(page: Any) -> Check:
    """Its txt2img sub-tab, First Page: the gallery should show the images of outdir_txt2img_samples."""
    if not open_tab(page, "Image Browser"):
        return Check("its tab lists the txt2img outputs", False, "no tab named 'Image Browser'")
    base = "image_browser_tab_txt2img"
    page.locator(f"#{base}_control_image_browser_first_page").first.click(timeout=15_000)
    page.wait_for_timeout(1000)
    with contextlib.suppress(Exception):  # the gallery is filled by a gradio event ("processing | 3.2s")
        page.wait_for_function(f"() => {{ const w = document.getElementById('{base}_image_browser_warning_box');"
                               " return w && w.innerText.includes('images in this directory'); }",
                               timeout=60_000)
    count = page.locator(f"#{base}_image_browser_gallery img").count()
    warning = page.evaluate(f"() => document.getElementById('{base}_image_browser_warning_box')?.innerText || ''")
    return Check("its tab lists the txt2img outputs (First Page)", count > 0, f"{count} images; {warning.strip()}")


@named('its panel under the txt2img prompt')
def ui_prompt_all_in_one(page: Any) -> Check:
    open_tab(page, "txt2img")
    panel = page.locator("#phystonPrompt_txt2img_prompt, .physton-prompt").first
    panel.wait_for(state="visible", timeout=15_000)
    return Check("its panel under the txt2img prompt", True, panel.inner_text()[:60].replace("\n", " "))


@dataclass
class Known:
    key: str  # the folder / repository name
    probe: Callable[[Server, Report, dict[str, Any]], None] | None = None
    ui: list[Callable[[Any], Check]] = field(default_factory=list)
    urls: tuple[str, ...] = ()  # URL parts of its own routes, for attributing page errors


KNOWN = [
    Known("sd-dynamic-prompts", probe_dynamic_prompts,
          [look("its accordion in txt2img", "txt2img", "#sddp-dynamic-prompting"), ui_dynamic_prompts_wildcards]),
    Known("sd-webui-infinite-image-browsing", probe_iib, [ui_iib], ("/infinite_image_browsing/", "zanllp")),
    Known("a1111-sd-webui-tagcomplete", probe_tagcomplete, [ui_tagcomplete], ("/tacapi/",)),
    Known("sd-webui-prompt-all-in-one", probe_prompt_all_in_one, [ui_prompt_all_in_one], ("/physton_prompt/",)),
    Known("sd-webui-aspect-ratio-helper", None, [ui_aspect_ratio]),
    Known("stable-diffusion-webui-images-browser", None,
          [look("its tab", "Image Browser", "#image_browser_tabs_container"), ui_images_browser]),
    Known("stable-diffusion-webui-localization-zh_CN", probe_localization),
    Known("adetailer", probe_adetailer),
]


def known_for(name: str, remote: str) -> Known:
    for known in KNOWN:
        if name == known.key or remote.rstrip("/").removesuffix(".git").endswith(known.key):
            return known
    return Known(name)


# -- the page in a browser -----------------------------------------------------------------------------------------


def attribute(text: str, reports: dict[str, Report]) -> str | None:
    for name in sorted(reports, key=len, reverse=True):
        markers = (f"/{name}/", f"extensions/{name}", *known_for(name, reports[name].remote).urls)
        if any(m in text for m in markers):
            return name
    return None


def browser_checks(server: Server, reports: dict[str, Report], chromium: str, ctx: dict[str, Any]) -> list[str]:
    """Console errors, page errors and failed requests of the page with every extension; each extension's UI."""
    from playwright.sync_api import sync_playwright

    unattributed: list[str] = []

    def note(message: str, where: str) -> None:
        owner = attribute(where + " " + message, reports)
        (reports[owner].console if owner else unattributed).append(message[:600])

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        page.on("console", lambda m: m.type == "error" and note(
            f"console.error: {m.text} ({m.location.get('url', '')}:{m.location.get('lineNumber', '')})",
            m.location.get("url", "")))
        page.on("pageerror", lambda e: note(f"pageerror: {e.message}\n{(e.stack or '')[:400]}", e.stack or ""))
        page.on("requestfailed", lambda q: "ERR_ABORTED" not in str(q.failure) and note(  # aborted: page closed
            f"request failed: {q.method} {q.url} ({q.failure})", q.url))
        page.on("response", lambda resp: resp.status >= 400 and note(
            f"HTTP {resp.status}: {resp.request.method} {resp.url}", resp.url))
        t0 = time.perf_counter()
        page.goto(server.url + "/", wait_until="load")
        page.locator("#txt2img_generate").wait_for(state="visible", timeout=120_000)
        ctx["page_interactive_s"] = time.perf_counter() - t0
        page.wait_for_timeout(3000)  # onUiLoaded callbacks, extension scripts settle
        for name, report in reports.items():
            for check in known_for(name, report.remote).ui:
                try:
                    report.ui.append(check(page))
                except Exception as err:  # noqa: BLE001 - a missing element is a finding
                    report.ui.append(Check(getattr(check, "what", "ui check"), False,
                                           str(err).splitlines()[0][:240]))
        page.close()
        browser.close()
    return unattributed


# -- the report ----------------------------------------------------------------------------------------------------


def collect(server: Server, chromium: str, browser: bool, ctx: dict[str, Any]) -> tuple[dict[str, Report], list[str]]:
    listed = {e["name"]: e for e in get_json(server, "/sdapi/v1/extensions")}
    table = extension_table(server)
    scripts = get_json(server, "/sdapi/v1/scripts")
    page = http(server, "GET", "/")[1].decode("utf-8", errors="replace")
    reports: dict[str, Report] = {}
    ext_root = server.data_dir / "extensions"
    titles = sorted(set(scripts.get("txt2img", [])) | set(scripts.get("img2img", [])))
    extension_titles = [t for t in titles if not _mentions(REPO, t, "scripts")]  # ours are in REPO/scripts
    for name, item in listed.items():
        row = table.get(name, {})
        r = Report(name, remote=item.get("remote") or "", enabled=bool(item.get("enabled")),
                   scripts_loaded=row.get("scripts", []), problems=row.get("problems", []),
                   notes=row.get("notes", []))
        folder = ext_root / name
        r.script_titles = [t for t in extension_titles if _mentions(folder, t)]
        for asset in sorted((folder / "javascript").glob("*.js")) + sorted((folder / "javascript").glob("*.mjs")) \
                + ([folder / "style.css"] if (folder / "style.css").is_file() else []):
            rel = asset.relative_to(folder).as_posix()
            match = re.search(r'(?:src|href)="([^"]*' + re.escape(f"{name}/{rel}") + r'[^"]*)"', page)
            if not match:
                r.assets.append(Check(f"{rel} in the page head", False, "not linked"))
                continue
            url = match.group(1).lstrip(".")
            status, raw, ctype = http(server, "GET", url if url.startswith("/") else "/" + url)
            r.assets.append(Check(f"{rel} in the page head and served", status == 200,
                                  f"{status} {ctype.split(';')[0]} {len(raw)} bytes"))
        reports[name] = r
    ctx["image"] = _saved_image(server)
    for name, r in reports.items():
        probe = known_for(name, r.remote).probe
        if probe is not None:
            try:
                probe(server, r, ctx)
            except Exception as err:  # noqa: BLE001 - a probe that breaks is a finding too
                r.api.append(Check(f"probe {probe.__name__}", False, f"{type(err).__name__}: {err}"))
    unattributed = browser_checks(server, reports, chromium, ctx) if browser else []
    return reports, unattributed


def _mentions(folder: Path, title: str, under: str = "") -> bool:
    """Whether the Python sources under ``folder`` (or its ``under`` folder) spell this Script title (its
    version suffix left out): how a title in /sdapi/v1/scripts is traced to the extension that has it."""
    key = title.split(" v")[0].lower()
    root = folder / under if under else folder
    for source in root.rglob("*.py") if root.is_dir() else []:
        try:
            if source.stat().st_size < 2_000_000 and key in source.read_text("utf-8", errors="replace").lower():
                return True
        except OSError:
            continue
    return False


def _mark(ok: bool | None) -> str:
    return {True: "ok  ", False: "FAIL", None: "n/a "}[ok]


def print_report(reports: dict[str, Report], unattributed: list[str], timings: dict[str, Any]) -> None:
    for r in reports.values():
        state = "loaded" if r.enabled and not r.problems and (r.scripts_loaded or not _has_scripts(r)) else \
            ("disabled" if not r.enabled else ("loaded with problems" if r.scripts_loaded else "NOT loaded"))
        print(f"\n=== {r.name}  [{state}]  {r.remote}")
        print(f"  scripts loaded: {', '.join(r.scripts_loaded) or '-'}; Script entries: "
              f"{', '.join(r.script_titles) or '-'}")
        for problem in r.problems:
            lines = problem.strip().splitlines()
            print("  PROBLEM: " + (lines[0] if lines else ""))
            for line in lines[1:][-12:]:
                print("           " + line)
        for note in r.notes:
            print("  note: " + note)
        for group, checks in (("asset", r.assets), ("api", r.api), ("ui", r.ui)):
            for c in checks:
                print(f"  {group:5} {_mark(c.ok)} {c.what}: {c.detail}")
        for message in r.console:
            print("  console " + message.replace("\n", "\n          "))
    if unattributed:
        print("\n=== page errors not attributed to one extension")
        for message in unattributed:
            print("  " + message.replace("\n", "\n  "))
    print("\n=== start-up")
    for key, value in timings.items():
        print(f"  {key}: {value}")


def _has_scripts(r: Report) -> bool:
    return bool(r.scripts_loaded) or bool(r.problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("extensions", type=Path, help="folder of cloned extensions (one folder each)")
    parser.add_argument("--data-dir", type=Path, default=None, help="the data dir to build (default: a temp dir)")
    parser.add_argument("--skip-install", action="store_true", help="pass --skip-install: installers do not run")
    parser.add_argument("--starts", type=int, default=3, help="timed starts after the first (installs cached)")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    parser.add_argument("--each", action="store_true",
                        help="also time a start and the page with each extension alone (the others disabled)")
    parser.add_argument("--attach", type=int, default=None, metavar="PORT",
                        help="check a server already running on this port over --data-dir (no starts, no timings)")
    args = parser.parse_args(argv)
    if args.attach is not None:
        if args.data_dir is None:
            parser.error("--attach needs the server's --data-dir")
        attached = _Attached()
        server = Server(attached, args.attach, args.data_dir, args.data_dir / "server-logs")  # type: ignore[arg-type]
        reports, unattributed = collect(server, args.chromium, not args.no_browser, ctx := {})
        print_report(reports, unattributed, {k: v for k, v in ctx.items() if k.endswith("_s")})
        return 0

    folders = sorted(p for p in args.extensions.iterdir() if p.is_dir() and not p.name.startswith("."))
    tmp = None if args.data_dir else tempfile.TemporaryDirectory(prefix="real-extensions-")
    data_dir = args.data_dir or Path(tmp.name) / "data"
    try:
        make_data_dir(data_dir, ["tiny"])
        for folder in folders:
            target = data_dir / "extensions" / folder.name
            if not target.exists():
                shutil.copytree(folder, target, symlinks=True)
        extra = ["--skip-install"] if args.skip_install else []
        timings: dict[str, Any] = {"extensions": len(folders)}
        server, started = spawn(data_dir, extra, data_dir / "server-logs" / "start-0")
        try:
            first = wait_first_page(server, started, FIRST_START_TIMEOUT)
            timings["first start (installers run" + (", skipped" if args.skip_install else "") + ")"] = \
                f"{first:.1f} s to the first page"
            wait_for_model(server)
            ctx: dict[str, Any] = {}
            reports, unattributed = collect(server, args.chromium, not args.no_browser, ctx)
            if "page_interactive_s" in ctx:
                timings["page load to interactive (server warm)"] = f"{ctx['page_interactive_s']:.2f} s"
        finally:
            stop_process(server.process)
        pages, interactive = [], []
        for n in range(1, args.starts + 1):
            server, started = spawn(data_dir, extra, data_dir / "server-logs" / f"start-{n}")
            try:
                pages.append(wait_first_page(server, started, START_TIMEOUT))
                if not args.no_browser:
                    interactive.append(_interactive_after_start(server, started, args.chromium))
            finally:
                stop_process(server.process)
        if pages:
            timings["start to first page (GET / answered), per start"] = ", ".join(f"{t:.1f}" for t in pages) + \
                f" s; median {statistics.median(pages):.1f} s"
        if interactive:
            timings["start to page interactive in chromium, per start"] = \
                ", ".join(f"{t:.1f}" for t in interactive) + f" s; median {statistics.median(interactive):.1f} s"
        if args.each:
            timings.update(each_alone(data_dir, [f.name for f in folders], extra, args.chromium, args.no_browser))
        print_report(reports, unattributed, timings)
        if args.json:
            args.json.write_text(json.dumps({"extensions": {n: _as_dict(r) for n, r in reports.items()},
                                             "unattributed": unattributed, "timings": timings}, indent=2,
                                            default=str), encoding="utf-8")
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


class _Attached:
    """Stands for the process of a server this script did not start."""

    returncode = None

    def poll(self) -> None:
        return None


def each_alone(data_dir: Path, names: list[str], extra: list[str], chromium: str, no_browser: bool
               ) -> dict[str, str]:
    """Start to first page, the page's component count and start to interactive with only one extension enabled
    (``disabled_extensions`` in config.json; restored afterwards), and with none."""
    config = data_dir / "config.json"
    saved = config.read_text(encoding="utf-8") if config.is_file() else None
    settings = json.loads(saved) if saved else {}
    out: dict[str, str] = {}
    try:
        for keep in [None, *names]:
            settings["disabled_extensions"] = [n for n in names if n != keep]
            config.write_text(json.dumps(settings, indent=4), encoding="utf-8")
            server, started = spawn(data_dir, extra, data_dir / "server-logs" / f"alone-{keep or 'none'}")
            try:
                page = wait_first_page(server, started, START_TIMEOUT)
                components = len(get_json(server, "/config").get("components", []))
                ready = "" if no_browser else \
                    f", interactive {_interactive_after_start(server, started, chromium):.1f} s"
            finally:
                stop_process(server.process)
            out[f"alone: {keep or '(no extension)'}"] = f"first page {page:.1f} s, {components} components{ready}"
    finally:
        if saved is None:
            config.unlink(missing_ok=True)
        else:
            config.write_text(saved, encoding="utf-8")
    return out


def _interactive_after_start(server: Server, started: float, chromium: str) -> float:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=LAUNCH_ARGS)
        page = browser.new_page()
        page.goto(server.url + "/", wait_until="load")
        page.wait_for_function("() => { const b = document.getElementById('txt2img_generate');"
                               " return b && !b.disabled && b.offsetParent !== null; }", timeout=120_000)
        elapsed = time.perf_counter() - started
        browser.close()
    return elapsed


def _as_dict(r: Report) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(r)


if __name__ == "__main__":
    sys.exit(main())
