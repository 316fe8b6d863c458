"""modules.models.download against a real HTTP server on 127.0.0.1 (no outside network)."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from modules.models.download import DEFAULT_SD_MODEL, DownloadError, HashMismatchError, download_file

PAYLOAD = os.urandom(3 * (1 << 20) + 12345)  # > 3 chunks, so progress is reported several times
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    honour_range = True

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/file":
            self._serve(PAYLOAD)
        elif self.path == "/norange":
            self._serve(PAYLOAD, honour_range=False)
        elif self.path == "/short":
            # Promises the whole file, sends a third, closes cleanly: http.client reports no error by itself.
            self._headers(200, len(PAYLOAD))
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            self.close_connection = True
        elif self.path == "/reset":
            # The server dies mid-transfer: a hard reset (RST) after part of the body.
            self._headers(200, len(PAYLOAD))
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
        elif self.path == "/missing":
            self.send_error(404, "Not Found")
        else:
            self.send_error(500)

    def _headers(self, code: int, length: int, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(length))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def _serve(self, data: bytes, honour_range: bool = True) -> None:
        rng = self.headers.get("Range")
        if rng and honour_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            body = data[start:]
            self._headers(206, len(body), {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        else:
            body = data
            self._headers(200, len(body))
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_success_with_progress(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "models" / "Stable-diffusion" / "model.safetensors"
    calls: list[tuple[int, int | None]] = []
    out = download_file(f"{server}/file", dest, PAYLOAD_SHA, progress=lambda d, t: calls.append((d, t)), timeout=10)
    assert out == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_suffix(".safetensors.partial").exists()
    assert calls[0] == (0, len(PAYLOAD)) and calls[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert len(calls) >= 4
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_no_hash_given_still_downloads(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "a.bin"
    download_file(f"{server}/file", dest, None, timeout=10)
    assert dest.read_bytes() == PAYLOAD


def test_hash_mismatch_leaves_no_file(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "model.safetensors"
    with pytest.raises(HashMismatchError) as err:
        download_file(f"{server}/file", dest, "0" * 64, timeout=10)
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []  # partial deleted too
    assert "model.safetensors" in str(err.value) and "expected 0000000000" in str(err.value)


def test_connection_refused_is_offline_message(tmp_path: Path) -> None:
    dest = tmp_path / "models" / "Stable-diffusion" / DEFAULT_SD_MODEL["filename"]
    url = f"http://127.0.0.1:{_free_port()}/v1-5-pruned-emaonly.safetensors"
    with pytest.raises(DownloadError) as err:
        download_file(url, dest, DEFAULT_SD_MODEL["sha256"], timeout=5)
    msg = str(err.value)
    assert msg.startswith("could not reach 127.0.0.1: you appear to be offline; download "
                          "v1-5-pruned-emaonly.safetensors yourself and put it in ")
    assert "Stable-diffusion" in msg
    assert not dest.exists()


def test_offline_message_names_huggingface_and_relative_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The exact sentence users see on first run without network: host from the URL, folder relative to the cwd.
    def refuse(*_a: object, **_k: object) -> None:
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.chdir(tmp_path)
    dest = Path("models/Stable-diffusion") / DEFAULT_SD_MODEL["filename"]
    with pytest.raises(DownloadError) as err:
        download_file(DEFAULT_SD_MODEL["url"], dest, DEFAULT_SD_MODEL["sha256"])
    assert str(err.value).startswith(
        "could not reach huggingface.co: you appear to be offline; download v1-5-pruned-emaonly.safetensors "
        "yourself and put it in models/Stable-diffusion")


def test_http_error_is_download_error(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{server}/missing", tmp_path / "x.bin", None, timeout=10)
    assert not (tmp_path / "x.bin").exists()


@pytest.mark.parametrize("path", ["/short", "/reset"])
def test_server_dies_mid_transfer_leaves_no_final_file(server: str, tmp_path: Path, path: str) -> None:
    dest = tmp_path / "model.safetensors"
    with pytest.raises(DownloadError) as err:
        download_file(f"{server}{path}", dest, PAYLOAD_SHA, timeout=10)
    assert not dest.exists()
    assert "run again to resume" in str(err.value) or "could not reach" in str(err.value)


def test_resume_from_partial(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "model.safetensors"
    partial = tmp_path / "model.safetensors.partial"
    partial.write_bytes(PAYLOAD[:1000])
    calls: list[tuple[int, int | None]] = []
    download_file(f"{server}/file", dest, PAYLOAD_SHA, progress=lambda d, t: calls.append((d, t)), timeout=10)
    assert dest.read_bytes() == PAYLOAD
    assert calls[0] == (1000, len(PAYLOAD))  # continued, did not start over
    assert not partial.exists()


def test_server_ignoring_range_restarts_cleanly(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "model.safetensors"
    (tmp_path / "model.safetensors.partial").write_bytes(b"garbage that must not stay at the front")
    download_file(f"{server}/norange", dest, PAYLOAD_SHA, timeout=10)
    assert dest.read_bytes() == PAYLOAD


def test_interrupted_then_resumed(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "model.safetensors"
    with pytest.raises(DownloadError):
        download_file(f"{server}/short", dest, PAYLOAD_SHA, timeout=10)
    partial = tmp_path / "model.safetensors.partial"
    assert partial.exists() and 0 < partial.stat().st_size < len(PAYLOAD)
    download_file(f"{server}/file", dest, PAYLOAD_SHA, timeout=10)
    assert dest.read_bytes() == PAYLOAD


def test_default_model_constants() -> None:
    assert DEFAULT_SD_MODEL["filename"] == "v1-5-pruned-emaonly.safetensors"
    assert DEFAULT_SD_MODEL["url"].endswith("/" + DEFAULT_SD_MODEL["filename"])
    assert DEFAULT_SD_MODEL["url"].startswith("https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/")
    assert DEFAULT_SD_MODEL["sha256"][:10] == "6ce0161689"  # the model hash A1111 users see
    assert len(DEFAULT_SD_MODEL["sha256"]) == 64
