"""Flux.1 through the model-family interface: tiny files in the layouts users download (BFL transformer alone with
clip_l / t5xxl / ae beside it, ComfyUI's all-in-one), loaded by the real loader and sampled by our engine, checked
against diffusers' own FluxPipeline run on the same modules (the reference implementation), and the flow samplers
against their formulas written out."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from modules.errors import FieldError
from modules.models import configs, loader
from modules.models.types import MissingPartError, UnknownModelError
from modules.processing.families.flux import FluxPromptEncoder, pack
from modules.processing.flow_sampling import FlowMatchSampler, levels
from modules.processing.rng import ImageRNG
from tests.support import tiny_flux
from tests.support.engine import run_txt2img
from tests.support.tiny_checkpoints import write_tiny_checkpoint


@pytest.fixture(scope="module")
def dev():
    return tiny_flux.build(seed=0, guidance=True)


@pytest.fixture(scope="module")
def dev_files(dev, tmp_path_factory):
    return tiny_flux.write_split(tmp_path_factory.mktemp("flux") / "models", dev)


@pytest.fixture(scope="module")
def dev_model(dev_files):
    return loader.load_checkpoint(dev_files["transformer"],
                                  parts=[dev_files["clip_l"], dev_files["t5"], dev_files["vae"]])


def _same_tensors(module, loaded) -> bool:
    expected, got = module.state_dict(), loaded.state_dict()
    return expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


def test_split_files_load_into_the_exact_modules(dev, dev_model):
    assert dev_model.kind.family == "flux" and dev_model.kind.prediction == "flow"
    assert dev_model.extra["guidance_embeds"] is True
    assert dev_model.extra["transformer_config"]["num_layers"] == 1
    assert dev_model.extra["transformer_config"]["num_single_layers"] == 2
    for module, loaded in ((dev.transformer, dev_model.unet), (dev.clip, dev_model.text_encoder),
                           (dev.t5, dev_model.text_encoder_2), (dev.vae, dev_model.vae)):
        assert _same_tensors(module, loaded)


def test_all_in_one_checkpoint_needs_no_parts(dev, tmp_path):
    model = loader.load_checkpoint(tiny_flux.write_all_in_one(tmp_path / "flux1-dev-aio.safetensors", dev))
    assert set(model.extra["parts"]) == {"t5", "clip_l", "vae"}
    result = run_txt2img(model, tmp_path, prompt="x", steps=1, seed=1, cfg_scale=1.0, sampler_name="Euler")
    assert "Module 1" not in result.infotexts[0]  # nothing came from another file
    assert _same_tensors(dev.transformer, model.unet) and _same_tensors(dev.t5, model.text_encoder_2)


def test_diffusers_layout_single_file_loads(dev, dev_files, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "flux1-dev-diffusers.safetensors"
    save_file({k: v.contiguous() for k, v in dev.transformer.state_dict().items()}, str(path))
    model = loader.load_checkpoint(path, parts=[dev_files["clip_l"], dev_files["t5"], dev_files["vae"]])
    assert _same_tensors(dev.transformer, model.unet)
    assert model.extra["transformer_config"] == loader.load_checkpoint(
        dev_files["transformer"], parts=[dev_files["clip_l"], dev_files["t5"], dev_files["vae"]]
    ).extra["transformer_config"]


def test_bf16_files_load(dev, tmp_path):
    files = tiny_flux.write_split(tmp_path / "models", dev, dtype=torch.bfloat16)
    model = loader.load_checkpoint(files["transformer"], parts=[files["t5"], files["clip_l"], files["vae"]])
    assert next(model.unet.parameters()).dtype == torch.float32  # computed in fp32 on the CPU
    assert torch.equal(model.unet.x_embedder.weight, dev.transformer.x_embedder.weight.to(torch.bfloat16).float())


def test_missing_pieces_are_named_with_where_to_put_them(dev_files):
    with pytest.raises(MissingPartError) as err:
        loader.load_checkpoint(dev_files["transformer"], parts=[dev_files["clip_l"]])
    message = str(err.value)
    assert "no T5 text encoder and no VAE" in message
    assert "t5xxl_fp16.safetensors" in message and "models/text_encoder" in message
    assert "ae.safetensors in models/VAE" in message and "forge_additional_modules" in message


def test_an_sd_vae_chosen_for_flux_is_refused(dev_files, tmp_path):
    sd_file = write_tiny_checkpoint("sd1", tmp_path, "sd15")
    from modules.models import formats
    from safetensors.torch import save_file

    vae_sd = {k.removeprefix("first_stage_model."): v for k, v in formats.load_state_dict(sd_file).items()
              if k.startswith("first_stage_model.")}
    save_file(vae_sd, str(tmp_path / "sd-vae.safetensors"))
    with pytest.raises(UnknownModelError, match="4 latent channels does not fit Flux"):
        loader.load_checkpoint(dev_files["transformer"],
                               parts=[dev_files["clip_l"], dev_files["t5"], tmp_path / "sd-vae.safetensors"])


def test_a_text_encoder_of_another_width_is_refused_at_load(dev_files, tmp_path):
    other = tiny_flux.build(seed=1)
    from transformers import CLIPTextConfig, CLIPTextModel

    wide = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=64, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=1, max_position_embeddings=77))
    files = tiny_flux.write_split(tmp_path / "models", tiny_flux.TinyFlux(other.transformer, wide, other.t5, other.vae))
    with pytest.raises(UnknownModelError, match="CLIP-L text encoder is 64 wide but .* reads 32"):
        loader.load_checkpoint(dev_files["transformer"], parts=[files["clip_l"], dev_files["t5"], dev_files["vae"]])


def _reference(tiny, prompt: str, seed: int, steps: int, guidance: float, shift_config: dict, **kwargs):
    """diffusers' FluxPipeline on the same modules, with the noise our RNG draws for the seed."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    scheduler = FlowMatchEulerDiscreteScheduler(**shift_config)
    pipe = FluxPipeline(scheduler=scheduler, vae=tiny.vae, text_encoder=tiny.clip,
                        tokenizer=configs.load_tokenizer(), text_encoder_2=tiny.t5,
                        tokenizer_2=configs.load_t5_tokenizer(), transformer=tiny.transformer)
    noise = ImageRNG((16, 8, 8), [seed], subseeds=[0]).first()
    out = pipe(prompt, height=64, width=64, num_inference_steps=steps, guidance_scale=guidance,
               latents=pack(noise), output_type="np", **kwargs).images[0]
    return np.floor(out * 255.0)  # we store 8 bits by truncation, as A1111


