"""Live previews (issue 21 item 2): A1111's ``show_progress_type`` methods on the real engine and tiny checkpoints.

Oracles: for Approx NN, the network's published forward written out here with ``F.conv2d`` on the file's tensors;
for TAESD, diffusers' ``AutoencoderTiny`` (the reference library) given the same weights under its own names;
for Full, the checkpoint's VAE decode of the same latents.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from modules.processing import live_preview as lp
from modules.processing.progress import JobProgress
from modules.processing.sampling import cheap_preview, decode_latents, to_pil
from tests.support.engine import default_settings, load_tiny, run_txt2img
from tests.support.tiny_checkpoints import write_tiny_checkpoint

APPROX_WIDTHS = (4, 8, 16, 32, 64, 32, 16, 8, 3)
APPROX_KERNELS = (7, 5, 3, 3, 3, 3, 3, 3)


def write_approx_nn(path: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """A VAE-approx ``model.pt`` in A1111's layout: conv1..conv8 weights and biases."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i, k in enumerate(APPROX_KERNELS):
        fan_in = APPROX_WIDTHS[i] * k * k
        state[f"conv{i + 1}.weight"] = torch.randn(APPROX_WIDTHS[i + 1], APPROX_WIDTHS[i], k, k, generator=g) \
            * (2.0 / fan_in) ** 0.5
        state[f"conv{i + 1}.bias"] = torch.randn(APPROX_WIDTHS[i + 1], generator=g) * 0.05
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def approx_nn_by_hand(state: dict[str, torch.Tensor], latents: torch.Tensor) -> torch.Tensor:
    x = torch.nn.functional.interpolate(latents, scale_factor=2.0, mode="nearest")
    x = F.pad(x, (11,) * 4)
    for i in range(8):
        x = F.leaky_relu(F.conv2d(x, state[f"conv{i + 1}.weight"], state[f"conv{i + 1}.bias"]), 0.1)
    return x


