"""A1111's own ``test/`` suite, run unchanged against our real server (issue 17).

    venv/bin/python tests/benchmarks/a1111_api_suite.py --tests /path/to/stable-diffusion-webui/test
                                                        [--keep] [--timeout 600] [-- EXTRA PYTEST ARGS]

``--tests`` is the ``test/`` folder of an A1111 checkout (its ``conftest.py``, ``test_*.py`` and ``test_files/``);
nothing of it is copied into this repository. The script

1. makes a data folder with one tiny random sd1 checkpoint (``tests/support/server.py``'s ``make_data_dir``),
2. starts our real ``webui.py --api`` on a free 127.0.0.1 port and waits until the checkpoint has loaded,
3. runs ``python -m pytest DIR --base-url http://127.0.0.1:PORT`` from this repository's root, as A1111's CI runs
   its suite from its own root: the few tests that import ``modules.*`` or ``webui`` in the test process get ours,
4. prints the pass/fail counts and, for each failure or error, its first lines; then stops the server.

A1111 gets the ``base_url`` fixture and ``--base-url`` from the ``pytest-base-url`` plugin (its
requirements-test.txt). When that plugin is not installed, this file stands in for it: loaded with ``-p``, it adds
``--base-url`` and a session ``base_url`` fixture returning it. It also refuses every socket connection from the
test process that is not to the loopback address, so the suite cannot reach the network; the server runs with the
hubs offline as in our end-to-end tests. The pytest run uses its own empty ini file (neither our ``pytest.ini`` nor
the checkout's ``pyproject.toml`` applies) and no cache folder.

Exit status: pytest's (0 when everything passed).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

HAVE_PYTEST_BASE_URL = importlib.util.find_spec("pytest_base_url") is not None
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


# --- the pytest plugin half (loaded in the pytest process with -p tests.benchmarks.a1111_api_suite) -------------

def _loopback_only() -> None:
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def check(address) -> None:
        if isinstance(address, tuple) and address and address[0] not in LOOPBACK:
            raise ConnectionRefusedError(f"a1111_api_suite: no network from the test process (tried {address!r})")

    def connect(self, address):
        check(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        check(address)
        return real_connect_ex(self, address)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex


def pytest_configure(config) -> None:
    if os.environ.get("A1111_SUITE_PLUGIN") == "1":
        _loopback_only()


if not HAVE_PYTEST_BASE_URL:
    def pytest_addoption(parser) -> None:
        parser.addoption("--base-url", metavar="url", default=None, help="base url for the application under test")
        parser.addini("base_url", help="base url for the application under test")

    @pytest.fixture(scope="session")
    def base_url(request):
        return request.config.getoption("base_url") or request.config.getini("base_url") or None


# --- the runner half ----------------------------------------------------------------------------------------

def _summary(junit: Path) -> tuple[dict[str, int], list[tuple[str, str, str]]]:
    counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    problems: list[tuple[str, str, str]] = []
    if not junit.exists():
        return counts, problems
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
                text = (child.get("message") or "") + "\n" + (child.text or "")
                if child.tag != "skipped":
                    problems.append((child.tag, name, text.strip()))
                break
        counts["failed" if outcome == "failure" else outcome] += 1
    return counts, problems


def _short(text: str, lines: int = 6) -> str:
    kept = [line for line in text.splitlines() if line.strip()]
    tail = [line for line in kept if line.startswith("E ")][-lines:]  # pytest's "E   ..." lines say why
    return "\n".join(tail or kept[:lines])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", required=True, type=Path, help="an A1111 checkout's test/ folder")
    parser.add_argument("--keep", action="store_true", help="keep the data folder and the server logs")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per test (pytest-timeout)")
    args = parser.parse_args(argv)

    tests = args.tests.resolve()
    if not (tests / "conftest.py").is_file():
        parser.error(f"{tests} has no conftest.py: give the test/ folder of an A1111 checkout")

    from tests.support.server import make_data_dir, running_server, server_env, wait_for_model

    scratch = Path(tempfile.mkdtemp(prefix="a1111-suite-"))
    try:
        data_dir = make_data_dir(scratch / "data", ["tiny"])
        started = time.perf_counter()
        with running_server(data_dir) as server:
            options = wait_for_model(server)
            print(f"server {server.url} ready after {time.perf_counter() - started:.1f} s, "
                  f"checkpoint {options.get('sd_model_checkpoint')!r}", flush=True)
            ini = scratch / "pytest.ini"
            ini.write_text("[pytest]\n", encoding="utf-8")
            junit = scratch / "junit.xml"
            cmd = [sys.executable, "-m", "pytest", str(tests), "--base-url", server.url,
                   "-c", str(ini), "--rootdir", str(tests.parent), "-p", "no:cacheprovider",
                   "-p", "tests.benchmarks.a1111_api_suite", "--continue-on-collection-errors",
                   f"--junitxml={junit}", "-rfE", "-v"]
            if importlib.util.find_spec("pytest_timeout") is not None:
                cmd.append(f"--timeout={args.timeout}")
            cmd += extra
            env = server_env(scratch / "pytest-env")
            env["A1111_SUITE_PLUGIN"] = "1"
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
            print("$", " ".join(cmd), flush=True)
            rc = subprocess.run(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL).returncode
            alive = server.process.poll() is None
            log_tail = server.log_tail(4000)
        counts, problems = _summary(junit)
        print("\n=== A1111 test suite against our server ===")
        print(", ".join(f"{n} {k}" for k, n in counts.items()) + f" (pytest exit {rc})")
        for kind, name, text in problems:
            print(f"\n[{kind}] {name}\n{_short(text)}")
        if not alive:
            print(f"\nthe server died during the run; its log:\n{log_tail}")
        return rc
    finally:
        if args.keep:
            print(f"kept {scratch}")
        else:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