DEV_SHIFT = dict(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                 max_image_seq_len=4096)


def test_txt2img_matches_diffusers_flux_pipeline(dev, dev_model, tmp_path):
    result = run_txt2img(dev_model, tmp_path, prompt="a photo of a cat", width=64, height=64, steps=4, seed=1234,
                         cfg_scale=1.0, sampler_name="Euler", distilled_cfg_scale=3.5)
    ours = np.asarray(result.images[0]).astype(float)
    reference = _reference(dev, "a photo of a cat", 1234, 4, 3.5, DEV_SHIFT)
    assert ours.std() > 10  # a picture, not a flat field
    assert np.abs(ours - reference).max() <= 1.0
    text = result.infotexts[0]
    assert "Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 1234" in text
    # Forge's names of the pieces taken from other files, pasted back as forge_additional_modules
    assert "Module 1: ae, Module 2: clip_l, Module 3: t5xxl_fp16, Version: v0.1.0" in text
    other = run_txt2img(dev_model, tmp_path, prompt="a photo of a cat", width=64, height=64, steps=4, seed=1234,
                        cfg_scale=1.0, sampler_name="Euler", distilled_cfg_scale=1.0)
    assert np.abs(np.asarray(other.images[0]).astype(float) - ours).max() > 0  # the guidance embedding is read


def test_real_cfg_with_a_negative_prompt_matches_diffusers(dev, dev_model, tmp_path):
    result = run_txt2img(dev_model, tmp_path, prompt="a red car", negative_prompt="blurry", width=64, height=64,
                         steps=3, seed=7, cfg_scale=2.5, sampler_name="Euler", distilled_cfg_scale=3.5)
    reference = _reference(dev, "a red car", 7, 3, 3.5, DEV_SHIFT, negative_prompt="blurry", true_cfg_scale=2.5)
    assert np.abs(np.asarray(result.images[0]).astype(float) - reference).max() <= 1.0


def test_schnell_has_no_guidance_input_and_no_shift(tmp_path):
    schnell = tiny_flux.build(seed=3, guidance=False)
    files = tiny_flux.write_split(tmp_path / "models", schnell, name="flux1-schnell-tiny.safetensors")
    model = loader.load_checkpoint(files["transformer"], parts=[files["clip_l"], files["t5"], files["vae"]])
    assert model.extra["guidance_embeds"] is False
    result = run_txt2img(model, tmp_path, prompt="a lighthouse", width=64, height=64, steps=4, seed=99,
                         cfg_scale=1.0, sampler_name="Euler")
    reference = _reference(schnell, "a lighthouse", 99, 4, 0.0, dict(shift=1.0, use_dynamic_shifting=False))
    assert np.abs(np.asarray(result.images[0]).astype(float) - reference).max() <= 1.0
    assert "Distilled CFG Scale" not in result.infotexts[0]  # schnell has no such input


def test_same_seed_same_pixels_and_batches_agree(dev_model, tmp_path):
    one = run_txt2img(dev_model, tmp_path, prompt="a fox", steps=3, seed=5, cfg_scale=1.0)
    again = run_txt2img(dev_model, tmp_path, prompt="a fox", steps=3, seed=5, cfg_scale=1.0)
    batch = run_txt2img(dev_model, tmp_path, prompt="a fox", steps=3, seed=5, cfg_scale=1.0, batch_size=2)
    first = np.asarray(one.images[0])
    assert np.array_equal(first, np.asarray(again.images[0]))
    assert np.abs(np.asarray(batch.images[1]).astype(int) - first).max() <= 1  # image 1 of the batch: seed 5
    assert batch.all_seeds == [5, 6]


