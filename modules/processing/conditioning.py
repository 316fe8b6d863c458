"""Text conditioning: prompts -> CLIP embeddings in A1111's 75-token chunks.

Each prompt is tokenized without special tokens, cut into chunks of 75 tokens, and each chunk becomes 77 tokens
(BOS + chunk + EOS + padding) encoded separately; the chunk outputs are concatenated, so prompts have no length limit
(A1111 ``sd_hijack_clip``). Prompts of one batch are padded to the same chunk count with empty chunks.

SD1 uses the last layer (or layer ``-clip_skip`` followed by the final layer norm); SD2's converted OpenCLIP encoder
already stops at the penultimate layer; SDXL concatenates the penultimate hidden states of CLIP-L and OpenCLIP bigG
and takes the pooled embedding of bigG's first chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from modules.models.types import LoadedModel

CHUNK_TOKENS = 75


@dataclass
class Conditioning:
    """Encoder hidden states ``(B, 77*k, C)`` and, for SDXL, the pooled text embedding ``(B, P)``."""

    context: torch.Tensor
    pooled: torch.Tensor | None = None

    def repeat_chunks_to(self, chunks: int) -> "Conditioning":
        """Pad with this conditioning's last chunk so two conditionings can share one UNet batch."""
        have = self.context.shape[1] // 77
        if have >= chunks:
            return self
        tail = self.context[:, -77:].repeat(1, chunks - have, 1)
        return Conditioning(torch.cat([self.context, tail], dim=1), self.pooled)


def tokenize_chunks(tokenizer: Any, prompts: Sequence[str], pad_id: int) -> list[list[list[int]]]:
    """Per prompt, a list of 77-token id lists. Every prompt of the batch gets the same number of chunks."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    per_prompt: list[list[list[int]]] = []
    for text in prompts:
        ids = tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"]
        pieces = [ids[i:i + CHUNK_TOKENS] for i in range(0, len(ids), CHUNK_TOKENS)] or [[]]
        per_prompt.append([[bos, *p, eos] + [pad_id] * (CHUNK_TOKENS - len(p)) for p in pieces])
    longest = max(len(c) for c in per_prompt)
    empty = [bos, eos] + [pad_id] * CHUNK_TOKENS
    for chunks in per_prompt:
        chunks.extend([list(empty) for _ in range(longest - len(chunks))])
    return per_prompt


def token_count(tokenizer: Any, text: str) -> tuple[int, int]:
    """A1111's counter: (tokens, max) where max grows in steps of 75, e.g. (80, 150)."""
    n = len(tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])
    return n, max(CHUNK_TOKENS, -(-n // CHUNK_TOKENS) * CHUNK_TOKENS)


def _final_layer_norm(encoder: Any) -> Any:
    return getattr(encoder, "final_layer_norm", None) or encoder.text_model.final_layer_norm


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id
    return tokenizer.eos_token_id if pad is None else pad


class PromptEncoder:
    """Encodes prompt lists for one loaded model; results for identical prompt lists are cached for the job."""

    def __init__(self, model: LoadedModel, clip_skip: int = 1) -> None:
        self.model = model
        self.clip_skip = max(1, int(clip_skip))
        self._cache: dict[tuple[str, ...], Conditioning] = {}

    @torch.inference_mode()
    def encode(self, prompts: Sequence[str]) -> Conditioning:
        key = tuple(prompts)
        if key not in self._cache:
            self._cache[key] = self._encode(list(prompts))
        return self._cache[key]

    def _encode(self, prompts: list[str]) -> Conditioning:
        m = self.model
        if m.kind.family == "sdxl":
            return self._encode_sdxl(prompts, with_clip_l=True)
        if m.kind.family == "sdxl_refiner":
            return self._encode_sdxl(prompts, with_clip_l=False)
        chunks = tokenize_chunks(m.tokenizer, prompts, _pad_id(m.tokenizer))
        outputs = []
        for index in range(len(chunks[0])):
            ids = torch.tensor([c[index] for c in chunks], device=m.device)
            out = m.text_encoder(ids, output_hidden_states=self.clip_skip > 1)
            if self.clip_skip > 1 and m.kind.family == "sd1":
                hidden = _final_layer_norm(m.text_encoder)(out.hidden_states[-self.clip_skip])
            else:
                hidden = out.last_hidden_state
            outputs.append(hidden)
        return Conditioning(torch.cat(outputs, dim=1).to(m.dtype))

    def _encode_sdxl(self, prompts: list[str], with_clip_l: bool) -> Conditioning:
        m = self.model
        chunks_g = tokenize_chunks(m.tokenizer_2, prompts, _pad_id(m.tokenizer_2))
        chunks_l = tokenize_chunks(m.tokenizer, prompts, _pad_id(m.tokenizer)) if with_clip_l else None
        outputs, pooled = [], None
        for index in range(len(chunks_g[0])):
            ids_g = torch.tensor([c[index] for c in chunks_g], device=m.device)
            out_g = m.text_encoder_2(ids_g, output_hidden_states=True)
            parts = [out_g.hidden_states[-2]]
            if chunks_l is not None:
                ids_l = torch.tensor([c[index] for c in chunks_l], device=m.device)
                out_l = m.text_encoder(ids_l, output_hidden_states=True)
                parts.insert(0, out_l.hidden_states[-2])
            outputs.append(torch.cat(parts, dim=-1))
            if pooled is None:
                pooled = out_g.text_embeds
        return Conditioning(torch.cat(outputs, dim=1).to(m.dtype), pooled.to(m.dtype))
