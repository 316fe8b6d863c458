"""Memory modes (--medvram, --lowvram, the automatic choice) and the opt-in UNet speed-ups (--opt-channelslast,
--compile), on tiny checkpoints loaded through the real loader.

On this CPU-only machine execution and storage are the same device, so these tests check what can be checked here:
the hooks are installed and take turns in the right order, every job path (txt2img, img2img's VAE encode, hires,
LoRA, the NaN upcast) still works through them, and images are identical to the plain mode's. Moving weights between
CPU and GPU is checked in tests/test_gpu.py (``-m gpu``) and measured by tests/benchmarks/gpu_speed.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from modules.cmd_args import parse_args
from modules.models import acceleration, lora, memory
from modules.models.devices import DevicePolicy
from modules.models.loader import load_checkpoint
from modules.models.manager import ModelManager
from modules.models.memory import GIB, LOWVRAM, MEDVRAM, NONE, choose_mode, requested_mode
from modules.processing.img2img import img2img
from modules.processing.params import Img2ImgParams
from tests.support.engine import run_txt2img
from tests.support.tiny_checkpoints import write_tiny_checkpoint
from tests.support.tiny_lora import kohya_lora, write_lora
from tests.test_img2img import context, picture


def policy(**changes) -> DevicePolicy:
    return dataclasses.replace(DevicePolicy.cpu(), **changes)


@pytest.fixture(scope="module")
def sd1_file(tmp_path_factory) -> Path:
    return write_tiny_checkpoint("sd1", tmp_path_factory.mktemp("ckpt"), "tiny-sd1")


@pytest.fixture(scope="module")
def plain(sd1_file):
    return load_checkpoint(sd1_file, DevicePolicy.cpu())


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0], dtype=np.int16)


# --- The choice --------------------------------------------------------------------------------------------------


def test_flags_become_one_request() -> None:
    assert requested_mode() == "auto"
    assert requested_mode(medvram=True) == MEDVRAM
    assert requested_mode(medvram_sdxl=True) == "medvram-sdxl"
    assert requested_mode(medvram=True, lowvram=True) == LOWVRAM
    assert requested_mode(medvram=True, medvram_sdxl=True) == MEDVRAM


SD15 = dict(weight_bytes=int(2.0 * GIB), largest_bytes=int(1.6 * GIB))  # fp16 SD1.5: UNet 1.6 of 2.0 GiB


@pytest.mark.parametrize(("requested", "free_gib", "family", "expected"), [
    ("auto", 24.0, "sd1", NONE),        # a 24 GB card holds everything
    ("auto", 4.0, "sd1", NONE),         # 2.0 weights + 1.5 working fit in 4
    ("auto", 3.2, "sd1", MEDVRAM),      # all weights do not fit, the UNet alone does
    ("auto", 2.0, "sd1", LOWVRAM),      # not even the UNet with its working memory
    ("auto", None, "sd1", NONE),        # unknown: do not slow down
    ("medvram", 80.0, "sd1", MEDVRAM),  # a flag is obeyed
    ("lowvram", 80.0, "sd1", LOWVRAM),
    ("medvram-sdxl", 80.0, "sdxl", MEDVRAM),
    ("medvram-sdxl", 80.0, "sd1", NONE),   # others are chosen automatically
    ("medvram-sdxl", 3.2, "sd1", MEDVRAM),
])
def test_choice_on_cuda(requested, free_gib, family, expected) -> None:
    free = None if free_gib is None else int(free_gib * GIB)
    choice = choose_mode(requested, device_type="cuda", family=family, free_bytes=free, **SD15)
    assert choice.mode == expected
    assert choice.reason


def test_choice_off_cuda_and_bad_requests() -> None:
    for device in ("cpu", "mps"):
        assert choose_mode("auto", device_type=device, family="sd1", free_bytes=None, **SD15).mode == NONE
        assert choose_mode("medvram", device_type=device, family="sd1", free_bytes=None, **SD15).mode == MEDVRAM
    with pytest.raises(ValueError, match="unknown memory mode"):
        choose_mode("highvram", device_type="cuda", family="sd1", free_bytes=None, **SD15)


def test_flags_reach_the_device_policy(tmp_path) -> None:
    from modules.runtime import build_runtime

    args = parse_args(["--data-dir", str(tmp_path), "--lowvram", "--opt-channelslast", "--compile"], {}, warn=False)
    policy = build_runtime(args).manager.device_policy
    assert (policy.memory_mode, policy.channels_last, policy.compile_mode) == (LOWVRAM, True, "blocks")
    args = parse_args(["--data-dir", str(tmp_path), "--medvram-sdxl", "--compile", "graphs"], {}, warn=False)
    policy = build_runtime(args).manager.device_policy
    assert (policy.memory_mode, policy.channels_last, policy.compile_mode) == ("medvram-sdxl", False, "graphs")


def test_resident_bytes_count_what_a_release_gives_back(plain) -> None:
    expected = sum(t.numel() * t.element_size() for m in (plain.unet, plain.vae, plain.text_encoder)
                   for t in (*m.parameters(), *m.buffers()))
    assert memory.resident_bytes(plain) == expected > 0
    offloaded = dataclasses.replace(plain, device=torch.device("meta"))  # nothing of it on that device
    assert memory.resident_bytes(offloaded) == 0


# --- medvram -----------------------------------------------------------------------------------------------------


class TurnRecorder:
    """Which component the swapper had active while each component's forward (or VAE child) ran."""

    def __init__(self, model) -> None:
        self.turns: list[tuple[str, str | None]] = []
        swapper = model.extra["memory"].swapper
        names = {id(model.text_encoder): "text_encoder", id(model.unet): "unet", id(model.vae): "vae"}
        self._handles = []
        for name, module in (("text_encoder", model.text_encoder), ("unet", model.unet),
                             ("vae.decoder", model.vae.decoder), ("vae.encoder", model.vae.encoder)):
            def record(_m, _a, _o, name=name) -> None:
                self.turns.append((name, names.get(id(swapper.active))))
            self._handles.append(module.register_forward_hook(record))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def test_medvram_takes_turns_and_matches_the_plain_mode(sd1_file, plain, tmp_path) -> None:
    model = load_checkpoint(sd1_file, policy(memory_mode=MEDVRAM))
    plan = model.extra["memory"]
    assert plan.mode == MEDVRAM and plan.reason == "--medvram"
    assert plan.swapper.components == [model.text_encoder, model.unet, model.vae]
    recorder = TurnRecorder(model)
    try:
        ours = run_txt2img(model, tmp_path, seed=9, steps=3, sampler_name="Euler")
    finally:
        recorder.remove()
    # Every forward ran with its own component active, in job order, and the UNet's steps moved nothing.
    assert recorder.turns == [("text_encoder", "text_encoder")] * 2 + [("unet", "unet")] * 3 + \
        [("vae.decoder", "vae")]
    assert plan.swapper.moves == 3
    assert np.array_equal(pixels(ours), pixels(run_txt2img(plain, tmp_path, seed=9, steps=3, sampler_name="Euler")))