def test_flux_refuses_samplers_and_sizes_it_cannot_do(dev_model, tmp_path):
    with pytest.raises(FieldError) as err:
        run_txt2img(dev_model, tmp_path, prompt="x", sampler_name="DDIM")
    assert err.value.field == "sampler_name" and "Euler, Euler a, DPM++ 2M" in str(err.value)
    with pytest.raises(FieldError) as err:
        run_txt2img(dev_model, tmp_path, prompt="x", sampler_name="Euler", width=72)
    assert err.value.field == "width" and "multiple of 16" in str(err.value)


def test_emphasis_scales_t5_tokens_and_break_is_dropped(dev_model):
    encoder = FluxPromptEncoder(dev_model)
    plain = encoder.encode(["a cat on a mat"])
    weighted = encoder.encode(["a (cat:1.5) on a mat"])
    broken = encoder.encode(["a cat on a mat BREAK"])
    assert plain.context.shape == (1, 512, tiny_flux.T5_WIDTH)
    assert not torch.equal(plain.context, weighted.context)
    assert torch.equal(plain.pooled, weighted.pooled)  # CLIP's pooled vector reads the text without markup
    assert torch.equal(plain.context, broken.context)
    # the reference: T5 of the plain text, diffusers-style (512 tokens, end token, padding)
    tok = configs.load_t5_tokenizer()
    ids = tok(["a cat on a mat"], padding="max_length", max_length=512, truncation=True, return_tensors="pt").input_ids
    with torch.inference_mode():
        expected = dev_model.text_encoder_2(ids).last_hidden_state
    assert torch.allclose(plain.context, expected)


def test_simple_schedule_is_the_shifted_linspace():
    config = {**DEV_SHIFT}
    tokens = 64 * 64 // 256  # 1024 px square: 4096 tokens
    mu = 1.15
    got = levels("Simple", 4, config, mu)
    t = np.linspace(1.0, 0.25, 4)
    expected = math.exp(mu) / (math.exp(mu) + (1 / t - 1))
    assert np.allclose(got, expected)
    sampler = FlowMatchSampler("Euler", "Simple", config, 4096)
    assert math.isclose(sampler.mu, 1.15)
    sampler.set_timesteps(4)
    assert torch.allclose(sampler.timesteps.double(), torch.tensor(expected * 1000), atol=1e-3)
    assert tokens == 16  # (the 64-px test images: 16 tokens, mu below base_shift)


def test_dpmpp_2m_follows_dpm_solver_pp_in_the_equivalent_variance_exploding_form():
    """k-diffusion's DPM++ 2M written out on x~ = x / (1 - s), sigma~ = s / (1 - s) (the same ODE), for a model whose
    clean-image prediction is a fixed function of x and s."""
    torch.manual_seed(0)
    target = torch.randn(1, 4, 2, 2)

    def velocity(x: torch.Tensor, s: float) -> torch.Tensor:  # a model that 'knows' the image: x0 = target
        return (x - target * (1 - s) - 0.1 * torch.tanh(x)) / s

    sigmas = [0.9, 0.7, 0.45, 0.2, 0.0]
    sampler = FlowMatchSampler("DPM++ 2M", "Simple", {**DEV_SHIFT}, 256)
    sampler.sigmas = torch.tensor(sigmas, dtype=torch.float64)
    sampler.timesteps = torch.tensor(sigmas[:-1]) * 1000
    x = torch.randn(1, 4, 2, 2)
    ours = x.clone()
    for s, t in zip(sigmas, sampler.timesteps):
        ours, _ = sampler.step(velocity(ours, s), t, ours)
    # the reference, in variance-exploding terms
    xt, old = x / (1 - sigmas[0]), None
    ve = [s / (1 - s) for s in sigmas]
    for i in range(len(sigmas) - 1):
        s = sigmas[i]
        flow_x = xt * (1 - s)
        denoised = flow_x - s * velocity(flow_x, s)
        if ve[i + 1] == 0:
            xt = denoised
            break
        t_cur, t_next = -math.log(ve[i]), -math.log(ve[i + 1])
        h = t_next - t_cur
        if old is None:
            d = denoised
        else:
            r = (t_cur - (-math.log(ve[i - 1]))) / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
        xt = (ve[i + 1] / ve[i]) * xt - math.expm1(-h) * d
        old = denoised
    assert torch.allclose(ours, xt, atol=1e-5)


