"""A tagger's scores as the caption A1111 writes (its DeepBooru formatting, which WD14 shares here): tags at or
above the threshold, alphabetical or by score, the filtered ones left out, underscores as spaces, ``\\``-escaped
brackets, and with "include ranks" each tag as ``(tag:0.873)``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_BRACKETS = re.compile(r"([\\()])")
# Emoticon tags whose underscore is part of the face (the WD14 tagger's reference list): kept as they are.
KAOMOJIS = frozenset({"0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9",
                      ">_o", "@_@", "^_^", "o_o", "u_u", "x_x", "|_|", "||_||"})


@dataclass(frozen=True)
class TagFormat:
    """A1111's settings ``deepbooru_sort_alpha``, ``deepbooru_use_spaces``, ``deepbooru_escape``,
    ``deepbooru_filter_tags`` and ``interrogate_return_ranks``."""

    sort_alpha: bool = True
    use_spaces: bool = True
    escape: bool = True
    filter_tags: str = ""
    include_ranks: bool = False

    @classmethod
    def of(cls, settings: Mapping[str, object]) -> TagFormat:
        return cls(bool(settings.get("deepbooru_sort_alpha", True)), bool(settings.get("deepbooru_use_spaces", True)),
                   bool(settings.get("deepbooru_escape", True)), str(settings.get("deepbooru_filter_tags", "") or ""),
                   bool(settings.get("interrogate_return_ranks", False)))


def selected(scores: Iterable[tuple[str, float]], threshold: float) -> dict[str, float]:
    """The tags scored at or above ``threshold``, first score kept for a repeated name."""
    chosen: dict[str, float] = {}
    for tag, score in scores:
        if score >= threshold and tag not in chosen:
            chosen[tag] = float(score)
    return chosen


def caption(scores: Mapping[str, float], style: TagFormat) -> str:
    """``scores`` (already thresholded) as one comma-separated caption."""
    names = sorted(scores) if style.sort_alpha else [t for t, _ in sorted(scores.items(), key=lambda kv: -kv[1])]
    dropped = {t.strip().replace(" ", "_") for t in style.filter_tags.split(",")}
    out = []
    for tag in names:
        if tag in dropped:
            continue
        text = tag.replace("_", " ") if style.use_spaces and tag not in KAOMOJIS else tag
        if style.escape:
            text = _BRACKETS.sub(r"\\\1", text)
        if style.include_ranks:
            text = f"({text}:{scores[tag]:.3f})"
        out.append(text)
    return ", ".join(out)
