"""Output file and folder names with A1111's conventions (contract section 5), kept inside the output folder.

* ``next_sequence_number``: A1111's ``get_next_sequence_number`` (max leading number + 1, optional ``basename-``).
* ``apply_pattern`` / ``FilenamePattern``: A1111's ``[tag]`` language (``FilenameGenerator``): known tags replaced,
  unknown tags (or tags whose value is unknown) left as literal ``[tag]``, ``[none]`` drops the text before it,
  ``[tag<arg>]`` arguments, case-insensitive tag names.
* ``sample_path`` -> ``00000-1234567890.png`` (5 digits); ``grid_path`` -> ``grid-0000.png`` (4 digits);
  ``output_directory`` with ``[date]`` -> ``YYYY-MM-DD``.

Safety (security campaign case 19): a user value (prompt, model name, ...) can never add a path separator, a ``..``
component, a drive, a control character, a Windows reserved name (``CON``, ``NUL``, ``COM1``...) or a trailing dot or
space; names are capped at the filesystem's name limit counted in UTF-8 bytes (A1111 counts characters, which
overflows 255 bytes with non-ASCII prompts). ``contained_path`` checks the final path is inside the target folder.

Deviation: A1111 substitutes ``_`` for invalid characters only inside tag values; we also sanitize the literal text of
a *filename* pattern (a ``/`` there cannot create folders). The *directory* pattern may still use ``/`` to nest
folders, as in A1111, one sanitized component at a time.
Pure module: standard library only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import string
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

NAME_MAX_BYTES = 255  # ext4/NTFS/APFS name limit; the real per-folder value comes from statvfs where available
DEFAULT_PART_MAX_LEN = 128  # A1111's --filenames-max-length default
DEFAULT_MAX_PROMPT_WORDS = 8  # A1111's directories_max_prompt_words default
DEFAULT_DATETIME_FORMAT = "%Y%m%d%H%M%S"

# A1111's invalid_filename_chars; with --unix-filenames-sanitization only "/" is replaced.
INVALID_FILENAME_CHARS = '#<>:"/\\|?*\n\r\t'
UNIX_INVALID_FILENAME_CHARS = "/"
# NUL and the other C0 controls are never valid (NUL cannot be in a path at all); DEL is invisible and confusing.
_CONTROL_CHARS = "".join(chr(c) for c in range(32)) + "\x7f"

_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{dev}{n}" for dev in ("COM", "LPT") for n in list("0123456789") + ["\u00b9", "\u00b2", "\u00b3"]]
)

# A1111's two pattern regexes, kept as the definition and the tests' oracle. Both are quadratic on hostile patterns
# (text before a newline is rescanned from every start; "<<<<" in a tag, or thousands of "<arg>"s, are rescanned per
# argument), so ``_pattern_pieces`` and ``_split_tag_args`` compute the same results in linear time.
_RE_PATTERN = re.compile(r"(.*?)(?:\[([^\[\]]+)\]|$)")  # A1111: literal text, then an optional [tag]
_RE_PATTERN_ARG = re.compile(r"(.*)<([^>]*)>$")  # A1111: trailing <arg> groups of a tag
_BRACKET = re.compile(r"[\[\]]")
_RE_NONLETTERS = re.compile(r"[\s" + re.escape(string.punctuation) + r"]+")


class _Skip:
    """A1111's NOTHING_AND_SKIP_PREVIOUS_TEXT: the tag and the literal text just before it vanish."""

    def __repr__(self) -> str:
        return "SKIP"


SKIP = _Skip()


# -- sanitizing -----------------------------------------------------------------------------------------------------


def truncate_utf8(text: str, max_bytes: int) -> str:
    """Longest prefix of ``text`` whose UTF-8 encoding fits ``max_bytes`` (never splits a character)."""
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", "ignore")


