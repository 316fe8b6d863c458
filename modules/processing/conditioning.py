"""Text conditioning: prompts -> CLIP embeddings the way A1111 builds them.

A prompt is parsed for emphasis (``prompt_parser.parse_prompt_attention``), tokenized without special tokens and cut
into chunks of 75 tokens; each chunk becomes 77 (BOS + chunk + EOS + padding) and is encoded separately, the outputs
concatenated, so prompts have no length limit (A1111 ``sd_hijack_clip``). Within that:

* ``BREAK`` ends the current chunk and pads it;
* comma back-tracking: when a chunk fills up and its last comma is at most ``comma_padding_backtrack`` tokens back,
  the words after the comma move to the next chunk (A1111's "prompt word wrap length limit", default 20);
* a textual-inversion embedding is never split across chunks; its trigger word's tokens are replaced by its vectors
  in the token-embedding output (a forward hook held only for the duration of one encode call);
* emphasis multiplies each token's output vector by its weight, then (mode "Original") rescales the whole tensor so
  its mean is unchanged; "No norm" skips the rescale, "Ignore" keeps weights 1, "None" does not parse brackets.

Prompts encoded in one call are padded to the same chunk count with empty chunks (BOS + EOS...), as A1111 pads the
texts of one ``get_learned_conditioning`` call. SD1 reads the last layer (or layer ``-clip_skip`` followed by the final
layer norm); SD2's converted OpenCLIP encoder already stops at the penultimate layer; SDXL concatenates the
penultimate hidden states of CLIP-L and OpenCLIP bigG and takes bigG's pooled embedding of the first chunk.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import torch

from modules.models.types import LoadedModel

CHUNK_TOKENS = 75
EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")
MAX_WEIGHT = 100.0  # |emphasis weight| cap: far beyond any useful value, small enough to stay finite in fp16


@dataclass
class Conditioning:
    """Encoder hidden states ``(B, 77*k, C)`` and, for SDXL, the pooled text embedding ``(B, P)``."""

    context: torch.Tensor
    pooled: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.context.shape[0]

    def row(self, i: int) -> "Conditioning":
        return Conditioning(self.context[i:i + 1], None if self.pooled is None else self.pooled[i:i + 1])


def stack_conditionings(items: Sequence[Conditioning]) -> Conditioning:
    """One batch from single rows; shorter contexts repeat their last vector (A1111's ``reconstruct_cond_batch``)."""
    longest = max(c.context.shape[1] for c in items)
    contexts = []
    for c in items:
        ctx = c.context
        if ctx.shape[1] < longest:
            ctx = torch.cat([ctx, ctx[:, -1:].expand(-1, longest - ctx.shape[1], -1)], dim=1)
        contexts.append(ctx)
    pooled = None if items[0].pooled is None else torch.cat([c.pooled for c in items])
    return Conditioning(torch.cat(contexts), pooled)


# ------------------------------------------------------------------------------------------------ tokenization


@dataclass
class PromptChunk:
    """75 (then 77) token ids, their emphasis multipliers, and embedding vectors to splice in at offsets."""

    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)
    fixes: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (offset in the 77, vectors (n, C))


class EmbeddingLookup:
    """Finds textual-inversion trigger words in token sequences, longest match first (A1111 matches by ids).

    ``vectors`` maps a trigger word to its vectors for this encoder, ``(n, C)``."""

    def __init__(self, tokenizer: Any, vectors: Mapping[str, torch.Tensor]) -> None:
        self._by_first: dict[int, list[tuple[list[int], str, torch.Tensor]]] = {}
        for name, vec in vectors.items():
            ids = tokenizer(name, add_special_tokens=False, truncation=False)["input_ids"]
            if ids:
                self._by_first.setdefault(ids[0], []).append((ids, name, vec))
        for entries in self._by_first.values():
            entries.sort(key=lambda e: -len(e[0]))

    def find(self, tokens: Sequence[int], position: int) -> tuple[str, torch.Tensor, int] | None:
        """(name, vectors, token length of the trigger word) starting at ``position``, or None."""
        for ids, name, vec in self._by_first.get(tokens[position], ()):
            if list(tokens[position:position + len(ids)]) == ids:
                return name, vec, len(ids)
        return None


