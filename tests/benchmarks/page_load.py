"""Page load to interactive: a real webui.py on a tiny checkpoint, Debian's chromium, the time until Generate works.

    venv/bin/python tests/benchmarks/page_load.py [--runs 5] [--localization zh_CN]

Starts the server once (its startup is not counted), then opens the page ``--runs`` times in a fresh browser tab and
prints, per run and as the median: time to the ``load`` event, time until the Generate button is visible and
enabled, and (with ``--localization``) until its label is translated.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.support.server import make_data_dir, running_server, wait_for_model  # noqa: E402

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--no-proxy-server"]
TRANSLATED_GENERATE = {"zh_CN": "生成"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--localization", default=None, help="e.g. zh_CN: also wait for the translated label")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = make_data_dir(Path(tmp), ["tiny"])
        if args.localization:
            (data_dir / "config.json").write_text(f'{{"localization": "{args.localization}"}}', encoding="utf-8")
        started = time.perf_counter()
        with running_server(data_dir) as server:
            print(f"server answering after {time.perf_counter() - started:.1f} s (not counted below)")
            wait_for_model(server)
            label = TRANSLATED_GENERATE.get(args.localization or "", "Generate")
            loads, interactive = [], []
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=LAUNCH_ARGS)
                for run in range(args.runs):
                    page = browser.new_page()
                    t0 = time.perf_counter()
                    page.goto(server.url + "/", wait_until="load")
                    t_load = time.perf_counter() - t0
                    button = page.locator("#txt2img_generate")
                    button.wait_for(state="visible", timeout=60_000)
                    page.wait_for_function(
                        "([label]) => { const b = document.getElementById('txt2img_generate');"
                        " return b && !b.disabled && b.textContent.trim() === label; }", arg=[label], timeout=60_000)
                    t_ready = time.perf_counter() - t0
                    loads.append(t_load)
                    interactive.append(t_ready)
                    print(f"run {run + 1}: load event {t_load:.2f} s, Generate ready ({label}) {t_ready:.2f} s")
                    page.close()
                browser.close()
    print(f"median of {args.runs}: load event {statistics.median(loads):.2f} s, "
          f"interactive {statistics.median(interactive):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
