"""Textual-inversion embeddings: every file format, fitting to tiny SD1/SD2/SDXL models, hashes, the API shape,
hostile and damaged files, and re-scanning only when the folders change."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.hashing import HashCache
from modules.models import embeddings as E
from modules.models.embeddings import EmbeddingDatabase, expected_widths, ti_hashes
from modules.models.loader import load_checkpoint
from modules.paths import Paths
from tests.support import tiny_files as T
from tests.support.tiny_checkpoints import tiny_spec, write_tiny_checkpoint

W1 = tiny_spec("sd1").text_encoders[0].hidden_size  # CLIP-L width (768 in real SD1; SDXL's first encoder too)
W_SD2 = tiny_spec("sd2").text_encoders[0].hidden_size  # OpenCLIP ViT-H (1024 real)
W_G = tiny_spec("sdxl").text_encoders[1].hidden_size  # OpenCLIP bigG (1280 real)
API_FIELDS = {"step", "sd_checkpoint", "sd_checkpoint_name", "shape", "vectors"}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    directory = tmp_path_factory.mktemp("ckpt")
    return {f: load_checkpoint(write_tiny_checkpoint(f, directory, f)) for f in ("sd1", "sd2", "sdxl", "sdxl-refiner")}


class Folder:
    """One embeddings folder holding every format, and the tensors written into it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.vec: dict[str, torch.Tensor] = {}
        self.vec["a1111"] = T.vectors(1, W1, 1)
        T.save_a1111_pt(root / "a1111.pt", self.vec["a1111"], step=500, sd_checkpoint="a9263745",
                        sd_checkpoint_name="v1-5-pruned-emaonly")
        self.vec["multi"] = T.vectors(3, W1, 2)
        T.save_a1111_pt(root / "sub" / "deeper" / "multi.pt", self.vec["multi"])
        self.vec["original_ti"] = T.vectors(2, W1, 3)
        T.save_a1111_pt(root / "original_ti.pt", self.vec["original_ti"], parameter_dict=True)
        self.vec["concept"] = T.vectors(1, W1, 4)
        T.save_diffusers_bin(root / "concept.bin", "<cat-toy>", self.vec["concept"])
        self.vec["emb_params"] = T.vectors(2, W1, 5)
        T.save_emb_params(root / "emb_params.safetensors", self.vec["emb_params"])
        self.clip_l, self.clip_g = T.vectors(2, W1, 6), T.vectors(2, W_G, 7)
        T.save_sdxl_embedding(root / "xl_style.safetensors", self.clip_l, self.clip_g)
        self.vec["sd2_style"] = T.vectors(1, W_SD2, 8)
        T.save_a1111_pt(root / "sd2_style.pt", self.vec["sd2_style"])
        self.vec["stored-name"] = T.vectors(1, W1, 9)  # trigger word = the name stored in the image
        T.save_png_text_embedding(root / "card.png", T.a1111_embedding_dict(self.vec["stored-name"], "stored-name", 12))
        self.vec["hidden"] = T.vectors(2, W1, 10)
        hidden = T.a1111_embedding_dict(self.vec["hidden"], "hidden", 34)
        T.save_pixel_embedding(root / "pixels.webp", hidden, fmt="WEBP")
        T.save_plain_image(root / "a1111.png")  # previews: ignored, neither loaded nor skipped
        T.save_plain_image(root / "a1111.preview.png")
        (root / "notes.txt").write_text("not an embedding")

    SD1 = {"a1111", "multi", "original_ti", "concept", "emb_params", "stored-name", "hidden"}


@pytest.fixture
def folder(tmp_path: Path) -> Folder:
    return Folder(tmp_path / "embeddings")


