"""Durability (security campaign cases 37-39): atomic replace, no overwrite, quarantine, with injected faults."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from modules import fileio
from modules.fileio import (
    atomic_write_json,
    atomic_write_text,
    create_unique,
    load_json_with_recovery,
    quarantine,
    read_json_or_quarantine,
    write_new_file,
)

ROOT = Path(__file__).resolve().parent.parent
QUARANTINE_RE = re.compile(r"^config\.json\.corrupt-\d{8}-\d{6}(-\d+)?$")


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if fileio.is_temp_leftover(p.name))


# -- atomic replace -------------------------------------------------------------------------------------------------


def test_atomic_write_creates_and_keeps_backup(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    atomic_write_text(target, "one")
    assert target.read_text(encoding="utf-8") == "one"
    assert not (tmp_path / "config.json.bak").exists()  # nothing to back up the first time
    atomic_write_text(target, "two")
    atomic_write_text(target, "three")
    assert target.read_text(encoding="utf-8") == "three"
    assert (tmp_path / "config.json.bak").read_text(encoding="utf-8") == "two"
    assert leftovers(tmp_path) == []


def test_atomic_write_preserves_mode_and_writes_through_symlink(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "config.json"
    real.parent.mkdir()
    real.write_text("old", encoding="utf-8")
    os.chmod(real, 0o640)
    link = tmp_path / "config.json"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text(encoding="utf-8") == "new"
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o640


def test_atomic_write_json_serializes_before_touching_the_file(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    atomic_write_json(target, {"a": "ü"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": "ü"}
    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": object()})
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": "ü"}
    assert leftovers(tmp_path) == []


def test_text_is_utf8_without_bom_and_newlines_untranslated(tmp_path: Path) -> None:
    target = tmp_path / "styles.csv"
    atomic_write_text(target, "name,prompt\r\nä,b\n")
    assert target.read_bytes() == "name,prompt\r\nä,b\n".encode()


@pytest.mark.parametrize("failing", ["replace", "fsync", "write_enospc", "write_partial_enospc"])
def test_fault_mid_write_leaves_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    target = tmp_path / "config.json"
    atomic_write_text(target, '{"old": true}')
    real_write = os.write

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    def partial_then_fail(fd: int, data: bytes) -> int:
        if len(data) > 4:
            return real_write(fd, bytes(data[:4]))  # short write first, then the disk fills up
        raise OSError(errno.ENOSPC, "No space left on device")

    patch = {
        "replace": ("replace", fail),
        "fsync": ("fsync", fail),
        "write_enospc": ("write", fail),
        "write_partial_enospc": ("write", partial_then_fail),
    }[failing]
    monkeypatch.setattr(fileio.os, patch[0], patch[1])
    with pytest.raises(OSError) as err:
        atomic_write_text(target, '{"new": "' + "x" * 10000 + '"}')
    monkeypatch.undo()
    assert err.value.errno == errno.ENOSPC
    assert target.read_text(encoding="utf-8") == '{"old": true}'
    assert leftovers(tmp_path) == []


def test_read_only_directory_raises_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "config.json"
    atomic_write_text(target, "old")
    real_open = os.open

    def ro_open(path: str | os.PathLike[str], flags: int, *args: int, **kwargs: object) -> int:
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(fileio.os, "open", ro_open)
    with pytest.raises(OSError) as err:
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert err.value.errno == errno.EROFS
    assert target.read_text(encoding="utf-8") == "old"


def _write_attempts(folder: Path) -> list[str]:
    results = []
    for attempt in (lambda: atomic_write_text(folder / "config.json", "new"),
                    lambda: write_new_file(folder / "img.png", b"x")):
        try:
            attempt()
        except PermissionError:
            results.append("refused")
        else:
            results.append("written")
    return results


def _as_nobody(fn: Callable[[], list[str]]) -> list[str]:
    """Run ``fn`` in a forked child that dropped root for ``nobody`` (root ignores permission bits)."""
    import pwd

    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no exec, so the interpreter's own folder need not be readable by nobody
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            os.write(write_end, json.dumps(fn()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data or b"[]")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_really_read_only_directory(tmp_path: Path) -> None:
    """A folder the user may not write: both writers fail with PermissionError and the old file survives."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="ro-test-"))  # outside root's private pytest folder
    try:
        target = folder / "config.json"
        atomic_write_text(target, "old")
        if os.geteuid() == 0:
            os.chmod(folder, 0o755)  # owned by root: readable, not writable, for nobody
            os.chmod(target, 0o644)
            results = _as_nobody(lambda: _write_attempts(folder))
        else:
            os.chmod(folder, 0o555)
            results = _write_attempts(folder)
        assert results == ["refused", "refused"]
        assert target.read_text(encoding="utf-8") == "old"
        assert sorted(p.name for p in folder.iterdir()) == ["config.json"]  # no temporary file left behind
    finally:
        os.chmod(folder, 0o755)
        shutil.rmtree(folder, ignore_errors=True)


