"""Prompt styles: A1111's ``styles.csv`` (contract sections 3.7 and 4.3).

* File format: CSV, UTF-8 (a BOM is accepted and written, as A1111 does), header ``name,prompt,negative_prompt``
  (the old ``name,text`` header is read too). Rows whose name starts with ``#`` are comments, not styles. Columns
  beyond the three and comment rows are kept and written back (A1111 drops both on save).
* ``StyleDatabase(path)`` takes one path or a list (``--styles-file`` is repeatable); a path whose file name has
  ``*``/``?`` is a glob. A missing file is an empty database. With several files, each style remembers its file, a
  divider entry (``----- STYLES -----``) precedes each file's styles as in A1111's dropdown, and saving writes each
  style back to its own file.
* Applying: ``merge_prompts``/``apply_styles_to_prompt``: a style containing ``{prompt}`` wraps the prompt (every
  ``{prompt}`` is replaced); otherwise the stripped style is appended to the stripped prompt with ``", "`` (either one
  empty: just the other).
* ``extract_styles_from_prompt`` is the inverse A1111 uses when pasting infotext: styles whose text matches are
  removed and returned by name.

Better than A1111 (the file format and results are the same):

* Saving is atomic (``fileio.atomic_write_text``, previous version kept as ``.bak``): a crash or a full disk never
  truncates styles.csv (A1111 rewrites it in place).
* A file that cannot be read (not UTF-8, broken CSV, no ``name`` column, permission denied) is skipped with a warning,
  listed in ``StyleDatabase.errors``, and never written by ``save_styles``: the user's file stays untouched.
* A style text with several ``{prompt}`` is extracted correctly (A1111 raises ValueError while pasting).
* Dividers (prompts ``None``) and missing cells apply as empty text instead of raising TypeError.
* Applying and extracting are linear in the prompt's length. A request may list one style many times, and a style
  with two ``{prompt}`` doubles the prompt each time (30 times: a billion copies), so a result over
  ``MAX_STYLED_PROMPT_CHARS`` raises ``StyledPromptTooLongError`` (a ValueError) before it is built.

Pure module: standard library only.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from modules import fileio

log = logging.getLogger(__name__)

__all__ = [
    "DIVIDER_PATH",
    "PROMPT_PLACEHOLDER",
    "MAX_STYLED_PROMPT_CHARS",
    "PromptStyle",
    "StyleDatabase",
    "StyledPromptTooLongError",
    "apply_styles_to_prompt",
    "extract_original_prompts",
    "extract_style_text_from_prompt",
    "merge_prompts",
]

PROMPT_PLACEHOLDER = "{prompt}"
DIVIDER_PATH = "do_not_save"  # A1111's marker for dropdown dividers, which belong to no file
STYLE_FIELDS = ("name", "prompt", "negative_prompt")
# Longest prompt a style may produce: far beyond any prompt CLIP can use (a 75-token chunk is ~400 characters), and
# as large as the longest prompt the parsers are benchmarked on.
MAX_STYLED_PROMPT_CHARS = 1024 * 1024


class StyledPromptTooLongError(ValueError):
    """Applying a style would make a prompt longer than ``MAX_STYLED_PROMPT_CHARS``."""

    def __init__(self, length: int) -> None:
        super().__init__(f"styles: the styled prompt would be {length} characters; at most {MAX_STYLED_PROMPT_CHARS}")
        self.length = length


class PromptStyle(NamedTuple):
    """One style, A1111's four fields. ``path`` is the file it came from (None: the default file)."""

    name: str
    prompt: str | None
    negative_prompt: str | None
    path: str | None = None


# -- applying and extracting ---------------------------------------------------------------------------------------


def merge_prompts(style_prompt: str | None, prompt: str) -> str:
    """Apply one style text to ``prompt``: wrap it when the style has ``{prompt}``, else append with ``", "``."""
    style_prompt = style_prompt or ""
    if PROMPT_PLACEHOLDER in style_prompt:
        copies = style_prompt.count(PROMPT_PLACEHOLDER)
        length = len(style_prompt) + copies * (len(prompt) - len(PROMPT_PLACEHOLDER))
        if length > MAX_STYLED_PROMPT_CHARS:
            raise StyledPromptTooLongError(length)
        return style_prompt.replace(PROMPT_PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_prompt.strip()) if part)


