"""Prompt styles: A1111's styles.csv format and merge rules; atomic saving; unreadable files left untouched."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modules import fileio, styles
from modules.styles import (
    PromptStyle,
    StyleDatabase,
    apply_styles_to_prompt,
    extract_original_prompts,
    extract_style_text_from_prompt,
    merge_prompts,
)

BOM = b"\xef\xbb\xbf"


def write(path: Path, text: str, bom: bool = True) -> Path:
    path.write_bytes((BOM if bom else b"") + text.replace("\n", "\r\n").encode("utf-8"))
    return path


# -- merge rules ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "prompt", "expected"),
    [
        ("masterpiece", "a cat", "a cat, masterpiece"),
        ("  masterpiece ", "  a cat  ", "a cat, masterpiece"),  # both stripped when appending
        ("masterpiece", "", "masterpiece"),
        ("masterpiece", "   ", "masterpiece"),
        ("", "a cat ", "a cat"),
        (None, "a cat", "a cat"),  # a divider applies as nothing
        ("", "", ""),
        ("photo of {prompt}, 4k", " a cat ", "photo of  a cat , 4k"),  # wrapping substitutes as is
        ("photo of {prompt}", "", "photo of "),
        ("{prompt} and {prompt}", "x", "x and x"),
        ("masterpiece, ", "a cat,", "a cat,, masterpiece,"),  # only whitespace is stripped
    ],
)
def test_merge_prompts(style: str | None, prompt: str, expected: str) -> None:
    assert merge_prompts(style, prompt) == expected


def test_apply_styles_in_order() -> None:
    assert apply_styles_to_prompt("cat", ["photo of {prompt}", "4k"]) == "photo of cat, 4k"
    assert apply_styles_to_prompt("cat", ["4k", "photo of {prompt}"]) == "photo of cat, 4k"
    assert apply_styles_to_prompt("cat", ["4k", "{prompt}, sharp"]) == "cat, 4k, sharp"
    assert apply_styles_to_prompt(" cat ", []) == " cat "


# -- extraction (infotext paste) -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "prompt", "expected"),
    [
        # A1111's docstring examples:
        ("masterpiece", "1girl, art by greg, masterpiece", (True, "1girl, art by greg")),
        ("masterpiece, {prompt}", "masterpiece, 1girl, art by greg", (True, "1girl, art by greg")),
        ("masterpiece, {prompt}", "exquisite, 1girl, art by greg", (False, "exquisite, 1girl, art by greg")),
        ("masterpiece", " cat, masterpiece ", (True, "cat")),
        ("masterpiece", "cat", (False, "cat")),
        ("", " cat ", (True, "cat")),  # an empty style text matches anything (A1111)
        ("{prompt} and {prompt}", "x and x", (True, "x")),
        ("{prompt} and {prompt}", "x and y", (False, "x and y")),
        ("a {prompt} b {prompt} c", "a P b P c", (True, "P")),
        ("ab{prompt}ba", "aba", (False, "aba")),  # head and tail may not overlap
    ],
)
def test_extract_style_text(style: str, prompt: str, expected: tuple[bool, str]) -> None:
    assert extract_style_text_from_prompt(style, prompt) == expected


def test_extract_original_prompts_needs_both_to_match() -> None:
    style = PromptStyle("s", "4k", "blurry")
    assert extract_original_prompts(style, "cat, 4k", "ugly, blurry") == (True, "cat", "ugly")
    assert extract_original_prompts(style, "cat, 4k", "ugly") == (False, "cat, 4k", "ugly")
    assert extract_original_prompts(PromptStyle("empty", "", ""), "x", "y") == (False, "x", "y")
    assert extract_original_prompts(PromptStyle("divider", None, None, "do_not_save"), "x", "y") == (False, "x", "y")


_words = st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=6), min_size=1, max_size=4, unique=True)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="xyz ", min_size=1, max_size=10).map(str.strip).filter(bool), _words, st.data())
def test_property_extract_inverts_apply(prompt: str, words: list[str], data: st.DataObject) -> None:
    # Styles are found greedily in file order (as in A1111), so the names may come back in another order when
    # wrapping and appending styles commute; the prompt and the set of styles always come back.
    templates = [data.draw(st.sampled_from(["{w}", "{w} {{prompt}}", "{{prompt}} {w}"])) for _ in words]
    texts = [template.format(w=f"<{word}>") for template, word in zip(templates, words)]
    db = StyleDatabase.__new__(StyleDatabase)
    db.styles = {word: PromptStyle(word, text, "") for word, text in zip(words, texts)}
    applied = apply_styles_to_prompt(prompt, texts)
    names, recovered, negative = db.extract_styles_from_prompt(applied, "")
    assert sorted(names) == sorted(words) and recovered == prompt and negative == ""


# -- loading -------------------------------------------------------------------------------------------------------


def test_load_a1111_file(tmp_path: Path) -> None:
    path = tmp_path / "styles.csv"
    path.write_bytes(
        BOM
        + b'name,prompt,negative_prompt\r\n'
        b'Quality,"masterpiece, best quality","lowres, blurry"\r\n'
        b'Photo,"photo of {prompt}, 35mm",\r\n'
        b'"Multi\nline","first\nsecond",neg\r\n'
    )
    db = StyleDatabase(path)
    assert list(db.styles) == ["Quality", "Photo", "Multi\nline"]
    assert db.styles["Quality"] == PromptStyle("Quality", "masterpiece, best quality", "lowres, blurry", str(path))
    assert db.styles["Multi\nline"].prompt == "first\nsecond"
    assert db.apply_styles_to_prompt("cat", ["Photo", "Quality"]) == "photo of cat, 35mm, masterpiece, best quality"
    assert db.apply_negative_styles_to_prompt("ugly", ["Photo", "Quality"]) == "ugly, lowres, blurry"
    assert db.apply_styles_to_prompt("cat", ["no such style"]) == "cat"
    assert db.get_style_prompts(["Quality", "nope"]) == ["masterpiece, best quality", ""]
    assert db.get_negative_style_prompts(["Quality"]) == ["lowres, blurry"]
    assert db.errors == {} and db.path == str(path)


def test_load_variants(tmp_path: Path) -> None:
    path = write(
        tmp_path / "styles.csv",
        "name, text, rating\n"  # the old two-column header, spaces after commas, an extra column
        "Old, old style, 5\n"
        "# a comment, ignored, 0\n"
        "Short\n"
        ",,\n",
        bom=False,
    )
    db = StyleDatabase(str(path))
    assert db.styles["Old"] == PromptStyle("Old", "old style", "", str(path))
    assert db.styles["Short"].prompt == "" and db.styles["Short"].negative_prompt == ""  # missing cells: ""
    assert "# a comment" not in db.styles
    assert "" in db.styles  # an empty name is kept, as in A1111


def test_missing_and_empty_files(tmp_path: Path) -> None:
    assert StyleDatabase(tmp_path / "nope.csv").styles == {}
    assert StyleDatabase(write(tmp_path / "empty.csv", "")).styles == {}
    assert StyleDatabase(write(tmp_path / "header.csv", "name,prompt,negative_prompt\n")).styles == {}


@pytest.mark.parametrize(
    "content",
    [
        b"name,prompt,negative_prompt\r\nbad,\xff\xfe cp1252 \xe9,x\r\n",  # not UTF-8
        b"title,body\r\nx,y\r\n",  # no name/prompt columns
        b'name,prompt,negative_prompt\r\nx,"unterminated\r\n',  # broken quoting (strict CSV raises)
    ],
)
def test_unreadable_file_is_reported_and_never_overwritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, content: bytes
) -> None:
    path = tmp_path / "styles.csv"
    path.write_bytes(content)
    if b"unterminated" in content:
        monkeypatch.setattr(styles.csv, "DictReader", _strict_reader(styles.csv.DictReader))
    with caplog.at_level(logging.WARNING):
        db = StyleDatabase(path)
    assert db.styles == {} and str(path) in db.errors
    assert "left untouched" in caplog.text and str(path) in caplog.text
    db.styles["New"] = PromptStyle("New", "x", "")
    db.save_styles()
    assert path.read_bytes() == content
    assert not (tmp_path / "styles.csv.bak").exists()


def _strict_reader(reader_class):  # type: ignore[no-untyped-def]
    def make(file, **kwargs):  # type: ignore[no-untyped-def]
        return reader_class(file, strict=True, **kwargs)

    return make


def test_directory_in_place_of_file(tmp_path: Path) -> None:
    (tmp_path / "styles.csv").mkdir()
    assert StyleDatabase(tmp_path / "styles.csv").styles == {}


# -- saving --------------------------------------------------------------------------------------------------------


def test_save_round_trip_in_a1111_format(tmp_path: Path) -> None:
    path = tmp_path / "styles.csv"
    db = StyleDatabase(path)
    db.styles["Quality"] = PromptStyle("Quality", "masterpiece, best quality", "lowres")
    db.styles["Quote"] = PromptStyle("Quote", 'say "hi"\nnext line', "")
    db.save_styles()
    raw = path.read_bytes()
    assert raw.startswith(BOM + b"name,prompt,negative_prompt\r\n")
    assert b'Quality,"masterpiece, best quality",lowres\r\n' in raw
    again = StyleDatabase(path)
    assert again.styles["Quality"].prompt == "masterpiece, best quality"
    assert again.styles["Quote"].prompt == 'say "hi"\nnext line'


def test_save_keeps_extra_columns_and_comments(tmp_path: Path) -> None:
    path = write(tmp_path / "styles.csv", "name,text,rating\n# mine,keep me,1\nA,a,5\nB,b,\n")
    db = StyleDatabase(path)
    db.styles["A"] = PromptStyle("A", "edited", "neg", str(path))  # an edit keeps the style's extra cells
    db.styles["C"] = PromptStyle("C", "c", "")
    db.save_styles()
    lines = path.read_bytes().removeprefix(BOM).decode().split("\r\n")
    assert lines == ["name,prompt,negative_prompt,rating", "# mine,keep me,,1", "A,edited,neg,5", "B,b,,", "C,c,,", ""]
    assert (tmp_path / "styles.csv.bak").read_bytes().startswith(BOM + b"name,text,rating\r\n")


def test_save_creates_the_default_file_even_when_empty(tmp_path: Path) -> None:
    StyleDatabase(tmp_path / "styles.csv").save_styles()
    assert (tmp_path / "styles.csv").read_bytes() == BOM + b"name,prompt,negative_prompt\r\n"


def test_failed_save_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "styles.csv", "name,prompt,negative_prompt\nA,a,\n")
    before = path.read_bytes()
    db = StyleDatabase(path)
    db.styles["B"] = PromptStyle("B", "b" * 10_000, "")

    def disk_full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "replace", disk_full)
    with pytest.raises(OSError):
        db.save_styles()
    assert path.read_bytes() == before
    assert not [name for name in os.listdir(tmp_path) if fileio.is_temp_leftover(name)]


def test_several_files_and_globs(tmp_path: Path) -> None:
    write(tmp_path / "styles.csv", "name,prompt,negative_prompt\nMain,m,\n")
    write(tmp_path / "styles-extra.csv", "name,prompt,negative_prompt\nExtra,e,\n")
    db = StyleDatabase([str(tmp_path / "styles*.csv")])
    assert db.default_path == tmp_path / "styles-extra.csv"  # first match of a leading glob
    dividers = [name for name, style in db.styles.items() if style.path == styles.DIVIDER_PATH]
    assert dividers == [" STYLES-EXTRA ".center(40, "-"), " STYLES ".center(40, "-")]
    assert db.styles["Main"].path == str(tmp_path / "styles.csv")
    db.styles["New"] = PromptStyle("New", "n", "")
    db.save_styles()
    assert StyleDatabase(tmp_path / "styles.csv").styles.keys() == {"Main"}
    assert StyleDatabase(tmp_path / "styles-extra.csv").styles.keys() == {"Extra", "New"}
    assert not any("-----" in p.name for p in tmp_path.iterdir())  # dividers are never saved


def test_glob_without_matches_defaults_to_styles_csv(tmp_path: Path) -> None:
    db = StyleDatabase([str(tmp_path / "mine-*.csv")])
    assert db.default_path == tmp_path / "styles.csv" and db.styles == {}


def test_list_of_paths(tmp_path: Path) -> None:
    first = write(tmp_path / "a.csv", "name,prompt,negative_prompt\nA,a,\n")
    second = write(tmp_path / "b.csv", "name,prompt,negative_prompt\nA,override,\nB,b,\n")
    db = StyleDatabase([first, second])
    assert db.styles["A"].prompt == "override" and db.styles["B"].path == str(second)
    assert db.get_style_paths() == {str(first), str(second)}


def test_extract_styles_from_prompt(tmp_path: Path) -> None:
    path = write(
        tmp_path / "styles.csv",
        'name,prompt,negative_prompt\nPhoto,"photo of {prompt}",\nQuality,masterpiece,blurry\nEmpty,,\n',
    )
    db = StyleDatabase(path)
    prompt = db.apply_styles_to_prompt("a cat", ["Quality", "Photo"])
    negative = db.apply_negative_styles_to_prompt("ugly", ["Quality", "Photo"])
    assert (prompt, negative) == ("photo of a cat, masterpiece", "ugly, blurry")
    assert db.extract_styles_from_prompt(prompt, negative) == (["Quality", "Photo"], "a cat", "ugly")
    assert db.extract_styles_from_prompt("a dog", "") == ([], "a dog", "")


def test_reload_picks_up_changes(tmp_path: Path) -> None:
    path = write(tmp_path / "styles.csv", "name,prompt,negative_prompt\nA,a,\n")
    db = StyleDatabase(path)
    write(path, "name,prompt,negative_prompt\nB,b,\n")
    db.reload()
    assert list(db.styles) == ["B"]


def test_module_is_pure() -> None:
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(styles))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    allowed = {"__future__", "csv", "io", "logging", "os", "collections", "dataclasses", "pathlib", "typing", "modules"}
    assert imported <= allowed


def test_at_start_an_unreadable_file_is_quarantined_and_the_user_told(tmp_path: Path) -> None:
    """Campaign E39: defaults are used, the bad file is kept aside with a timestamp and never overwritten, the UI
    shows a note, and new styles can be saved again."""
    from modules.cmd_args import parse_args
    from modules.runtime import build_runtime
    from modules.ui.app import startup_notes_html

    bad = b"name,prompt\n\xff\xfe\x00garbage\x00\n"
    (tmp_path / "styles.csv").write_bytes(bad)
    rt = build_runtime(parse_args(["--data-dir", str(tmp_path)], environ={}))
    kept = list(tmp_path.glob("styles.csv.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == bad and not (tmp_path / "styles.csv").exists()
    assert rt.styles.styles == {} and rt.styles.quarantined == [(tmp_path / "styles.csv", kept[0])]
    assert kept[0].name in startup_notes_html(rt)
    rt.styles.styles["New"] = PromptStyle("New", "x", "")
    rt.styles.save_styles()
    assert "New" in (tmp_path / "styles.csv").read_text(encoding="utf-8-sig")
    # a second bad file at the next start gets its own name; the first copy is untouched
    (tmp_path / "styles.csv").write_bytes(bad + b"again")
    build_runtime(parse_args(["--data-dir", str(tmp_path)], environ={}))
    copies = sorted(tmp_path.glob("styles.csv.corrupt-*"))
    assert len(copies) == 2 and kept[0].read_bytes() == bad


def test_a_quarantined_config_json_is_shown_to_the_user(tmp_path: Path) -> None:
    from modules.cmd_args import parse_args
    from modules.runtime import build_runtime
    from modules.ui.app import startup_notes_html

    (tmp_path / "config.json").write_text('{"samples_format": "png", ', encoding="utf-8")  # truncated by a crash
    rt = build_runtime(parse_args(["--data-dir", str(tmp_path)], environ={}))
    kept = list(tmp_path.glob("config.json.corrupt-*"))
    assert len(kept) == 1 and "config.json" in startup_notes_html(rt) and kept[0].name in startup_notes_html(rt)


# -- the styles editor's writes (issue 21 item 6) -------------------------------------------------------------------


def _db(tmp_path, text: str = 'name,prompt,negative_prompt,rating\ncinematic,"{prompt}, film",blurry,5\n'):
    from modules.styles import StyleDatabase

    path = tmp_path / "styles.csv"
    path.write_text(text, encoding="utf-8")
    return StyleDatabase(path), path


def _rows(path) -> list[dict[str, str]]:
    import csv

    with open(path, encoding="utf-8-sig", newline="") as file:
        return list(csv.DictReader(file))


def test_saving_a_new_and_an_edited_style_writes_the_file_and_keeps_other_columns(tmp_path) -> None:
    db, path = _db(tmp_path)
    db.save_style("cinematic", "{prompt}, film grain", "blurry, lowres")
    db.save_style(" watercolor ", "watercolor of {prompt}", "")
    assert _rows(path) == [
        {"name": "cinematic", "prompt": "{prompt}, film grain", "negative_prompt": "blurry, lowres", "rating": "5"},
        {"name": "watercolor", "prompt": "watercolor of {prompt}", "negative_prompt": "", "rating": ""},
    ]
    assert db.apply_styles_to_prompt("a cat", ["watercolor"]) == "watercolor of a cat"


def test_deleting_a_style_removes_it_from_the_file(tmp_path) -> None:
    db, path = _db(tmp_path, "name,prompt,negative_prompt\na,x {prompt},\nb,y {prompt},\n")
    db.delete_style("a")
    assert [r["name"] for r in _rows(path)] == ["b"] and list(db.styles) == ["b"]
    with pytest.raises(KeyError):
        db.delete_style("a")


def test_names_the_editor_refuses(tmp_path) -> None:
    db, path = _db(tmp_path)
    before = path.read_bytes()
    for name in ("", "   ", "None"):
        with pytest.raises(ValueError):
            db.save_style(name, "p", "n")
    assert path.read_bytes() == before


def test_a_failed_write_changes_nothing(tmp_path) -> None:
    db, path = _db(tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x", encoding="utf-8")
    db.default_path = blocker / "styles.csv"  # a new style's file cannot be created there
    with pytest.raises(OSError):
        db.save_style("new", "p", "n")
    assert "new" not in db.styles and list(db.styles) == ["cinematic"]


def test_an_unreadable_styles_file_is_never_written_by_the_editor(tmp_path) -> None:
    from modules.styles import StyleDatabase

    path = tmp_path / "styles.csv"
    path.write_bytes(b"\xff\xfe\x00garbage that is not utf-8 \x81")
    db = StyleDatabase(path)
    assert str(path) in db.errors
    with pytest.raises(OSError, match="could not be read"):
        db.save_style("new", "p", "n")
    assert path.read_bytes() == b"\xff\xfe\x00garbage that is not utf-8 \x81"