_KILL_WRITER = """
import sys
from modules.fileio import atomic_write_bytes
target = sys.argv[1]
a, b = b"A" * (1 << 20), b"B" * (2 << 20)
print("ready", flush=True)
i = 0
while True:
    atomic_write_bytes(target, a if i % 2 else b)
    i += 1
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_kill_9_during_writes_leaves_a_complete_version(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    target.write_bytes(b"A" * (1 << 20))
    proc = subprocess.Popen([sys.executable, "-c", _KILL_WRITER, str(target)], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        bak_path = tmp_path / "config.json.bak"
        deadline = time.monotonic() + 60  # the writer is in its loop once a first write has made the backup
        while not bak_path.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bak_path.exists(), f"the writer made no backup in 60 s (exit code {proc.poll()})"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    data = target.read_bytes()
    assert data in (b"A" * (1 << 20), b"B" * (2 << 20))
    bak = (tmp_path / "config.json.bak").read_bytes()
    assert bak in (b"A" * (1 << 20), b"B" * (2 << 20))


# -- never-overwrite creation ---------------------------------------------------------------------------------------


def test_write_new_file_never_overwrites(tmp_path: Path) -> None:
    first = write_new_file(tmp_path / "00000-1.png", b"first")
    second = write_new_file(tmp_path / "00000-1.png", b"second")
    third = write_new_file(tmp_path / "00000-1.png", b"third")
    assert [first.name, second.name, third.name] == ["00000-1.png", "00000-1-1.png", "00000-1-2.png"]
    assert [p.read_bytes() for p in (first, second, third)] == [b"first", b"second", b"third"]
    with pytest.raises(FileExistsError):
        write_new_file(tmp_path / "00000-1.png", b"x", on_collision="error")
    assert first.read_bytes() == b"first"
    assert leftovers(tmp_path) == []


def test_collision_on_a_maximum_length_name(tmp_path: Path) -> None:
    name = "é" * 125 + "x.png"  # 255 bytes in UTF-8
    assert len(name.encode()) == 255
    first = write_new_file(tmp_path / name, b"1")
    second = write_new_file(tmp_path / name, b"2")
    assert first.name == name and second.name.endswith("-1.png") and len(second.name.encode()) <= 255
    assert second.read_bytes() == b"2"


def test_write_new_file_concurrent_writers_get_distinct_names(tmp_path: Path) -> None:
    results: list[Path] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        path = write_new_file(tmp_path / "grid-0000.png", f"payload-{i}".encode() * 1000)
        with lock:
            results.append(path)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({p.name for p in results}) == 16
    payloads = {p.read_bytes() for p in results}
    assert payloads == {f"payload-{i}".encode() * 1000 for i in range(16)}


@pytest.mark.parametrize("code", [errno.EPERM, errno.EOPNOTSUPP])
def test_write_new_file_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(code, "hard links not supported")

    existing = tmp_path / "a.png"
    existing.write_bytes(b"keep me")
    monkeypatch.setattr(fileio.os, "link", no_link)
    path = write_new_file(existing, b"new")
    assert path.name == "a-1.png" and path.read_bytes() == b"new"
    assert existing.read_bytes() == b"keep me"
    assert leftovers(tmp_path) == []


def test_write_new_file_failure_leaves_nothing_at_final_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", fail)
    with pytest.raises(OSError):
        write_new_file(tmp_path / "00001-5.png", b"\x89PNG" + b"x" * 1000)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_create_unique_reserves_names(tmp_path: Path) -> None:
    names = [create_unique(tmp_path, "log", ".csv").name for _ in range(3)]
    assert names == ["log.csv", "log-1.csv", "log-2.csv"]
    assert all((tmp_path / n).stat().st_size == 0 for n in names)


# -- quarantine and JSON loading ------------------------------------------------------------------------------------


def test_quarantine_never_overwrites_an_earlier_copy(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    target.write_text("{broken", encoding="utf-8")
    q1 = quarantine(target, "test")
    target.write_text("{broken again", encoding="utf-8")
    q2 = quarantine(target, "test")
    assert q1 != q2 and QUARANTINE_RE.match(q1.name) and QUARANTINE_RE.match(q2.name)
    assert q1.read_text(encoding="utf-8") == "{broken" and q2.read_text(encoding="utf-8") == "{broken again"
    assert not target.exists()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b'{"a": 1',  # truncated by a crash
        b"{'a': 1}",
        b'{"a": "\xff\xfe"}',  # not UTF-8
        b"[1, 2]",  # wrong type
        b"null",
        b"\xef\xbb\xbf",  # a BOM and nothing else
    ],
)
def test_corrupt_json_is_quarantined(tmp_path: Path, raw: bytes) -> None:
    target = tmp_path / "config.json"
    target.write_bytes(raw)
    data, qpath = read_json_or_quarantine(target)
    assert data is None and qpath is not None and QUARANTINE_RE.match(qpath.name)
    assert qpath.read_bytes() == raw and not target.exists()
    # The next save creates a fresh file and leaves the quarantined copy alone.
    atomic_write_json(target, {"fresh": True})
    assert qpath.read_bytes() == raw


def test_missing_and_valid_json(tmp_path: Path) -> None:
    assert read_json_or_quarantine(tmp_path / "nope.json") == (None, None)
    target = tmp_path / "config.json"
    target.write_text('{"a": 1}', encoding="utf-8")
    assert read_json_or_quarantine(target) == ({"a": 1}, None)


def test_utf8_bom_is_tolerated(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    target.write_bytes(b'\xef\xbb\xbf{"a": "\xc3\xbc"}')
    assert read_json_or_quarantine(target) == ({"a": "ü"}, None)
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_unreadable_path_propagates(tmp_path: Path) -> None:
    (tmp_path / "config.json").mkdir()
    with pytest.raises(OSError):
        read_json_or_quarantine(tmp_path / "config.json")


def test_load_json_with_recovery_uses_backup(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    atomic_write_json(target, {"v": 1})
    atomic_write_json(target, {"v": 2})
    target.write_text('{"v": 3', encoding="utf-8")  # a crash truncated the current file (no atomic write)
    result = load_json_with_recovery(target)
    assert result.data == {"v": 1} and result.from_backup
    assert result.quarantined is not None and result.quarantined.read_text(encoding="utf-8") == '{"v": 3'
    assert (tmp_path / "config.json.bak").exists()  # only read, never moved
    assert load_json_with_recovery(tmp_path / "missing.json") == fileio.JsonLoad(None)