def apply_styles_to_prompt(prompt: str, styles: Iterable[str | None]) -> str:
    """Apply style texts in order (the first is applied first, so the last one wraps or follows everything)."""
    for style in styles:
        prompt = merge_prompts(style, prompt)
    return prompt


def _unwrap(parts: list[str], text: str) -> str | None:
    """The ``x`` for which ``"{prompt}".join(parts)`` with ``x`` substituted gives ``text``, or None."""
    head, *middle, tail = parts
    if len(text) < len(head) + len(tail) or not (text.startswith(head) and text.endswith(tail)):
        return None
    inner = text[len(head) : len(text) - len(tail)]
    if not middle:
        return inner
    # Every {prompt} got the same text, so its length follows from the total; check by rebuilding.
    fixed = sum(len(part) for part in middle)
    copies = len(middle) + 1
    if (len(inner) - fixed) % copies or len(inner) < fixed:
        return None
    candidate = inner[: (len(inner) - fixed) // copies]
    rebuilt = candidate + "".join(part + candidate for part in middle)
    return candidate if rebuilt == inner else None


def extract_style_text_from_prompt(style_text: str | None, prompt: str) -> tuple[bool, str]:
    """Undo ``merge_prompts(style_text, x)``: ``(True, x)`` when ``prompt`` could have come from it, else
    ``(False, prompt)``. Both are compared stripped, as A1111 does.

    ``("masterpiece", "1girl, art by greg, masterpiece")`` -> ``(True, "1girl, art by greg")``;
    ``("masterpiece, {prompt}", "masterpiece, 1girl")`` -> ``(True, "1girl")``.
    """
    rest = _extract_stripped(style_text, prompt.strip())
    return (False, prompt) if rest is None else (True, rest)


def _extract_stripped(style_text: str | None, stripped_prompt: str) -> str | None:
    """``extract_style_text_from_prompt`` on an already stripped prompt: the prompt without the style, or None.

    Callers that try many styles strip once: ``str.strip`` scans all leading and trailing whitespace each time.
    """
    stripped_style = (style_text or "").strip()
    if PROMPT_PLACEHOLDER in stripped_style:
        return _unwrap(stripped_style.split(PROMPT_PLACEHOLDER), stripped_prompt)
    if not stripped_prompt.endswith(stripped_style):
        return None
    return stripped_prompt[: len(stripped_prompt) - len(stripped_style)].removesuffix(", ")


def extract_original_prompts(style: PromptStyle, prompt: str, negative_prompt: str) -> tuple[bool, str, str]:
    """``(True, prompt, negative)`` without the style when both texts match it; else the inputs with False.
    A style with neither text (a divider, an empty row) never matches."""
    found = _extract_both(style, prompt.strip(), negative_prompt.strip())
    return (False, prompt, negative_prompt) if found is None else (True, *found)


def _extract_both(style: PromptStyle, stripped_prompt: str, stripped_negative: str) -> tuple[str, str] | None:
    if not style.prompt and not style.negative_prompt:
        return None
    positive = _extract_stripped(style.prompt, stripped_prompt)
    if positive is None:
        return None
    negative = _extract_stripped(style.negative_prompt, stripped_negative)
    return None if negative is None else (positive, negative)


# -- reading and writing CSV ---------------------------------------------------------------------------------------


class StyleFileError(Exception):
    """A styles file that cannot be used as a whole (it is then skipped and never overwritten)."""


@dataclass
class _StyleFile:
    """What one CSV file holds. Besides the styles: the columns beyond A1111's three with each style's values (kept
    by style name, so editing a style keeps them), and the ``#`` comment rows (written back first)."""

    styles: list[PromptStyle] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    extra: dict[str, dict[str, str]] = field(default_factory=dict)
    comments: list[dict[str, str]] = field(default_factory=list)


def _read_styles_csv(path: Path) -> _StyleFile:
    """Everything in one file; StyleFileError when any part of it is unusable (nothing is taken from it then)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            reader = csv.DictReader(file, skipinitialspace=True)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise StyleFileError(str(err)) from err
    if not header:
        return _StyleFile()  # an empty file
    if "name" not in header or ("prompt" not in header and "text" not in header):
        raise StyleFileError(f"no name/prompt columns in the header {header!r}")
    known = STYLE_FIELDS if "prompt" in header else (*STYLE_FIELDS, "text")
    content = _StyleFile(extra_columns=[column for column in header if column and column not in known])
    for row in rows:
        # A short row has None for its missing cells; "text" is the prompt column of the old two-column format.
        cells = {column: row.get(column) or "" for column in header if column}
        cells.setdefault("prompt", cells.get("text", ""))
        name = cells["name"]
        if name.startswith("#"):
            content.comments.append(cells)
            continue
        content.styles.append(PromptStyle(name, cells["prompt"], cells.get("negative_prompt", ""), str(path)))
        content.extra[name] = {column: cells[column] for column in content.extra_columns}
    return content


def _styles_csv_text(content: _StyleFile, styles: Iterable[PromptStyle]) -> str:
    columns = [*STYLE_FIELDS, *content.extra_columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")  # "\r\n" line ends, as A1111's
    writer.writeheader()
    writer.writerows(content.comments)
    for style in styles:
        cells = {"name": style.name, "prompt": style.prompt or "", "negative_prompt": style.negative_prompt or ""}
        writer.writerow({**content.extra.get(style.name, {}), **cells})
    return buffer.getvalue()


def _is_pattern(path: str) -> bool:
    name = os.path.basename(path)
    return "*" in name or "?" in name


def _expand(pattern: str) -> list[Path]:
    folder, name = os.path.split(pattern)
    return sorted(Path(folder or ".").glob(name))


class StyleDatabase:
    """The styles of one or more CSV files, by name, in file order."""

    def __init__(self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                 quarantine_unreadable: bool = False) -> None:
        """``quarantine_unreadable`` (at start): a file that cannot be read is moved aside with a timestamp
        (``styles.csv.corrupt-YYYYMMDD-HHMMSS``, never overwritten) and listed in ``quarantined``, so a fresh file
        can be saved; otherwise (a reload while running) it is left in place and never written."""
        self.quarantine_unreadable = quarantine_unreadable
        self.quarantined: list[tuple[Path, Path]] = []  # (file, where it was moved)
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths: list[str] = [os.fspath(p) for p in paths] or ["styles.csv"]
        self.no_style = PromptStyle("None", "", "", None)
        self.styles: dict[str, PromptStyle] = {}
        self.all_styles_files: list[Path] = []
        self.errors: dict[str, str] = {}  # path -> why it was skipped; these files are never written
        self._files: dict[str, _StyleFile] = {}  # what was read from each file, for writing it back
        first = self.paths[0]
        if _is_pattern(first):
            # A glob first: its first match is where new styles go, else styles.csv beside it (A1111's rule).
            matches = _expand(first)
            self.default_path = matches[0] if matches else Path(os.path.dirname(first) or ".") / "styles.csv"
            self.paths.insert(0, str(self.default_path))
        else:
            self.default_path = Path(first)
        self.reload()

    @property
    def path(self) -> str:
        """The file new styles are saved to (pre-1.7 A1111 had a single ``path``)."""
        return str(self.default_path)

    def reload(self) -> None:
        """Read all files again; styles of a file that cannot be read are skipped (see ``errors``)."""
        self.styles.clear()
        self.errors.clear()
        self._files.clear()
        files: list[Path] = []
        for pattern in self.paths:
            files.extend(_expand(pattern) if _is_pattern(pattern) else [Path(pattern)])
        self.all_styles_files = list(dict.fromkeys(files))
        for styles_file in self.all_styles_files:
            if len(self.all_styles_files) > 1:
                divider = f" {styles_file.stem.upper()} ".center(40, "-")
                self.styles[divider] = PromptStyle(divider, None, None, DIVIDER_PATH)
            if styles_file.is_file():
                self.load_from_csv(styles_file)

    def load_from_csv(self, path: str | os.PathLike[str]) -> None:
        """Add the styles of one file (later names replace earlier ones, as in A1111)."""
        try:
            content = _read_styles_csv(Path(path))
        except StyleFileError as err:
            if self.quarantine_unreadable:
                try:
                    self.quarantined.append((Path(path), fileio.quarantine(path, str(err))))
                    return
                except OSError as move_error:
                    log.warning("could not move %s aside: %s", path, move_error)
            self.errors[str(path)] = str(err)
            log.warning("styles file %s cannot be read and is left untouched: %s", path, err)
            return
        self._files[str(path)] = content
        for style in content.styles:
            self.styles[style.name] = style

    def get_style_paths(self) -> set[str]:
        """The files styles are saved to: the default file plus each style's own (styles without one get the
        default)."""
        for style in list(self.styles.values()):
            if not style.path:
                self.styles[style.name] = style._replace(path=str(self.default_path))
        paths = {str(self.default_path)} | {style.path for style in self.styles.values() if style.path}
        paths.discard(DIVIDER_PATH)
        return paths

    def _style(self, name: str) -> PromptStyle:
        return self.styles.get(name, self.no_style)

    def get_style_prompts(self, styles: Iterable[str]) -> list[str | None]:
        return [self._style(name).prompt for name in styles]

    def get_negative_style_prompts(self, styles: Iterable[str]) -> list[str | None]:
        return [self._style(name).negative_prompt for name in styles]

    def apply_styles_to_prompt(self, prompt: str, styles: Iterable[str]) -> str:
        """Apply named styles (unknown names do nothing)."""
        return apply_styles_to_prompt(prompt, self.get_style_prompts(styles))

    def apply_negative_styles_to_prompt(self, prompt: str, styles: Iterable[str]) -> str:
        return apply_styles_to_prompt(prompt, self.get_negative_style_prompts(styles))

    def save_styles(self, path: str | None = None) -> None:
        """Write every style back to its file, atomically. ``path`` is ignored (deprecated in A1111 too).

        Files listed in ``errors`` are skipped with a warning. An OSError (disk full, read-only folder) propagates
        after leaving the old file as it was.
        """
        del path
        for style_path in sorted(self.get_style_paths()):
            if style_path in self.errors:
                log.warning("not saving styles to %s: it could not be read (%s)", style_path, self.errors[style_path])
                continue
            content = self._files.setdefault(style_path, _StyleFile())
            styles = [s for s in self.styles.values() if s.path == style_path]
            fileio.atomic_write_text(style_path, _styles_csv_text(content, styles), encoding="utf-8-sig")

    def editable(self, name: str) -> bool:
        """Whether the styles editor may save or delete ``name``: a real name, not A1111's "None" or a divider."""
        name = (name or "").strip()
        style = self.styles.get(name)
        return bool(name) and name != self.no_style.name and not (style is not None and style.path == DIVIDER_PATH)

    def save_style(self, name: str, prompt: str, negative_prompt: str) -> PromptStyle:
        """Add or change one style and write its file (a new style goes to the default file). When the write
        fails, the styles in memory are as before and the error propagates; the file is untouched."""
        name = (name or "").strip()
        if not self.editable(name):
            raise ValueError(f"{name or 'an empty name'!r} cannot be a style name")
        old = self.styles.get(name)
        path = old.path if old is not None and old.path else str(self.default_path)
        if path in self.errors:
            raise OSError(f"{path} could not be read ({self.errors[path]}), so it is not written")
        style = PromptStyle(name, prompt or "", negative_prompt or "", path)
        self._write_changed({**self.styles, name: style}, path)
        return style

    def delete_style(self, name: str) -> None:
        """Remove one style and write its file; as ``save_style`` when the write fails."""
        style = self.styles.get((name or "").strip())
        if style is None or not self.editable(style.name):
            raise KeyError(f"no style named {name!r}")
        path = style.path or str(self.default_path)
        if path in self.errors:
            raise OSError(f"{path} could not be read ({self.errors[path]}), so it is not written")
        self._write_changed({k: v for k, v in self.styles.items() if k != style.name}, path)

    def _write_changed(self, styles: dict[str, PromptStyle], path: str) -> None:
        content = self._files.setdefault(path, _StyleFile())
        text = _styles_csv_text(content, [s for s in styles.values() if (s.path or str(self.default_path)) == path])
        fileio.atomic_write_text(path, text, encoding="utf-8-sig")  # raises before anything in memory changes
        self.styles = styles

    def extract_styles_from_prompt(self, prompt: str, negative_prompt: str) -> tuple[list[str], str, str]:
        """Remove matching styles from both prompts, last applied first; returns ``(names, prompt, negative)``
        with the names in the order they would be applied."""
        extracted: list[str] = []
        candidates = list(self.styles.values())
        while True:
            stripped_prompt, stripped_negative = prompt.strip(), negative_prompt.strip()  # once per round
            for style in candidates:
                found = _extract_both(style, stripped_prompt, stripped_negative)
                if found is not None:
                    prompt, negative_prompt = found
                    candidates.remove(style)
                    extracted.append(style.name)
                    break
            else:
                return list(reversed(extracted)), prompt, negative_prompt