def _is_reserved(name: str) -> bool:
    # Windows reserves these device names with any extension and trailing spaces: "con.png", "NUL .txt".
    base = name.split(".", 1)[0].rstrip(" ").upper()
    return base in _WINDOWS_RESERVED


def _unreserve(name: str) -> str:
    """``CON`` -> ``CON_``, ``con.png`` -> ``con_.png``: the suffix must go before the first dot to count."""
    if not _is_reserved(name):
        return name
    dot = name.find(".")
    return name + "_" if dot < 0 else f"{name[:dot]}_{name[dot:]}"


_SCRUB_TABLES = {
    unix: {ord(c): "_" for c in (UNIX_INVALID_FILENAME_CHARS if unix else INVALID_FILENAME_CHARS) + _CONTROL_CHARS}
    for unix in (False, True)
}


def _scrub(text: str, unix: bool) -> str:
    """Invalid and control characters -> ``_`` (A1111's translate step)."""
    return text.translate(_SCRUB_TABLES[unix])


def sanitize_filename_part(
    text: str,
    max_len: int = DEFAULT_PART_MAX_LEN,
    *,
    replace_spaces: bool = True,
    unix: bool = False,
) -> str:
    """A1111's ``sanitize_filename_part``, made safe for any filesystem.

    Spaces -> ``_`` (unless ``replace_spaces=False``, as for ``[prompt_spaces]``), invalid characters and control
    characters -> ``_``, leading spaces and trailing dots/spaces removed, at most ``max_len`` characters (A1111's
    ``--filenames-max-length``) and 255 UTF-8 bytes; a Windows reserved name gets a ``_`` appended. ``unix=True`` is
    ``--unix-filenames-sanitization`` (only ``/`` is replaced, plus control characters).
    """
    if replace_spaces:
        text = text.replace(" ", "_")
    text = _scrub(text, unix).lstrip(" ")[: max(0, max_len)]
    text = truncate_utf8(text, NAME_MAX_BYTES).rstrip(" .")
    return _unreserve(text) if text else text


def safe_component(name: str, *, unix: bool = False, max_bytes: int = NAME_MAX_BYTES) -> str:
    """One final path component: sanitized (spaces kept), no leading dot (no hidden files, no ``..``), capped.

    Returns ``""`` when nothing usable is left; callers substitute a fallback.
    """
    name = _scrub(name, unix).lstrip(" .")
    name = truncate_utf8(name, max_bytes - 1).rstrip(" .")  # 1 byte spare for a reserved-name "_"
    return _unreserve(name) if name else name


def name_max(directory: Path) -> int:
    """The filesystem's maximum name length in bytes for ``directory`` (nearest existing parent), at most 255."""
    statvfs = getattr(os, "statvfs", None)
    probe = Path(directory)
    while statvfs is not None:
        try:
            return max(16, min(NAME_MAX_BYTES, int(statvfs(probe).f_namemax)))
        except OSError:
            if probe.parent == probe:
                break
            probe = probe.parent
    return NAME_MAX_BYTES


def relative_subpath(text: str) -> str:
    """A directory pattern's result as a path below the output folder: separators of either kind, no empty,
    ``.`` or ``..`` segments, never absolute (a pattern of ``/`` or ``C:\\x`` stays inside)."""
    segments = [seg for seg in text.replace("\\", "/").split("/") if seg.strip() not in ("", ".", "..")]
    return "/".join(seg.replace(":", "_") if len(seg) == 2 and seg[1] == ":" else seg for seg in segments)


def inside_any(path: str | os.PathLike[str], roots: Sequence[str | os.PathLike[str]]) -> bool:
    """Whether ``path``, with symlinks resolved, is one of ``roots`` or below one (for paths that come from
    outside: a browser's gallery value, a script's folder)."""
    real = os.path.realpath(path)
    for root in roots:
        real_root = os.path.realpath(root)
        if os.path.commonpath([real, real_root]) == real_root:
            return True
    return False


