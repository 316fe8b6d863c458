"""A1111's prompt language (contract section 3): emphasis, editing, alternation, ``AND``, ``BREAK``, ``<networks>``.

A1111-compatible public functions (same names, signatures and results; extensions import them):

* ``parse_prompt_attention(text) -> list[list[str | float]]``: ``[[text, weight], ...]``. ``(x)`` x1.1, ``(x:1.5)``,
  ``[x]`` /1.1, escapes ``\\( \\) \\[ \\] \\\\``, unclosed brackets run to the end, unmatched closers are literal,
  equal-weight runs merged, ``BREAK`` as its own ``["BREAK", -1]`` item; ``""`` -> ``[["", 1.0]]``.
* ``get_learned_conditioning_prompt_schedules(prompts, base_steps, hires_steps=None, use_old_scheduling=False)``
  -> one schedule per prompt, each ``[[end_at_step, text], ...]`` (``[[10, 'a '], [20, 'a b']]``).
* ``get_multicond_prompt_list(prompts) -> (res_indexes, prompt_flat_list, prompt_indexes)``: the ``AND`` split.
  ``res_indexes[i]`` is ``[(flat_index, weight), ...]`` for prompt ``i``; ``prompt_flat_list`` the distinct
  sub-prompts (an ``SdConditioning`` carrying the input's width/height/is_negative_prompt); ``prompt_indexes`` maps
  sub-prompt text to its flat index.
* ``SdConditioning`` (a ``list`` of prompts with ``width``/``height``/``is_negative_prompt``) and
  ``ScheduledPromptConditioning(end_at_step, cond)`` as in A1111, without torch.

Typed helpers for our engine:

* ``split_and(prompt) -> list[tuple[str, float]]``: the ``AND`` sub-prompts of one prompt with their weights.
* ``prompt_schedule(prompt, steps, hires_steps=None, use_old_scheduling=False) -> list[tuple[int, str]]``.
* ``parse_extra_networks(prompt) -> tuple[str, dict[str, list[ExtraNetworkParams]]]``: A1111's
  ``extra_networks.parse_prompt``: ``<name:arg1:arg2:key=value>`` tags (regex ``<(\\w+):([^>]+)>``) removed from the
  text given to CLIP and returned by network name. ``parse_extra_networks_prompts(prompts)`` is A1111's
  ``parse_prompts`` (texts of all prompts, networks of the first).
* ``ExtraNetworkParams(items)``: ``.items`` (all ``:``-separated arguments), ``.positional``, ``.named`` (items with
  exactly one ``=``); equality compares ``items``, as in A1111.
* ``token_count_max(n_tokens) -> int``: the token counter's maximum, ``ceil(max(n, 1) / 75) * 75``.

Prompt editing is parsed by a small single-pass parser (A1111 uses a Lark grammar) that accepts exactly the prompts
that grammar accepts:

* a bracket group whose content is well formed is a construct: ``(a)``/``(a:b)``/``[a]`` emphasis (kept as text),
  ``[from:to:when]``/``[to:when]``/``[from::when]`` editing, ``[a|b|...]`` alternation (empty options allowed);
* inside a construct everything must be well formed; at the top level a bracket or ``:`` that opens or closes no
  well-formed construct is a literal character;
* the prompt is used literally (one schedule entry) when a ``|`` is outside every alternation or a backslash ends the
  prompt or a line; A1111's grammar rejects those.

Where a prompt has several readings (a stray bracket before a construct, as in ``x[a:3](``), A1111's pick depends on
Python's per-process string hash seed (Lark resolves the ambiguity through set order), so A1111 itself answers
differently from one start to the next. We always take the reading above (every well-formed group is a construct),
one the grammar allows. Wherever A1111's answer does not depend on the seed, ours is the same (checked against
A1111's grammar with Lark on ~20,000 random and generated prompts). A1111's doctest for ``a [{b|d{:.5] c`` is stale
(it predates ``|`` alternation, and v1.10.1 returns the prompt literally); we follow v1.10.1.

Robustness beyond A1111 (same results wherever A1111 returns one): no recursion (any nesting depth), linear-time
scanning (A1111's regexes are quadratic on long whitespace runs), and inputs where A1111 raises return a result
instead: an explicit weight that is not a number (``(a:1.2.3)``) reads as plain text closed by ``)`` with x1.1, and
an infinite editing step (``[a:b:1e999]``) counts as ``steps``. Emphasis weights are still multiplied one bracket at a
time, as A1111 does, so that they come out bit-identical; thousands of unclosed brackets cost a fraction of a second.
That costs (text pieces x brackets open around them), which no order-preserving shortcut avoids (float products
depend on the order), so past ``MAX_EMPHASIS_WORK`` multiplications (thousands of brackets each wrapping thousands of
pieces; A1111 would take minutes and return infinite weights) ``parse_prompt_attention`` raises
``PromptTooComplexError``, a ValueError. Everything else is linear in the prompt's length (``<name:args>`` tags
included: A1111's regex is quadratic on many ``<x:`` with no ``>``), so prompts need no length bound here.

Pure module: standard library only.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict, namedtuple
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Union

__all__ = [
    "BREAK_WEIGHT",
    "ExtraNetworkParams",
    "MAX_EMPHASIS_WORK",
    "PromptTooComplexError",
    "ROUND_BRACKET_MULTIPLIER",
    "SQUARE_BRACKET_MULTIPLIER",
    "ScheduledPromptConditioning",
    "SdConditioning",
    "TOKEN_CHUNK_LENGTH",
    "get_learned_conditioning_prompt_schedules",
    "get_multicond_prompt_list",
    "parse_extra_networks",
    "parse_extra_networks_prompts",
    "parse_prompt_attention",
    "prompt_schedule",
    "split_and",
    "token_count_max",
]

ROUND_BRACKET_MULTIPLIER = 1.1
SQUARE_BRACKET_MULTIPLIER = 1 / 1.1
BREAK_WEIGHT = -1  # an int, as A1111 returns it; the CLIP layer recognises ["BREAK", -1] items
TOKEN_CHUNK_LENGTH = 75
# Weight multiplications one prompt may cost (0.5-1 s). Real prompts need hundreds; the hostile 10,000-character
# "(a" * 5000 (5,000 unclosed brackets) needs 12.5 million, and that stays accepted.
MAX_EMPHASIS_WORK = 20_000_000


class PromptTooComplexError(ValueError):
    """Emphasis brackets nested so deep around so much text that weighting it exactly would take too long."""

    def __init__(self, work: int) -> None:
        super().__init__(
            f"prompt: emphasis brackets nest too deeply around too much text ({work:,} weight multiplications "
            f"needed, at most {MAX_EMPHASIS_WORK:,}); remove unmatched '(' or '['"
        )
        self.work = work


# -- emphasis ------------------------------------------------------------------------------------------------------

# One token per match, tried in this order. A weight only counts right before ")"; a lone backslash is dropped
# (A1111 keeps the text after it, which is empty).
_ATTENTION_TOKEN = re.compile(
    r"""
    (?P<escape>\\[()\[\]\\])
  | (?P<backslash>\\)
  | (?P<open>[(\[])
  | :\s*(?P<weight>[+-]?[.\d]+)\s*\)
  | (?P<close>[)\]])
  | (?P<text>[^\\()\[\]:]+|:)
    """,
    re.VERBOSE,
)
_BREAK_WORD = re.compile(r"\bBREAK\b")


def _split_break(chunk: str) -> list[str]:
    """``re.split(r"\\s*\\bBREAK\\b\\s*", chunk)`` in linear time (the regex is quadratic on long whitespace runs)."""
    if "BREAK" not in chunk:
        return [chunk]
    parts: list[str] = []
    pos = 0
    for match in _BREAK_WORD.finditer(chunk):
        start, end = match.start(), match.end()
        while start > pos and chunk[start - 1].isspace():  # str.isspace is exactly what re's \s matches
            start -= 1
        while end < len(chunk) and chunk[end].isspace():
            end += 1
        parts.append(chunk[pos:start])
        pos = end
    parts.append(chunk[pos:])
    return parts


class _Weights:
    """Texts and weights side by side; a closing bracket scales every item from its opening position to the end.

    Weights are scaled in place one multiplication at a time, in A1111's order, so the floats come out bit-identical
    (``1.5730000000000004``); the list slice keeps the adversarial ``(a(a(a...`` case fast enough.
    """

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.weights: list[float] = []
        self.work = 0  # multiplications so far, bounded by MAX_EMPHASIS_WORK

    def add_text(self, text: str) -> None:
        for i, part in enumerate(_split_break(text)):
            if i:
                self.texts.append("BREAK")
                self.weights.append(BREAK_WEIGHT)
            self.texts.append(part)
            self.weights.append(1.0)

    def scale_from(self, start: int, multiplier: float) -> None:
        if start < len(self.weights):
            self.work += len(self.weights) - start
            if self.work > MAX_EMPHASIS_WORK:
                raise PromptTooComplexError(self.work)
            self.weights[start:] = [w * multiplier for w in self.weights[start:]]

    def merged(self) -> list[list[str | float]]:
        if not self.texts:
            return [["", 1.0]]
        runs: list[list[Any]] = []
        pieces: list[list[str]] = []
        for text, weight in zip(self.texts, self.weights):
            if runs and runs[-1][1] == weight:
                pieces[-1].append(text)
            else:
                runs.append([text, weight])
                pieces.append([text])
        for run, texts in zip(runs, pieces):
            run[0] = "".join(texts)
        return runs


def _parse_weight(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "1.2.3", ".": A1111 raises here; we read the bracket as having no weight
        return None


def parse_prompt_attention(text: str) -> list[list[str | float]]:
    """Split ``text`` into ``[text, weight]`` runs following A1111's emphasis rules.

    >>> parse_prompt_attention('an (important) word')
    [['an ', 1.0], ['important', 1.1], [' word', 1.0]]

    Raises ``PromptTooComplexError`` past ``MAX_EMPHASIS_WORK`` (see the module doc).
    """
    items = _Weights()
    round_open: list[int] = []
    square_open: list[int] = []
    for match in _ATTENTION_TOKEN.finditer(text):
        kind = match.lastgroup
        token = match.group(0)
        if kind == "escape":
            items.texts.append(token[1])
            items.weights.append(1.0)
        elif kind == "backslash":
            items.texts.append("")
            items.weights.append(1.0)
        elif kind == "open":
            (round_open if token == "(" else square_open).append(len(items.texts))
        elif kind == "weight" and round_open:
            weight = _parse_weight(match.group("weight"))
            if weight is None:
                items.add_text(token[:-1])
                items.scale_from(round_open.pop(), ROUND_BRACKET_MULTIPLIER)
            else:
                items.scale_from(round_open.pop(), weight)
        elif token == ")" and round_open:
            items.scale_from(round_open.pop(), ROUND_BRACKET_MULTIPLIER)
        elif token == "]" and square_open:
            items.scale_from(square_open.pop(), SQUARE_BRACKET_MULTIPLIER)
        else:  # plain text, ":", an unmatched closer, or a weight with no "(" open
            items.add_text(token)
    for start in round_open:
        items.scale_from(start, ROUND_BRACKET_MULTIPLIER)
    for start in square_open:
        items.scale_from(start, SQUARE_BRACKET_MULTIPLIER)
    return items.merged()


# -- prompt editing and alternation: parsing -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Scheduled:
    """``[before:after:when]``; ``before`` is None for ``[after:when]``."""

    before: tuple[_Item, ...] | None
    after: tuple[_Item, ...]
    when: str  # the number as written: a "." in it means a fraction of the steps


@dataclass(frozen=True)
class _Alternate:
    options: tuple[tuple[_Item, ...], ...]


_Item = Union[str, _Scheduled, _Alternate]


class _Separator:
    """A ``:`` or ``|`` directly inside an open bracket; what it means is known only when the bracket closes."""

    __slots__ = ("char",)

    def __init__(self, char: str) -> None:
        self.char = char


@dataclass
class _Frame:
    opener: str
    start: int  # index of the opener's text in the item list
    separators: list[int]  # indexes of this bracket's own separators


class _Unparseable(Exception):
    """A1111's grammar rejects the prompt: it is used literally."""


# Grammar terminals: an escape is a backslash and any character but a newline; plain text excludes \ [ ] ( ) : |.
_SCHEDULE_TOKEN = re.compile(r"\\.|\\|[^\\\[\]():|]+|[\[\]():|]")
# Lark's SIGNED_NUMBER (ASCII digits only), with the optional whitespace the grammar allows around it.
_WHEN = re.compile(r"\s*([+-]?(?:(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+|[0-9]+))\s*")
_CLOSER_FOR = {"(": ")", "[": "]"}


def uses_emphasis(text: str) -> bool:
    """Whether a prompt weights any part (``(a)``, ``[b]``, ``(c:1.2)``): A1111 then assumes ``Emphasis: Original``
    for an infotext that does not name its emphasis mode. ``BREAK`` is not emphasis."""
    return any(weight != 1.0 and part != "BREAK" for part, weight in parse_prompt_attention(text))


def _pack(items: Sequence[Any]) -> tuple[_Item, ...]:
    """Join adjacent texts so rendering touches only the parts that change."""
    packed: list[_Item] = []
    texts: list[str] = []
    for item in items:
        if isinstance(item, str):
            texts.append(item)
            continue
        if texts:
            packed.append("".join(texts))
            texts = []
        packed.append(item)
    if texts:
        packed.append("".join(texts))
    return tuple(item for item in packed if item != "")


class _ScheduleParser:
    """Single pass over the tokens with an explicit bracket stack (no recursion, so any nesting depth works)."""

    def __init__(self) -> None:
        self.items: list[Any] = []  # texts, finished constructs and pending separators, in prompt order
        self.stack: list[_Frame] = []

    def parse(self, prompt: str) -> tuple[_Item, ...]:
        for match in _SCHEDULE_TOKEN.finditer(prompt):
            token = match.group(0)
            if token == "\\":
                raise _Unparseable  # a backslash before a newline or at the very end
            if token in _CLOSER_FOR:
                self.stack.append(_Frame(token, len(self.items), []))
                self.items.append(token)
            elif token in ")]":
                self._close(token)
            elif token in ":|":
                self._separator(token)
            else:
                self.items.append(token)
        self._abandon_open_brackets()
        return _pack(self.items)

    def _separator(self, char: str) -> None:
        if not self.stack:
            if char == "|":
                raise _Unparseable
            self.items.append(char)  # a top-level ":" is literal
            return
        self.stack[-1].separators.append(len(self.items))
        self.items.append(_Separator(char))

    def _close(self, closer: str) -> None:
        if self.stack and _CLOSER_FOR[self.stack[-1].opener] == closer and self._finish(self.stack[-1], closer):
            self.stack.pop()
            return
        # A closer no open bracket can take, or a bracket with malformed content: no bracket still open can be a
        # construct any more (each would contain this one), so they all become literal characters.
        self._abandon_open_brackets()
        self.items.append(closer)

    def _abandon_open_brackets(self) -> None:
        for frame in self.stack:
            for index in frame.separators:
                char = self.items[index].char
                if char == "|":
                    raise _Unparseable  # a "|" left outside every alternation
                self.items[index] = char
        self.stack.clear()

    def _finish(self, frame: _Frame, closer: str) -> bool:
        """Turn the top bracket into a construct; False when its content is malformed."""
        kinds = [self.items[i].char for i in frame.separators]
        if frame.opener == "(":
            if "|" in kinds or len(kinds) > 1:
                return False
            return self._finish_emphasis(frame, closer)
        if not kinds:
            return self._finish_emphasis(frame, closer)
        if all(kind == "|" for kind in kinds):
            return self._finish_alternate(frame)
        if "|" not in kinds and len(kinds) <= 2:
            return self._finish_scheduled(frame)
        return False

    def _finish_emphasis(self, frame: _Frame, closer: str) -> bool:
        for index in frame.separators:
            self.items[index] = ":"
        self.items.append(closer)
        return True

    def _segments(self, frame: _Frame) -> list[list[Any]]:
        bounds = [frame.start, *frame.separators, len(self.items)]
        return [self.items[lo + 1 : hi] for lo, hi in zip(bounds, bounds[1:])]

    def _finish_alternate(self, frame: _Frame) -> bool:
        options = tuple(_pack(segment) for segment in self._segments(frame))
        self._replace(frame, _Alternate(options))
        return True

    def _finish_scheduled(self, frame: _Frame) -> bool:
        *prompts, when = self._segments(frame)
        if not all(isinstance(item, str) for item in when):
            return False
        number = _WHEN.fullmatch("".join(when))
        if number is None:
            return False
        before = _pack(prompts[0]) if len(prompts) == 2 else None
        self._replace(frame, _Scheduled(before, _pack(prompts[-1]), number.group(1)))
        return True

    def _replace(self, frame: _Frame, node: _Item) -> None:
        del self.items[frame.start :]
        self.items.append(node)


@lru_cache(maxsize=64)
def _parse_schedule(prompt: str) -> tuple[_Item, ...] | None:
    """The parsed prompt, or None when A1111 would use it literally. Cached: a batch repeats the same prompts."""
    try:
        return _ScheduleParser().parse(prompt)
    except _Unparseable:
        return None


# -- prompt editing and alternation: evaluation --------------------------------------------------------------------


def _walk(items: tuple[_Item, ...]) -> Iterator[_Item]:
    """Every construct in the tree, in every branch (iterative, any depth)."""
    pending = [items]
    while pending:
        for item in pending.pop():
            if isinstance(item, _Scheduled):
                yield item
                pending.append(item.after)
                if item.before is not None:
                    pending.append(item.before)
            elif isinstance(item, _Alternate):
                yield item
                pending.extend(item.options)


@dataclass(frozen=True)
class _Timeline:
    """How ``when`` numbers map to steps for one call (base pass, hires pass, or old timelines)."""

    steps: int
    int_offset: int
    float_offset: float
    old: bool

    @classmethod
    def of(cls, base_steps: int, hires_steps: int | None, use_old_scheduling: bool) -> _Timeline:
        if hires_steps is None or use_old_scheduling:
            return cls(base_steps, 0, 0.0, use_old_scheduling)
        # Hires pass: integers count from the end of the base pass, fractions from 1.0 (1.5 = half of hires).
        return cls(hires_steps, base_steps, 1.0, False)

    def step_of(self, when: str) -> int:
        value = float(when)
        if self.old:
            value = value * self.steps if value < 1 else value
        elif "." in when:
            value = (value - self.float_offset) * self.steps
        else:
            value = value - self.int_offset
        if value == -math.inf:
            return -1  # never reached; A1111 raises on an infinite number
        return int(min(self.steps, value))  # clamps +inf (and NaN) to steps; equals A1111's min(steps, int(v))


def _render(items: tuple[_Item, ...], step: int, whens: dict[int, int]) -> str:
    out: list[str] = []
    pending: list[Iterator[_Item]] = [iter(items)]
    while pending:
        for item in pending[-1]:
            if isinstance(item, str):
                out.append(item)
                continue
            if isinstance(item, _Scheduled):
                chosen = (item.before or ()) if step <= whens[id(item)] else item.after
            else:
                chosen = item.options[(step - 1) % len(item.options)]
            pending.append(iter(chosen))
            break
        else:
            pending.pop()
    return "".join(out)


def _schedule(prompt: str, timeline: _Timeline) -> list[list[int | str]]:
    steps = timeline.steps
    tree = _parse_schedule(prompt)
    if tree is None:
        return [[steps, prompt]]
    whens: dict[int, int] = {}
    boundaries = {steps}
    for node in _walk(tree):
        if isinstance(node, _Scheduled):
            when = whens[id(node)] = timeline.step_of(node.when)
            if when >= 1:
                boundaries.add(when)
        else:
            boundaries.update(range(1, steps + 1))  # alternation changes the text on every step
    return [[step, _render(tree, step, whens)] for step in sorted(boundaries)]


def get_learned_conditioning_prompt_schedules(
    prompts: Iterable[str], base_steps: int, hires_steps: int | None = None, use_old_scheduling: bool = False
) -> list[list[list[int | str]]]:
    """For each prompt, ``[[end_at_step, text], ...]``: ``text`` is used up to and including ``end_at_step``.

    >>> get_learned_conditioning_prompt_schedules(["a [b:3]"], 10)
    [[[3, 'a '], [10, 'a b']]]
    """
    prompts = list(prompts)
    timeline = _Timeline.of(base_steps, hires_steps, use_old_scheduling)
    by_prompt = {prompt: _schedule(prompt, timeline) for prompt in dict.fromkeys(prompts)}
    return [by_prompt[prompt] for prompt in prompts]


def prompt_schedule(
    prompt: str, steps: int, hires_steps: int | None = None, use_old_scheduling: bool = False
) -> list[tuple[int, str]]:
    """Typed single-prompt form: ``[(end_at_step, text), ...]``, steps ascending, the last one ``== steps``."""
    timeline = _Timeline.of(steps, hires_steps, use_old_scheduling)
    return [(int(step), str(text)) for step, text in _schedule(prompt, timeline)]


ScheduledPromptConditioning = namedtuple("ScheduledPromptConditioning", ["end_at_step", "cond"])


class SdConditioning(list):
    """A list of prompts that also says which image they are for (SDXL conditions on the size).

    Attributes not given are taken from ``copy_from`` (default: ``prompts`` itself, when it is an SdConditioning).
    """

    def __init__(
        self,
        prompts: Iterable[str],
        is_negative_prompt: bool = False,
        width: int | None = None,
        height: int | None = None,
        copy_from: Any = None,
    ) -> None:
        super().__init__(prompts)
        source = prompts if copy_from is None else copy_from
        self.is_negative_prompt = is_negative_prompt or getattr(source, "is_negative_prompt", False)
        self.width = width or getattr(source, "width", None)
        self.height = height or getattr(source, "height", None)


# -- composable diffusion (AND) ------------------------------------------------------------------------------------

_AND = re.compile(r"\bAND\b")
_AND_WEIGHT = re.compile(r"[-+]?(?:\d+\.?|\d*\.\d+)")


def _split_weight(subprompt: str) -> tuple[str, float]:
    """A trailing ``:weight`` (``a cat :1.2``); without one, the text without trailing whitespace and weight 1.0.

    Same result as A1111's ``^((?:\\s|.)*?)(?:\\s*:\\s*(number))?\\s*$`` (shortest text whose rest is an optional
    weight and whitespace), without its quadratic backtracking on long whitespace runs.
    """
    body = subprompt.rstrip()
    colon = body.rfind(":")
    if colon >= 0 and _AND_WEIGHT.fullmatch(body[colon + 1 :].lstrip()):
        return subprompt[:colon].rstrip(), float(body[colon + 1 :])
    return body, 1.0


def split_and(prompt: str) -> list[tuple[str, float]]:
    """``"a cat :1.2 AND a dog"`` -> ``[("a cat", 1.2), (" a dog", 1.0)]`` (text kept as A1111 keeps it)."""
    return [_split_weight(part) for part in _AND.split(prompt)]


def get_multicond_prompt_list(
    prompts: Sequence[str],
) -> tuple[list[list[tuple[int, float]]], SdConditioning, dict[str, int]]:
    """A1111's AND split of a batch: identical sub-prompts share one flat index (they are encoded once)."""
    res_indexes: list[list[tuple[int, float]]] = []
    prompt_indexes: dict[str, int] = {}
    prompt_flat_list = SdConditioning(prompts)
    prompt_flat_list.clear()
    for prompt in prompts:
        indexes = []
        for text, weight in split_and(prompt):
            index = prompt_indexes.get(text)
            if index is None:
                index = prompt_indexes[text] = len(prompt_flat_list)
                prompt_flat_list.append(text)
            indexes.append((index, weight))
        res_indexes.append(indexes)
    return res_indexes, prompt_flat_list, prompt_indexes


# -- extra networks ------------------------------------------------------------------------------------------------

# A1111's tag regex, kept as the definition and the tests' oracle; ``_extra_network_tags`` finds the same matches in
# linear time (``[^>]+`` rescans to the end of the prompt from every "<x:" when no ">" follows).
_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")
_EXTRA_NETWORK_HEAD = re.compile(r"<(\w+):")  # "\w+" can only end at the ":", so this never backtracks


def _extra_network_tags(prompt: str) -> Iterator[tuple[int, int, str, str]]:
    """``(start, end, name, args)`` of every ``_EXTRA_NETWORK.finditer(prompt)`` match, in order."""
    pos = 0
    close = -1  # the first ">" at or after the current head's end, kept while the scan is still before it
    while True:
        head = _EXTRA_NETWORK_HEAD.search(prompt, pos)
        if head is None:
            return
        args_start = head.end()
        if close < args_start:
            close = prompt.find(">", args_start)
            if close < 0:
                return  # no ">" left, so no later "<" can match either
        if close > args_start:  # "[^>]+" takes everything up to the next ">" (newlines and "<" included)
            yield head.start(), close + 1, head.group(1), prompt[args_start:close]
            pos = close + 1
        else:
            pos = head.start() + 1  # "<name:>": no arguments, not a tag; the regex retries one character on


class ExtraNetworkParams:
    """Arguments of one ``<name:...>`` tag: ``items`` as written, split into ``positional`` and ``named``.

    An item with exactly one ``=`` is named (``te=0.5``); anything else, including ``a=b=c``, is positional.
    """

    def __init__(self, items: list[Any] | None = None) -> None:
        self.items: list[Any] = items or []
        self.positional: list[Any] = []
        self.named: dict[str, str] = {}
        for item in self.items:
            parts = item.split("=", 2) if isinstance(item, str) else [item]
            if len(parts) == 2:
                self.named[parts[0]] = parts[1]
            else:
                self.positional.append(item)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExtraNetworkParams) and self.items == other.items

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value (A1111's class is unhashable too)

    def __repr__(self) -> str:
        return f"ExtraNetworkParams(items={self.items!r})"


def parse_extra_networks(prompt: str) -> tuple[str, dict[str, list[ExtraNetworkParams]]]:
    """Remove ``<name:args>`` tags: ``("a cat ", {"lora": [ExtraNetworkParams(["detail", "0.8"])]})``.

    The dict is a ``defaultdict(list)``, as A1111's ``extra_networks.parse_prompt`` returns.
    """
    found: defaultdict[str, list[ExtraNetworkParams]] = defaultdict(list)
    kept: list[str] = []
    pos = 0
    for start, end, name, args in _extra_network_tags(prompt):
        kept.append(prompt[pos:start])
        found[name].append(ExtraNetworkParams(items=args.split(":")))
        pos = end
    kept.append(prompt[pos:])
    return "".join(kept), found


def parse_extra_networks_prompts(
    prompts: Iterable[str],
) -> tuple[list[str], dict[str, list[ExtraNetworkParams]] | None]:
    """A1111's ``extra_networks.parse_prompts``: every prompt stripped of tags, and the networks of the first one
    (a batch shares one set of networks); None for an empty batch."""
    texts: list[str] = []
    networks: dict[str, list[ExtraNetworkParams]] | None = None
    for prompt in prompts:
        text, found = parse_extra_networks(prompt)
        if networks is None:
            networks = found
        texts.append(text)
    return texts, networks


# -- token counter -------------------------------------------------------------------------------------------------


def token_count_max(n_tokens: int) -> int:
    """The ``max`` of the UI's ``count/max`` token counter: 75, 150, ... (``0 -> 75``, ``75 -> 75``, ``76 -> 150``)."""
    return math.ceil(max(n_tokens, 1) / TOKEN_CHUNK_LENGTH) * TOKEN_CHUNK_LENGTH