def write_taesd(path: Path, seed: int = 0) -> torch.nn.Module:
    """madebyollin's ``taesd_decoder.pth`` layout from a random diffusers AutoencoderTiny: its
    ``decoder.layers.N`` are the file's ``N+1`` (the file's index 0 is the clamp, which has no weights)."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    reference = AutoencoderTiny().eval()
    state = {}
    for key, tensor in reference.decoder.state_dict().items():
        index, rest = key.removeprefix("layers.").split(".", 1)
        state[f"{int(index) + 1}.{rest}"] = tensor.clone() * 3.0  # larger than init: a picture far from flat
    reference.decoder.load_state_dict({f"layers.{int(k.split('.', 1)[0]) - 1}.{k.split('.', 1)[1]}": v
                                       for k, v in state.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return reference


def test_approx_nn_matches_its_forward_written_out(tmp_path):
    state = write_approx_nn(tmp_path / "model.pt")
    net = lp.load_network(lp.APPROX_NN, tmp_path / "model.pt")
    latents = torch.randn(1, 4, 12, 10, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = net(latents)
    expected = approx_nn_by_hand(state, latents)
    assert ours.shape == (1, 3, 24, 20)  # twice the latent size
    assert torch.allclose(ours, expected, atol=1e-5)


def test_taesd_matches_diffusers_autoencoder_tiny(tmp_path):
    reference = write_taesd(tmp_path / "taesd_decoder.pth")
    net = lp.load_network(lp.TAESD, tmp_path / "taesd_decoder.pth")
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4)) * 2
    with torch.no_grad():
        ours = net(latents)
        theirs = (reference.decode(latents).sample + 1) / 2  # diffusers draws in [-1, 1]
    assert ours.shape == (1, 3, 64, 64)
    assert ours.std() > 0.05 and torch.allclose(ours, theirs, atol=1e-4)


def test_a_wrong_file_is_a_clear_error_naming_it(tmp_path):
    write_approx_nn(tmp_path / "taesd_decoder.pth")  # an Approx NN file under TAESD's name
    with pytest.raises(ValueError, match="taesd_decoder.pth is not a TAESD live preview network"):
        lp.load_network(lp.TAESD, tmp_path / "taesd_decoder.pth")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_tiny(write_tiny_checkpoint("sd1", tmp_path_factory.mktemp("lp"), "tiny"))


def _choose(model, method: str, approx_dir: Path | None, **kw) -> lp.Preview:
    return lp.choose(model, method, approx_dir, lambda lat: cheap_preview(lat, sdxl=False), **kw)


def test_each_method_draws_the_latents_as_its_network_does(tiny, tmp_path):
    approx = tmp_path / "VAE-approx"
    state = write_approx_nn(approx / "model.pt")
    reference = write_taesd(approx / "taesd_decoder.pth")
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5))

    nn_preview = _choose(tiny, "Approx NN", approx)
    assert nn_preview.method == "Approx NN" and not nn_preview.in_job_thread
    assert np.array_equal(np.asarray(nn_preview.decode(latents)), np.asarray(to_pil(approx_nn_by_hand(state,
                                                                                                      latents[:1])[0])))
    taesd = _choose(tiny, "TAESD", approx)
    with torch.no_grad():
        expected = to_pil(reference.decode(latents[:1]).sample[0])
    drawn = np.asarray(taesd.decode(latents)).astype(int)
    assert drawn.shape == (64, 64, 3) and np.abs(drawn - np.asarray(expected).astype(int)).max() <= 1
    full = _choose(tiny, "Full", approx)
    assert full.method == "Full" and full.in_job_thread  # the job's own VAE, in the job's thread
    assert np.array_equal(np.asarray(full.decode(latents)), np.asarray(to_pil(decode_latents(tiny, latents[:1])[0])))
    cheap = _choose(tiny, "Approx cheap", approx)
    assert np.array_equal(np.asarray(cheap.decode(latents)), np.asarray(cheap_preview(latents, sdxl=False)))


def test_a_missing_file_falls_back_and_says_which_file_to_put_where(tiny, tmp_path, caplog):
    approx = tmp_path / "empty" / "VAE-approx"
    with caplog.at_level(logging.WARNING, logger="modules.processing.live_preview"):
        chosen = _choose(tiny, "TAESD", approx)
    assert chosen.method == "Approx cheap"
    assert f"needs taesd_decoder.pth in {approx}" in caplog.text
    assert f"needs model.pt in {approx}" in caplog.text  # TAESD -> Approx NN -> Approx cheap


def test_full_under_medvram_is_approx_nn_unless_allowed(tiny, tmp_path):
    from modules.models import memory

    write_approx_nn(tmp_path / "model.pt")
    saved = tiny.extra.get("memory")
    tiny.extra["memory"] = memory.MemoryChoice(memory.MEDVRAM, "test")
    try:
        assert _choose(tiny, "Full", tmp_path).method == "Approx NN"
        assert _choose(tiny, "Full", tmp_path, allow_lowvram_full=True).method == "Full"
    finally:
        tiny.extra["memory"] = saved


def test_a_job_shows_previews_of_the_denoised_estimate_made_in_its_thread_for_full(tiny, tmp_path):
    import threading

    threads, images = set(), []
    preview = _choose(tiny, "Full", None)

    def recording(latents):
        threads.add(threading.get_ident())
        images.append(preview.decode(latents))
        return images[-1]

    progress = JobProgress(preview_every=1)
    progress.set_preview(recording, in_job_thread=True)
    result = run_txt2img(tiny, tmp_path, progress=progress, steps=3, sampler_name="Euler",
                         settings=default_settings(samples_save=False, grid_save=False), width=64, height=64)
    assert len(images) == 3 and progress.snapshot().preview_id == 3
    assert threads == {threading.get_ident()}  # the test runs the job in this thread
    assert progress.preview_image() is images[-1]
    # the last step's estimate is the finished image: its preview is the result
    assert np.abs(np.asarray(images[-1]).astype(int) - np.asarray(result.images[0]).astype(int)).max() <= 1


def test_a_preview_that_cannot_be_drawn_never_fails_the_job(tiny, tmp_path, caplog):
    """A VAE that fails on the step's latents (in the job's thread) or a network that fails when a page asks: the
    job finishes with the same image as without previews, the preview is None, and one warning says why."""
    calls = []

    def failing(latents):
        calls.append(latents.shape)
        raise RuntimeError("NaN in the VAE")

    settings = default_settings(samples_save=False, grid_save=False)
    plain = run_txt2img(tiny, tmp_path, steps=3, sampler_name="Euler", settings=settings, width=64, height=64)
    for in_job_thread in (True, False):
        caplog.clear()
        progress = JobProgress(preview_every=1)
        progress.set_preview(failing, in_job_thread=in_job_thread)
        with caplog.at_level(logging.WARNING, logger="modules.processing.progress"):
            result = run_txt2img(tiny, tmp_path, progress=progress, steps=3, sampler_name="Euler",
                                 settings=settings, width=64, height=64)
            assert progress.preview_image() is None and progress.preview_image() is None
        assert np.array_equal(np.asarray(result.images[0]), np.asarray(plain.images[0]))
        warnings = [r.getMessage() for r in caplog.records if "live preview skipped" in r.getMessage()]
        assert warnings == ["live preview skipped: RuntimeError: NaN in the VAE"]
    assert len(calls) == 3 + 2  # each step in the job's thread; each page's ask otherwise


def test_an_interrupt_inside_the_preview_decode_still_stops_the_job():
    from modules.processing.progress import Interrupted

    progress = JobProgress(preview_every=1)

    def interrupted(latents):
        raise Interrupted()

    progress.set_preview(interrupted, in_job_thread=True)
    with pytest.raises(Interrupted):
        progress.step(1, torch.zeros(1, 4, 8, 8))


def test_fast_interrupt_returns_the_preview_methods_picture_at_the_jobs_size(tiny, tmp_path):
    class StopAfterFirstStep(JobProgress):
        def step(self, step, latents=None):
            self.estimate = latents  # the first step's denoised estimate: what the interrupted job returns
            super().step(step, latents)
            self.interrupt()

    for fast in (False, True):
        progress = StopAfterFirstStep(preview_every=1)
        progress.set_preview(lambda latents: cheap_preview(latents, sdxl=False))
        settings = default_settings(samples_save=False, grid_save=False, live_preview_fast_interrupt=fast)
        result = run_txt2img(tiny, tmp_path, progress=progress, steps=4, sampler_name="Euler", settings=settings,
                             width=64, height=64)
        image = np.asarray(result.images[0]).astype(int)
        if fast:  # the cheap picture (8x8) brought to the job's size
            expected = cheap_preview(progress.estimate, sdxl=False).resize((64, 64), resample=3)  # PIL's BICUBIC
        else:  # the VAE's
            expected = to_pil(decode_latents(tiny, progress.estimate[:1])[0])
        assert image.shape == (64, 64, 3)
        assert np.abs(image - np.asarray(expected).astype(int)).max() <= 1