def contained_path(root: Path, *parts: str) -> Path:
    """``root/parts...``, raising ValueError if the result is not inside ``root`` (lexically, after normalizing).

    Parts built by this module never contain separators or ``..``; this is the last line of defence. The check is
    lexical on purpose: a symlink the user made inside their outputs folder is their choice and is honoured.
    """
    root_abs = os.path.abspath(root)
    candidate = os.path.abspath(os.path.join(root_abs, *parts))
    if os.path.commonpath([root_abs, candidate]) != root_abs or (parts and candidate == root_abs):
        raise ValueError(f"output path escapes {root}: {parts!r}")
    return Path(candidate)


# -- sequence numbers -----------------------------------------------------------------------------------------------


def next_sequence_number(directory: Path, basename: str = "") -> int:
    """A1111's ``get_next_sequence_number``: 1 + the largest leading number among the folder's entries, from 0.

    With ``basename`` (``"grid"``) only names starting ``basename-`` count and the number follows that prefix. The
    number is the part before the first ``-`` of the name without its extension, and must be all digits.
    A missing folder gives 0.
    """
    prefix = f"{basename}-" if basename else ""
    result = -1
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for name in names:
        if not name.startswith(prefix):
            continue
        first = os.path.splitext(name[len(prefix) :])[0].split("-", 1)[0]
        if first.isascii() and first.isdigit():  # str.isdigit alone accepts "²" and other non-ASCII digits
            result = max(result, int(first))
    return result + 1


# -- pattern language -----------------------------------------------------------------------------------------------


def _first_tag(pattern: str, start: int, stop: int) -> tuple[int, int] | None:
    """``(opening, closing)`` of the first ``[tag]`` (``\\[([^\\[\\]]+)\\]``) opening in ``[start, stop)``."""
    opening = pattern.find("[", start, stop)
    while opening >= 0:
        bracket = _BRACKET.search(pattern, opening + 1)
        if bracket is None:
            return None  # no "]" anywhere after: no later "[" closes either
        closing = bracket.start()
        if pattern[closing] == "]" and closing > opening + 1:
            return opening, closing
        opening = pattern.find("[", opening + 1, stop)
    return None


def _pattern_pieces(pattern: str) -> list[tuple[str, str | None]]:
    """``[m.groups() for m in _RE_PATTERN.finditer(pattern)]`` in linear time (empty matches included).

    A match is the text up to the first tag that opens before the next newline (``.*?`` cannot cross one), or else
    up to that newline if it is where ``$`` matches (the end, or the final newline); otherwise no start before the
    newline matches, and the search goes on after it, dropping that text, as A1111 does.
    """
    pieces: list[tuple[str, str | None]] = []
    n, pos, after_empty = len(pattern), 0, False
    line_end = -1  # the first newline at or after pos (or n), found again only once pos passes it
    while pos <= n:
        if line_end < pos:
            newline = pattern.find("\n", pos)
            line_end = n if newline < 0 else newline
        tag = _first_tag(pattern, pos, line_end)
        if tag is not None:
            pieces.append((pattern[pos : tag[0]], pattern[tag[0] + 1 : tag[1]]))
            pos, after_empty = tag[1] + 1, False
        elif line_end >= n - 1:  # "$" matches at the end or just before a final newline
            if line_end == pos and after_empty:
                pos, after_empty = pos + 1, False  # re never repeats an empty match at the same place
                continue
            pieces.append((pattern[pos:line_end], None))
            pos, after_empty = line_end, line_end == pos
        else:
            pos, after_empty = line_end + 1, False
    return pieces


