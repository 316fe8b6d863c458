"""Flux.1 Kontext through Forge's "Forge FluxKontext" contract: reference images sized as the extension sizes them,
read beside the latents. The oracle is diffusers' FluxKontextPipeline on the same modules; the sizes and the
placement of two references are checked against values worked out by hand from BFL's resolution list."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modules.errors import FieldError
from modules.models import configs, loader
from modules.processing.families import flux_kontext
from modules.processing.families.flux import pack
from modules.processing.rng import ImageRNG
from tests.support import tiny_flux
from tests.support.engine import run_txt2img
from tests.support.tiny_checkpoints import write_tiny_checkpoint


@pytest.fixture(scope="module")
def dev():
    return tiny_flux.build(seed=0, guidance=True)


@pytest.fixture(scope="module")
def dev_model(dev, tmp_path_factory):
    files = tiny_flux.write_split(tmp_path_factory.mktemp("kontext") / "models", dev,
                                 name="flux1-kontext-dev-tiny.safetensors")
    return loader.load_checkpoint(files["transformer"], parts=[files["clip_l"], files["t5"], files["vae"]])


def _picture(seed: int = 0, size: tuple[int, int] = (64, 64)) -> Image.Image:
    rng = np.random.RandomState(seed)
    base = np.linspace(0, 255, size[0], dtype=np.float32)[None, :, None] * np.ones((size[1], 1, 3), np.float32)
    return Image.fromarray((base * 0.7 + rng.randint(0, 60, (size[1], size[0], 3))).clip(0, 255).astype(np.uint8))


def test_reference_sizes_follow_the_extensions_choices():
    # 1000x600 is 1.667 wide: BFL's 1328x800 (1.66) is the nearest of the list, 1248x832 (1.5) the next
    assert flux_kontext.reference_size((1000, 600), "to BFL recommended", (64, 64), False) == (1328, 800)
    assert flux_kontext.reference_size((1000, 600), "to BFL recommended", (64, 64), True) == (656, 400)  # 664 -> 656
    assert flux_kontext.reference_size((100, 75), "no change", (64, 64), False) == (96, 64)  # multiples of 16
    assert flux_kontext.reference_size((100, 75), "to output", (512, 768), False) == (512, 768)
    assert flux_kontext.reference_size((600, 1000), "to BFL recommended", (64, 64), False) == (800, 1328)


def test_a_second_reference_goes_where_the_grid_stays_squarer():
    assert flux_kontext.positions([(4, 4), (4, 4)]) == [(0, 0), (4, 0)]  # square: the second below
    assert flux_kontext.positions([(2, 6), (4, 4)]) == [(0, 0), (2, 0)]  # wide: below
    assert flux_kontext.positions([(6, 2), (4, 4)]) == [(0, 0), (0, 2)]  # tall: to the right

    request = flux_kontext.KontextRequest([_picture(1, (64, 32)), _picture(2, (32, 32))], "no change")
    tokens, ids = flux_kontext.reference_tokens(request, (64, 64), lambda x: torch.zeros(1, 16, x.shape[2] // 8,
                                                                                          x.shape[3] // 8), key=0)
    # the first is 2 rows x 4 columns of tokens, the second 2 x 2 placed below it
    assert tokens.shape == (1, 8 + 4, 64)
    assert ids[:, 0].eq(1).all()
    assert ids[:8, 1:].tolist() == [[r, c] for r in range(2) for c in range(4)]
    assert ids[8:, 1:].tolist() == [[r, c] for r in range(2, 4) for c in range(2)]


def _kontext_pipeline(dev):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxKontextPipeline

    return FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                  max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096),
        vae=dev.vae, text_encoder=dev.clip, tokenizer=configs.load_tokenizer(), text_encoder_2=dev.t5,
        tokenizer_2=configs.load_t5_tokenizer(), transformer=dev.transformer)


def _theirs(dev, reference, prompt: str, seed: int, steps: int, guidance: float, **kwargs) -> np.ndarray:
    noise = ImageRNG((16, 8, 8), [seed], subseeds=[0]).first()
    out = _kontext_pipeline(dev)(image=reference, prompt=prompt, height=64, width=64, max_area=64 * 64,
                                 _auto_resize=False, num_inference_steps=steps, guidance_scale=guidance,
                                 latents=pack(noise), output_type="np", **kwargs).images[0]
    return np.floor(out * 255.0)


def test_kontext_matches_diffusers_flux_kontext_pipeline(dev, dev_model, tmp_path):
    reference = _picture(3)
    request = flux_kontext.KontextRequest([reference], "to output")
    common = dict(prompt="make it a watercolour", width=64, height=64, steps=4, seed=77, cfg_scale=1.0,
                  sampler_name="Euler", distilled_cfg_scale=2.5)
    ours = np.asarray(run_txt2img(dev_model, tmp_path, kontext=request, **common).images[0]).astype(float)
    plain = np.asarray(run_txt2img(dev_model, tmp_path, **common).images[0]).astype(float)
    theirs = _theirs(dev, reference, "make it a watercolour", 77, 4, 2.5)
    assert ours.std() > 10
    assert np.abs(ours - theirs).max() <= 1.0
    assert np.abs(ours - plain).max() > 8  # the reference is read


def test_kontext_with_real_cfg_and_in_a_batch_matches_diffusers(dev, dev_model, tmp_path):
    """The negative prompt's pass reads the reference too (diffusers' true_cfg_scale), every image of a batch."""
    reference = _picture(4)
    request = flux_kontext.KontextRequest([reference], "to output")
    batch = run_txt2img(dev_model, tmp_path, kontext=request, batch_size=2, prompt="a cat", negative_prompt="blurry",
                        steps=2, seed=9, cfg_scale=2.0, sampler_name="Euler")
    for index, seed in ((1, 9), (2, 10)):  # image 0 is the grid
        theirs = _theirs(dev, reference, "a cat", seed, 2, 3.5, negative_prompt="blurry", true_cfg_scale=2.0)
        assert np.abs(np.asarray(batch.images[index]).astype(float) - theirs).max() <= 1.0, seed


def test_kontext_on_an_sd_checkpoint_is_an_error_naming_the_field(tmp_path):
    sd = loader.load_checkpoint(write_tiny_checkpoint("sd1", tmp_path, "tiny-sd1"))
    request = flux_kontext.KontextRequest([_picture(5)], where="alwayson_scripts.Forge FluxKontext.args")
    with pytest.raises(FieldError) as err:
        run_txt2img(sd, tmp_path, kontext=request, steps=1)
    assert err.value.field == "alwayson_scripts.Forge FluxKontext.args.0" and "Flux" in str(err.value)


def test_script_arguments_as_the_extension_takes_them():
    decoded = []

    def decode(data, field):
        decoded.append(field)
        return _picture(6)

    assert flux_kontext.parse_args([False, "abc", None, "no change", False], "w", decode) is None
    assert flux_kontext.parse_args([True, None, None], "w", decode) is None  # no image: plain generation
    request = flux_kontext.parse_args([True, None, "abc"], "w", decode)  # defaults for the rest
    assert decoded == ["w.2"] and len(request.images) == 1
    assert (request.sizing, request.reduce) == ("to BFL recommended", False)
    with pytest.raises(FieldError) as err:
        flux_kontext.parse_args([True, "abc", None, "to the moon", False], "w", decode)
    assert err.value.field == "w.3"