def test_flux_img2img_matches_diffusers_img2img_pipeline(dev, dev_model, tmp_path):
    """A1111's img2img step arithmetic (steps 10 at strength 0.5: the last 6 of a 10-step schedule) against
    diffusers' FluxImg2ImgPipeline run for the same 6 steps, from the same start: the image's latents noised to
    the schedule's level there with our seed's noise (x = (1 - s) x0 + s noise, written out here)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxImg2ImgPipeline
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift
    from PIL import Image

    from modules.processing.context import CheckpointIdentity, ProcessingContext
    from modules.processing.img2img import img2img
    from modules.processing.params import Img2ImgParams
    from modules.processing.progress import JobProgress
    from tests.support.engine import default_settings

    init = Image.fromarray(np.random.RandomState(0).randint(0, 255, (64, 64, 3)).astype(np.uint8))
    ctx = ProcessingContext(model=dev_model, checkpoint=CheckpointIdentity(title="t", model_name="t", shorthash=None),
                            settings=default_settings(), data_dir=tmp_path, progress=JobProgress(), version="v")
    ours = img2img(Img2ImgParams(prompt="a tower", steps=10, seed=3, cfg_scale=1.0, width=64, height=64,
                                 init_images=[init], denoising_strength=0.5, sampler_name="Euler"), ctx)
    scheduler = FlowMatchEulerDiscreteScheduler(**DEV_SHIFT)
    mu = calculate_shift(16, 256, 4096, 0.5, 1.15)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / 10, 10), mu=mu)
    sigma = float(scheduler.sigmas[4])
    with torch.inference_mode():
        pixels = torch.from_numpy(np.asarray(init, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
        x0 = (dev.vae.encode(pixels).latent_dist.mode() - 0.1159) * 0.3611
    noise = ImageRNG((16, 8, 8), [3], subseeds=[0]).first()
    start = (1 - sigma) * x0 + sigma * noise
    pipe = FluxImg2ImgPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**DEV_SHIFT), vae=dev.vae,
                               text_encoder=dev.clip, tokenizer=configs.load_tokenizer(), text_encoder_2=dev.t5,
                               tokenizer_2=configs.load_t5_tokenizer(), transformer=dev.transformer)
    reference = pipe("a tower", image=init, strength=0.6, num_inference_steps=10, guidance_scale=3.5, height=64,
                     width=64, latents=pack(start), output_type="np").images[0]
    assert np.abs(np.asarray(ours.images[0]).astype(float) - np.floor(reference * 255)).max() <= 1.0
    assert "Denoising strength: 0.5" in ours.infotexts[0]


def test_flux_hires_fix_runs_on_the_same_interface(dev_model, tmp_path):
    hires = run_txt2img(dev_model, tmp_path, prompt="a tower", steps=2, seed=3, cfg_scale=1.0, enable_hr=True,
                        hr_scale=2, hr_upscaler="Latent", denoising_strength=0.5)
    assert hires.images[0].size == (128, 128)
    assert "Hires upscale: 2" in hires.infotexts[0]


def test_additional_modules_are_found_by_their_tensors_and_chosen_by_name(dev_files, tmp_path):
    import shutil

    from modules.models.additional_modules import AdditionalModules, UnknownModuleError

    models = dev_files["t5"].parent.parent  # the fixture's models/
    modules = AdditionalModules([models / "text_encoder"], [models / "VAE"])
    assert modules.role(dev_files["t5"]) == "t5" and modules.role(dev_files["clip_l"]) == "clip_l"
    assert modules.role(dev_files["vae"]) == "vae"
    assert sorted(p.name for p in modules.automatic()) == ["ae.safetensors", "clip_l.safetensors",
                                                           "t5xxl_fp16.safetensors"]
    # Forge's stored value: full paths of another install; a file name; a stem
    assert modules.resolve([r"C:\forge\models\text_encoder\clip_l.safetensors", "ae.safetensors", "t5xxl_fp16"]) \
        == [dev_files["clip_l"], dev_files["vae"], dev_files["t5"]]
    with pytest.raises(UnknownModuleError, match="t5xxl_fp8_e4m3fn.safetensors.*choose one of: .*clip_l"):
        modules.resolve(["t5xxl_fp8_e4m3fn.safetensors"])
    # a second T5: the automatic choice no longer guesses, it leaves the piece to the user
    folder = tmp_path / "text_encoder"
    shutil.copytree(models / "text_encoder", folder)
    shutil.copy(dev_files["t5"], folder / "t5xxl_other.safetensors")
    two = AdditionalModules([folder], [models / "VAE"])
    assert sorted(p.name for p in two.automatic()) == ["ae.safetensors", "clip_l.safetensors"]


def test_fp8_and_fp8_scaled_files_load_as_their_dequantized_weights(dev, dev_files, tmp_path):
    """With "Full precision" storage every weight is expanded at load (tests/test_flux_stored_weights.py keeps
    them as stored, and checks that the two compute the same)."""
    bfl = tiny_flux.transformer_to_bfl(dev.transformer)
    plain, scaled, t5_scaled = tiny_flux.write_fp8_files(tmp_path, dev)
    parts = [dev_files["clip_l"], dev_files["t5"], dev_files["vae"]]
    model = loader.load_checkpoint(plain, parts=parts, storage="Full precision")
    key = "double_blocks.0.img_attn.proj.weight"
    assert model.extra["stored_fp8"] is True
    assert torch.equal(model.unet.transformer_blocks[0].attn.to_out[0].weight, bfl[key].to(torch.float8_e4m3fn).float())
    model = loader.load_checkpoint(scaled, parts=[t5_scaled, *parts], storage="Full precision")
    scale = bfl[key].abs().max() / 448.0
    expected = (bfl[key] / scale).to(torch.float8_e4m3fn).float() * scale
    assert torch.allclose(model.unet.transformer_blocks[0].attn.to_out[0].weight, expected)
    assert model.extra["parts"]["t5"] == str(t5_scaled)
    q = dev.t5.state_dict()["encoder.block.0.layer.0.SelfAttention.q.weight"]
    q_scale = q.abs().max() / 448.0
    assert torch.allclose(model.text_encoder_2.encoder.block[0].layer[0].SelfAttention.q.weight,
                          (q / q_scale).to(torch.float8_e4m3fn).float() * q_scale)
    # and it generates: the dequantized model is an ordinary one
    result = run_txt2img(model, tmp_path, prompt="x", steps=2, seed=1, cfg_scale=1.0, sampler_name="Euler")
    assert np.asarray(result.images[0]).std() > 1


def _diffusers_lora_file(factors, alpha: float = 1.0) -> dict[str, torch.Tensor]:
    """The same LoRA as ai-toolkit writes it: diffusers module names, the fused layers split by hand here."""
    h = tiny_flux.HEADS * tiny_flux.HEAD_DIM
    where = {"double_blocks.0.img_attn.qkv": [("transformer_blocks.0.attn.to_q", slice(0, h)),
                                              ("transformer_blocks.0.attn.to_k", slice(h, 2 * h)),
                                              ("transformer_blocks.0.attn.to_v", slice(2 * h, 3 * h))],
             "double_blocks.0.txt_mlp.0": [("transformer_blocks.0.ff_context.net.0.proj", slice(None))],
             "single_blocks.1.linear1": [("single_transformer_blocks.1.attn.to_q", slice(0, h)),
                                         ("single_transformer_blocks.1.attn.to_k", slice(h, 2 * h)),
                                         ("single_transformer_blocks.1.attn.to_v", slice(2 * h, 3 * h)),
                                         ("single_transformer_blocks.1.proj_mlp", slice(3 * h, None))],
             "single_blocks.0.linear2": [("single_transformer_blocks.0.proj_out", slice(None))]}
    out: dict[str, torch.Tensor] = {}
    for name, (up, down) in factors.items():
        if name == "final_layer.adaLN_modulation.1":
            shift, scale = up.chunk(2)
            parts = [("norm_out.linear", torch.cat([scale, shift]))]
        else:
            parts = [(module, up[rows]) for module, rows in where[name]]
        for module, part_up in parts:
            out.update({f"transformer.{module}.lora_B.weight": part_up.contiguous(),
                        f"transformer.{module}.lora_A.weight": down.clone(),
                        f"transformer.{module}.alpha": torch.tensor(alpha)})
    return out


def test_flux_lora_in_kohya_bfl_and_diffusers_layouts_gives_the_same_picture(dev, dev_model, tmp_path):
    from safetensors.torch import save_file

    from modules import hashing
    from modules.models.lora import LoraRegistry

    factors = tiny_flux.lora_factors(dev.transformer)
    folder = tmp_path / "Lora"
    folder.mkdir()
    save_file(tiny_flux.lora_file(factors, "kohya", alpha=1.0), str(folder / "kohya_style.safetensors"))
    save_file(tiny_flux.lora_file(factors, "bfl", alpha=1.0), str(folder / "bfl_style.safetensors"))
    save_file(_diffusers_lora_file(factors, alpha=1.0), str(folder / "aitoolkit_style.safetensors"))
    loras = LoraRegistry([folder], hashing.HashCache(None), hashing=False)
    before = {k: v.clone() for k, v in dev_model.unet.state_dict().items()}
    common = dict(steps=3, seed=21, cfg_scale=1.0, sampler_name="Euler", loras=loras)
    plain = run_txt2img(dev_model, tmp_path, prompt="a boat", **common)
    pictures = {name: np.asarray(run_txt2img(dev_model, tmp_path, prompt=f"a boat <lora:{name}:0.8>",
                                             **common).images[0]).astype(float)
                for name in ("kohya_style", "bfl_style", "aitoolkit_style")}
    for name in ("kohya_style", "bfl_style", "aitoolkit_style"):  # every tensor found its layer
        result = run_txt2img(dev_model, tmp_path, prompt=f"a boat <lora:{name}:0.8>", **common)
        assert not any("ignored" in c or "skipped" in c or "not fit" in c for c in result.comments), result.comments
    for name, picture in pictures.items():
        assert np.array_equal(picture, pictures["aitoolkit_style"]), name
    assert np.abs(pictures["kohya_style"] - np.asarray(plain.images[0]).astype(float)).max() > 0
    after = dev_model.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # restored bit for bit
    # the reference: diffusers' pipeline on a copy of the transformer with the deltas merged by hand
    import copy

    merged = copy.deepcopy(dev.transformer)
    with torch.no_grad():
        weights = dict(merged.named_parameters())
        for key, tensor in _diffusers_lora_file(factors).items():
            if key.endswith("lora_B.weight"):
                module = key[len("transformer."):-len(".lora_B.weight")]
                down = _diffusers_lora_file(factors)[f"transformer.{module}.lora_A.weight"]
                weights[module + ".weight"] += 0.8 * (1.0 / 2) * (tensor @ down)
    reference = _reference(tiny_flux.TinyFlux(merged, dev.clip, dev.t5, dev.vae), "a boat", 21, 3, 3.5, DEV_SHIFT)
    assert np.abs(pictures["kohya_style"] - reference).max() <= 1.0


def test_live_preview_colours_are_fitted_to_the_models_own_vae(dev_model):
    from modules.processing import families

    preview = families.for_model(dev_model).preview(dev_model)
    latents = torch.randn(1, 16, 8, 6)
    image = preview(latents)
    assert image.size == (6, 8)
    factors = dev_model.extra["latent_rgb"]
    assert factors.shape == (17, 3)
    # the least-squares fit, computed independently with numpy on the same decoded random latents
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, 16, 8, 8, generator=gen)
    with torch.inference_mode():
        rgb = torch.nn.functional.avg_pool2d(dev_model.vae.decode(z).sample.float(), 8)
    design = np.concatenate([z.permute(0, 2, 3, 1).reshape(-1, 16).numpy(), np.ones((128, 1))], axis=1)
    solution = np.linalg.lstsq(design, rgb.permute(0, 2, 3, 1).reshape(-1, 3).numpy(), rcond=None)[0]
    assert np.allclose(factors.numpy(), solution, atol=1e-4)


def test_gguf_transformer_and_t5_load_as_their_dequantized_weights(dev, dev_files, tmp_path):
    """city96's layouts: the BFL transformer and a llama.cpp-named T5 encoder in GGUF with Q8_0/Q5_1/Q4_0/Q4_K/F16
    tensors; the loaded weights equal what the gguf package's own numpy dequantizer reads back."""
    bfl = tiny_flux.transformer_to_bfl(dev.transformer)
    expected = tiny_flux.write_gguf(tmp_path / "flux1-dev-Q4_K_S.gguf", bfl)
    t5_expected = tiny_flux.write_gguf(tmp_path / "t5-v1_1-xxl-encoder-Q8_0.gguf",
                                       tiny_flux.t5_llama_names(tiny_flux.t5_file(dev.t5), blocks=2), arch="t5encoder")
    model = loader.load_checkpoint(tmp_path / "flux1-dev-Q4_K_S.gguf",
                                   parts=[tmp_path / "t5-v1_1-xxl-encoder-Q8_0.gguf", dev_files["clip_l"],
                                          dev_files["vae"]], storage="Full precision")
    got = model.unet.transformer_blocks[0]
    qkv = torch.from_numpy(expected["double_blocks.0.img_attn.qkv.weight"])
    assert torch.equal(got.attn.to_q.weight, qkv[:64]) and torch.equal(got.attn.to_v.weight, qkv[128:])
    original = bfl["double_blocks.0.img_attn.qkv.weight"]
    assert not torch.equal(qkv, original) and (qkv - original).abs().max() < 0.1  # quantized, and close
    mlp = torch.from_numpy(expected["double_blocks.0.img_mlp.2.weight"])  # rows of 256: the K-quant blocks
    assert torch.equal(got.ff.net[2].weight, mlp)
    t5 = model.text_encoder_2.encoder.block[1].layer[1].DenseReluDense
    assert torch.equal(t5.wi_0.weight, torch.from_numpy(t5_expected["enc.blk.1.ffn_gate.weight"]))
    assert torch.equal(t5.wo.weight, torch.from_numpy(t5_expected["enc.blk.1.ffn_down.weight"]))
    assert torch.equal(model.text_encoder_2.shared.weight, torch.from_numpy(t5_expected["token_embd.weight"]))
    result = run_txt2img(model, tmp_path, prompt="x", steps=2, seed=1, cfg_scale=1.0, sampler_name="Euler")
    assert np.asarray(result.images[0]).std() > 1


