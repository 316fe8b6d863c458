"""A1111's "Prompts from file or textbox" script: one generation per line, each line a prompt or ``--key value``
options (``--prompt "a cat" --steps 30 --seed 5``), results returned together.

Script arguments are A1111's, in its order: iterate seed every line, use same random seed for all lines, insert
prompts at the start/end, the text. Keys that would write outside the output folders (``outpath_samples``,
``outpath_grids``) or switch checkpoints mid-job (``sd_model``) are refused with a message naming the line.

Lines are split like ``shlex.split`` (A1111's parser), by ``split_words``: the same words and errors in linear time
(shlex grows each word one character at a time, which is quadratic on one long quoted prompt).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from modules.errors import FieldError
from modules.processing.context import Processed, ProcessingContext
from modules.processing.params import GenerationParams

TITLE = "Prompts from file or textbox"
DEFAULT_ARGS: tuple[Any, ...] = (False, False, "start", "")
MAX_LINES = 1000

_STR, _INT, _FLOAT, _BOOL, _LIST = str, int, float, "bool", "list"
KEYS: dict[str, Any] = {
    "prompt": _STR, "negative_prompt": _STR, "prompt_for_display": _STR, "styles": _LIST, "seed": _INT,
    "subseed_strength": _FLOAT, "subseed": _INT, "seed_resize_from_h": _INT, "seed_resize_from_w": _INT,
    "sampler_index": _STR, "sampler_name": _STR, "batch_size": _INT, "n_iter": _INT, "steps": _INT,
    "cfg_scale": _FLOAT, "width": _INT, "height": _INT, "restore_faces": _BOOL, "tiling": _BOOL,
    "do_not_save_samples": _BOOL, "do_not_save_grid": _BOOL,
}
REFUSED = {"outpath_samples": "writing outside the output folders is not allowed",
           "outpath_grids": "writing outside the output folders is not allowed",
           "sd_model": "switching checkpoints per line is not supported; choose the checkpoint before generating"}


@dataclass(frozen=True)
class ScriptArgs:
    iterate_seed: bool
    same_seed: bool
    position: str  # "start" or "end"
    lines: list[dict[str, Any]]

    def check(self, p: GenerationParams) -> None:
        check(p, self)

    def run(self, p: GenerationParams, ctx: ProcessingContext,
            process: Callable[[GenerationParams, ProcessingContext], Processed], upscalers: Any = None) -> Processed:
        return run(p, self, ctx, process)


# shlex.split's POSIX rules: whitespace is " \t\r\n"; a backslash outside quotes takes the next character as is; in
# '...' nothing is special; in "..." a backslash only escapes "\\" or '"' (otherwise both characters stay).
_SHELL_PIECE = re.compile(
    r"""(?P<space>[ \t\r\n]+)
      | (?P<plain>[^ \t\r\n'"\\]+)
      | \\(?P<escaped>.)
      | '(?P<single>[^']*)'
      | "(?P<double>[^"\\]*(?:\\.[^"\\]*)*)"
      | (?P<unclosed>.)""",
    re.VERBOSE | re.DOTALL,
)
_DOUBLE_QUOTE_ESCAPE = re.compile(r'\\([\\"])')


def _unclosed_error(rest: str) -> ValueError:
    """shlex's error for an opening quote or backslash with no partner: ``rest`` runs from it to the end."""
    # Inside "...", backslashes pair up from the start of each run: an odd final run leaves one escaping nothing.
    trailing = len(rest) - len(rest.rstrip("\\"))
    if rest == "\\" or (rest[0] == '"' and trailing % 2 == 1):
        return ValueError("No escaped character")
    return ValueError("No closing quotation")


def split_words(line: str) -> list[str]:
    """``shlex.split(line)``: the same words, and ValueError with the same message, in linear time."""
    words: list[str] = []
    word: list[str] = []
    in_word = False  # a word has started (an empty quoted "" is a word too)
    for match in _SHELL_PIECE.finditer(line):
        kind = match.lastgroup
        if kind == "space":
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            continue
        if kind == "unclosed":
            raise _unclosed_error(line[match.start() :])
        text = match.group(kind)
        word.append(_DOUBLE_QUOTE_ESCAPE.sub(r"\1", text) if kind == "double" else text)
        in_word = True
    if in_word:
        words.append("".join(word))
    return words


def _convert(kind: Any, text: str) -> Any:
    if kind == _BOOL:
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0"):
            raise ValueError(f"expected true or false, got {text!r}")
        return lowered in ("true", "1")
    return kind(text)


def parse_line(line: str, number: int) -> dict[str, Any]:
    """A plain prompt, or ``--key value`` pairs (a list key takes every value up to the next ``--key``)."""
    if not line.startswith("--"):
        return {"prompt": line}
    try:
        words = split_words(line)
    except ValueError as err:
        raise FieldError("script_args", f"line {number}: {err}") from err
    out: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("--"):
            raise FieldError("script_args", f"line {number}: expected --key, got {word!r}")
        key = word[2:]
        if key in REFUSED:
            raise FieldError("script_args", f"line {number}: --{key}: {REFUSED[key]}")
        if key not in KEYS:
            raise FieldError("script_args", f"line {number}: unknown key --{key}", [f"--{k}" for k in KEYS])
        values = []
        i += 1
        while i < len(words) and not words[i].startswith("--"):
            values.append(words[i])
            i += 1
        kind = KEYS[key]
        try:
            if kind == _LIST:
                out[key] = values
            elif len(values) != 1:
                raise ValueError(f"expected one value, got {len(values)}")
            else:
                out[key] = _convert(kind, values[0])
        except ValueError as err:
            raise FieldError("script_args", f"line {number}: --{key}: {err}") from err
    return out


def parse_args(args: Sequence[Any]) -> ScriptArgs:
    values = list(args) + list(DEFAULT_ARGS[len(args):])
    iterate, same, position, text = values[:4]
    if position not in ("start", "end"):
        raise FieldError("script_args", "insert prompts at must be 'start' or 'end'")
    if not isinstance(text, str):
        raise FieldError("script_args", "the prompt list must be text")
    raw = [line.strip() for line in text.splitlines()]
    lines = [parse_line(line, n) for n, line in enumerate(raw, 1) if line]
    if not lines:
        raise FieldError("script_args", "the prompt list is empty")
    if len(lines) > MAX_LINES:
        raise FieldError("script_args", f"{len(lines)} lines; at most {MAX_LINES}")
    return ScriptArgs(bool(iterate), bool(same), str(position), lines)


def line_params(p: GenerationParams, line: dict[str, Any], position: str, number: int = 0) -> GenerationParams:
    """``p`` with one line's values (validated like a request: a bad value names the line and field)."""
    from pydantic import ValidationError

    values = {k: v for k, v in line.items() if k != "prompt_for_display"}
    if "sampler_index" in values:
        values["sampler_name"] = values.pop("sampler_index")
    for key in ("prompt", "negative_prompt"):  # the tab's own text goes before or after the line's
        own = getattr(p, key)
        if values.get(key) and own:
            values[key] = f"{values[key]} {own}" if position == "start" else f"{own} {values[key]}"
    try:
        return type(p)(**{**p.model_dump(), **values, "extra_generation_params": p.extra_generation_params})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        raise FieldError("script_args", f"line {number}: {where}: {first.get('msg')}") from err


def check(p: GenerationParams, script: ScriptArgs) -> None:
    """Every line makes valid parameters (run before the job is queued)."""
    for number, line in enumerate(script.lines, 1):
        line_params(p, line, script.position, number)


def run(p: GenerationParams, script: ScriptArgs, ctx: ProcessingContext,
        process: Callable[[GenerationParams, ProcessingContext], Processed]) -> Processed:
    """Every line as its own generation (no grid), results concatenated as A1111 returns them."""
    seed = p.seed
    if (script.iterate_seed or script.same_seed) and seed == -1:
        seed = random.randrange(4294967294)
    results: list[Processed] = []
    for number, line in enumerate(script.lines, 1):
        if results and ctx.progress.interrupted:
            break
        params = line_params(p.model_copy(update={"seed": seed, "do_not_save_grid": True}), line, script.position,
                             number)
        results.append(process(params, ctx))
        if script.iterate_seed:
            seed += params.batch_size * params.n_iter
    first = results[0]
    merged = Processed(
        images=[im for r in results for im in r.images[r.index_of_first_image:]],
        infotexts=[t for r in results for t in r.infotexts[r.index_of_first_image:]],
        prompt=first.prompt, negative_prompt=first.negative_prompt, seed=first.seed, subseed=first.subseed,
        all_prompts=[x for r in results for x in r.all_prompts],
        all_negative_prompts=[x for r in results for x in r.all_negative_prompts],
        all_seeds=[x for r in results for x in r.all_seeds], all_subseeds=[x for r in results for x in r.all_subseeds],
        params=first.params, sampler_name=first.sampler_name, schedule_label=first.schedule_label,
        checkpoint=first.checkpoint, saved_paths=[x for r in results for x in r.saved_paths[r.index_of_first_image:]],
        job_timestamp=first.job_timestamp, version=first.version, clip_skip=first.clip_skip,
        extra_generation_params=first.extra_generation_params, interrupted=any(r.interrupted for r in results),
        comments=list(dict.fromkeys(c for r in results for c in r.comments)), vae_name=first.vae_name, vae_hash=first.vae_hash,
        is_using_inpainting_conditioning=first.is_using_inpainting_conditioning)
    return merged