def _split_tag_args(tag: str) -> tuple[str, list[str]]:
    """A tag without its trailing ``<arg>`` groups, and the args in order: A1111's loop of ``_RE_PATTERN_ARG``
    matches, in linear time. Each match takes the last ``<`` after the last earlier ``>``, with no newline before
    it (``.*`` stops at one); ``$`` allows one final newline after the ``>``."""
    args: list[str] = []
    newline = tag.find("\n")
    limit = len(tag) if newline < 0 else newline  # "<" must come at or before the first newline
    end = len(tag)  # the tag is tag[:end]; cut by index, as slicing each time would copy it once per argument
    while True:
        if end >= 1 and tag[end - 1] == ">":
            close = end - 1
        elif end >= 2 and tag[end - 1] == "\n" and tag[end - 2] == ">":
            close = end - 2
        else:
            break
        opening = tag.rfind("<", tag.rfind(">", 0, close) + 1, min(close, limit + 1))
        if opening < 0:
            break
        args.append(tag[opening + 1 : close])
        end = opening
    args.reverse()
    return tag[:end], args


class _Ctx:
    """What a tag function sees: the fields plus the sanitizing settings."""

    def __init__(self, fields: Mapping[str, Any], unix: bool, max_len: int, max_prompt_words: int) -> None:
        self.f = fields
        self.unix = unix
        self.max_len = max_len
        self.max_prompt_words = max_prompt_words
        self._now: datetime | None = fields.get("now")

    @property
    def now(self) -> datetime:
        if self._now is None:
            self._now = datetime.now()  # one instant per pattern, so [date] and [datetime] agree
        return self._now

    def clean(self, value: Any, replace_spaces: bool = True) -> str | None:
        if value is None:
            return None
        return sanitize_filename_part(str(value), self.max_len, replace_spaces=replace_spaces, unix=self.unix)

    def get(self, key: str) -> Any:
        return self.f.get(key)


def _string_hash(text: str | None, *args: str) -> str | None:
    if text is None:
        return None
    length = int(args[0]) if args and args[0] != "" else 8
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def _prompt_words(c: _Ctx) -> str | None:
    words = [w for w in _RE_NONLETTERS.split(c.get("prompt") or "") if w]
    if not words:
        words = ["empty"]
    return c.clean(" ".join(words[: c.max_prompt_words]), replace_spaces=False)


def _prompt_no_styles(c: _Ctx) -> str | None:
    if "prompt_no_styles" in c.f:
        return c.clean(c.get("prompt_no_styles"), replace_spaces=False)
    prompt = c.get("prompt")
    if prompt is None:
        return None
    # A1111: remove each style's text (both halves around "{prompt}"), tidying leftover commas.
    for style in c.get("style_prompts") or ():
        if not style:
            continue
        for part in str(style).split("{prompt}"):
            prompt = prompt.replace(part, "").replace(", ,", ",").strip().strip(",")
        prompt = prompt.replace(style, "").strip().strip(",").strip()
    return c.clean(prompt, replace_spaces=False)


def _datetime(c: _Ctx, *args: str) -> str | None:
    fmt = args[0] if args and args[0] != "" else DEFAULT_DATETIME_FORMAT
    moment = c.now
    if len(args) > 1 and args[1]:
        try:
            from zoneinfo import ZoneInfo

            moment = moment.astimezone(ZoneInfo(args[1]))
        except (ImportError, KeyError, ValueError, OSError):
            pass  # unknown zone, or no tz database (Windows without tzdata): local time, as A1111 falls back
    try:
        text = moment.strftime(fmt)
    except (ValueError, TypeError):
        text = moment.strftime(DEFAULT_DATETIME_FORMAT)
    return c.clean(text, replace_spaces=False)


def _hasprompt(c: _Ctx, *args: str) -> str | None:
    prompt = c.get("prompt")
    if prompt is None:
        return None
    lower = prompt.lower()
    out = ""
    for arg in args:
        if arg == "":
            continue
        expected, _, default = arg.partition("|")
        if expected.lower() in lower:
            out += expected.lower()
        else:
            out += default
    return c.clean(out)


def _batch_number(c: _Ctx) -> Any:
    if c.get("batch_size") in (None, 1) or c.get("zip"):
        return SKIP
    return int(c.get("batch_index") or 0) + 1