def test_a_gguf_t5_is_found_among_the_additional_modules(dev, dev_files, tmp_path):
    from modules.models.additional_modules import AdditionalModules

    folder = tmp_path / "text_encoder"
    tiny_flux.write_gguf(folder / "t5-v1_1-xxl-encoder-Q8_0.gguf",
                         tiny_flux.t5_llama_names(tiny_flux.t5_file(dev.t5), blocks=2), arch="t5encoder")
    (folder / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 40)
    modules = AdditionalModules([folder], [])
    assert modules.role(folder / "t5-v1_1-xxl-encoder-Q8_0.gguf") == "t5"
    assert modules.role(folder / "broken.gguf") is None
    assert [p.name for p in modules.automatic()] == ["t5-v1_1-xxl-encoder-Q8_0.gguf"]


def test_the_flux_benchmark_runs_in_its_dry_run(capsys):
    from tests.benchmarks import flux_speed

    assert flux_speed.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "64x64: ours" in out and "diffusers FluxPipeline" in out and "peak RSS" in out


@pytest.fixture(scope="module")
def fill(tmp_path_factory):
    tiny = tiny_flux.build(seed=7, fill=True)
    files = tiny_flux.write_split(tmp_path_factory.mktemp("fill") / "models", tiny, name="flux1-fill-dev-tiny.safetensors")
    model = loader.load_checkpoint(files["transformer"], parts=[files["clip_l"], files["t5"], files["vae"]])
    return tiny, model


