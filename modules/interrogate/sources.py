"""Where the img2text weights come from: each file's usual download place (A1111's, or the hub repository the
taggers are published in) and its SHA-256, so a missing file can be offered for download and checked, or named
with its address for users who put it in place by hand.

The table is data: a file is only offered with a SHA-256 that a known project publishes for that exact address
(``hash_from`` says where it was read). Tests point a copy of the table at a loopback server.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_WD14 = "wd-vit-tagger-v3"  # the tagger offered when none is there and the setting names none we know


@dataclass(frozen=True)
class Source:
    model: str  # the interrogate model that needs it: "clip", "deepdanbooru" or "wd14"
    folder: str  # the model folder kind it goes into: "blip", "clip", "deepbooru" or "wd14"
    name: str  # its path inside that folder
    url: str
    sha256: str
    size: int | None  # bytes, when published; shown before the download starts
    hash_from: str  # who publishes the hash for this address

    @property
    def file(self) -> str:
        return Path(self.name).name

    @property
    def tagger(self) -> str:
        """A WD14 file's tagger folder name ("" for the others)."""
        return Path(self.name).parent.name if self.folder == "wd14" else ""


def _wd14(tagger: str, rev: str, model: tuple[int, str], tags: tuple[int, str], hash_from: str) -> tuple[Source, ...]:
    # resolve/main as the taggers' users (picobyte's A1111 extension, ComfyUI-WD14-Tagger) download them; the hash is
    # the Hugging Face LFS object id at revision ``rev``, so a changed upstream file fails the check instead of loading.
    base = f"https://huggingface.co/SmilingWolf/{tagger}/resolve/main/"
    note = f"{hash_from} (SmilingWolf/{tagger}@{rev[:10]})"
    return (Source("wd14", "wd14", f"{tagger}/model.onnx", base + "model.onnx", model[1], model[0], note),
            Source("wd14", "wd14", f"{tagger}/selected_tags.csv", base + "selected_tags.csv", tags[1], tags[0], note))


SOURCES: tuple[Source, ...] = (
    # A1111 modules/interrogate.py blip_model_url; hash: sipherxyz/comfyui-art-venture modules/interrogate/blip_node.py
    # (verified on download) and Sygil-Dev/sygil-webui entrypoint.sh agree.
    Source("clip", "blip", "model_base_caption_capfilt_large.pth",
           "https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/model_base_caption_capfilt_large.pth",
           "96ac8749bd0a568c274ebe302b3a3748ab9be614c737f3d8c529697139174086", 896_081_425,
           "sipherxyz/comfyui-art-venture, Sygil-Dev/sygil-webui"),
    # what A1111's clip.load("ViT-L/14", download_root=models/CLIP) fetches; the URL's last folder is the SHA-256,
    # which openai/CLIP clip/clip.py _download checks.
    Source("clip", "clip", "ViT-L-14.pt",
           "https://openaipublic.azureedge.net/clip/models/"
           "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
           "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836", None, "openai/CLIP"),
    # A1111 modules/deepbooru.py model_url; hash: sipherxyz/comfyui-art-venture modules/interrogate/danbooru.py.
    Source("deepdanbooru", "deepbooru", "model-resnet_custom_v3.pt",
           "https://github.com/AUTOMATIC1111/TorchDeepDanbooru/releases/download/v1/model-resnet_custom_v3.pt",
           "3841542cda4dd037da12a565e854b3347bb2eec8fbcd95ea3941b2c68990a355", 644_144_887,
           "sipherxyz/comfyui-art-venture"),
    *_wd14("wd-vit-tagger-v3", "7f6b584d0bd3f55c4531f14ba3d4761b2bccdc0f",
           (378_536_310, "35f23693620b668f4d53fd3c62bf65e40af739bc52c7eb0fbc49258b58d065b6"),
           (308_468, "298633d94d0031d2081c0893f29c82eab7f0df00b08483ba8f29d1e979441217"),
           "several tagger projects' pinned lists"),
    *_wd14("wd-v1-4-moat-tagger-v2", "8452cddf280b952281b6e102411c50e981cb2908",
           (326_197_340, "b8cef913be4c9e8d93f9f903e74271416502ce0b4b04df0ff1e2f00df488aa03"),
           (253_906, "8c8750600db36233a1b274ac88bd46289e588b338218c2e4c62bbc9f2b516368"),
           "several tagger projects' pinned lists"),
)


@dataclass(frozen=True)
class Planned:
    """One file a download would add: its source and where it goes."""
    source: Source
    dest: Path


def source_of(sources: Sequence[Source], folder: str, name: str) -> Source | None:
    return next((s for s in sources if s.folder == folder and s.name == name), None)


def address(sources: Sequence[Source], folder: str, name: str) -> str:
    """" from <url>" for a file the table knows, so a message says where to get it; else ""."""
    found = source_of(sources, folder, name)
    return f" from {found.url}" if found else ""


def refusal(args: argparse.Namespace) -> str | None:
    """Why the page may not download img2text weights, or None: off with --no-download-interrogate-models, and on
    a network-exposed server without a login as every model download is (``admin_refusal``)."""
    from modules.cmd_args import admin_refusal

    if getattr(args, "no_download_interrogate_models", False):
        return "turned off (--no-download-interrogate-models)"
    return admin_refusal(args)


def total_size(plan: Sequence[Planned]) -> int | None:
    sizes = [p.source.size for p in plan]
    return None if None in sizes else sum(s for s in sizes if s is not None)


Progress = Callable[[int, int, int, "int | None"], None]  # (file index, file count, bytes done, bytes total)


def fetch(plan: Sequence[Planned], progress: Progress | None = None, timeout: float = 30) -> list[Path]:
    """Download each planned file into place, checked against its SHA-256 (``download_file``: a ``.partial``
    file renamed when complete and verified; a wrong hash deletes it and raises ``HashMismatchError``). A file that
    exists by then is kept, never replaced."""
    from modules.models.download import download_file

    done: list[Path] = []
    for index, item in enumerate(plan):
        def report(got: int, total: int | None, index: int = index) -> None:
            if progress:
                progress(index, len(plan), got, total)

        done.append(download_file(item.source.url, item.dest, item.source.sha256, report, timeout,
                                  overwrite=False))
    return done
