"""Prompt conditioning on tiny real-layout models: chunks, BREAK, comma wrap, emphasis modes, embeddings, schedules,
AND (composable diffusion), and bad prompts that must not break a job."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.processing.conditioning import (CHUNK_TOKENS, EmbeddingLookup, PromptEncoder, token_count,
                                             tokenize_line)
from modules.processing.prompt_schedule import BatchConditioning
from modules.processing.sampling import GuidedDenoiser
from tests.support.engine import default_settings, load_tiny, run_txt2img
from tests.support.tiny_checkpoints import write_tiny_checkpoint


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return load_tiny(write_tiny_checkpoint("sd1", tmp_path_factory.mktemp("cond"), "tiny-sd1"))


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    return load_tiny(write_tiny_checkpoint("sdxl", tmp_path_factory.mktemp("cond-xl"), "tiny-sdxl"))


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


# ----------------------------------------------------------------------------------------------- tokenization


def test_long_prompt_makes_77_token_chunks_with_bos_eos_and_padding(sd1):
    tok = sd1.tokenizer
    cat = ids(tok, "cat")[0]
    chunks, count = tokenize_line("cat " * 100, tok)
    assert count == 100 and token_count(tok, "cat " * 100) == (100, 150)
    assert [len(c.tokens) for c in chunks] == [77, 77]
    assert chunks[0].tokens == [tok.bos_token_id] + [cat] * 75 + [tok.eos_token_id]
    assert chunks[1].tokens == [tok.bos_token_id] + [cat] * 25 + [tok.eos_token_id] * 51
    assert token_count(tok, "") == (0, 75) and token_count(tok, "cat " * 75) == (75, 75)


def test_break_ends_the_chunk(sd1):
    tok = sd1.tokenizer
    chunks, _ = tokenize_line("a cat BREAK a dog", tok)
    assert len(chunks) == 2
    assert chunks[0].tokens[:4] == [tok.bos_token_id, *ids(tok, "a cat"), tok.eos_token_id]
    assert chunks[1].tokens[:4] == [tok.bos_token_id, *ids(tok, "a dog"), tok.eos_token_id]


def test_comma_backtracking_moves_the_last_phrase_to_the_next_chunk(sd1):
    tok = sd1.tokenizer
    dog = ids(tok, "dog")[0]
    prompt = "cat " * 70 + ", " + "dog " * 10
    wrapped, _ = tokenize_line(prompt, tok, comma_backtrack=20)
    assert wrapped[0].tokens[71] == ids(tok, ",")[0] and wrapped[0].tokens[72:76] == [tok.eos_token_id] * 4
    assert wrapped[1].tokens[1:11] == [dog] * 10
    plain, _ = tokenize_line(prompt, tok, comma_backtrack=0)
    assert plain[0].tokens[72:76] == [dog] * 4 and plain[1].tokens[1:7] == [dog] * 6


def test_emphasis_multipliers_follow_the_parser(sd1):
    tok = sd1.tokenizer
    chunk = tokenize_line("(cat:1.5) [dog] bird", tok)[0][0]
    assert chunk.multipliers[:5] == pytest.approx([1.0, 1.5, 1 / 1.1, 1.0, 1.0])
    assert tokenize_line("(cat:1.5)", tok, emphasis="Ignore")[0][0].multipliers[1] == 1.0
    literal = tokenize_line("(cat:1.5)", tok, emphasis="None")[0][0]
    assert literal.tokens[1:1 + len(ids(tok, "(cat:1.5)"))] == ids(tok, "(cat:1.5)")
    # A1111: with emphasis "None" nothing is parsed, so BREAK is a word, not a chunk boundary.
    unparsed, _ = tokenize_line("a cat BREAK a dog", tok, emphasis="None")
    assert len(unparsed) == 1 and unparsed[0].tokens[1:1 + len(ids(tok, "a cat BREAK a dog"))] == ids(
        tok, "a cat BREAK a dog")


# ----------------------------------------------------------------------------------------------- emphasis numbers


def test_emphasis_multiplies_exactly_the_weighted_token_vectors(sd1):
    plain = PromptEncoder(sd1, emphasis="No norm").encode(["cat dog"]).context
    weighted = PromptEncoder(sd1, emphasis="No norm").encode(["(cat:1.5) dog"]).context
    assert torch.allclose(weighted[:, 1], plain[:, 1] * 1.5, atol=1e-6)  # position 1 = "cat" after BOS
    others = [i for i in range(77) if i != 1]
    assert torch.allclose(weighted[:, others], plain[:, others], atol=1e-6)

    original = PromptEncoder(sd1, emphasis="Original").encode(["(cat:1.5) dog"]).context
    scaled = plain.clone()
    scaled[:, 1] *= 1.5
    scaled *= plain.mean() / scaled.mean()  # A1111: the rescale restores the original mean
    assert torch.allclose(original, scaled, atol=1e-5)
    assert torch.allclose(original.mean(), plain.mean(), atol=1e-6)

    ignore = PromptEncoder(sd1, emphasis="Ignore").encode(["(cat:1.5) dog"]).context
    assert torch.allclose(ignore, plain, atol=1e-6)


def test_long_prompt_encodes_one_block_per_chunk(sd1):
    enc = PromptEncoder(sd1)
    long = enc.encode(["cat " * 80]).context
    assert long.shape[1] == 2 * 77
    batch = enc.encode(["cat", "cat " * 80]).context  # texts of one call are padded with empty chunks
    assert batch.shape[1] == 2 * 77
    empty = PromptEncoder(sd1).encode([""]).context
    assert torch.allclose(batch[0, 77:], empty[0], atol=1e-6)


def test_sdxl_concatenates_both_towers_and_pools(sdxl):
    cond = PromptEncoder(sdxl).encode(["a cat", "a dog"])
    width = sdxl.text_encoder.config.hidden_size + sdxl.text_encoder_2.config.hidden_size
    assert cond.context.shape == (2, 77, width)
    assert cond.pooled is not None and cond.pooled.shape == (2, sdxl.text_encoder_2.config.projection_dim)


# ----------------------------------------------------------------------------------------------- embeddings


def test_embedding_vectors_replace_the_trigger_word(sd1):
    width = sd1.text_encoder.config.hidden_size
    vectors = torch.randn(2, width, generator=torch.Generator().manual_seed(0))
    lookup = EmbeddingLookup(sd1.tokenizer, {"mystyle": vectors})
    used: set[str] = set()
    chunk = tokenize_line("a mystyle cat", sd1.tokenizer, embeddings=lookup, used=used)[0][0]
    assert used == {"mystyle"} and chunk.fixes[0][0] == 2 and chunk.tokens[2:4] == [0, 0]

    seen = {}
    layers = sd1.text_encoder.encoder  # transformers 5: CLIPTextModel has no text_model level
    def capture(_module, args, kwargs):
        seen["x"] = kwargs.get("inputs_embeds", args[0] if args else None)

    handle = layers.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        PromptEncoder(sd1, embeddings={"mystyle": {"text_encoder": vectors}}).encode(["a mystyle cat"])
    finally:
        handle.remove()
    positions = sd1.text_encoder.embeddings.position_embedding.weight
    spliced = seen["x"][0, 2:4] - positions[2:4]
    assert torch.allclose(spliced, vectors, atol=1e-5)


def test_an_embedding_is_never_split_across_chunks(sd1):
    vectors = torch.zeros(3, sd1.text_encoder.config.hidden_size)
    lookup = EmbeddingLookup(sd1.tokenizer, {"mystyle": vectors})
    chunks, _ = tokenize_line("cat " * 74 + "mystyle", sd1.tokenizer, embeddings=lookup, comma_backtrack=0)
    assert len(chunks) == 2 and chunks[1].fixes[0][0] == 1 and chunks[0].tokens[75] == sd1.tokenizer.eos_token_id


# ----------------------------------------------------------------------------------------------- schedules


def test_prompt_editing_switches_conditioning_at_the_scheduled_step(sd1, tmp_path):
    seen: list[tuple[int, torch.Tensor]] = []
    out = run_txt2img(sd1, tmp_path, prompt="[cat:dog:2]", sampler_name="Euler", steps=5, seed=1,
                      hooks=[lambda step, cond, uncond: seen.append((step, cond.context.clone()))])
    assert [s for s, _ in seen] == [0, 1, 2, 3, 4]
    enc = PromptEncoder(sd1)
    both = enc.encode(["cat", "dog"]).context  # encoded together, as the job does
    for step, context in seen:
        expected = both[0] if step <= 2 else both[1]  # A1111: "from" while step <= when
        assert torch.allclose(context[0], expected, atol=1e-6), step
    assert out.infotexts[0].startswith("[cat:dog:2]\n")  # infotext keeps the prompt as written


def test_alternation_cycles_every_step(sd1):
    enc = PromptEncoder(sd1)
    batch = BatchConditioning(enc, ["a [cat|dog]"], [""], 6)
    # A1111's schedule is [[1, a cat], [2, a dog], ...] and its denoiser counter starts at 0 with "step <= end":
    # the first option covers evaluations 0 and 1, then the options alternate every evaluation.
    assert [batch.texts_at(s)[0][0][0] for s in range(6)] == ["a cat", "a cat", "a dog", "a cat", "a dog", "a cat"]


def test_negative_prompt_is_scheduled_too_but_not_and_split(sd1):
    batch = BatchConditioning(PromptEncoder(sd1), ["x"], ["[ugly:blurry:1] AND bad"], 4)
    assert batch.texts_at(0)[1] == ["ugly AND bad"] and batch.texts_at(3)[1] == ["blurry AND bad"]


def test_and_weights_combine_as_composable_diffusion(sd1):
    enc = PromptEncoder(sd1)
    batch = BatchConditioning(enc, ["cat AND dog :0.5"], ["ugly"], 4)
    assert batch.weights == [[1.0, 0.5]]
    denoiser = GuidedDenoiser(sd1, batch, cfg_scale=7.0)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    t = torch.tensor(500)
    with torch.inference_mode():
        out = denoiser(x, t)
        cond, uncond = batch.at(0)

        def unet(c):
            return sd1.unet(x, t, encoder_hidden_states=c, return_dict=False)[0]

        u, c1, c2 = unet(uncond.context), unet(cond.context[0:1]), unet(cond.context[1:2])
    expected = u + 7.0 * (c1 - u) + 0.5 * 7.0 * (c2 - u)
    assert torch.allclose(out, expected, atol=1e-4)


def test_identical_texts_are_encoded_once_per_job(sd1, monkeypatch):
    calls = []
    enc = PromptEncoder(sd1)
    original = enc.towers[0].encode_chunks
    monkeypatch.setattr(enc.towers[0], "encode_chunks", lambda *a, **k: calls.append(1) or original(*a, **k))
    batch = BatchConditioning(enc, ["[a cat:a dog:0.5]"] * 2, ["ugly"] * 2, 20)
    for step in range(20):
        batch.at(step)
    assert len(calls) == 2  # one call for the positive texts, one for the negative ones


# ----------------------------------------------------------------------------------------------- bad prompts


@pytest.mark.parametrize("prompt", [
    "(" * 10_000 + "cat",
    "[a:b:",
    "[[[[[:::]]]]] (((:))) \\",
    "cat\x00dog\x00",
    "x" * 10_000,
    "🐈 مرحبا cat",
    "a AND AND :x AND",
    "[cat:dog:1e400] [cat|] BREAK BREAK",
])
def test_bad_prompts_never_break_a_job(sd1, tmp_path, prompt):
    out = run_txt2img(sd1, tmp_path, prompt=prompt, negative_prompt=prompt, steps=2, seed=1,
                      settings=default_settings(samples_save=False))
    assert len(out.images) == 1 and np.asarray(out.images[0]).std() > 0


def test_chunk_constant():
    assert CHUNK_TOKENS == 75


def test_sdxl_embeddings_fill_both_towers(sdxl):
    l_width = sdxl.text_encoder.config.hidden_size
    g_width = sdxl.text_encoder_2.config.hidden_size
    vectors = {"xlstyle": {"text_encoder": torch.full((1, l_width), 0.5), "text_encoder_2": torch.full((1, g_width),
                                                                                                       -0.5)}}
    enc = PromptEncoder(sdxl, embeddings=vectors)
    with_embedding = enc.encode(["a xlstyle"]).context
    plain = PromptEncoder(sdxl).encode(["a xlstyle"]).context
    assert enc.used_embeddings == {"xlstyle"}
    assert not torch.allclose(with_embedding[..., :l_width], plain[..., :l_width])  # CLIP-L half changed
    assert not torch.allclose(with_embedding[..., l_width:], plain[..., l_width:])  # and the bigG half


def test_embedding_lookup_takes_the_longest_name_first(sd1, tmp_path):
    """Real files through the embedding database into the lookup conditioning uses."""
    from modules.models.embeddings import EmbeddingDatabase
    from tests.support.tiny_files import save_a1111_pt, vectors

    width = sd1.text_encoder.config.hidden_size
    for i, name in enumerate(["cat", "cat toy", "dog"]):
        save_a1111_pt(tmp_path / "emb" / f"{name}.pt", vectors(1, width, i))
    fitted = EmbeddingDatabase([tmp_path / "emb"]).load_for(sd1)
    tok = sd1.tokenizer
    lookup = EmbeddingLookup(tok, {n: v["text_encoder"] for n, v in fitted.vectors().items()})
    prompt = tok("a cat toy and a cat, dog", add_special_tokens=False)["input_ids"]
    found = [(i, *m) for i in range(len(prompt)) if (m := lookup.find(prompt, i)) is not None]
    assert [(name, n) for _, name, _, n in found] == [("cat toy", 2), ("cat", 1), ("dog", 1)]
    assert found[0][0] == 1  # "a" comes first
    assert lookup.find(prompt, 0) is None
    assert torch.equal(found[0][2], fitted.loaded["cat toy"].vectors["text_encoder"])
