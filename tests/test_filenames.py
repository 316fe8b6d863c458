"""Output naming: A1111's numbers, patterns and folders; sanitized names that never leave the output folder."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modules import fileio
from modules.filenames import (
    FilenamePattern,
    apply_pattern,
    contained_path,
    grid_path,
    image_filename,
    next_sequence_number,
    output_directory,
    safe_component,
    sample_path,
    sanitize_filename_part,
)

NOW = datetime(2024, 7, 27, 13, 5, 9)
FIELDS = {
    "seed": 1234567890,
    "prompt": "a cat, on a mat: (masterpiece)",
    "negative_prompt": "blurry",
    "steps": 20,
    "cfg_scale": 7.0,
    "width": 512,
    "height": 768,
    "sampler": "DPM++ 2M",
    "scheduler": "Karras",
    "model_name": "v1-5-pruned-emaonly",
    "model_hash": "6ce0161689",
    "job_timestamp": "20240727130500",
    "now": NOW,
}


# -- sequence numbers -----------------------------------------------------------------------------------------------


def test_sequence_starts_at_zero(tmp_path: Path) -> None:
    assert next_sequence_number(tmp_path) == 0
    assert next_sequence_number(tmp_path / "missing") == 0
    assert next_sequence_number(tmp_path, "grid") == 0


def test_sequence_continues_from_highest_leading_number(tmp_path: Path) -> None:
    for name in ["00000-1.png", "00007-42-before-highres-fix.png", "00003.png", "00012abc.png", "notes.txt",
                 "grid-0009.png", "²³.png", "-5.png", "00004-x.txt"]:
        (tmp_path / name).write_bytes(b"")
    assert next_sequence_number(tmp_path) == 8
    assert next_sequence_number(tmp_path, "grid") == 10


def test_sequence_after_real_saves(tmp_path: Path) -> None:
    for seed in (11, 12, 13):
        path = sample_path(tmp_path, next_sequence_number(tmp_path), seed)
        fileio.write_new_file(path, b"png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000-11.png", "00001-12.png", "00002-13.png"]
    for _ in range(2):
        fileio.write_new_file(grid_path(tmp_path, next_sequence_number(tmp_path, "grid")), b"g")
    assert (tmp_path / "grid-0001.png").exists()
    assert next_sequence_number(tmp_path) == 3  # grids do not disturb the sample numbering


# -- file and folder names ------------------------------------------------------------------------------------------


def test_default_sample_and_grid_names(tmp_path: Path) -> None:
    assert sample_path(tmp_path, 0, 1234567890).name == "00000-1234567890.png"
    assert sample_path(tmp_path, 123456, 5).name == "123456-5.png"
    assert grid_path(tmp_path, 0).name == "grid-0000.png"
    assert grid_path(tmp_path, 12, decoration="1234-a_cat").name == "grid-0012-1234-a_cat.png"
    assert grid_path(tmp_path, 3, extension="webp").name == "grid-0003.webp"


def test_default_pattern_without_save_to_dirs(tmp_path: Path) -> None:
    path = sample_path(tmp_path, 1, 99, fields={"prompt": "a cat, on a mat"}, save_to_dirs=False)
    assert path.name == "00001-99-a cat, on a mat.png"  # [seed]-[prompt_spaces]


def test_suffix_short_and_no_number(tmp_path: Path) -> None:
    assert sample_path(tmp_path, 4, 7, suffix="-before-highres-fix").name == "00004-7-before-highres-fix.png"
    assert sample_path(tmp_path, 4, 7, short=True).name == "00004.png"
    assert sample_path(tmp_path, 4, None).name == "00004.png"
    assert sample_path(tmp_path, 4, 7, add_number=False).name == "7.png"
    assert sample_path(tmp_path, 4, 7, "[none]", add_number=False).name == "00004.png"  # empty -> number forced
    assert sample_path(tmp_path, 4, 7, extension=".JPG").name == "00004-7.JPG"


def test_date_directory(tmp_path: Path) -> None:
    assert output_directory(tmp_path, "[date]", {"now": NOW}) == tmp_path / "2024-07-27"
    assert output_directory(tmp_path, "[date]/[model_name]", FIELDS) == tmp_path / "2024-07-27" / "v1-5-pruned-emaonly"
    assert output_directory(tmp_path, "", {"prompt": "a cat, on a mat!"}) == tmp_path / "a cat on a mat"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("[seed]", "1234567890"),
        ("[SEED]-[Steps]", "1234567890-20"),  # tag names are case-insensitive
        ("[prompt]", "a_cat,_on_a_mat__(masterpiece)"),
        ("[prompt_spaces]", "a cat, on a mat_ (masterpiece)"),
        ("[prompt_words]", "a cat on a mat masterpiece"),
        ("[prompt_no_styles]", "a cat, on a mat_ (masterpiece)"),
        ("[steps]-[cfg]-[width]x[height]", "20-7.0-512x768"),
        ("[sampler]", "DPM++ 2M"),
        ("[sampler_scheduler]", "DPM++ 2M Karras"),
        ("[scheduler]", "Karras"),
        ("[model_name]-[model_hash]", "v1-5-pruned-emaonly-6ce0161689"),
        ("[date]", "2024-07-27"),
        ("[datetime]", "20240727130509"),
        ("[datetime<%Y/%m>]", "2024_07"),
        ("[job_timestamp]", "20240727130500"),
        ("[seed_first]", "1234567890"),
        ("[batch_number]", ""),  # batch size 1: the tag and the text before it vanish
        ("x-[none]y", "y"),
        ("[unknown_tag]-[seed]", "[unknown_tag]-1234567890"),
        ("[prompt_hash]", hashlib.sha256(FIELDS["prompt"].encode()).hexdigest()[:8]),
        ("[prompt_hash<4>]", hashlib.sha256(FIELDS["prompt"].encode()).hexdigest()[:4]),
        ("[hasprompt<cat><dog|nodog>]", "catnodog"),
        ("[vae_filename]", "NoneType"),
        ("[clip_skip]", "[clip_skip]"),  # value unknown: left literally, as A1111 does
        ("[denoising]", ""),
    ],
)
def test_pattern_tags(pattern: str, expected: str) -> None:
    assert apply_pattern(pattern, FIELDS) == expected


def test_batch_and_generation_numbers() -> None:
    fields = {"batch_size": 4, "batch_index": 2, "n_iter": 3, "iteration": 1, "seed_last": 9, "seed": 1}
    assert apply_pattern("[batch_number]-[generation_number]-[seed_last]", fields) == "3-7-9"
    assert apply_pattern("a-[generation_number]", {"batch_size": 1, "n_iter": 1}) == ""


def test_styles_and_prompt_no_styles() -> None:
    fields = {"prompt": "a cat, masterpiece, best quality", "style_prompts": ["{prompt}, masterpiece, best quality"],
              "styles": ["Quality", "None"]}
    assert apply_pattern("[prompt_no_styles]", fields) == "a cat"
    assert apply_pattern("[styles]", fields) == "Quality"


def test_datetime_with_timezone_and_bad_format() -> None:
    fields = {"now": datetime(2024, 1, 1, 12, 0, 0).astimezone()}
    assert apply_pattern("[datetime<%H><UTC>]", fields).isdigit()
    assert apply_pattern("[datetime<%Y><Not/AZone>]", fields) == "2024"
    assert apply_pattern("[prompt_hash<abc>]", {"prompt": "x"}) == "[prompt_hash]"  # bad arg: kept literally


def test_compiled_pattern_reused() -> None:
    pat = FilenamePattern("[seed]-[steps]")
    assert [pat.apply({"seed": s, "steps": 20}) for s in (1, 2)] == ["1-20", "2-20"]


# -- sanitizing and containment -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a/b\\c:d*e?f"g<h>i|j#k', "a_b_c_d_e_f_g_h_i_j_k"),
        ("line\nbreak\ttab\x00nul\x1fus", "line_break_tab_nul_us"),
        ("  lead and trail . . ", "__lead_and_trail_._._"),
        ("trailing dots... ", "trailing_dots..._"),
        (" x . .", "_x_._"),
        ("..", ""),
        ("CON", "CON_"),
        ("nul", "nul_"),
        ("com1.txt", "com1_.txt"),
        ("LPT9", "LPT9_"),
        ("CONSOLE", "CONSOLE"),
    ],
)
def test_sanitize_filename_part(text: str, expected: str) -> None:
    assert sanitize_filename_part(text) == expected


def test_sanitize_keeps_spaces_when_asked_and_unix_mode() -> None:
    assert sanitize_filename_part("  a b. ", replace_spaces=False) == "a b"
    assert sanitize_filename_part('a:b\\c/d', unix=True, replace_spaces=False) == "a:b\\c_d"


def test_length_caps_in_chars_and_utf8_bytes() -> None:
    assert len(sanitize_filename_part("x" * 4000)) == 128
    assert len(sanitize_filename_part("x" * 4000, max_len=300)) == 255
    cut = sanitize_filename_part("猫" * 4000, max_len=4000)
    assert len(cut.encode("utf-8")) <= 255 and set(cut) == {"猫"}
    name = image_filename(5, "🐱" * 300, "png")
    assert name.startswith("00005-") and name.endswith(".png") and len(name.encode("utf-8")) <= 255
    name.encode("utf-8").decode("utf-8")  # no split character


def test_long_prompt_file_name_fits(tmp_path: Path) -> None:
    path = sample_path(tmp_path, 0, 1, "[seed]-[prompt]-[prompt_spaces]-[prompt_words]", fields={"prompt": "ü" * 4000})
    assert len(path.name.encode("utf-8")) <= 255 and path.name.startswith("00000-1-") and path.suffix == ".png"
    fileio.write_new_file(path, b"ok")  # the filesystem accepts it


@pytest.mark.parametrize(
    "prompt",
    ["../../etc/passwd", "/etc/passwd", "..\\..\\windows\\win.ini", "C:\\Windows\\x", "\\\\server\\share",
     "..", ".", "a/../../b", "\x00", "CON", "nul.txt", "x" * 5000, " . ", "~/x", "$HOME"],
)
def test_prompt_cannot_escape(tmp_path: Path, prompt: str) -> None:
    fields = {"prompt": prompt, "model_name": prompt, "sampler": prompt}
    for path in (
        sample_path(tmp_path, 0, 1, "[prompt]-[prompt_spaces]-[model_name]", fields=fields),
        sample_path(tmp_path, 0, 1, "[prompt_spaces]", fields=fields, add_number=False),
        sample_path(tmp_path, 0, 1, "../[prompt]/..", fields=fields, add_number=False),
    ):
        assert path.parent == tmp_path
        assert os.sep not in path.name and "/" not in path.name and path.name not in (".", "..")
    out = output_directory(tmp_path, "../[prompt_spaces]/[sampler]/..", fields)
    assert out == tmp_path or tmp_path in out.parents
    assert all(part not in ("..", ".") for part in out.relative_to(tmp_path).parts)


def test_safe_component_no_hidden_or_empty() -> None:
    assert safe_component(".hidden") == "hidden"
    assert safe_component("...") == ""
    assert safe_component("aux.png") == "aux_.png"


def test_contained_path_rejects_escapes(tmp_path: Path) -> None:
    assert contained_path(tmp_path, "a", "b.png") == tmp_path / "a" / "b.png"
    for bad in (("..", "x"), ("/etc/passwd",), ("a", "..", "..", "x"), ("..",)):
        with pytest.raises(ValueError):
            contained_path(tmp_path, *bad)


@settings(max_examples=75, deadline=None, database=None)
@given(prompt=st.text(max_size=300), pattern=st.sampled_from(
    ["[prompt]", "[prompt_spaces]", "[prompt_words]", "[seed]-[prompt]", "[prompt_spaces]/x"]))
def test_fuzz_names_stay_inside(prompt: str, pattern: str) -> None:
    base = Path("/srv/outputs/txt2img-images")
    for add_number in (True, False):
        path = sample_path(base, 7, 1, pattern, fields={"prompt": prompt}, add_number=add_number)
        assert path.parent == base
        assert 0 < len(path.name.encode("utf-8", "surrogatepass")) <= 255
        assert not any(c in path.name for c in '/\\:*?"<>|\x00\n')
        assert path.name[0] not in " ." and path.stem[-1:] not in (" ", ".")
    out = output_directory(base, pattern, {"prompt": prompt})
    assert out == base or base in out.parents
