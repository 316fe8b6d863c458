"""Infotext: the ``parameters`` text A1111 writes into every image, built and parsed with A1111's exact format.

Format (contract section 4.1)::

    <prompt, may span lines>
    Negative prompt: <negative prompt, may span lines>     <- only when non-empty
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, Size: 512x512, ...

Parsing follows A1111's ``parse_generation_parameters`` (contract 4.3): values come back as the **strings** found in
the text (``"Steps": "20"``), as A1111 returns them; the UI/API layer casts them to each field's type. Defaults are
filled for absent keys with A1111's exact values and types (``"Clip skip": "1"`` is a string, ``"Masked area
padding": 32`` an int, ``"Hires resize-1": 0``...), because extensions and paste handlers compare against those.

Where A1111 loses data we do slightly better, without changing anything A1111's own parser reads differently:

* ``quote`` also JSON-quotes a value that starts with ``"``, has leading/trailing whitespace, or is empty. A1111
  prints those raw and then mangles them on paste (strips the quotes or the spaces, drops empty values); its parser
  reads our quoted form back to the original value.
* Only the first line starting with ``Negative prompt:`` switches to the negative prompt; later lines of a multi-line
  negative prompt keep a leading ``Negative prompt:`` (A1111 strips it from every such line).
* A legacy ``Sampler: DPM++ 2M Karras`` is split into ``Sampler: DPM++ 2M`` + ``Schedule type: Karras`` (A1111 does
  this when pasting; the suffix wins over a ``Schedule type`` key there too), matching the longest scheduler name
  (A1111 mis-splits ``... SGM Uniform``). A1111's paste then shows "Automatic" when the suffix is the sampler's
  default; we keep the explicit label, which resolves to the same schedule.

Not done here (they need other modules): extracting styles from the prompt (styles.csv) and
``infotext_skip_pasting`` (pass ``skip_fields``). The ``Emphasis`` default asks the prompt parser.
Pure module: standard library (and the prompt parser, also pure) only.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

# The fixed key order of A1111's create_infotext dict literal; "extra" params go between RNG/Tiling and Version.
INFOTEXT_KEY_ORDER: tuple[str, ...] = (
    "Steps",
    "Sampler",
    "Schedule type",
    "CFG scale",
    "Image CFG scale",
    "Seed",
    "Face restoration",
    "Size",
    "Model hash",
    "Model",
    "FP8 weight",
    "Cache FP16 weight for LoRA",
    "VAE hash",
    "VAE",
    "Variation seed",
    "Variation seed strength",
    "Seed resize from",
    "Denoising strength",
    "Conditional mask weight",
    "Clip skip",
    "ENSD",
    "Token merging ratio",
    "Token merging ratio hr",
    "Init image hash",
    "RNG",
    "Tiling",
)
INFOTEXT_TRAILING_KEYS: tuple[str, ...] = ("Version", "User")

# A1111's parameter regex (contract 4.3), verbatim. Exported for extensions and as the tests' oracle; never run on
# request data: ``findall`` on it is quadratic (a long word run with no ":" is rescanned from every start).
# ``find_params`` returns exactly what ``RE_PARAM.findall`` returns, in linear time.
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
# An infotext this long is not one A1111 wrote: a 75-token prompt is ~400 characters, and a parameter line with every
# extension's keys and hashes is a few KiB. 256 KiB leaves 50x room and keeps a parse to a few milliseconds.
MAX_INFOTEXT_CHARS = 256 * 1024
# Pieces of RE_PARAM, each run anchored at one position (a greedy run with nothing after it cannot backtrack).
_KEY_RUN = re.compile(r"\w[\w \-/]*")  # searched: the first word character, then the rest of the key class
_SPACES = re.compile(r"\s*")
_QUOTED_BODY = re.compile(r'[^\\"]*(?:\\.[^\\"]*)*')  # (?:\\.|[^\\"])* unrolled; "." stops at a newline
RE_IMAGESIZE = re.compile(r"^(\d+)x(\d+)$")
NEGATIVE_PREFIX = "Negative prompt:"

# Schedule types (label, internal name, aliases) used to split legacy "Sampler: DPM++ 2M Karras" values.
_SCHEDULERS: tuple[tuple[str, ...], ...] = (
    ("Automatic", "automatic"),
    ("Uniform", "uniform"),
    ("Karras", "karras"),
    ("Exponential", "exponential"),
    ("Polyexponential", "polyexponential"),
    ("SGM Uniform", "sgm_uniform", "SGMUniform"),
    ("KL Optimal", "kl_optimal"),
    ("Align Your Steps", "align_your_steps"),
    ("Simple", "simple"),
    ("Normal", "normal"),
    ("DDIM", "ddim"),
    ("Beta", "beta"),
    ("Align Your Steps GITS", "align_your_steps_GITS"),
    ("Align Your Steps 11", "align_your_steps_11"),
    ("Align Your Steps 32", "align_your_steps_32"),
)
# Longest suffix first, so "SGM Uniform" wins over "Uniform".
_SCHEDULER_SUFFIXES: tuple[tuple[str, str], ...] = tuple(
    sorted(((opt, names[0]) for names in _SCHEDULERS for opt in names), key=lambda t: len(t[0]), reverse=True)
)

# Defaults A1111's parser fills when a key is absent, in its order, with its value types. The old hires-fix
# conversion runs between the two groups (it overrides the "Hires resize" defaults).
_DEFAULTS_BEFORE_HIRES: tuple[tuple[str, object], ...] = (
    ("Clip skip", "1"),
    ("Hires resize-1", 0),
    ("Hires resize-2", 0),
    ("Hires sampler", "Use same sampler"),
    ("Hires schedule type", "Use same scheduler"),
    ("Hires checkpoint", "Use same checkpoint"),
    ("Hires prompt", ""),
    ("Hires negative prompt", ""),
    ("Mask mode", "Inpaint masked"),
    ("Masked content", "original"),
    ("Inpaint area", "Whole picture"),
    ("Masked area padding", 32),
)
_DEFAULTS_AFTER_HIRES: tuple[tuple[str, object], ...] = (
    ("RNG", "GPU"),
    ("Schedule type", "Automatic"),
    ("Schedule max sigma", 0),
    ("Schedule min sigma", 0),
    ("Schedule rho", 0),
    ("VAE Encoder", "Full"),
    ("VAE Decoder", "Full"),
    ("FP8 weight", "Disable"),
)
PARSE_DEFAULTS: tuple[tuple[str, object], ...] = _DEFAULTS_BEFORE_HIRES + _DEFAULTS_AFTER_HIRES


# -- building -------------------------------------------------------------------------------------------------------


def quote(value: object) -> str:
    """A1111's ``quote``: JSON-quote (``ensure_ascii=False``) a value containing ``,``, newline or ``:``.

    Otherwise ``str(value)`` unchanged. Also quoted (see module doc; A1111's parser reads these back correctly):
    an empty string, a value with leading/trailing whitespace, or one starting with a double quote.
    """
    text = str(value)
    if "," in text or "\n" in text or ":" in text:
        return json.dumps(text, ensure_ascii=False)
    if text == "" or text != text.strip() or text.startswith('"'):
        return json.dumps(text, ensure_ascii=False)
    return text


def unquote(text: str) -> str:
    """Inverse of ``quote`` for a value taken from a parameter line: JSON-decode ``"..."``, else leave as is."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        decoded = json.loads(text)
    except ValueError:
        return text
    return decoded if isinstance(decoded, str) else text


def params_line(params: Mapping[str, object]) -> str:
    """``"k: v, k2: v2"``; None values skipped, and a value equal to its key printed as the bare key (A1111)."""
    return ", ".join(k if k == v else f"{k}: {quote(v)}" for k, v in params.items() if v is not None)


def build_infotext(prompt: str, negative_prompt: str, params: Mapping[str, object]) -> str:
    """The full infotext; ``params`` should already be in order (see ``ordered_params``)."""
    negative = f"\n{NEGATIVE_PREFIX} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{params_line(params)}".strip()


# Forge's own core keys and the A1111 key Forge writes each after ("CFG scale: 1, Distilled CFG Scale: 3.5").
_FORGE_KEYS_AFTER: dict[str, tuple[str, ...]] = {"CFG scale": ("Distilled CFG Scale",)}


def ordered_params(base: Mapping[str, object], extra: Mapping[str, object] | None = None) -> dict[str, object]:
    """Merge the core params and the "extra generation params" in A1111's order.

    Known keys of ``base`` come first in ``INFOTEXT_KEY_ORDER``, then ``base``'s other keys, then ``extra`` in
    insertion order, then ``Version`` and ``User``. Like A1111's dict literal ``{..., **extra, "Version": ...}``, an
    ``extra`` key that repeats an earlier key keeps that key's position and overrides its value. None values are kept
    (``build_infotext`` drops them), so callers can pass conditional keys as None.
    """
    out: dict[str, object] = {}
    for key in INFOTEXT_KEY_ORDER:
        if key in base:
            out[key] = base[key]
        for forge_key in _FORGE_KEYS_AFTER.get(key, ()):
            if forge_key in base:
                out[forge_key] = base[forge_key]
    for key, value in base.items():
        if key not in out and key not in INFOTEXT_TRAILING_KEYS:
            out[key] = value
    for key, value in (extra or {}).items():
        out[key] = value
    for key in INFOTEXT_TRAILING_KEYS:
        if key in base:
            out[key] = base[key]
    return out


# -- parsing --------------------------------------------------------------------------------------------------------


def split_prompt_lines(lines: Iterable[str]) -> tuple[str, str]:
    """Prompt and negative prompt from the lines before the parameter line (each line stripped, as A1111 does)."""
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for raw in lines:
        line = raw.strip()
        if not in_negative and line.startswith(NEGATIVE_PREFIX):
            in_negative = True
            line = line[len(NEGATIVE_PREFIX) :].strip()
        (negative if in_negative else prompt).append(line)
    return "\n".join(prompt), "\n".join(negative)


class InfotextTooLongError(ValueError):
    """An infotext longer than ``MAX_INFOTEXT_CHARS``: refused rather than parsed (no A1111 image carries one)."""

    def __init__(self, length: int, field: str = "parameters") -> None:
        super().__init__(f"{field}: infotext is {length} characters; at most {MAX_INFOTEXT_CHARS} are accepted")
        self.field = field
        self.length = length


def _param_value(text: str, start: int) -> tuple[str, int]:
    """RE_PARAM's value group at ``start`` (just after the key's ":") and where the match ends."""
    n = len(text)
    v = _SPACES.match(text, start).end()
    if v < n and text[v] == '"':
        close = _QUOTED_BODY.match(text, v + 1).end()
        if close > v + 1 and close < n and text[close] == '"':  # one or more body items, then the closing quote
            after = close + 1
            if after < n and text[after] == ",":
                return text[v:after], after + 1
            if after == n or (after == n - 1 and text[after] == "\n"):  # "$": the end, or before a final newline
                return text[v:after], after
    comma = text.find(",", v)  # the [^,]* branch always matches: up to the next comma (consumed) or the end
    return (text[v:], n) if comma < 0 else (text[v:comma], comma + 1)


def find_params(text: str) -> list[tuple[str, str]]:
    """``RE_PARAM.findall(text)``, the same list for every input, in linear time.

    A match needs a word character, at least one more ``[\\w \\-/]`` character, then ``:``. When the key run after
    a word character ends anywhere but at a ``:``, no start inside that run can match either, so the scan resumes
    at the run's end instead of one character later (which is what makes the regex quadratic).
    """
    found: list[tuple[str, str]] = []
    pos, n = 0, len(text)
    while pos < n:
        run = _KEY_RUN.search(text, pos)
        if run is None:
            break
        key_start, key_end = run.span()
        if key_end - key_start >= 2 and key_end < n and text[key_end] == ":":
            value, pos = _param_value(text, key_end + 1)
            found.append((text[key_start:key_end], value))
        else:
            pos = key_end
    return found


def parse_params_line(line: str) -> dict[str, object]:
    """Key/values of one parameter line, with ``WxH`` values split into ``Key-1``/``Key-2`` (strings)."""
    res: dict[str, object] = {}
    for key, value in find_params(line):
        if value == "":
            continue  # A1111 drops empty raw values (an IndexError it catches); quote() never writes them
        if value[0] == '"' and value[-1] == '"':
            value = unquote(value)
        m = RE_IMAGESIZE.match(value)
        if m is not None:
            res[f"{key}-1"] = m.group(1)
            res[f"{key}-2"] = m.group(2)
        else:
            res[key] = value
    return res


def split_legacy_sampler(sampler: str) -> tuple[str, str | None]:
    """``"DPM++ 2M Karras"`` -> ``("DPM++ 2M", "Karras")``; a name with no scheduler suffix -> ``(name, None)``."""
    for option, label in _SCHEDULER_SUFFIXES:
        if sampler.endswith(" " + option) and len(sampler) > len(option) + 1:
            return sampler[: -(len(option) + 1)], label
    return sampler, None


def _old_hires_first_pass(width: int, height: int) -> tuple[int, int]:
    # A1111's pre-1.0 rule for an automatic first pass: about 512x512 pixels, rounded up to multiples of 64.
    scale = math.sqrt(512 * 512 / (width * height))
    return math.ceil(scale * width / 64) * 64, math.ceil(scale * height / 64) * 64


def _restore_old_hires_fix(res: dict[str, object]) -> None:
    """Infotexts with the old ``First pass size`` become ``Size`` (first pass) + ``Hires resize`` (final size)."""
    fw, fh = res.get("First pass size-1"), res.get("First pass size-2")
    if fw is None or fh is None:
        return
    try:
        first_w, first_h = int(str(fw)), int(str(fh))
        width, height = int(str(res.get("Size-1", 512))), int(str(res.get("Size-2", 512)))
        if first_w == 0 or first_h == 0:
            first_w, first_h = _old_hires_first_pass(width, height)
    except (ValueError, ZeroDivisionError):
        return
    res["Size-1"], res["Size-2"] = first_w, first_h
    res["Hires resize-1"], res["Hires resize-2"] = width, height


def _parse_version(text: object) -> tuple[int, int, int, int] | None:
    """``v1.7.0-225-gabcdef`` -> (1, 7, 0, 225); None for anything else (forks' version strings included)."""
    if not isinstance(text, str):
        return None
    m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:-(\d+)(?:-.*)?)?", text.strip())
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), int(m.group(4) or 0)