def _generation_number(c: _Ctx) -> Any:
    n_iter, batch_size = c.get("n_iter") or 1, c.get("batch_size") or 1
    if (n_iter == 1 and batch_size == 1) or c.get("zip"):
        return SKIP
    return int(c.get("iteration") or 0) * int(batch_size) + int(c.get("batch_index") or 0) + 1


def _seed_last(c: _Ctx) -> Any:
    if c.get("batch_size") in (None, 1):
        return SKIP
    return c.get("seed_last")


def _sampler_scheduler(c: _Ctx, with_sampler: bool) -> str | None:
    sampler, scheduler = c.get("sampler"), c.get("scheduler")
    if scheduler in (None, "", "Automatic"):
        return c.clean(sampler, replace_spaces=False) if with_sampler else c.clean(scheduler, replace_spaces=False)
    text = f"{sampler} {scheduler}" if with_sampler and sampler is not None else scheduler
    return c.clean(text, replace_spaces=False)


def _vae_filename(c: _Ctx) -> str:
    value = c.get("vae_filename")
    if not value:
        return "NoneType"  # A1111 prints the type name when no VAE file is loaded
    parts = os.path.basename(str(value)).split(".")
    return (parts[1] if len(parts) > 1 and parts[0] == "" else parts[0]) or "NoneType"


def _styles(c: _Ctx) -> str | None:
    styles = c.get("styles")
    if styles is None:
        return None
    return c.clean(", ".join(s for s in styles if s != "None") or "None", replace_spaces=False)


def _image_hash(c: _Ctx, *args: str) -> str | None:
    digest = c.get("image_sha256")
    if digest is None:
        return None
    length = int(args[0]) if args and args[0] != "" else None
    return str(digest)[:length]


def _denoising(c: _Ctx) -> Any:
    value = c.get("denoising_strength")
    return value if value else SKIP


def _job_timestamp(c: _Ctx) -> Any:
    value = c.get("job_timestamp")
    return value if value is not None else c.now.strftime(DEFAULT_DATETIME_FORMAT)


TagFunction = Callable[..., Any]

# A1111's FilenameGenerator.replacements (contract section 5). A function returning None leaves "[tag]" as text.
TAGS: dict[str, TagFunction] = {
    "seed": lambda c: c.get("seed") if c.get("seed") is not None else "",
    "seed_first": lambda c: c.get("seed_first") if c.get("seed_first") is not None else c.get("seed"),
    "seed_last": _seed_last,
    "steps": lambda c: c.get("steps"),
    "cfg": lambda c: c.get("cfg_scale"),
    "width": lambda c: c.get("width"),
    "height": lambda c: c.get("height"),
    "styles": _styles,
    "sampler": lambda c: c.clean(c.get("sampler"), replace_spaces=False),
    "sampler_scheduler": lambda c: _sampler_scheduler(c, True),
    "scheduler": lambda c: _sampler_scheduler(c, False),
    "model_hash": lambda c: c.get("model_hash"),
    "model_name": lambda c: c.clean(c.get("model_name"), replace_spaces=False),
    "date": lambda c: c.now.strftime("%Y-%m-%d"),
    "datetime": _datetime,
    "job_timestamp": _job_timestamp,
    "prompt_hash": lambda c, *a: _string_hash(c.get("prompt"), *a),
    "negative_prompt_hash": lambda c, *a: _string_hash(c.get("negative_prompt"), *a),
    "full_prompt_hash": lambda c, *a: _string_hash(f"{c.get('prompt') or ''} {c.get('negative_prompt') or ''}", *a),
    "prompt": lambda c: c.clean(c.get("prompt")),
    "prompt_no_styles": _prompt_no_styles,
    "prompt_spaces": lambda c: c.clean(c.get("prompt"), replace_spaces=False),
    "prompt_words": _prompt_words,
    "batch_number": _batch_number,
    "batch_size": lambda c: c.get("batch_size"),
    "generation_number": _generation_number,
    "hasprompt": _hasprompt,
    "clip_skip": lambda c: c.get("clip_skip"),
    "denoising": _denoising,
    "user": lambda c: c.clean(c.get("user"), replace_spaces=False),
    "vae_filename": _vae_filename,
    "none": lambda c: SKIP,
    "image_hash": _image_hash,
}


