"""Flux weights kept in memory as the files store them (GGUF blocks, fp8 with and without ComfyUI's scales), Forge's
"Diffusion in Low Bits" choices, and LoRA on such layers. The oracles: the bytes and values the gguf package reads
from the file itself, torch's own fp8 casts, and the same checkpoint expanded at load ("Full precision"), which
tests/test_flux.py checks against diffusers' FluxPipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modules.models import loader
from modules.models.stored_weights import StoredLinear
from tests.support import tiny_flux
from tests.support.engine import run_txt2img
from tests.test_flux import dev, dev_files  # noqa: F401  (fixtures: the tiny Flux and its split files)

FULL = "Full precision"


@pytest.fixture(scope="module")
def gguf_files(dev, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf")
    transformer = folder / "flux1-dev-Q4_K_S.gguf"
    t5 = folder / "t5-v1_1-xxl-encoder-Q8_0.gguf"
    expected = tiny_flux.write_gguf(transformer, tiny_flux.transformer_to_bfl(dev.transformer))
    t5_expected = tiny_flux.write_gguf(t5, tiny_flux.t5_llama_names(tiny_flux.t5_file(dev.t5), blocks=2),
                                       arch="t5encoder")
    return transformer, t5, expected, t5_expected


def _picture(model, tmp_path, prompt: str = "a lighthouse", **extra) -> np.ndarray:
    result = run_txt2img(model, tmp_path, prompt=prompt, steps=2, seed=3, cfg_scale=1.0, sampler_name="Euler",
                         **extra)
    return np.asarray(result.images[0])


def _file_bytes(path) -> dict[str, tuple[str, bytes]]:
    """Each tensor's type and raw bytes, read by the gguf package's own reader."""
    from gguf import GGUFReader

    return {t.name: (t.tensor_type.name, bytes(t.data.tobytes())) for t in GGUFReader(str(path)).tensors}


def test_gguf_layers_keep_the_files_blocks_and_compute_what_expanded_ones_do(dev_files, gguf_files, tmp_path):
    transformer_file, t5_file, expected, t5_expected = gguf_files
    parts = [t5_file, dev_files["clip_l"], dev_files["vae"]]
    kept = loader.load_checkpoint(transformer_file, parts=parts)  # Automatic: as stored
    full = loader.load_checkpoint(transformer_file, parts=parts, storage=FULL)
    raw = _file_bytes(transformer_file)

    block = kept.unet.transformer_blocks[0]
    assert isinstance(block.attn.to_q, StoredLinear) and isinstance(block.ff.net[2], StoredLinear)
    qkv_type, qkv_bytes = raw["double_blocks.0.img_attn.qkv.weight"]
    assert block.attn.to_q.stored_as == qkv_type != "F32"
    rows = len(qkv_bytes) // (3 * 64)  # bytes per row of 64 values; q is the first third of the rows
    assert block.attn.to_q.qweight.numpy().tobytes() == qkv_bytes[:64 * rows]  # the file's own bytes, resident
    qkv = torch.from_numpy(expected["double_blocks.0.img_attn.qkv.weight"])
    assert torch.equal(block.attn.to_v.weight_values(torch.float32), qkv[128:])
    assert torch.equal(block.ff.net[2].weight_values(torch.float32),
                       torch.from_numpy(expected["double_blocks.0.img_mlp.2.weight"]))  # Q4_K rows of 256
    t5_ff = kept.text_encoder_2.encoder.block[1].layer[1].DenseReluDense
    assert isinstance(t5_ff.wo, StoredLinear)  # T5 is kept as stored too
    assert torch.equal(t5_ff.wo.weight_values(torch.float32),
                       torch.from_numpy(t5_expected["enc.blk.1.ffn_down.weight"]))
    assert not isinstance(full.unet.transformer_blocks[0].attn.to_q, StoredLinear)

    # every quantized matrix of the file is resident as its bytes: nothing was expanded behind our back
    quantized = {name: data for name, (kind, data) in raw.items() if kind not in ("F32", "F16")}
    layers = [m for m in kept.unet.modules() if isinstance(m, StoredLinear)]
    resident = sum(m.qweight.numel() for m in layers)
    assert resident == sum(len(data) for data in quantized.values())
    values = sum(int(np.prod(expected[name].shape)) for name in quantized)
    # fp32 values give way to the blocks (and each layer's one-float dtype probe)
    assert kept.extra["weight_bytes"]["unet"] == full.extra["weight_bytes"]["unet"] - 4 * values + resident \
        + 4 * len(layers)
    assert kept.extra["storage"] == "automatic" and full.extra["storage"] == "full"
    assert sum(kept.extra["kept_layers"]["transformer"].values()) == len(layers)

    assert np.array_equal(_picture(kept, tmp_path), _picture(full, tmp_path))  # bit for bit


def test_fp8_and_fp8_scaled_layers_stay_8_bit_and_compute_what_expanded_ones_do(dev, dev_files, tmp_path):
    bfl = tiny_flux.transformer_to_bfl(dev.transformer)
    plain, scaled, t5_scaled = tiny_flux.write_fp8_files(tmp_path, dev)
    parts = [dev_files["clip_l"], dev_files["t5"], dev_files["vae"]]

    kept = loader.load_checkpoint(plain, parts=parts)
    layer = kept.unet.transformer_blocks[0].attn.to_out[0]
    assert isinstance(layer, StoredLinear) and layer.stored_as == "float8_e4m3fn"
    stored = bfl["double_blocks.0.img_attn.proj.weight"].to(torch.float8_e4m3fn)
    assert layer.qweight.dtype == torch.uint8 and torch.equal(layer.qweight, stored.view(torch.uint8))
    assert torch.equal(layer.weight_values(torch.float32), stored.float())
    full = loader.load_checkpoint(plain, parts=parts, storage=FULL)
    assert np.array_equal(_picture(kept, tmp_path), _picture(full, tmp_path))

    kept = loader.load_checkpoint(scaled, parts=[t5_scaled, *parts])
    q = kept.unet.transformer_blocks[0].attn.to_q  # split from the fused qkv: the qkv's one scale
    qkv = bfl["double_blocks.0.img_attn.qkv.weight"]
    scale = qkv.abs().max() / 448.0
    assert q.stored_as == "float8_e4m3fn_scaled" and torch.equal(q.scale, scale)
    assert torch.allclose(q.weight_values(torch.float32), (qkv[:64] / scale).to(torch.float8_e4m3fn).float() * scale)
    t5_q = kept.text_encoder_2.encoder.block[0].layer[0].SelfAttention.q
    assert isinstance(t5_q, StoredLinear) and t5_q.scale is not None
    full = loader.load_checkpoint(scaled, parts=[t5_scaled, *parts], storage=FULL)
    assert np.array_equal(_picture(kept, tmp_path), _picture(full, tmp_path))


def test_a_float8_choice_stores_a_full_precision_file_in_8_bits(dev, dev_files, tmp_path):
    parts = [dev_files["clip_l"], dev_files["t5"], dev_files["vae"]]
    model = loader.load_checkpoint(dev_files["transformer"], parts=parts, storage="float8-e5m2 (fp16 LoRA)")
    q = model.unet.transformer_blocks[0].attn.to_q
    assert isinstance(q, StoredLinear) and q.stored_as == "float8_e5m2"
    original = dev.transformer.transformer_blocks[0].attn.to_q.weight
    assert torch.equal(q.weight_values(torch.float32), original.to(torch.float8_e5m2).float())
    # diffusers' precision-sensitive layers stay in the compute dtype (layerwise casting's defaults)
    assert type(model.unet.proj_out) is torch.nn.Linear and type(model.unet.norm_out.linear) is torch.nn.Linear
    assert not any(isinstance(m, StoredLinear) for m in model.text_encoder_2.modules())  # T5 in its file's dtype
    assert model.extra["storage"] == "float8-e5m2"
    picture = _picture(model, tmp_path).astype(int)
    exact = _picture(loader.load_checkpoint(dev_files["transformer"], parts=parts), tmp_path).astype(int)
    assert picture.std() > 10 and 0 < np.abs(picture - exact).max()  # 8-bit weights: close, not equal


def test_lora_on_kept_layers_is_the_merged_lora_and_leaves_the_blocks_alone(dev, dev_files, gguf_files, tmp_path):
    from modules import hashing
    from modules.models.lora import LoraRegistry

    transformer_file, t5_file, _expected, _t5 = gguf_files
    folder = tmp_path / "Lora"
    folder.mkdir()
    save_file(tiny_flux.lora_file(tiny_flux.lora_factors(dev.transformer), "kohya"), str(folder / "style.safetensors"))
    loras = LoraRegistry([folder], hashing.HashCache(None), hashing=False)
    parts = [t5_file, dev_files["clip_l"], dev_files["vae"]]
    kept = loader.load_checkpoint(transformer_file, parts=parts)
    full = loader.load_checkpoint(transformer_file, parts=parts, storage=FULL)
    before = {k: v.clone() for k, v in kept.unet.state_dict().items()}
    with_lora = run_txt2img(kept, tmp_path, prompt="a boat <lora:style:0.8>", steps=2, seed=4, cfg_scale=1.0,
                            sampler_name="Euler", loras=loras)
    assert not any("ignored" in c or "not fit" in c for c in with_lora.comments), with_lora.comments
    merged = run_txt2img(full, tmp_path, prompt="a boat <lora:style:0.8>", steps=2, seed=4, cfg_scale=1.0,
                         sampler_name="Euler", loras=loras)
    assert np.array_equal(np.asarray(with_lora.images[0]), np.asarray(merged.images[0]))  # the merge's arithmetic
    plain = run_txt2img(kept, tmp_path, prompt="a boat", steps=2, seed=4, cfg_scale=1.0, sampler_name="Euler")
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(with_lora.images[0]))
    after = kept.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the stored blocks never changed
    assert not any(m.lora_deltas for m in kept.unet.modules() if isinstance(m, StoredLinear))


def test_kept_layers_run_in_the_memory_modes(dev_files, gguf_files, tmp_path):
    """--lowvram offloads layer by layer (diffusers' group offloading moves the blocks as buffers), --medvram
    swaps whole components: both give the resident mode's picture."""
    import dataclasses

    from modules.models.devices import DevicePolicy

    transformer_file, t5_file, _expected, _t5 = gguf_files
    parts = [t5_file, dev_files["clip_l"], dev_files["vae"]]
    plain = _picture(loader.load_checkpoint(transformer_file, parts=parts), tmp_path)
    for mode in ("lowvram", "medvram"):
        policy = dataclasses.replace(DevicePolicy.cpu(), memory_mode=mode)
        model = loader.load_checkpoint(transformer_file, policy, parts=parts)
        assert model.extra["memory"].mode == mode
        assert np.array_equal(_picture(model, tmp_path), plain), mode


def test_the_storage_benchmark_runs_in_its_dry_run(capsys):
    from tests.benchmarks import flux_storage

    assert flux_storage.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Q8_0  Automatic" in out and "kept as stored: {'Q8_0'" in out and "fp8   Full precision" in out