def test_sd1_loads_every_single_encoder_format(models: dict, folder: Folder) -> None:
    db = EmbeddingDatabase([folder.root])
    got = db.load_for(models["sd1"])
    assert set(got.loaded) == Folder.SD1
    assert list(got.loaded) == sorted(Folder.SD1, key=str.lower)  # A1111 sorts by name, case-insensitively
    for name, e in got.loaded.items():
        assert set(e.vectors) == {"text_encoder"}
        assert e.vectors["text_encoder"].dtype == torch.float32
        assert torch.equal(e.vectors["text_encoder"], folder.vec[name]), name
        assert e.vector_count == folder.vec[name].shape[0] and e.shape == W1
    a = got.loaded["a1111"]
    assert (a.step, a.sd_checkpoint, a.sd_checkpoint_name) == (500, "a9263745", "v1-5-pruned-emaonly")
    assert got.loaded["stored-name"].step == 12 and got.loaded["hidden"].step == 34
    assert {e.format for e in got.loaded.values()} == {"a1111", "diffusers", "emb_params", "image-text", "image-pixels"}
    assert got.loaded["hidden"].path.name == "pixels.webp"

    assert set(got.skipped) == {"xl_style", "sd2_style"}
    assert all(s.kind == "incompatible" for s in got.skipped.values())
    assert f"{W_SD2}-wide" in got.skipped["sd2_style"].reason and f"needs {W1}-wide" in got.skipped["sd2_style"].reason
    assert "SDXL embedding" in got.skipped["xl_style"].reason
    assert expected_widths(models["sd1"]) == {"text_encoder": W1}


def test_sd2_takes_only_its_width(models: dict, folder: Folder) -> None:
    got = EmbeddingDatabase([folder.root]).load_for(models["sd2"])
    assert set(got.loaded) == {"sd2_style"}
    assert torch.equal(got.loaded["sd2_style"].vectors["text_encoder"], folder.vec["sd2_style"])
    assert set(got.skipped) == Folder.SD1 | {"xl_style"}
    assert f"needs {W_SD2}-wide" in got.skipped["a1111"].reason


def test_sdxl_takes_clip_l_and_clip_g(models: dict, folder: Folder) -> None:
    got = EmbeddingDatabase([folder.root]).load_for(models["sdxl"])
    assert set(got.loaded) == {"xl_style"}
    xl = got.loaded["xl_style"]
    assert set(xl.vectors) == {"text_encoder", "text_encoder_2"}
    assert torch.equal(xl.vectors["text_encoder"], folder.clip_l)
    assert torch.equal(xl.vectors["text_encoder_2"], folder.clip_g)
    assert (xl.vector_count, xl.shape, xl.format) == (2, W1 + W_G, "sdxl")  # A1111's shape: clip_l + clip_g widths
    assert set(got.skipped) == Folder.SD1 | {"sd2_style"}
    assert "needs an SDXL embedding" in got.skipped["a1111"].reason


def test_refiner_takes_clip_g(models: dict, folder: Folder) -> None:
    got = EmbeddingDatabase([folder.root]).load_for(models["sdxl-refiner"])
    assert torch.equal(got.loaded["xl_style"].vectors["text_encoder_2"], folder.clip_g)
    assert set(got.loaded["xl_style"].vectors) == {"text_encoder_2"}
    # tiny SD2's width equals tiny bigG's: a single tensor of bigG's width fits the refiner's only encoder
    assert set(got.loaded) == {"xl_style", "sd2_style"}


def test_hashes_and_ti_hashes(models: dict, folder: Folder) -> None:
    cache = HashCache(None)
    got = EmbeddingDatabase([folder.root], cache).load_for(models["sd1"])
    for e in got.loaded.values():
        full = hashlib.sha256(e.path.read_bytes()).hexdigest()
        assert e.sha256 == full and e.shorthash == full[:12]
    assert cache.entries()["textual_inversion/a1111"]["sha256"] == got.loaded["a1111"].sha256
    a, m = got.loaded["a1111"], got.loaded["multi"]
    assert ti_hashes({"a1111": a, "my:name,x": m}) == f"a1111: {a.shorthash}, mynamex: {m.shorthash}"
    assert ti_hashes([m, a]) == f"multi: {m.shorthash}, a1111: {a.shorthash}"
    assert ti_hashes([]) is None
    assert got.ti_hashes({"multi", "a1111", "not-loaded"}) == f"a1111: {a.shorthash}, multi: {m.shorthash}"
    assert got.ti_hashes(["multi", "a1111"]) == f"multi: {m.shorthash}, a1111: {a.shorthash}"
    assert got.ti_hashes(set()) is None
    vectors = got.vectors()
    assert set(vectors) == Folder.SD1 and torch.equal(vectors["multi"]["text_encoder"], folder.vec["multi"])

    # --no-hashing: cached hashes only; unknown hashes are left out of the infotext
    fresh = EmbeddingDatabase([folder.root], HashCache(None), hashing=False).load_for(models["sd1"])
    assert all(e.shorthash is None for e in fresh.loaded.values())
    assert ti_hashes(fresh.loaded) is None
    cached = EmbeddingDatabase([folder.root], cache, hashing=False).load_for(models["sd1"])
    assert cached.loaded["a1111"].shorthash == a.shorthash