def _backcompat(res: dict[str, object]) -> None:
    """A1111's ``infotext_versions.backcompat``: flags that make old images reproducible (option auto_backcompat)."""
    ver = _parse_version(res.get("Version"))
    if ver is None:
        return
    if ver < (1, 6, 0, 0) and "[" in str(res.get("Prompt", "")):
        res["Old prompt editing timelines"] = True
    if ver < (1, 6, 0, 0) and res.get("Sampler", "") in ("DDIM", "PLMS"):
        res["Pad conds v0"] = True
    if ver < (1, 7, 0, 225):
        res["Downcast alphas_cumprod"] = True
    if ver < (1, 8, 0, 0) and res.get("Refiner"):
        res["Refiner switch by sampling steps"] = True


def parse_infotext(
    text: str,
    *,
    skip_fields: Iterable[str] = (),
    backcompat: bool = True,
    prompt_uses_emphasis: Callable[[str], bool] | None = None,
) -> dict[str, object]:
    """Parse an infotext into ``{"Prompt", "Negative prompt", <params>..., <defaults>...}``, like A1111.

    The last line is the parameter line only if ``RE_PARAM`` (``find_params``) finds at least 3 pairs in it;
    otherwise it belongs to the prompt. Values are strings as found (JSON-quoted ones decoded); see the module doc
    for defaults and types.
    ``backcompat`` applies A1111's version-based compatibility flags (its ``auto_backcompat`` option, default on).
    ``prompt_uses_emphasis(text)`` decides A1111's ``Emphasis: Original`` default (for a prompt that weights
    something and an infotext without ``Emphasis``); by default the prompt parser's ``uses_emphasis``.
    Raises ``InfotextTooLongError`` (a ValueError) for a text over ``MAX_INFOTEXT_CHARS``. Linear time.
    """
    if len(text) > MAX_INFOTEXT_CHARS:
        raise InfotextTooLongError(len(text))
    *lines, last = text.strip().split("\n")
    if len(find_params(last)) < 3:
        lines.append(last)
        last = ""

    prompt, negative_prompt = split_prompt_lines(lines)
    res = parse_params_line(last)
    # The real prompts win over any "Prompt:" key in the parameter line (A1111 assigns them after the loop).
    res["Prompt"] = prompt
    res["Negative prompt"] = negative_prompt

    for key, label_key in (("Sampler", "Schedule type"), ("Hires sampler", "Hires schedule type")):
        value = res.get(key)
        if isinstance(value, str):
            name, scheduler = split_legacy_sampler(value)
            if scheduler is not None:
                res[key] = name
                res[label_key] = scheduler

    hypernet = res.get("Hypernet")
    if hypernet is not None:
        res["Prompt"] = f"{res['Prompt']}<hypernet:{hypernet}:{res.get('Hypernet strength', '1.0')}>"

    for key, default in _DEFAULTS_BEFORE_HIRES:
        res.setdefault(key, default)
    _restore_old_hires_fix(res)
    for key, default in _DEFAULTS_AFTER_HIRES:
        res.setdefault(key, default)
    if "Cache FP16 weight for LoRA" not in res and res["FP8 weight"] != "Disable":
        res["Cache FP16 weight for LoRA"] = False
    if prompt_uses_emphasis is None:
        from modules.prompt_parser import uses_emphasis as prompt_uses_emphasis
    if "Emphasis" not in res and (prompt_uses_emphasis(prompt) or prompt_uses_emphasis(negative_prompt)):
        res["Emphasis"] = "Original"
    res.setdefault("Refiner switch by sampling steps", False)

    if backcompat:
        _backcompat(res)
    for key in skip_fields:
        res.pop(key, None)
    return res