def test_flux_fill_conditioning_is_fill_pipelines_packed_input(fill):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxFillPipeline

    from modules.processing import families

    tiny, model = fill
    assert model.kind.inpainting and model.kind.in_channels == 384
    mask = torch.zeros(1, 1, 64, 48)
    mask[..., 8:40, 4:30] = 1.0  # not patch-aligned: the 8x8 patches carry partial masks
    raw = torch.randn(1, 16, 8, 6)
    scaled = (raw - 0.1159) * 0.3611
    ours = pack(families.for_model(model).inpainting_conditioning(mask, scaled))
    pipe = FluxFillPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=tiny.vae, text_encoder=tiny.clip,
                            tokenizer=configs.load_tokenizer(), text_encoder_2=tiny.t5,
                            tokenizer_2=configs.load_t5_tokenizer(), transformer=tiny.transformer)
    mask_tokens, masked_tokens = pipe.prepare_mask_latents(mask, raw, 1, 16, 1, 64, 48, torch.float32, "cpu", None)
    assert torch.allclose(ours, torch.cat([masked_tokens, mask_tokens], dim=-1), atol=1e-6)
    # txt2img with the Fill model: the whole (grey) picture is the masked area, as A1111 does for inpainting models
    result = run_txt2img(model, Path(tempfile.mkdtemp()), prompt="x", steps=2, seed=1, cfg_scale=1.0,
                         sampler_name="Euler")
    assert np.asarray(result.images[0]).std() > 1