def test_api_dict_shape(models: dict, folder: Folder) -> None:
    db = EmbeddingDatabase([folder.root])
    assert db.api_dict() == {"loaded": {}, "skipped": {}}  # before any model
    db.load_for(models["sd1"])
    (folder.root / "broken.safetensors").write_bytes(b"\x00" * 16)
    api = db.refresh()
    assert api is not None
    out = db.api_dict()
    assert set(out) == {"loaded", "skipped"}
    assert set(out["loaded"]) == Folder.SD1 and set(out["skipped"]) == {"xl_style", "sd2_style", "broken"}
    for entry in [*out["loaded"].values(), *out["skipped"].values()]:
        assert set(entry) == API_FIELDS
        assert isinstance(entry["shape"], int) and isinstance(entry["vectors"], int)
    assert out["loaded"]["a1111"] == {"step": 500, "sd_checkpoint": "a9263745",
                                      "sd_checkpoint_name": "v1-5-pruned-emaonly", "shape": W1, "vectors": 1}
    assert out["skipped"]["xl_style"]["shape"] == W1 + W_G and out["skipped"]["xl_style"]["vectors"] == 2
    assert out["skipped"]["broken"]["shape"] == 0  # unreadable: unknown
    json.dumps(out)
    reasons = db.api_dict(with_reasons=True)["skipped"]
    assert reasons["broken"]["kind"] == "corrupt" and "broken.safetensors" in reasons["broken"]["reason"]


def test_bad_files_are_skipped_with_our_errors(models: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "emb"
    marker = tmp_path / "PWNED"
    T.save_a1111_pt(root / "good.pt", T.vectors(1, W1))
    T.save_malicious_pickle(root / "evil.pt", marker)
    (root / "evil_raw.bin").write_bytes(pickle.dumps({"emb_params": T.Evil(marker)}, protocol=2))
    T.save_emb_params(root / "cut.safetensors", T.vectors(4, W1))
    data = (root / "cut.safetensors").read_bytes()
    (root / "cut.safetensors").write_bytes(data[: len(data) - 40])
    (root / "garbage.pt").write_bytes(b"\x80\x02garbage that is no pickle")
    (root / "empty.pt").write_bytes(b"")
    save_file({f"lora_unet_{i}.alpha": torch.ones(W1) for i in range(3)}, str(root / "a_lora.safetensors"))
    save_file({"emb_params": torch.ones(2, W1, dtype=torch.int32)}, str(root / "ints.safetensors"))
    save_file({"emb_params": torch.ones(1, 2, W1)}, str(root / "cube.safetensors"))
    torch.save([torch.ones(W1)], root / "a_list.pt")
    torch.save({"string_to_param": {"*": torch.ones(1, W1), "x": torch.ones(1, W1)}}, root / "two_terms.pt")
    T.save_sdxl_embedding(root / "uneven.safetensors", T.vectors(2, W1), T.vectors(3, W_G))
    png = T.save_png_text_embedding(root / "cut_card.png", T.a1111_embedding_dict(T.vectors(1, W1), "cut_card"))
    png.write_bytes(png.read_bytes()[:60])
    (root / "photo.jxl").write_bytes(b"\xff\x0a" + os.urandom(64))
    T.save_emb_params(root / "huge.safetensors", T.vectors(64, W1))
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "fifo.pt")
    monkeypatch.setattr(E, "MAX_EMBEDDING_BYTES", 4096)

    got = EmbeddingDatabase([root]).load_for(models["sd1"])  # must not raise, nor hang on the FIFO
    assert not marker.exists()
    assert set(got.loaded) == {"good"}
    kinds = {name: s.kind for name, s in got.skipped.items()}
    expected = {
        "evil": "unsafe", "evil_raw": "unsafe", "cut": "incomplete", "garbage": "corrupt", "empty": "corrupt",
        "a_lora": "invalid", "ints": "invalid", "cube": "invalid", "a_list": "invalid", "two_terms": "invalid",
        "uneven": "invalid", "cut_card": "corrupt", "photo": "unsupported", "huge": "too-large",
    }
    if hasattr(os, "mkfifo"):
        expected["fifo"] = "not-a-file"
    assert kinds == expected
    reasons = {name: s.reason for name, s in got.skipped.items()}
    assert "unsafe pickle: refused to load, it references" in reasons["evil"] and "system" in reasons["evil"]
    assert reasons["evil"].startswith("evil.pt: ")
    assert "a LoRA or a checkpoint" in reasons["a_lora"]
    assert "2 terms" in reasons["two_terms"]
    assert "embedded-image embeddings not supported yet" in reasons["photo"]
    assert "too large for an embedding" in reasons["huge"]


