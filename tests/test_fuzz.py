"""Bounded fuzzing (campaign goal 4, "none of them fuzzes its parsers or loaders"): the safetensors header reader,
the infotext parser and the filename pattern engine take arbitrary input and either work or raise our own error,
never anything else and never a hang. Hypothesis runs a fixed number of examples, so CI time stays bounded."""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modules import filenames, infotext
from modules.models import formats
from modules.models.types import ModelFileError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_DIR = Path(tempfile.mkdtemp(prefix="fuzz-"))


def _read(raw: bytes) -> None:
    path = _DIR / "x.safetensors"
    path.write_bytes(raw)
    try:
        formats.read_safetensors_header(path)
    except ModelFileError:
        pass  # corrupt / incomplete / unsafe: our errors, with a message


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(raw: bytes) -> None:
    _read(raw)


_dtypes = st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "I8", "X9", "", "f32"])
_numbers = st.one_of(st.integers(min_value=-2**70, max_value=2**70), st.floats(allow_nan=True), st.text(max_size=4),
                     st.none())
_tensor = st.fixed_dictionaries({"dtype": st.one_of(_dtypes, _numbers),
                                 "shape": st.one_of(st.lists(_numbers, max_size=4),
                                                    st.lists(st.integers(0, 2**40), max_size=4), _numbers),
                                 "data_offsets": st.one_of(st.lists(_numbers, max_size=3),
                                                           st.lists(st.integers(0, 2**40), min_size=2, max_size=2),
                                                           _numbers)})
_header = st.dictionaries(st.text(max_size=12), st.one_of(_tensor, _numbers, st.dictionaries(st.text(max_size=3),
                                                                                             st.text(max_size=3))),
                          max_size=5)


@FUZZ
@given(_header, st.binary(max_size=256), st.integers(min_value=-8, max_value=8))
def test_structured_headers(header: dict, body: bytes, length_error: int) -> None:
    """Well-formed framing around hostile headers: bad dtypes, shapes, offsets past the end, overlaps, a declared
    length that lies by a few bytes."""
    encoded = json.dumps(header).encode()
    declared = max(0, len(encoded) + length_error)
    _read(struct.pack("<Q", declared) + encoded + body)


@FUZZ
@given(st.integers(min_value=0, max_value=2**64 - 1), st.binary(max_size=64))
def test_declared_header_lengths(length: int, rest: bytes) -> None:
    _read(struct.pack("<Q", length) + rest)  # 2**63 or 10 GB: refused before any allocation


@FUZZ
@given(st.text(max_size=400))
def test_infotext_parser_takes_any_text(text: str) -> None:
    parsed = infotext.parse_infotext(text)
    assert isinstance(parsed, dict)


@FUZZ
@given(st.text(alphabet=st.sampled_from('Steps: 1, Seed: "a\\\n,:-x0.5 Size: 512x512 Lora hashes: ") + '
                                        'st.characters(), max_size=300)'[:60]), max_size=300))
def test_infotext_parser_takes_infotext_like_text(text: str) -> None:
    infotext.parse_infotext("prompt\nNegative prompt: n\n" + text)


@FUZZ
@given(st.text(max_size=200), st.text(max_size=200))
def test_filename_patterns_stay_inside_the_folder(pattern: str, prompt: str) -> None:
    """What saving does with a directory pattern: whatever the pattern and prompt, a folder inside the root."""
    name = filenames.relative_subpath(
        filenames.apply_pattern(pattern, {"prompt": prompt, "seed": 1, "styles": [], "prompt_words_limit": 8}))
    root = _DIR / "out"
    path = filenames.contained_path(root, name) if name else root
    assert path == root or root in path.parents
