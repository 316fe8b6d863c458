"""VAE tiling (issue 10, memory modes): large images are decoded and encoded in tiles (setting ``vae_tiling``:
Automatic above 4 MP, Always, Never); the tiled result is close to the untiled one and the VAE is left as it was."""

from __future__ import annotations

import pytest
import torch

from modules.processing import sampling
from tests.support.engine import default_settings, load_tiny, run_txt2img
from tests.support.tiny_checkpoints import write_tiny_checkpoint


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_tiny(write_tiny_checkpoint("sd1", tmp_path_factory.mktemp("tiling"), "tiny"))


def _counting(model, monkeypatch):
    calls = []
    original = model.vae.tiled_decode

    def tiled_decode(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(model.vae, "tiled_decode", tiled_decode)
    return calls


def test_modes():
    assert sampling.tiling_wanted("Always", 64, 64) and not sampling.tiling_wanted("Never", 8192, 8192)
    assert not sampling.tiling_wanted("Automatic", 1024, 1024)
    assert sampling.tiling_wanted("Automatic", 4096, 2048)


def test_tiled_decode_is_close_to_the_whole_decode(model, monkeypatch):
    calls = _counting(model, monkeypatch)
    torch.manual_seed(0)
    latents = torch.randn(1, 4, 96, 96)  # 768 px: more than one 512 px tile
    whole = sampling.decode_latents(model, latents, tiling="Never")[0]
    assert calls == [] and model.vae.use_tiling is False
    tiled = sampling.decode_latents(model, latents, tiling="Always")[0]
    assert len(calls) == 1 and model.vae.use_tiling is False  # used, then switched off again
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().mean() < 0.05  # the same picture; only the blended seams differ


def test_the_setting_reaches_generation(model, tmp_path, monkeypatch):
    calls = _counting(model, monkeypatch)
    run_txt2img(model, tmp_path, settings=default_settings(vae_tiling="Always", samples_save=False),
                width=768, height=640, steps=1)
    assert len(calls) == 1
    run_txt2img(model, tmp_path, settings=default_settings(samples_save=False), width=768, height=640, steps=1)
    assert len(calls) == 1  # Automatic: an image under 4 MP is decoded whole