def test_rescan_only_when_the_folder_changes(models: dict, folder: Folder, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    real = E.read_embedding_file

    def counting(path, name=None):
        reads.append(Path(path).name)
        return real(path, name)

    monkeypatch.setattr(E, "read_embedding_file", counting)
    db = EmbeddingDatabase([folder.root])
    first = db.load_for(models["sd1"])
    n = len(reads)
    assert n == 10  # every candidate once: a1111.png too (a picture may carry data); not *.preview.png, notes.txt
    assert db.load_for(models["sd1"]) is first and len(reads) == n  # unchanged: a stat per file, nothing read

    new = T.vectors(2, W1, 99)
    T.save_a1111_pt(folder.root / "sub" / "deeper" / "added.pt", new)  # a change deep in a sub-folder
    second = db.load_for(models["sd1"])
    assert reads[n:] == ["added.pt"]  # only the new file is read
    assert second is not first and torch.equal(second.loaded["added"].vectors["text_encoder"], new)

    replaced = T.vectors(2, W1, 100)  # same name, same size: rewritten in place
    path = T.save_a1111_pt(folder.root / "a1111.pt", replaced)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    third = db.load_for(models["sd1"])
    assert torch.equal(third.loaded["a1111"].vectors["text_encoder"], replaced)
    assert third.loaded["a1111"].vector_count == 2

    (folder.root / "sub" / "deeper" / "multi.pt").unlink()
    assert "multi" not in db.load_for(models["sd1"]).loaded

    n = len(reads)
    db.refresh()  # POST /refresh-embeddings: every file read again
    assert len(reads) - n == 10
    # another model family refits without reading anything
    n = len(reads)
    assert set(db.load_for(models["sdxl"]).loaded) == {"xl_style"} and len(reads) == n


def test_duplicate_names(models: dict, tmp_path: Path) -> None:
    one, two = tmp_path / "data" / "embeddings", tmp_path / "models" / "embeddings"
    first, second = T.vectors(1, W1, 1), T.vectors(1, W1, 2)
    T.save_a1111_pt(one / "style.pt", first)
    T.save_a1111_pt(two / "style.pt", second)
    T.save_sdxl_embedding(one / "sub" / "style.safetensors", T.vectors(1, W1), T.vectors(1, W_G))
    db = EmbeddingDatabase([one, two])
    got = db.load_for(models["sd1"])
    assert torch.equal(got.loaded["style"].vectors["text_encoder"], first)  # first folder wins
    kinds = sorted(s.kind for s in got.skipped_files)
    assert kinds == ["duplicate", "incompatible"]
    assert got.skipped["style"].path.parent in (one / "sub", two)
    # the SDXL file of the same name is the one used with an SDXL model
    assert db.load_for(models["sdxl"]).loaded["style"].path == one / "sub" / "style.safetensors"


def test_folders_from_paths(tmp_path: Path) -> None:
    paths = Paths(data_dir=tmp_path, models_dir=tmp_path / "models", extra_dirs={"embeddings": (tmp_path / "x",)})
    db = EmbeddingDatabase.from_paths(paths)
    assert db.dirs == [tmp_path / "embeddings", tmp_path / "models" / "embeddings", tmp_path / "x"]
    assert db.scan() is True and db.files == [] and db.problems == []  # missing folders are fine


def test_lcg_is_a1111s() -> None:
    # A1111 image_embedding.py's self-test: the stream starts 253, 242, 127, 44 (mod 255); the low nibbles are used
    assert E._lcg_mask(4).tolist() == [253 & 15, 242 & 15, 127 & 15, 44 & 15]