def test_flux_fill_inpainting_matches_fill_pipeline(fill, tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxFillPipeline
    from PIL import Image

    from modules.processing.context import CheckpointIdentity, ProcessingContext
    from modules.processing.img2img import img2img
    from modules.processing.params import Img2ImgParams
    from modules.processing.progress import JobProgress
    from tests.support.engine import default_settings

    tiny, model = fill
    init = Image.fromarray(np.random.RandomState(1).randint(0, 255, (64, 64, 3)).astype(np.uint8))
    white = Image.new("L", (64, 64), 255)  # the whole picture repainted: no latent blending to tell apart
    ctx = ProcessingContext(model=model, checkpoint=CheckpointIdentity(title="f", model_name="f", shorthash=None),
                            settings=default_settings(), data_dir=tmp_path, progress=JobProgress(), version="v")
    ours = img2img(Img2ImgParams(prompt="a door", steps=4, seed=9, cfg_scale=1.0, width=64, height=64,
                                 init_images=[init], mask=white, mask_blur=0, denoising_strength=1.0,
                                 sampler_name="Euler", distilled_cfg_scale=30.0), ctx)
    pipe = FluxFillPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**DEV_SHIFT), vae=tiny.vae,
                            text_encoder=tiny.clip, tokenizer=configs.load_tokenizer(), text_encoder_2=tiny.t5,
                            tokenizer_2=configs.load_t5_tokenizer(), transformer=tiny.transformer)
    with torch.inference_mode():
        blank = tiny.vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mode()  # the masked image: all blanked
        mask_tokens, masked_tokens = pipe.prepare_mask_latents(torch.ones(1, 1, 64, 64), blank, 1, 16, 1, 64, 64,
                                                               torch.float32, "cpu", None)
    noise = ImageRNG((16, 8, 8), [9], subseeds=[0]).first()
    # diffusers encodes the blanked image by sampling the VAE's distribution; we (and A1111) take its mode: the
    # pipeline's own mask preparation, run above on the mode, stands in for its sampling one
    pipe.prepare_mask_latents = lambda *args, **kwargs: (mask_tokens, masked_tokens)
    reference = pipe("a door", image=init, mask_image=white, height=64, width=64, num_inference_steps=4,
                     guidance_scale=30.0, latents=pack(noise), output_type="np").images[0]
    assert np.abs(np.asarray(ours.images[0]).astype(float) - np.floor(reference * 255)).max() <= 1.0


def test_euler_a_follows_the_rectified_flow_ancestral_step_written_out(dev_model, tmp_path):
    torch.manual_seed(1)
    target = torch.randn(1, 4, 2, 2)

    def velocity(x: torch.Tensor, s: float) -> torch.Tensor:
        return (x - target * (1 - s)) / s

    sigmas = [1.0, 0.75, 0.4, 0.1, 0.0]
    sampler = FlowMatchSampler("Euler a", "Simple", {**DEV_SHIFT}, 256)
    sampler.sigmas = torch.tensor(sigmas, dtype=torch.float64)
    sampler.timesteps = torch.tensor(sigmas[:-1]) * 1000
    start = torch.randn(1, 4, 2, 2)
    ours, theirs = start.clone(), start.clone()
    ours_gen, ref_gen = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for i, t in enumerate(sampler.timesteps):
        ours, _ = sampler.step(velocity(ours, sigmas[i]), t, ours, generator=ours_gen)
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = theirs - s * velocity(theirs, s)
        if s_next == 0:
            theirs = denoised
            continue
        s_down = s_next * (1 + (s_next / s - 1) * 1.0)
        x = theirs + (theirs - denoised) / s * (s_down - s)
        coeff = (s_next**2 - s_down**2 * (1 - s_next) ** 2 / (1 - s_down) ** 2) ** 0.5
        theirs = (1 - s_next) / (1 - s_down) * x + coeff * torch.randn(1, 4, 2, 2, generator=ref_gen)
    assert torch.allclose(ours, theirs, atol=1e-6)
    one = run_txt2img(dev_model, tmp_path, prompt="a fox", steps=3, seed=5, cfg_scale=1.0, sampler_name="Euler a")
    again = run_txt2img(dev_model, tmp_path, prompt="a fox", steps=3, seed=5, cfg_scale=1.0, sampler_name="Euler a")
    assert np.array_equal(np.asarray(one.images[0]), np.asarray(again.images[0]))  # the seed's own noise stream
    with pytest.raises(FieldError) as err:
        run_txt2img(dev_model, tmp_path, prompt="x", sampler_name="Euler", s_churn=0.5)
    assert err.value.field == "s_churn"