class FilenamePattern:
    """A compiled-once view of a pattern such as ``[seed]-[prompt_spaces]``.

    ``fields`` keys (all optional): seed, seed_first, seed_last, prompt, negative_prompt, prompt_no_styles,
    style_prompts, styles, steps, cfg_scale, width, height, sampler, scheduler, model_hash, model_name,
    job_timestamp, batch_index, batch_size, n_iter, iteration, zip, clip_skip, denoising_strength, user,
    vae_filename, image_sha256, now (a datetime, for reproducible names).
    """

    def __init__(
        self,
        pattern: str,
        *,
        unix: bool = False,
        max_part_len: int = DEFAULT_PART_MAX_LEN,
        max_prompt_words: int = DEFAULT_MAX_PROMPT_WORDS,
    ) -> None:
        self.pattern = pattern
        self.unix = unix
        self.max_part_len = max_part_len
        self.max_prompt_words = max_prompt_words
        self._pieces: list[tuple[str, str | None, list[str]]] = []
        for text, tag in _pattern_pieces(pattern):
            args: list[str] = []
            if tag is not None:
                tag, args = _split_tag_args(tag)
            self._pieces.append((text, tag, args))

    def apply(self, fields: Mapping[str, Any]) -> str:
        """The pattern with tags replaced. The result is *not* yet a safe file name: see ``safe_component``."""
        ctx = _Ctx(fields, self.unix, self.max_part_len, self.max_prompt_words)
        out: list[str] = []
        for text, tag, args in self._pieces:
            if tag is None:
                out.append(text)
                continue
            fn = TAGS.get(tag.lower())
            if fn is not None:
                try:
                    value = fn(ctx, *args)
                except Exception as err:  # noqa: BLE001 - a bad argument ([prompt_hash<x>]) must not fail a save
                    log.warning("error adding [%s] to a file name: %s", tag, err)
                    value = None
                if value is SKIP:
                    continue
                if value is not None:
                    out.append(text + str(value))
                    continue
            out.append(f"{text}[{tag}]")  # unknown tag or unknown value: kept literally, as A1111 does
        return "".join(out)


def apply_pattern(pattern: str, fields: Mapping[str, Any], **options: Any) -> str:
    """``FilenamePattern(pattern, **options).apply(fields)``."""
    return FilenamePattern(pattern, **options).apply(fields)


# -- putting names together -----------------------------------------------------------------------------------------


def default_sample_pattern(save_to_dirs: bool) -> str:
    """A1111's decoration when ``samples_filename_pattern`` is empty."""
    return "[seed]" if save_to_dirs else "[seed]-[prompt_spaces]"


def _clean_extension(extension: str) -> str:
    ext = "".join(ch for ch in extension.lstrip(".") if ch.isascii() and ch.isalnum())
    return ext or "png"


def image_filename(
    seq: int | None,
    decoration: str,
    extension: str = "png",
    *,
    basename: str = "",
    unix: bool = False,
    max_bytes: int = NAME_MAX_BYTES,
) -> str:
    """``00012-<decoration>.png`` / ``grid-0003-<decoration>.png`` / ``<decoration>.png`` (``seq`` None).

    The decoration is sanitized and, if the name is too long, truncated (the number and extension are kept).
    """
    ext = "." + _clean_extension(extension)
    if seq is None:  # A1111 ignores the basename when there is no number
        return (safe_component(decoration, unix=unix, max_bytes=max_bytes - len(ext)) or "image") + ext
    number = f"{seq:05}" if not basename else f"{safe_component(basename, unix=unix)}-{seq:04}"
    # After a number the decoration cannot form a reserved name, a hidden file or "..": scrub and cap only.
    room = max_bytes - len(f"{number}-{ext}".encode())
    decoration = truncate_utf8(_scrub(decoration, unix), max(0, room)).rstrip(" .")
    return (f"{number}-{decoration}" if decoration else number) + ext