def test_medvram_img2img_encodes_through_the_vae_children(sd1_file, plain, tmp_path) -> None:
    model = load_checkpoint(sd1_file, policy(memory_mode=MEDVRAM))
    recorder = TurnRecorder(model)

    def run(m):
        params = Img2ImgParams(prompt="a cat", width=64, height=64, steps=4, seed=5, sampler_name="Euler",
                               init_images=[picture(64, 64)], denoising_strength=0.6)
        return img2img(params, context(m, tmp_path))

    try:
        ours = run(model)
    finally:
        recorder.remove()
    assert ("vae.encoder", "vae") in recorder.turns and ("vae.decoder", "vae") in recorder.turns
    assert all(name.split(".")[0] == active for name, active in recorder.turns)
    assert np.array_equal(pixels(ours), pixels(run(plain)))


def test_medvram_hires_fix_and_lora(sd1_file, plain, tmp_path) -> None:
    model = load_checkpoint(sd1_file, policy(memory_mode=MEDVRAM))
    hires = dict(seed=3, steps=3, enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", hr_second_pass_steps=2,
                 denoising_strength=0.5)
    assert np.array_equal(pixels(run_txt2img(model, tmp_path, **hires)), pixels(run_txt2img(plain, tmp_path, **hires)))

    lora_dir = tmp_path / "Lora"
    layer = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    shape = tuple(model.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight.shape)
    write_lora(lora_dir, "one", kohya_lora({layer: shape}))
    registry = lora.LoraRegistry([lora_dir])
    weight = model.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight
    before = weight.detach().clone()
    with lora.applied_loras(model, ["one"], registry=registry):
        patched = run_txt2img(model, tmp_path, seed=3, steps=3)
        assert not torch.equal(weight, before)
    assert torch.equal(weight, before)  # restored into the same parameter the swapper moves
    with lora.applied_loras(plain, ["one"], registry=registry):
        assert np.array_equal(pixels(patched), pixels(run_txt2img(plain, tmp_path, seed=3, steps=3)))


