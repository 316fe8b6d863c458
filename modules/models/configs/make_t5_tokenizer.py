"""Regenerate ``t5_tokenizer/tokenizer.json``: the T5 v1.1 tokenizer (SentencePiece Unigram, 32,100 pieces) that
Flux's T5-XXL text encoder reads, so Flux prompts tokenize offline.

The data ships (MIT licence) in the source distribution of the PyPI package ``stable-diffusion-cpp-python`` 0.4.7,
as the C byte array ``t5_tokenizer_json_str`` in
``vendor/stable-diffusion.cpp/src/tokenizers/vocab/clip_t5.hpp``. This script reads that array straight from the
sdist (nothing is compiled or imported) and writes the JSON it spells, checked to be a Unigram tokenizer of the
expected size.

Usage: ``pip download stable-diffusion-cpp-python==0.4.7 --no-deps --no-binary :all: -d /tmp/sdcpp`` then
``python modules/models/configs/make_t5_tokenizer.py /tmp/sdcpp/stable_diffusion_cpp_python-0.4.7.tar.gz``.
The output is deterministic: running it twice gives byte-identical files.
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "t5_tokenizer" / "tokenizer.json"
MEMBER = "vendor/stable-diffusion.cpp/src/tokenizers/vocab/clip_t5.hpp"
ARRAY = "t5_tokenizer_json_str"
PIECES = 32100  # 32,000 SentencePiece pieces + 100 <extra_id_N> sentinels


def read_header(sdist: Path) -> str:
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if member.name.endswith(MEMBER):
                data = tar.extractfile(member)
                assert data is not None
                return data.read().decode("ascii")
    raise FileNotFoundError(f"{MEMBER} is not in {sdist}")


def array_bytes(header: str, name: str) -> bytes:
    """The bytes of ``static const unsigned char <name>[] = { 0x.., ... };``."""
    start = header.index(f"{name}[]")
    body = header[header.index("{", start) + 1: header.index("}", start)]
    return bytes(int(v, 16) for v in re.findall(r"0x[0-9a-fA-F]{1,2}", body))


def extract(sdist: Path) -> bytes:
    data = array_bytes(read_header(sdist), ARRAY).rstrip(b"\0")
    spec = json.loads(data)
    model = spec.get("model", {})
    vocab = model.get("vocab") or []
    extra = [t for t in spec.get("added_tokens", []) if str(t.get("content", "")).startswith("<extra_id_")]
    if model.get("type") != "Unigram" or len(vocab) + len(extra) < PIECES - 100 or len(vocab) > PIECES:
        raise ValueError(f"{ARRAY} is not the T5 Unigram tokenizer ({model.get('type')}, {len(vocab)} pieces)")
    return data


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    data = extract(Path(argv[1]))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(data)
    print(f"wrote {OUT} ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