def sample_path(
    directory: Path,
    seq: int,
    seed: int | None,
    pattern: str = "",
    *,
    fields: Mapping[str, Any] | None = None,
    extension: str = "png",
    suffix: str = "",
    save_to_dirs: bool = True,
    add_number: bool = True,
    short: bool = False,
    unix: bool = False,
    max_part_len: int = DEFAULT_PART_MAX_LEN,
) -> Path:
    """Where one generated image goes: ``directory/00000-1234567890.png`` with the default pattern.

    Mirrors A1111's ``save_image``: decoration = pattern (or the default for ``save_to_dirs``) + ``suffix``
    (e.g. ``-before-highres-fix``); empty when ``short`` or ``seed`` is None; the number is always added when the
    decoration is empty. ``directory`` is the final folder (see ``output_directory``); the name cannot leave it.
    """
    all_fields = dict(fields or {})
    all_fields.setdefault("seed", seed)
    if short or seed is None:
        decoration = ""
    else:
        decoration = apply_pattern(pattern or default_sample_pattern(save_to_dirs), all_fields,
                                   unix=unix, max_part_len=max_part_len)
    decoration += suffix
    number = seq if (add_number or decoration == "") else None
    name = image_filename(number, decoration, extension, unix=unix, max_bytes=name_max(directory))
    return contained_path(directory, name)


def grid_path(
    directory: Path,
    seq: int,
    *,
    decoration: str = "",
    extension: str = "png",
    unix: bool = False,
) -> Path:
    """``directory/grid-0000.png`` (``decoration``, for ``grid_extended_filename``, goes after the number)."""
    name = image_filename(seq, decoration, extension, basename="grid", unix=unix, max_bytes=name_max(directory))
    return contained_path(directory, name)


def output_directory(
    base: Path,
    dir_pattern: str = "[date]",
    fields: Mapping[str, Any] | None = None,
    *,
    unix: bool = False,
    max_part_len: int = DEFAULT_PART_MAX_LEN,
    max_prompt_words: int = DEFAULT_MAX_PROMPT_WORDS,
) -> Path:
    """``base/<dir_pattern applied>``, e.g. ``outputs/txt2img-images/2024-07-27``.

    An empty pattern means ``[prompt_words]`` (A1111). ``/`` or ``\\`` in the pattern's literal text nests folders;
    each component is sanitized, and empty, ``.`` and ``..`` components are dropped, so the result stays in ``base``.
    """
    text = apply_pattern(dir_pattern or "[prompt_words]", fields or {}, unix=unix, max_part_len=max_part_len,
                         max_prompt_words=max_prompt_words)
    components: list[str] = []
    for raw in re.split(r"[\\/]+", text):
        part = safe_component(raw, unix=unix, max_bytes=name_max(base))
        if part:
            components.append(part)
    return contained_path(base, *components)


__all__ = [
    "DEFAULT_DATETIME_FORMAT",
    "DEFAULT_MAX_PROMPT_WORDS",
    "DEFAULT_PART_MAX_LEN",
    "INVALID_FILENAME_CHARS",
    "NAME_MAX_BYTES",
    "SKIP",
    "TAGS",
    "FilenamePattern",
    "apply_pattern",
    "contained_path",
    "default_sample_pattern",
    "grid_path",
    "image_filename",
    "name_max",
    "next_sequence_number",
    "output_directory",
    "safe_component",
    "sample_path",
    "sanitize_filename_part",
    "truncate_utf8",
]
