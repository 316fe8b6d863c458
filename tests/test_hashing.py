"""Hashes match hashlib and A1111's definitions; the cache is persistent, validated, thread-safe."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from pathlib import Path

import pytest

from modules import hashing
from modules.hashing import (
    HashCache,
    addnet_hash_cached,
    addnet_hash_safetensors,
    legacy_model_hash,
    sha256_file,
    short_hash,
)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def make_file(path: Path, size: int, seed: int = 0) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


@pytest.fixture
def big(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "model.safetensors"
    # Spans several 1 MiB chunks, ends mid-chunk, and covers the legacy window at 1 MiB.
    return path, make_file(path, 2 * (1 << 20) + 12345)


def test_sha256_matches_hashlib(big: tuple[Path, bytes]) -> None:
    path, data = big
    digest = sha256_file(path)
    assert digest == hashlib.sha256(data).hexdigest()
    assert short_hash(digest) == digest[:10] and len(short_hash(digest)) == 10


def test_sha256_of_empty_and_exact_chunk_files(tmp_path: Path) -> None:
    (tmp_path / "e").write_bytes(b"")
    assert sha256_file(tmp_path / "e") == EMPTY_SHA256
    data = make_file(tmp_path / "c", hashing.CHUNK_SIZE)
    assert sha256_file(tmp_path / "c") == hashlib.sha256(data).hexdigest()


def test_legacy_hash_matches_a1111_definition(big: tuple[Path, bytes], tmp_path: Path) -> None:
    path, data = big
    assert legacy_model_hash(path) == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    partial = tmp_path / "partial.ckpt"
    pdata = make_file(partial, 0x100000 + 100)
    assert legacy_model_hash(partial) == hashlib.sha256(pdata[0x100000:]).hexdigest()[:8]
    small = tmp_path / "small.ckpt"
    make_file(small, 1000)
    assert legacy_model_hash(small) == "e3b0c442"  # nothing at 1 MiB: the hash of no bytes, as in A1111
    assert legacy_model_hash(tmp_path / "missing.ckpt") == "NOFILE"
    assert legacy_model_hash(tmp_path) == "NOFILE"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs")
def test_fifo_never_blocks(tmp_path: Path) -> None:
    fifo = tmp_path / "trap.safetensors"
    os.mkfifo(fifo)
    result: dict[str, object] = {}

    def run() -> None:
        result["legacy"] = legacy_model_hash(fifo)
        try:
            sha256_file(fifo)
        except OSError as err:
            result["err"] = err

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "hashing a FIFO blocked"
    assert result["legacy"] == "NOFILE" and isinstance(result["err"], OSError)


def write_safetensors_like(path: Path, header: bytes, payload: bytes) -> None:
    path.write_bytes(len(header).to_bytes(8, "little") + header + payload)


def test_addnet_hash_covers_tensor_bytes_only(tmp_path: Path) -> None:
    payload = random.Random(1).randbytes(3000)
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    write_safetensors_like(a, b'{"__metadata__":{"x":"1"}}', payload)
    write_safetensors_like(b, b'{"__metadata__":{"x":"a different header"}}  ', payload)
    assert addnet_hash_safetensors(a) == addnet_hash_safetensors(b) == hashlib.sha256(payload).hexdigest()
    assert sha256_file(a) != sha256_file(b)


def test_addnet_hash_rejects_bad_header_length(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes((2**63).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError, match="header length"):
        addnet_hash_safetensors(bad)
    (tmp_path / "tiny.safetensors").write_bytes(b"abc")
    with pytest.raises(ValueError, match="too short"):
        addnet_hash_safetensors(tmp_path / "tiny.safetensors")


# -- cache ----------------------------------------------------------------------------------------------------------


class Counter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> None:
        self.calls = 0
        self.lock = threading.Lock()
        real = hashing._sha256_path

        def counting(path: Path) -> str:
            with self.lock:
                self.calls += 1
            if delay:
                time.sleep(delay)
            return real(path)

        monkeypatch.setattr(hashing, "_sha256_path", counting)


def test_cache_hit_persisted_across_instances(big: tuple[Path, bytes], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path, data = big
    cache_file = tmp_path / "cache.json"
    counter = Counter(monkeypatch)
    cache = HashCache(cache_file)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(path, cache, "checkpoint/model.safetensors") == expected
    assert sha256_file(path, cache, "checkpoint/model.safetensors") == expected
    assert counter.calls == 1
    on_disk = json.loads(cache_file.read_text(encoding="utf-8"))
    entry = on_disk["hashes"]["checkpoint/model.safetensors"]
    assert entry == {"mtime": os.stat(path).st_mtime, "size": len(data), "sha256": expected}
    again = HashCache(cache_file)
    assert sha256_file(path, again, "checkpoint/model.safetensors") == expected
    assert counter.calls == 1
    assert again.lookup("checkpoint/model.safetensors", path) == expected


def test_cache_recomputes_when_size_or_mtime_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.ckpt"
    path.write_bytes(b"one")
    cache = HashCache(tmp_path / "cache.json")
    counter = Counter(monkeypatch)
    sha256_file(path, cache, "checkpoint/m.ckpt")
    st = os.stat(path)
    path.write_bytes(b"two")  # same size, new mtime
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert sha256_file(path, cache, "checkpoint/m.ckpt") == hashlib.sha256(b"two").hexdigest()
    path.write_bytes(b"three!")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same mtime, different size
    assert sha256_file(path, cache, "checkpoint/m.ckpt") == hashlib.sha256(b"three!").hexdigest()
    assert counter.calls == 3


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b"\xff\xfe\x00"])
def test_corrupt_cache_is_quarantined_and_rebuilt(tmp_path: Path, raw: bytes) -> None:
    cache_file = tmp_path / "cache.json"
    cache_file.write_bytes(raw)
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"weights")
    cache = HashCache(cache_file)
    assert cache.quarantined is not None and cache.quarantined.read_bytes() == raw
    assert sha256_file(path, cache, "checkpoint/m.safetensors") == hashlib.sha256(b"weights").hexdigest()
    assert "checkpoint/m.safetensors" in json.loads(cache_file.read_text(encoding="utf-8"))["hashes"]


def test_malformed_entries_ignored(tmp_path: Path) -> None:
    cache_file = tmp_path / "cache.json"
    cache_file.write_text(json.dumps({
        "hashes": {"checkpoint/a": {"sha256": 5, "mtime": 1}, "checkpoint/b": "x",
                   "checkpoint/ok": {"sha256": "ab", "mtime": 1.5, "size": 3}},
        "hashes-addnet": [],
    }), encoding="utf-8")
    cache = HashCache(cache_file)
    assert list(cache.entries()) == ["checkpoint/ok"]


def test_concurrent_requests_hash_once(big: tuple[Path, bytes], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path, data = big
    counter = Counter(monkeypatch, delay=0.05)
    cache = HashCache(tmp_path / "cache.json")
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(sha256_file(path, cache, "checkpoint/x")))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.calls == 1 and set(results) == {hashlib.sha256(data).hexdigest()}


def test_file_changing_while_hashed_is_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "downloading.safetensors"
    path.write_bytes(b"partial")
    real = hashing._sha256_path

    def growing(p: Path) -> str:
        value = real(p)
        with open(p, "ab") as f:
            f.write(b"more")
        return value

    monkeypatch.setattr(hashing, "_sha256_path", growing)
    cache = HashCache(tmp_path / "cache.json")
    sha256_file(path, cache, "checkpoint/d")
    assert cache.entries() == {}


def test_two_caches_sharing_a_file_keep_each_others_entries(tmp_path: Path) -> None:
    cache_file = tmp_path / "cache.json"
    a, b = HashCache(cache_file), HashCache(cache_file)  # e.g. two processes
    (tmp_path / "1").write_bytes(b"1")
    (tmp_path / "2").write_bytes(b"2")
    sha256_file(tmp_path / "1", a, "checkpoint/1")
    sha256_file(tmp_path / "2", b, "checkpoint/2")
    assert set(HashCache(cache_file).entries()) == {"checkpoint/1", "checkpoint/2"}


def test_memory_only_cache_and_addnet_section(tmp_path: Path) -> None:
    cache = HashCache(None)
    path = tmp_path / "lora.safetensors"
    write_safetensors_like(path, b"{}", b"tensor-bytes")
    assert addnet_hash_cached(path, cache, "lora/lora") == hashlib.sha256(b"tensor-bytes").hexdigest()
    assert list(cache.entries("hashes-addnet")) == ["lora/lora"] and cache.entries() == {}


def test_cache_write_failure_does_not_fail_hashing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    path = tmp_path / "m"
    path.write_bytes(b"m")
    cache = HashCache(tmp_path / "cache.json")
    monkeypatch.setattr(hashing.fileio, "atomic_write_json", fail)
    assert sha256_file(path, cache, "checkpoint/m") == hashlib.sha256(b"m").hexdigest()
    assert cache.lookup("checkpoint/m", path) is not None  # still cached in memory


def test_foreign_sections_survive_a_save(tmp_path: Path) -> None:
    cache_file = tmp_path / "cache.json"
    foreign = {"safetensors-metadata": {"checkpoint/x": {"mtime": 1.0, "value": {"a": "b"}}}}
    cache_file.write_text(json.dumps(foreign), encoding="utf-8")
    (tmp_path / "m").write_bytes(b"m")
    sha256_file(tmp_path / "m", HashCache(cache_file), "checkpoint/m")
    on_disk = json.loads(cache_file.read_text(encoding="utf-8"))
    assert on_disk["safetensors-metadata"] == foreign["safetensors-metadata"]
    assert "checkpoint/m" in on_disk["hashes"]
