"""A real ``webui.py`` server process on a free 127.0.0.1 port, for end-to-end tests.

``running_server(data_dir)`` starts ``<venv python> webui.py --api --data-dir <data_dir> --port <free port>`` as a
subprocess (offline environment), waits until ``/internal/ping`` answers, yields a :class:`Server`, and always
stops the process afterwards: SIGTERM, then SIGKILL when it does not exit in time. Use it from a module- or
session-scoped fixture, so the ~10 s of imports are paid once per test file::

    @pytest.fixture(scope="module")
    def server(tmp_path_factory):
        data_dir = make_data_dir(tmp_path_factory.mktemp("e2e"), ["alpha"])
        with running_server(data_dir) as srv:
            yield srv
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT = 120.0  # seconds until /internal/ping must answer
STOP_TIMEOUT = 15.0  # seconds between SIGTERM and SIGKILL

# Requests to the loopback server never go through a proxy from the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerStartError(RuntimeError):
    pass


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    data_dir: Path
    log_dir: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, chars: int = 6000) -> str:
        return _tail(self.log_dir / "stderr.log", chars)

    def get_json(self, path: str, timeout: float = 30) -> Any:
        with _NO_PROXY.open(self.url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def request(self, method: str, path: str, body: Any = None, timeout: float = 60) -> tuple[int, Any]:
        """(status, decoded JSON body) for any status, 4xx/5xx included."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with _NO_PROXY.open(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        return status, (json.loads(raw) if raw else None)


def venv_python() -> str:
    """The venv's interpreter: the one running the tests (run_tests.sh runs pytest with it)."""
    return sys.executable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def webuiapi_client(server: Server) -> Any:
    """The ``webuiapi`` client of a running server, on the loopback (no proxy from the environment)."""
    import webuiapi

    client = webuiapi.WebUIApi(host=HOST, port=server.port)
    client.session.trust_env = False
    return client


def make_data_dir(root: Path, names: Sequence[str] = ("tiny",), family: str = "sd1") -> Path:
    """A --data-dir with one tiny random checkpoint (plus its yaml) per name in models/Stable-diffusion."""
    from tests.support.tiny_checkpoints import write_tiny_checkpoint

    ckpts = root / "models" / "Stable-diffusion"
    for seed, name in enumerate(names, start=1):
        write_tiny_checkpoint(family, ckpts, name, seed=seed)
    return root


def server_env(scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
               DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    env["GRADIO_TEMP_DIR"] = str(scratch / "gradio-tmp")  # gradio's file cache: not the shared /tmp/gradio
    env["COMMANDLINE_ARGS"] = ""  # a developer's own flags must not change the server under test
    for key in ("NO_PROXY", "no_proxy"):
        env[key] = ",".join(filter(None, [env.get(key, ""), HOST, "localhost"]))
    # One torch thread. The tiny test models gain nothing from a second one (150 steps: 14 s with one, 18 s with two,
    # on 2 idle cores), and on a loaded machine torch's OpenMP threads wait on each other at every op: with three
    # busy processes beside it, 150 steps took 55 s with two threads and 10 s with one. The browser and the test
    # process keep a core for themselves.
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the server gets SIGKILL if the test process dies without running its teardown."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _tail(path: Path, chars: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "<no log>"
    return text[-chars:]


def _ping(port: int) -> bool:
    try:
        with _NO_PROXY.open(f"http://{HOST}:{port}/internal/ping", timeout=2) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


def stop_process(process: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, wait, then SIGKILL; never raises for an already finished process."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout)


def start_server(data_dir: Path, extra_args: Sequence[str] = (), timeout: float = START_TIMEOUT,
                 log_dir: Path | None = None) -> Server:
    """Start the server and wait until /internal/ping answers; on failure the process is stopped and the error
    carries the server's stderr."""
    data_dir = Path(data_dir)
    log_dir = Path(log_dir or data_dir / "server-logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):  # a free port can be taken by someone else before the server binds it
        port = free_port()
        cmd = [venv_python(), str(REPO / "webui.py"), "--api", "--data-dir", str(data_dir),
               "--server-name", HOST, "--port", str(port), *extra_args]
        with open(log_dir / "stdout.log", "wb") as out, open(log_dir / "stderr.log", "wb") as err:
            process = subprocess.Popen(cmd, cwd=REPO, env=server_env(log_dir), stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=err, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        server = Server(process, port, data_dir, log_dir)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if process.poll() is not None:
                    log = server.log_tail()
                    if "address already in use" in log.lower() and attempt < 2:
                        break  # try another port
                    raise ServerStartError(f"webui.py exited with code {process.returncode} before answering "
                                           f"/internal/ping.\ncommand: {' '.join(cmd)}\n--- stderr ---\n{log}")
                if _ping(port):
                    return server
                if time.monotonic() > deadline:
                    raise ServerStartError(f"webui.py did not answer /internal/ping within {timeout:.0f} s.\n"
                                           f"command: {' '.join(cmd)}\n--- stderr ---\n{server.log_tail()}")
                time.sleep(0.25)
        except BaseException:
            stop_process(process)
            raise
    raise ServerStartError("could not find a free port for webui.py")  # pragma: no cover


@contextlib.contextmanager
def running_server(data_dir: Path, extra_args: Sequence[str] = (), timeout: float = START_TIMEOUT) -> Iterator[Server]:
    server = start_server(data_dir, extra_args, timeout)
    try:
        yield server
    finally:
        stop_process(server.process)


def wait_for_model(server: Server, timeout: float = 120.0) -> dict[str, Any]:
    """Wait until the startup checkpoint load has finished: no job running and a checkpoint in the options."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerStartError(f"webui.py died (code {server.process.returncode}).\n{server.log_tail()}")
        status, last = server.request("GET", "/sdapi/v1/progress", timeout=10)
        if status == 200 and not last["state"]["job"] and last["state"]["job_count"] == 0:  # queue idle
            options = server.get_json("/sdapi/v1/options")
            if options.get("sd_model_checkpoint"):
                return options
        time.sleep(0.25)
    raise TimeoutError(f"checkpoint did not finish loading in {timeout:.0f} s (last progress {last}).\n"
                       f"{server.log_tail()}")
