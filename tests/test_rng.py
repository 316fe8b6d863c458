"""A1111's random numbers: per-image streams, variation seeds, resize-from, ENSD and the "NV" Philox source."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.processing.rng import ImageRNG, PhiloxGenerator, fix_seed, philox4x32_10, seeds_for_batch, slerp

SHAPE = (4, 8, 8)


def torch_noise(seed: int, shape=SHAPE) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))


def test_initial_noise_is_torch_randn_of_each_image_seed():
    noise = ImageRNG(SHAPE, [10, 11], source="CPU").first()
    assert noise.shape == (2, *SHAPE) and noise.dtype == torch.float32
    assert torch.equal(noise[0], torch_noise(10)) and torch.equal(noise[1], torch_noise(11))


def test_an_image_gets_the_same_noise_alone_or_in_a_batch():
    batch = ImageRNG(SHAPE, [5, 6, 7], source="CPU")
    alone = ImageRNG(SHAPE, [6], source="CPU")
    assert torch.equal(batch.first()[1], alone.first()[0])
    assert torch.equal(batch.next()[1], alone.next()[0])  # the ancestral stream continues per image


def test_next_continues_the_stream_of_first():
    rng = ImageRNG(SHAPE, [3], source="CPU")
    gen = torch.Generator("cpu").manual_seed(3)
    expected_first = torch.randn(SHAPE, generator=gen)
    expected_second = torch.randn(SHAPE, generator=gen)
    assert torch.equal(rng.next()[0], expected_first)  # the first next() is first()
    assert torch.equal(rng.next()[0], expected_second)


def test_eta_noise_seed_delta_reseeds_after_the_initial_noise():
    rng = ImageRNG(SHAPE, [100], source="CPU", eta_noise_seed_delta=31337)
    assert torch.equal(rng.first()[0], torch_noise(100))
    assert torch.equal(rng.next()[0], torch_noise(100 + 31337))
    # The step generators handed to diffusers follow the reseeded stream too.
    other = ImageRNG(SHAPE, [100], source="CPU", eta_noise_seed_delta=31337)
    other.first()
    assert torch.equal(torch.randn(SHAPE, generator=other.generators[0]), torch_noise(100 + 31337))


def test_variation_strength_blends_towards_the_variation_seed():
    base = ImageRNG(SHAPE, [1], subseeds=[2], subseed_strength=0.0, source="CPU").first()[0]
    full = ImageRNG(SHAPE, [1], subseeds=[2], subseed_strength=1.0, source="CPU").first()[0]
    half = ImageRNG(SHAPE, [1], subseeds=[2], subseed_strength=0.5, source="CPU").first()[0]
    assert torch.equal(base, torch_noise(1))
    assert torch.allclose(full, torch_noise(2), atol=1e-5)
    assert torch.allclose(half, slerp(0.5, torch_noise(1), torch_noise(2)))
    assert not torch.allclose(half, base) and not torch.allclose(half, full)


def test_slerp_keeps_the_norm_of_unit_vectors_unlike_a_linear_blend():
    low, high = torch.tensor([[1.0, 0.0]]).T[None], torch.tensor([[0.0, 1.0]]).T[None]  # shape (1, 2, 1)
    mid = slerp(0.5, low, high)
    assert torch.allclose(mid.norm(dim=1), torch.ones(1, 1), atol=1e-6)


def test_resize_seed_from_pastes_the_old_size_noise_in_the_centre():
    rng = ImageRNG(SHAPE, [9], seed_resize_from_h=32, seed_resize_from_w=32, source="CPU")  # 32 px = 4 latents
    noise = rng.first()[0]
    assert torch.equal(noise[:, 2:6, 2:6], torch_noise(9, (4, 4, 4)))
    # Outside the pasted square: the image stream's own full-size draw.
    frame = torch_noise(9, SHAPE)
    assert torch.equal(noise[:, 0, :], frame[:, 0, :])


def test_resize_seed_from_a_larger_size_crops_the_centre():
    noise = ImageRNG(SHAPE, [9], seed_resize_from_h=128, seed_resize_from_w=128, source="CPU").first()[0]
    assert torch.equal(noise, torch_noise(9, (4, 16, 16))[:, 4:12, 4:12])


@pytest.mark.parametrize("counter, key, expected", [
    # Random123's known-answer vectors for Philox4x32-10.
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])
def test_philox_matches_random123_known_answers(counter, key, expected):
    out = philox4x32_10(np.array(counter, dtype=np.uint32).reshape(4, 1), key)
    assert tuple(int(x) for x in out[:, 0]) == expected


def test_nv_source_is_deterministic_normal_noise_and_advances_per_call():
    gen = PhiloxGenerator(1234)
    a = gen.randn((4, 64, 64))
    b = gen.randn((4, 64, 64))
    assert a.dtype == np.float32 and np.array_equal(a, PhiloxGenerator(1234).randn((4, 64, 64)))
    assert not np.array_equal(a, b)
    assert abs(float(a.mean())) < 0.05 and abs(float(a.std()) - 1.0) < 0.05
    nv = ImageRNG(SHAPE, [1234], source="NV").first()[0]
    assert torch.equal(nv, torch.from_numpy(PhiloxGenerator(1234).randn(SHAPE)))


def test_seeds_and_random_seed():
    assert seeds_for_batch(10, 3) == [10, 11, 12]
    assert seeds_for_batch(10, 3, subseed_strength=0.3) == [10, 10, 10]
    assert fix_seed(5) == 5 and fix_seed("7") == 7
    randoms = {fix_seed(-1) for _ in range(20)} | {fix_seed(None), fix_seed("")}
    assert all(0 <= s < 4294967294 for s in randoms) and len(randoms) > 1
    with pytest.raises(ValueError, match="seed must be"):
        fix_seed(2**64)
    with pytest.raises(ValueError, match="unknown RNG source"):
        ImageRNG(SHAPE, [1], source="TPU")
