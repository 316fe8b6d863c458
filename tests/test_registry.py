"""Checkpoint registry: scanning, A1111 names and aliases, lookup, hashing, and the files it must skip."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

import pytest

from modules import hashing
from modules.hashing import HashCache
from modules.models.registry import CheckpointRegistry, natural_sort_key


def put(path: Path, data: bytes = b"weights") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "models" / "Stable-diffusion"
    put(root / "v1-5-pruned-emaonly.safetensors", b"sd15" * 100)
    put(root / "B-model.ckpt", b"ckpt")
    put(root / "m10.safetensors")
    put(root / "m2.safetensors")
    put(root / "sub" / "c.SAFETENSORS", b"c")
    put(root / "sub" / "deep" / "d.Ckpt", b"d")
    put(root / "x.vae.safetensors")  # a VAE next to checkpoints: not a checkpoint
    put(root / "y.VAE.ckpt")
    put(root / "notes.txt")
    put(root / "empty.safetensors", b"")
    (root / "dir.safetensors").mkdir()
    put(root / "dir.safetensors" / "inside.safetensors", b"inside")  # A1111 walks into it too
    (root / "broken.safetensors").symlink_to(root / "missing.safetensors")
    (root / "sub" / "loop").symlink_to(root)  # a folder loop must not hang the scan
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "fifo.safetensors")
    if os.path.exists("/dev/zero"):
        (root / "zero.ckpt").symlink_to("/dev/zero")
    return root


def registry(root: Path, tmp_path: Path, **kw: object) -> CheckpointRegistry:
    reg = CheckpointRegistry([root], HashCache(tmp_path / "cache.json"), **kw)  # type: ignore[arg-type]
    reg.refresh()
    return reg


def test_scan_lists_checkpoints_in_a1111_order(tree: Path, tmp_path: Path) -> None:
    reg = registry(tree, tmp_path)
    assert [i.name for i in reg.list()] == [
        "B-model.ckpt",
        "m2.safetensors",  # natural order: 2 before 10
        "m10.safetensors",
        "v1-5-pruned-emaonly.safetensors",
        "dir.safetensors/inside.safetensors",
        "sub/c.SAFETENSORS",
        "sub/deep/d.Ckpt",
    ]


def test_skipped_entries_are_reported(tree: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        reg = registry(tree, tmp_path)
    reasons = {p.name: why for p, why in reg.skipped}
    assert reasons["empty.safetensors"].startswith("empty")
    assert reasons["dir.safetensors"] == "is a directory"
    assert reasons["broken.safetensors"] == "broken symlink"
    if hasattr(os, "mkfifo"):
        assert "FIFO" in reasons["fifo.safetensors"]
    if os.path.exists("/dev/zero"):
        assert "device" in reasons["zero.ckpt"]
    assert "x.vae.safetensors" not in reasons and "notes.txt" not in reasons
    assert "skipping checkpoint" in caplog.text and "symlinked folder loop" in caplog.text


def test_names_titles_and_aliases(tree: Path, tmp_path: Path) -> None:
    reg = registry(tree, tmp_path)
    info = reg.get("sub/c.SAFETENSORS")
    assert info is not None
    assert info.name == "sub/c.SAFETENSORS"
    assert info.model_name == "sub_c"
    assert info.name_for_extra == "c"
    assert info.title == "sub/c.SAFETENSORS" and info.shorthash is None  # hash not known yet
    assert info.is_safetensors and info.filename == str(tree / "sub" / "c.SAFETENSORS")
    assert info.legacy_hash == "e3b0c442"  # A1111's old hash of a file shorter than 1 MiB
    assert info.aliases[:6] == ["e3b0c442", "sub_c", "sub/c.SAFETENSORS", "sub/c.SAFETENSORS", "c",
                                "sub/c.SAFETENSORS [e3b0c442]"]


def test_ensure_hash_sets_title_and_hash_aliases(tree: Path, tmp_path: Path) -> None:
    reg = registry(tree, tmp_path)
    info = reg.get("v1-5-pruned-emaonly")
    assert info is not None
    digest = reg.ensure_hash(info)
    assert digest == hashlib.sha256(b"sd15" * 100).hexdigest()
    short = digest[:10]
    assert info.title == f"v1-5-pruned-emaonly.safetensors [{short}]"
    assert info.short_title == f"v1-5-pruned-emaonly [{short}]"
    for alias in (short, digest, info.title, f"v1-5-pruned-emaonly [{short}]", "v1-5-pruned-emaonly.safetensors",
                  "v1-5-pruned-emaonly"):
        assert reg.get(alias) is info, alias


def test_hash_known_from_cache_after_restart(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = registry(tree, tmp_path)
    info = reg.get("B-model.ckpt")
    assert info is not None
    reg.ensure_hash(info)
    monkeypatch.setattr(hashing, "_sha256_path", lambda p: pytest.fail("re-hashed a cached file"))
    again = registry(tree, tmp_path)  # a new process: cache read from cache.json
    info2 = again.get("B-model.ckpt")
    assert info2 is not None and info2.title == f"B-model.ckpt [{hashlib.sha256(b'ckpt').hexdigest()[:10]}]"
    assert again.cached_hash(info2) == info2.sha256
    assert again.ensure_hash(info2) == info2.sha256


def test_closest_match(tree: Path, tmp_path: Path) -> None:
    reg = registry(tree, tmp_path)
    assert reg.get("") is None and reg.get(None) is None
    assert reg.get("nothing like it") is None
    assert reg.get("pruned").name == "v1-5-pruned-emaonly.safetensors"  # substring of the title
    assert reg.get("m1").name == "m10.safetensors"
    assert reg.get("m").name == "B-model.ckpt"  # the shortest title containing "m"
    # A title from another machine whose hash differs: the checksum is stripped and the name still matches.
    assert reg.get("v1-5-pruned-emaonly.safetensors [0123456789]").name == "v1-5-pruned-emaonly.safetensors"
    assert reg.get("sub\\deep\\d.Ckpt").name == "sub/deep/d.Ckpt"  # Windows spelling
    assert reg.get("sub_deep_d").name == "sub/deep/d.Ckpt"  # model_name alias


def test_multiple_dirs_extra_file_and_duplicates(tmp_path: Path) -> None:
    main = tmp_path / "models" / "Stable-diffusion"
    extra = tmp_path / "more"
    put(main / "a.safetensors", b"main-a")
    put(extra / "a.safetensors", b"extra-a")  # same relative name in a second folder: first folder wins
    put(extra / "z.ckpt", b"z")
    outside = put(tmp_path / "elsewhere" / "cli.safetensors", b"cli")
    reg = CheckpointRegistry([main, extra, main], HashCache(None), extra_files=[outside, main / "a.safetensors"])
    reg.refresh()
    assert [(i.name, i.path.read_bytes()) for i in reg.list()] == [
        ("cli.safetensors", b"cli"),  # --ckpt first, named by its basename outside the folders
        ("a.safetensors", b"main-a"),
        ("z.ckpt", b"z"),
    ]
    assert any("same name" in why for _, why in reg.skipped)


def test_hidden_dirs_option(tmp_path: Path) -> None:
    root = tmp_path / "sd"
    put(root / ".hidden" / "h.safetensors")
    put(root / "v.safetensors")
    assert len(registry(root, tmp_path)) == 2
    assert [i.name for i in registry(root, tmp_path, include_hidden_dirs=False).list()] == ["v.safetensors"]


def test_missing_folder_is_empty(tmp_path: Path) -> None:
    assert registry(tmp_path / "nope", tmp_path).list() == []


def test_concurrent_ensure_hash_hashes_once(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = hashing._sha256_path

    def counting(path: Path) -> str:
        calls.append(path)
        threading.Event().wait(0.05)
        return real(path)

    monkeypatch.setattr(hashing, "_sha256_path", counting)
    reg = registry(tree, tmp_path)
    info = reg.get("m2")
    assert info is not None
    threads = [threading.Thread(target=reg.ensure_hash, args=(info,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and info.sha256 is not None


def test_concurrent_refresh_and_lookup(tree: Path, tmp_path: Path) -> None:
    reg = registry(tree, tmp_path)
    errors: list[BaseException] = []

    def refresher() -> None:
        try:
            for _ in range(5):
                reg.refresh()
        except BaseException as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    def reader() -> None:
        try:
            for _ in range(50):
                assert reg.get("m2") is not None
                assert len(reg.list()) == 7
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=refresher) for _ in range(2)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_file_deleted_after_listing(tree: Path, tmp_path: Path) -> None:
    reg = registry(tree, tmp_path)
    info = reg.get("m10")
    assert info is not None
    os.unlink(info.path)
    with pytest.raises(FileNotFoundError):
        reg.ensure_hash(info)
    assert reg.get("m10.safetensors") is None and len(reg) == 6


def test_file_replaced_after_listing_gets_new_hash(tree: Path, tmp_path: Path) -> None:
    reg = registry(tree, tmp_path)
    info = reg.get("m2")
    assert info is not None
    first = reg.ensure_hash(info)
    put(info.path, b"different weights")
    os.utime(info.path, ns=(0, os.stat(info.path).st_mtime_ns + 2_000_000_000))
    assert reg.ensure_hash(info) == hashlib.sha256(b"different weights").hexdigest() != first


def test_natural_sort_key() -> None:
    names = ["m10", "M2", "m1", "a", "m2b", "²"]
    assert sorted(names, key=natural_sort_key) == ["a", "m1", "M2", "m2b", "m10", "²"]


def test_from_paths_uses_a1111_folders(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from modules.paths import Paths

    ckpt = put(tmp_path / "elsewhere" / "given.ckpt", b"g")
    paths = Paths.from_args(SimpleNamespace(data_dir=str(tmp_path / "data"), ckpt=str(ckpt),
                                            ckpt_dir=str(tmp_path / "extra")))
    put(paths.model_dir("checkpoints") / "std.safetensors")
    put(tmp_path / "extra" / "more.safetensors")
    reg = CheckpointRegistry.from_paths(paths, HashCache(None))
    reg.refresh()
    assert [i.name for i in reg.list()] == ["given.ckpt", "std.safetensors", "more.safetensors"]