def parse_for_emphasis(text: str, emphasis: str) -> list[tuple[str, float]]:
    """(text, weight) pieces; ``BREAK`` pieces have weight -1. Mode "None" parses nothing: the whole line is literal
    text, ``BREAK`` included, exactly as A1111 tokenizes it."""
    from modules import prompt_parser

    if emphasis == "None":
        return [(text, 1.0)]
    return [(str(t), float(w)) for t, w in prompt_parser.parse_prompt_attention(text)]


def tokenize_line(text: str, tokenizer: Any, *, emphasis: str = "Original", comma_backtrack: int = 20,
                  embeddings: EmbeddingLookup | None = None, used: set[str] | None = None
                  ) -> tuple[list[PromptChunk], int]:
    """A1111's ``tokenize_line``: the prompt's 77-token chunks and its token count (for the UI counter)."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    comma = tokenizer(",", add_special_tokens=False)["input_ids"][-1]
    pieces = parse_for_emphasis(text, emphasis)
    chunks: list[PromptChunk] = []
    chunk = PromptChunk()
    token_count = 0
    last_comma = -1

    def next_chunk(is_last: bool = False) -> None:
        nonlocal chunk, token_count, last_comma
        token_count += len(chunk.tokens) if is_last else CHUNK_TOKENS
        to_add = CHUNK_TOKENS - len(chunk.tokens)
        if to_add > 0:
            chunk.tokens += [eos] * to_add
            chunk.multipliers += [1.0] * to_add
        chunk.tokens = [bos, *chunk.tokens, eos]
        chunk.multipliers = [1.0, *chunk.multipliers, 1.0]
        chunk.fixes = [(offset + 1, vec) for offset, vec in chunk.fixes]  # BOS shifted everything by one
        last_comma = -1
        chunks.append(chunk)
        chunk = PromptChunk()

    texts = [t for t, _ in pieces]
    token_lists = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"] if texts else []
    for tokens, (piece, weight) in zip(token_lists, pieces):
        if piece == "BREAK" and weight == -1:
            next_chunk()
            continue
        if emphasis == "Ignore":
            weight = 1.0
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == comma:
                last_comma = len(chunk.tokens)
            elif (comma_backtrack and len(chunk.tokens) == CHUNK_TOKENS and last_comma != -1
                  and len(chunk.tokens) - last_comma <= comma_backtrack):
                # Move the words after the last comma to the next chunk, so a phrase is not cut in two.
                cut = last_comma + 1
                moved = (chunk.tokens[cut:], chunk.multipliers[cut:])
                chunk.tokens, chunk.multipliers = chunk.tokens[:cut], chunk.multipliers[:cut]
                next_chunk()
                chunk.tokens, chunk.multipliers = list(moved[0]), list(moved[1])
            if len(chunk.tokens) == CHUNK_TOKENS:
                next_chunk()
            found = embeddings.find(tokens, position) if embeddings is not None else None
            if found is None:
                chunk.tokens.append(token)
                chunk.multipliers.append(weight)
                position += 1
                continue
            name, vectors, length = found
            count = int(vectors.shape[0])
            if len(chunk.tokens) + count > CHUNK_TOKENS:
                next_chunk()  # an embedding is never split across chunks
            chunk.fixes.append((len(chunk.tokens), vectors))
            chunk.tokens += [0] * count
            chunk.multipliers += [weight] * count
            position += length
            if used is not None:
                used.add(name)
    if chunk.tokens or not chunks:
        next_chunk(is_last=True)
    return chunks, token_count


def token_count(tokenizer: Any, text: str, *, emphasis: str = "Original", comma_backtrack: int = 20,
                embeddings: EmbeddingLookup | None = None) -> tuple[int, int]:
    """A1111's counter: (tokens, max) where max grows in steps of 75, e.g. (80, 150). Extra-network tags and AND
    weights are not counted (the caller strips tags); emphasis brackets are not tokens."""
    _, count = tokenize_line(text, tokenizer, emphasis=emphasis, comma_backtrack=comma_backtrack,
                             embeddings=embeddings)
    return count, max(CHUNK_TOKENS, -(-count // CHUNK_TOKENS) * CHUNK_TOKENS)


def prompt_token_count(tokenizer: Any, prompt: str, steps: int = 20, *, emphasis: str = "Original",
                       comma_backtrack: int = 20) -> tuple[int, int]:
    """The UI counter for a whole prompt, as A1111 counts it: extra-network tags removed, then the longest of the
    AND sub-prompts at any step of their editing schedules. Returns (tokens, max)."""
    from modules import prompt_parser

    text, _ = prompt_parser.parse_extra_networks(prompt)
    longest = 0
    for sub, _weight in prompt_parser.split_and(text):
        for _end, piece in prompt_parser.get_learned_conditioning_prompt_schedules([sub], steps)[0]:
            count, _ = token_count(tokenizer, str(piece), emphasis=emphasis, comma_backtrack=comma_backtrack)
            longest = max(longest, count)
    return longest, prompt_parser.token_count_max(longest)


def empty_chunk(tokenizer: Any) -> PromptChunk:
    return PromptChunk([tokenizer.bos_token_id] + [tokenizer.eos_token_id] * (CHUNK_TOKENS + 1),
                       [1.0] * (CHUNK_TOKENS + 2))


# ------------------------------------------------------------------------------------------------ encoding


def _final_layer_norm(encoder: Any) -> Any:
    return getattr(encoder, "final_layer_norm", None) or encoder.text_model.final_layer_norm


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id
    return tokenizer.eos_token_id if pad is None else pad


def _token_embedding(encoder: Any) -> torch.nn.Module:
    text_model = getattr(encoder, "text_model", encoder)
    return text_model.embeddings.token_embedding


@contextlib.contextmanager
def _spliced_embeddings(encoder: Any, fixes: list[list[tuple[int, torch.Tensor]]]) -> Iterator[None]:
    """Replace rows of the token-embedding output with embedding vectors, for one forward call."""
    if not any(fixes):
        yield
        return

    def hook(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        for row, row_fixes in enumerate(fixes):
            for offset, vectors in row_fixes:
                n = min(vectors.shape[0], output.shape[1] - offset)
                output[row, offset:offset + n] = vectors[:n].to(output.device, output.dtype)
        return output

    handle = _token_embedding(encoder).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def apply_emphasis(hidden: torch.Tensor, multipliers: Sequence[Sequence[float]], emphasis: str) -> torch.Tensor:
    """Each token's output vector times its weight (``multipliers``: one row per batch row, one per token); mode
    "Original" then rescales the whole tensor to its former mean, "No norm" does not, the others leave it."""
    if emphasis not in ("Original", "No norm"):
        return hidden
    weights = torch.tensor(multipliers, device=hidden.device, dtype=hidden.dtype)
    # Thousands of unclosed "(" give 1.1**n = inf; bound the weights so such a prompt still makes an image.
    weights = torch.nan_to_num(weights, nan=1.0).clamp(-MAX_WEIGHT, MAX_WEIGHT)
    if torch.all(weights == 1):
        return hidden
    original_mean = hidden.mean()
    hidden = hidden * weights.unsqueeze(-1)
    if emphasis == "Original":
        hidden = hidden * (original_mean / hidden.mean())
    return hidden


@dataclass
class TextTower:
    """One text encoder with its tokenizer and A1111's layer choice."""

    encoder: Any
    tokenizer: Any
    layer: str  # "last", "penultimate" (hidden_states[-2], no final norm) or "clip_skip"
    clip_skip: int = 1
    embeddings: EmbeddingLookup | None = None

    def _hidden(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        want_hidden = self.layer == "penultimate" or (self.layer == "clip_skip" and self.clip_skip > 1)
        out = self.encoder(ids, output_hidden_states=want_hidden)
        if self.layer == "penultimate":
            hidden = out.hidden_states[-2]
        elif self.layer == "clip_skip" and self.clip_skip > 1:
            hidden = _final_layer_norm(self.encoder)(out.hidden_states[-self.clip_skip])
        else:
            hidden = out.last_hidden_state
        return hidden, getattr(out, "text_embeds", None)

    def encode_chunks(self, batch: list[PromptChunk], emphasis: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One 77-token chunk per batch row -> ``(B, 77, C)`` with emphasis applied, and the pooled output."""
        eos, pad = self.tokenizer.eos_token_id, _pad_id(self.tokenizer)
        rows = []
        for chunk in batch:
            tokens = list(chunk.tokens)
            if pad != eos:  # OpenCLIP pads with "!" after the first end-of-text, as A1111 does for SD2/bigG
                first_end = tokens.index(eos)
                tokens[first_end + 1:] = [pad] * (len(tokens) - first_end - 1)
            rows.append(tokens)
        device = next(self.encoder.parameters()).device
        ids = torch.tensor(rows, device=device)
        with _spliced_embeddings(self.encoder, [c.fixes for c in batch]):
            hidden, pooled = self._hidden(ids)
        return apply_emphasis(hidden, [c.multipliers for c in batch], emphasis), pooled

    def encode(self, texts: Sequence[str], emphasis: str, comma_backtrack: int,
               used: set[str] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        per_text = [tokenize_line(t, self.tokenizer, emphasis=emphasis, comma_backtrack=comma_backtrack,
                                  embeddings=self.embeddings, used=used)[0] for t in texts]
        count = max(len(c) for c in per_text)
        outputs, pooled = [], None
        for index in range(count):
            batch = [chunks[index] if index < len(chunks) else empty_chunk(self.tokenizer) for chunks in per_text]
            hidden, pooled_i = self.encode_chunks(batch, emphasis)
            outputs.append(hidden)
            if index == 0:
                pooled = pooled_i
        return torch.cat(outputs, dim=1), pooled


class PromptEncoder:
    """Encodes lists of texts for one loaded model and one job; identical text lists are encoded once.

    ``embeddings`` maps trigger words to vectors per LoadedModel slot (``{"text_encoder": (n, C), ...}``); names
    found in prompts are collected in ``used_embeddings`` for the infotext's ``TI hashes``."""

    def __init__(self, model: LoadedModel, clip_skip: int = 1, *, emphasis: str = "Original",
                 comma_backtrack: int = 20,
                 embeddings: Mapping[str, Mapping[str, torch.Tensor]] | None = None) -> None:
        if emphasis not in EMPHASIS_MODES:
            raise ValueError(f"emphasis must be one of {', '.join(EMPHASIS_MODES)}, got {emphasis!r}")
        self.model = model
        self.emphasis = emphasis
        self.comma_backtrack = max(0, int(comma_backtrack))
        self.used_embeddings: set[str] = set()
        self._cache: dict[tuple[str, ...], Conditioning] = {}
        self.towers = self._towers(model, max(1, int(clip_skip)), embeddings or {})

    @staticmethod
    def _towers(model: LoadedModel, clip_skip: int, embeddings: Mapping[str, Mapping[str, torch.Tensor]]
                ) -> list[TextTower]:
        def lookup(slot: str, tokenizer: Any) -> EmbeddingLookup | None:
            vectors = {name: v[slot] for name, v in embeddings.items() if slot in v}
            return EmbeddingLookup(tokenizer, vectors) if vectors else None

        family = model.kind.family
        if family in ("sdxl", "sdxl_refiner"):
            towers = []
            if family == "sdxl":
                towers.append(TextTower(model.text_encoder, model.tokenizer, "penultimate",
                                        embeddings=lookup("text_encoder", model.tokenizer)))
            towers.append(TextTower(model.text_encoder_2, model.tokenizer_2, "penultimate",
                                    embeddings=lookup("text_encoder_2", model.tokenizer_2)))
            return towers
        layer = "clip_skip" if family == "sd1" else "last"  # SD2's converted encoder already ends a layer early
        return [TextTower(model.text_encoder, model.tokenizer, layer, clip_skip,
                          embeddings=lookup("text_encoder", model.tokenizer))]

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> Conditioning:
        key = tuple(texts)
        if key not in self._cache:
            parts, pooled = [], None
            for tower in self.towers:
                hidden, tower_pooled = tower.encode(list(texts), self.emphasis, self.comma_backtrack,
                                                    self.used_embeddings)
                parts.append(hidden)
                pooled = tower_pooled  # SDXL: the bigG tower comes last and carries the pooled embedding
            longest = max(p.shape[1] for p in parts)  # towers chunk alike unless one has an embedding the other lacks
            parts = [p if p.shape[1] == longest else torch.cat([p, p[:, -1:].expand(-1, longest - p.shape[1], -1)], 1)
                     for p in parts]
            context = torch.cat(parts, dim=-1).to(self.model.dtype)
            if not self.model.is_sdxl:
                pooled = None
            self._cache[key] = Conditioning(context, None if pooled is None else pooled.to(self.model.dtype))
        return self._cache[key]