def test_a_kept_checkpoint_gives_back_its_gpu_turn(tmp_path) -> None:
    from modules.hashing import HashCache
    from modules.models.registry import CheckpointRegistry

    folder = tmp_path / "Stable-diffusion"
    write_tiny_checkpoint("sd1", folder, "a")
    write_tiny_checkpoint("sd1", folder, "b", seed=1)
    registry = CheckpointRegistry([folder], HashCache(None))
    registry.refresh()
    manager = ModelManager(registry, policy(memory_mode=MEDVRAM), hashing=False, keep_loaded=lambda: 2)
    first, _ = manager.ensure("a")
    run_txt2img(first, tmp_path, steps=2)
    assert first.extra["memory"].swapper.active is first.vae  # the last one used stays until needed elsewhere
    manager.ensure("b")
    assert manager.kept_titles() and first.extra["memory"].swapper.active is None


def test_two_medvram_models_share_one_turn(sd1_file, tmp_path) -> None:
    # A refiner or hires checkpoint next to the main one: their parts take turns with the main model's, so two
    # UNets never sit on one GPU together.
    main = load_checkpoint(sd1_file, policy(memory_mode=MEDVRAM))
    second = load_checkpoint(write_tiny_checkpoint("sd1", tmp_path, "second", seed=4), policy(memory_mode=MEDVRAM))
    run_txt2img(main, tmp_path, steps=2)
    assert main.extra["memory"].swapper.active is main.vae
    seen = []
    hook = second.unet.register_forward_hook(lambda *_: seen.append(main.extra["memory"].swapper.active))
    run_txt2img(second, tmp_path, steps=2)
    hook.remove()
    assert seen == [None, None] and second.extra["memory"].swapper.active is second.vae


# --- lowvram -----------------------------------------------------------------------------------------------------


def test_lowvram_offloads_leaves_and_matches_the_plain_mode(sd1_file, plain, tmp_path) -> None:
    from diffusers.hooks import HookRegistry

    model = load_checkpoint(sd1_file, policy(memory_mode=LOWVRAM))
    plan = model.extra["memory"]
    assert plan.mode == LOWVRAM and plan.swapper.components == [model.vae]

    def offloaded(module) -> bool:
        registry = getattr(module, "_diffusers_hook", None)
        return isinstance(registry, HookRegistry) and any("group_offloading" in name for name in registry.hooks)

    to_q = model.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q
    fc1 = next(m for name, m in model.text_encoder.named_modules() if name.endswith("layers.0.mlp.fc1"))
    assert offloaded(to_q) and offloaded(fc1) and not offloaded(model.vae.decoder)
    ours = run_txt2img(model, tmp_path, seed=4, steps=3, sampler_name="DPM++ 2M")
    theirs = run_txt2img(plain, tmp_path, seed=4, steps=3, sampler_name="DPM++ 2M")
    assert np.array_equal(pixels(ours), pixels(theirs))


