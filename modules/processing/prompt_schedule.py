"""The conditioning of one batch over the sampling steps: prompt editing, alternation and AND, encoded once.

Each positive prompt is split on ``AND`` into weighted sub-prompts (composable diffusion); each sub-prompt and each
negative prompt becomes a schedule of ``(end_step, text)`` (``[from:to:when]``, ``[a|b]``). All distinct texts of the
batch's positive side are encoded in one call, and those of the negative side in another, as A1111's
``get_learned_conditioning`` does; stepping through the schedule only picks rows, it never re-encodes.

Step numbers follow A1111's denoiser counter: 0 for the first model evaluation, then one more per evaluation, and a
schedule entry is used while ``step <= end_step``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from modules.processing.conditioning import Conditioning, PromptEncoder, stack_conditionings


@dataclass(frozen=True)
class SubPrompt:
    weight: float
    schedule: tuple[tuple[int, str], ...]  # (end_step, text), end steps ascending


def _entry_at(schedule: Sequence[tuple[int, str]], step: int) -> str:
    for end_step, text in schedule:
        if step <= end_step:
            return text
    return schedule[-1][1]


class BatchConditioning:
    """Conditioning for ``prompts``/``negative_prompts`` (one per image of the batch) at any sampling step."""

    def __init__(self, encoder: PromptEncoder, prompts: Sequence[str], negative_prompts: Sequence[str], steps: int,
                 *, hires_steps: int | None = None, use_old_scheduling: bool = False) -> None:
        from modules import prompt_parser

        def schedule(text: str) -> tuple[tuple[int, str], ...]:
            entries = prompt_parser.get_learned_conditioning_prompt_schedules(
                [text], steps, hires_steps, use_old_scheduling)[0]
            return tuple((int(end), str(t)) for end, t in entries)

        self.items: list[list[SubPrompt]] = [
            [SubPrompt(float(w), schedule(t)) for t, w in prompt_parser.split_and(p)] or [SubPrompt(1.0, schedule(""))]
            for p in prompts]
        self.negative: list[tuple[tuple[int, str], ...]] = [schedule(n) for n in negative_prompts]
        positive_texts = sorted({t for item in self.items for sub in item for _, t in sub.schedule})
        negative_texts = sorted({t for s in self.negative for _, t in s})
        self._positive = self._rows(encoder, positive_texts)
        self._negative = self._rows(encoder, negative_texts)
        self._cache: dict[tuple, tuple[Conditioning, Conditioning]] = {}

    @staticmethod
    def _rows(encoder: PromptEncoder, texts: list[str]) -> dict[str, Conditioning]:
        encoded = encoder.encode(texts)
        return {t: encoded.row(i) for i, t in enumerate(texts)}

    @property
    def batch_size(self) -> int:
        return len(self.items)

    @property
    def weights(self) -> list[list[float]]:
        """Per image, the AND weights of its sub-prompts (rows of ``cond_at`` in this order)."""
        return [[sub.weight for sub in item] for item in self.items]

    @property
    def is_plain(self) -> bool:
        """One sub-prompt of weight 1 per image: guidance 1 then needs no unconditional pass."""
        return all(len(item) == 1 and item[0].weight == 1.0 for item in self.items)

    def texts_at(self, step: int) -> tuple[list[list[str]], list[str]]:
        """The texts in effect at ``step``: per image its sub-prompts, and the negative prompts."""
        return ([[_entry_at(sub.schedule, step) for sub in item] for item in self.items],
                [_entry_at(s, step) for s in self.negative])

    def at(self, step: int) -> tuple[Conditioning, Conditioning]:
        """(cond rows: every image's sub-prompts in order, uncond rows: one per image) for ``step``."""
        positive, negative = self.texts_at(step)
        key = (tuple(map(tuple, positive)), tuple(negative))
        if key not in self._cache:
            cond = stack_conditionings([self._positive[t] for texts in positive for t in texts])
            uncond = stack_conditionings([self._negative[t] for t in negative])
            self._cache = {key: (cond, uncond)}  # consecutive steps mostly share their texts
        return self._cache[key]


def repeat_per_subprompt(x: torch.Tensor, weights: list[list[float]]) -> torch.Tensor:
    """Rows of ``x`` (one per image) repeated once per sub-prompt of that image."""
    index = torch.tensor([i for i, w in enumerate(weights) for _ in w], device=x.device)
    return x.index_select(0, index)