# -- version --------------------------------------------------------------------------------------------------------


# Our ``Version`` infotext value starts with this name, so that A1111 (and our own paste) does not read it as an
# old A1111 version and apply its back-compatibility flags: A1111 cuts the text at its second "-" and hands the
# rest to ``packaging.version.parse``, which refuses "sdwebui-py"; our ``_parse_version`` wants a "v1.2.3" form.
VERSION_PREFIX = "sdwebui-py"


def version_string(install_dir: Path, *, timeout: float = 3.0) -> str:
    """The ``Version`` infotext value: ``sdwebui-py-`` and ``git describe --tags --always`` of the install (a tag,
    or the commit), else the first non-empty line of ``CHANGELOG.md`` without ``## ``, else ``sdwebui-py`` alone.
    Never raises; call once at startup and keep it.
    """
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0")
    try:
        out = subprocess.run(
            ["git", "-C", str(install_dir), "describe", "--tags", "--always"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        tag = out.stdout.strip()
        if out.returncode == 0 and tag and (Path(install_dir) / ".git").exists():
            return f"{VERSION_PREFIX}-{tag}"
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    try:
        with open(Path(install_dir) / "CHANGELOG.md", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.strip():
                    text = line.strip().replace("## ", "")
                    return f"{VERSION_PREFIX}-{text}" if text else VERSION_PREFIX
    except OSError:
        pass
    return VERSION_PREFIX


__all__ = [
    "INFOTEXT_KEY_ORDER",
    "INFOTEXT_TRAILING_KEYS",
    "InfotextTooLongError",
    "MAX_INFOTEXT_CHARS",
    "NEGATIVE_PREFIX",
    "PARSE_DEFAULTS",
    "RE_PARAM",
    "build_infotext",
    "find_params",
    "ordered_params",
    "params_line",
    "parse_infotext",
    "parse_params_line",
    "quote",
    "split_legacy_sampler",
    "split_prompt_lines",
    "unquote",
    "version_string",
]