def test_heun_steps_as_diffusers_flow_match_heun_scheduler(dev_model, tmp_path):
    """Heun against diffusers' FlowMatchHeunDiscreteScheduler (shift 1, whose levels are our Normal schedule) on a
    nonlinear velocity field, then txt2img: two evaluations a step, the last step Euler's, img2img part-way."""
    from diffusers import FlowMatchHeunDiscreteScheduler

    def velocity(x: torch.Tensor, s: float) -> torch.Tensor:
        return torch.sin(3 * x) + s * x

    ours = FlowMatchSampler("Heun", "Normal", {**DEV_SHIFT, "shift": 1.0, "use_dynamic_shifting": False}, 256)
    theirs = FlowMatchHeunDiscreteScheduler(shift=1.0)
    ours.set_timesteps(5)
    theirs.set_timesteps(5)
    assert torch.allclose(ours.timesteps, theirs.timesteps, atol=1e-3) and len(ours.timesteps) == 9  # 2 * 5 - 1
    start = torch.randn(1, 4, 2, 2, generator=torch.Generator().manual_seed(3))
    a, b = start.clone(), start.clone()
    for t_ours, t_theirs in zip(ours.timesteps, theirs.timesteps):
        a = ours.step(velocity(a, ours.sigma_of(t_ours)), t_ours, a)[0]
        s_theirs = float(theirs.sigmas[theirs.step_index or 0])
        b = theirs.step(velocity(b, s_theirs), t_theirs, b, return_dict=False)[0]
    assert torch.allclose(a, b.float(), atol=1e-4), (a - b).abs().max()
    assert not torch.allclose(a, _euler(start, velocity, ours), atol=1e-3)  # not Euler's path

    from modules.processing.sampling import img2img_start

    start = img2img_start(ours, 10, 6, "cpu")  # img2img's last 6 of 10 steps: 2 * 6 - 1 evaluations from level 4
    assert start == 8 and len(ours.timesteps) - start == 11
    assert ours.sigma_of(ours.timesteps[start]) == float(ours.sigmas[4])
    result = run_txt2img(dev_model, tmp_path, prompt="a fox", steps=3, seed=5, cfg_scale=1.0, sampler_name="Heun")
    assert np.asarray(result.images[0]).std() > 10 and "Sampler: Heun" in result.infotexts[0]


def _euler(x: torch.Tensor, velocity, sampler: FlowMatchSampler) -> torch.Tensor:
    sigmas = [float(v) for v in sampler.sigmas]
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        x = x + (s_next - s) * velocity(x, s)
    return x


def test_a_file_that_is_no_module_chosen_as_one_is_named(dev_files, tmp_path):
    from safetensors.torch import save_file

    lora = tmp_path / "some_lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 4)}, str(lora))
    with pytest.raises(UnknownModelError, match="some_lora.safetensors: not a text encoder or VAE file"):
        loader.load_checkpoint(dev_files["transformer"], parts=[lora, dev_files["t5"]])


def test_hires_distilled_cfg_and_the_opt_in_first_block_cache(dev_model, tmp_path):
    from tests.support.engine import default_settings

    hires = dict(prompt="a tower", steps=2, seed=3, cfg_scale=1.0, sampler_name="Euler", enable_hr=True, hr_scale=2,
                 hr_upscaler="Latent", denoising_strength=0.6)
    a = run_txt2img(dev_model, tmp_path, **hires, hr_distilled_cfg=3.5)
    b = run_txt2img(dev_model, tmp_path, **hires, hr_distilled_cfg=1.0)
    assert "Hires Distilled CFG Scale: 1" in b.infotexts[0]
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))  # the second pass reads it

    calls = []
    # inside the last block: a skipped block is still called, its cache hook returns before its layers run
    last_block = dev_model.unet.single_transformer_blocks[-1].proj_out
    handle = last_block.register_forward_hook(lambda *args: calls.append(1))
    try:
        common = dict(prompt="a fox", steps=6, seed=5, cfg_scale=1.0, sampler_name="Euler")
        plain = run_txt2img(dev_model, tmp_path, settings=default_settings(flux_first_block_cache=0.0), **common)
        full_calls, calls[:] = len(calls), []
        cached = run_txt2img(dev_model, tmp_path, settings=default_settings(flux_first_block_cache=1.0), **common)
        cached_calls, calls[:] = len(calls), []
        again = run_txt2img(dev_model, tmp_path, settings=default_settings(flux_first_block_cache=0.0), **common)
    finally:
        handle.remove()
    assert full_calls == 6 and cached_calls < full_calls  # steps whose first block barely changed skip the rest
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(cached.images[0]))
    assert np.array_equal(np.asarray(plain.images[0]), np.asarray(again.images[0]))  # off again: exact as before
    assert len(calls) == 6