def test_sd2_probe_runs_through_the_hooks(sd1_file) -> None:
    # The loader's v-prediction probe runs the UNet after the hooks are in place: the UNet takes its turn.
    from modules.models.detect import guess_sd2_v_prediction

    model = load_checkpoint(sd1_file, policy(memory_mode=MEDVRAM))
    model.extra["memory"].park()
    assert guess_sd2_v_prediction(model.unet) in (True, False)
    assert model.extra["memory"].swapper.active is model.unet


# --- channels-last and compile -----------------------------------------------------------------------------------


def test_channels_last_unet_matches(sd1_file, plain, tmp_path) -> None:
    model = load_checkpoint(sd1_file, policy(channels_last=True))
    assert model.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    ours = pixels(run_txt2img(model, tmp_path, seed=2, steps=3))
    assert np.abs(ours - pixels(run_txt2img(plain, tmp_path, seed=2, steps=3))).max() <= 1


@pytest.mark.parametrize("mode", acceleration.COMPILE_MODES)
def test_compiled_unet_is_used_and_matches(sd1_file, plain, tmp_path, mode, caplog) -> None:
    # aot_eager: dynamo traces the same graphs as inductor, without a C++ build (seconds, not minutes).
    import torch._dynamo

    torch._dynamo.reset()
    model = load_checkpoint(sd1_file, DevicePolicy.cpu())
    wrapped = acceleration.compile_unet(model.unet, mode, backend="aot_eager")
    blocks = sum(type(m).__name__ in acceleration.REPEATED_BLOCKS for m in model.unet.modules())
    assert wrapped == (blocks if mode == "blocks" else 1) and blocks > 4
    torch._dynamo.utils.counters.clear()
    with caplog.at_level("INFO", logger="modules.models.acceleration"):
        ours = run_txt2img(model, tmp_path, seed=6, steps=3, sampler_name="Euler")
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # the compiled code ran
    assert any("first UNet call took" in r.getMessage() for r in caplog.records)
    theirs = run_txt2img(plain, tmp_path, seed=6, steps=3, sampler_name="Euler")
    assert np.abs(pixels(ours) - pixels(theirs)).max() <= 1
    with pytest.raises(ValueError, match="unknown compile mode"):
        acceleration.compile_unet(model.unet, "fast")


def test_loader_applies_compile_from_the_policy(sd1_file, monkeypatch) -> None:
    seen = []
    monkeypatch.setattr(acceleration, "compile_unet", lambda unet, mode: seen.append((type(unet).__name__, mode)) or 7)
    model = load_checkpoint(sd1_file, policy(compile_mode="graphs"))
    assert seen == [("UNet2DConditionModel", "graphs")] and model.extra["compiled_modules"] == 7
    assert memory.MemoryPlan is type(model.extra["memory"]) and model.extra["memory"].mode == NONE


# --- The real app ------------------------------------------------------------------------------------------------


def test_the_app_generates_with_medvram_and_a_switch_reuses_the_modules(tmp_path) -> None:
    from tests.support.api_client import api_client

    folder = tmp_path / "models" / "Stable-diffusion"
    write_tiny_checkpoint("sd1", folder, "alpha", seed=1)
    write_tiny_checkpoint("sd1", folder, "beta", seed=2)
    request = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 1}
    with api_client(tmp_path, ["--medvram"]) as client:
        runtime = client.app.state.runtime
        first = client.post("/sdapi/v1/txt2img", json=request)
        assert first.status_code == 200, first.text
        model = runtime.manager.model
        assert model.extra["memory"].mode == MEDVRAM and model.path.stem == "alpha"
        answer = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "beta"})
        assert answer.status_code == 200, answer.text
        second = client.post("/sdapi/v1/txt2img", json=request)
        assert second.status_code == 200, second.text
        assert "Model: beta" in second.json()["info"]
        current = runtime.manager.model
        assert current.path.stem == "beta" and current.unet is model.unet and current.extra["reused_modules"]
        assert current.extra["memory"].swapper is model.extra["memory"].swapper
        assert first.json()["images"][0] != second.json()["images"][0]
