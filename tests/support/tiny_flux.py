"""Tiny Flux.1 files in the layouts users download, from random weights with real Flux block layouts:

* the transformer in Black Forest Labs' layout (``double_blocks.*``, ``single_blocks.*``, ``img_in``...), with the
  guidance embedding (dev) or without (schnell);
* ``clip_l.safetensors`` (transformers CLIP-L text model, ``text_model.*``), ``t5xxl_fp16.safetensors``
  (transformers T5 encoder: ``shared.weight`` + ``encoder.*``) and ``ae.safetensors`` (the LDM-layout autoencoder
  with 16 latent channels);
* ComfyUI's all-in-one checkpoint: ``model.diffusion_model.*`` + ``text_encoders.clip_l.transformer.*`` +
  ``text_encoders.t5xxl.transformer.*`` + ``vae.*``.

The BFL names are written here from the published layout (the reverse of what the loader reads), so a renaming
mistake in the loader does not cancel out against this file. The diffusers modules come back too, to run
diffusers' own FluxPipeline as the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from tests.support import ldm_layout
from tests.support.tiny_checkpoints import _fill_

HEADS, HEAD_DIM = 2, 32  # width 64; RoPE axes (4, 14, 14)
T5_WIDTH, CLIP_WIDTH = 32, 32  # CLIP: one head, as the loader infers hidden // 64 (at least 1) heads


@dataclass
class TinyFlux:
    transformer: Any
    clip: Any
    t5: Any
    vae: Any


def build(seed: int = 0, guidance: bool = True, double: int = 1, single: int = 2, fill: bool = False) -> TinyFlux:
    """``fill``: Flux.1 Fill's transformer (384 input features: latents, blanked-image latents, mask patches)."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=384 if fill else 64, out_channels=64 if fill else None, num_layers=double, num_single_layers=single, attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS, joint_attention_dim=T5_WIDTH, pooled_projection_dim=CLIP_WIDTH,
        guidance_embeds=guidance, axes_dims_rope=(4, 14, 14))
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=CLIP_WIDTH, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=1, max_position_embeddings=77,
                                        hidden_act="quick_gelu", projection_dim=CLIP_WIDTH))
    t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=T5_WIDTH, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                 feed_forward_proj="gated-gelu", relative_attention_num_buckets=32))
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(32, 32, 32, 32),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=1, norm_num_groups=32, scaling_factor=0.3611, shift_factor=0.1159,
                        use_quant_conv=False, use_post_quant_conv=False)
    for i, module in enumerate((transformer, clip, t5, vae)):
        _fill_(module, seed * 10 + i)
    return TinyFlux(transformer.eval(), clip.eval(), t5.eval(), vae.eval())


def _linear(out: dict[str, Tensor], sd: dict[str, Tensor], src: str, dst: str) -> None:
    for suffix in (".weight", ".bias"):
        if src + suffix in sd:
            out[dst + suffix] = sd[src + suffix]


def transformer_to_bfl(model: Any) -> dict[str, Tensor]:
    """diffusers FluxTransformer2DModel -> BFL's original key layout (every tensor placed, or KeyError)."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out: dict[str, Tensor] = {}
    _linear(out, sd, "x_embedder", "img_in")
    _linear(out, sd, "context_embedder", "txt_in")
    _linear(out, sd, "time_text_embed.timestep_embedder.linear_1", "time_in.in_layer")
    _linear(out, sd, "time_text_embed.timestep_embedder.linear_2", "time_in.out_layer")
    _linear(out, sd, "time_text_embed.text_embedder.linear_1", "vector_in.in_layer")
    _linear(out, sd, "time_text_embed.text_embedder.linear_2", "vector_in.out_layer")
    _linear(out, sd, "time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer")
    _linear(out, sd, "time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer")
    _linear(out, sd, "proj_out", "final_layer.linear")
    for suffix in (".weight", ".bias"):  # diffusers keeps (scale, shift); BFL (shift, scale)
        scale, shift = sd[f"norm_out.linear{suffix}"].chunk(2, dim=0)
        out[f"final_layer.adaLN_modulation.1{suffix}"] = torch.cat([shift, scale])
    for i in range(model.config.num_layers):
        d, b = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        _linear(out, sd, d + "norm1.linear", b + "img_mod.lin")
        _linear(out, sd, d + "norm1_context.linear", b + "txt_mod.lin")
        for suffix in (".weight", ".bias"):
            out[b + "img_attn.qkv" + suffix] = torch.cat([sd[d + f"attn.to_{x}{suffix}"] for x in "qkv"])
            out[b + "txt_attn.qkv" + suffix] = torch.cat([sd[d + f"attn.add_{x}_proj{suffix}"] for x in "qkv"])
        out[b + "img_attn.norm.query_norm.scale"] = sd[d + "attn.norm_q.weight"]
        out[b + "img_attn.norm.key_norm.scale"] = sd[d + "attn.norm_k.weight"]
        out[b + "txt_attn.norm.query_norm.scale"] = sd[d + "attn.norm_added_q.weight"]
        out[b + "txt_attn.norm.key_norm.scale"] = sd[d + "attn.norm_added_k.weight"]
        _linear(out, sd, d + "attn.to_out.0", b + "img_attn.proj")
        _linear(out, sd, d + "attn.to_add_out", b + "txt_attn.proj")
        _linear(out, sd, d + "ff.net.0.proj", b + "img_mlp.0")
        _linear(out, sd, d + "ff.net.2", b + "img_mlp.2")
        _linear(out, sd, d + "ff_context.net.0.proj", b + "txt_mlp.0")
        _linear(out, sd, d + "ff_context.net.2", b + "txt_mlp.2")
    for i in range(model.config.num_single_layers):
        d, b = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        _linear(out, sd, d + "norm.linear", b + "modulation.lin")
        for suffix in (".weight", ".bias"):
            out[b + "linear1" + suffix] = torch.cat([sd[d + f"attn.to_{x}{suffix}"] for x in "qkv"]
                                                    + [sd[d + "proj_mlp" + suffix]])
        out[b + "norm.query_norm.scale"] = sd[d + "attn.norm_q.weight"]
        out[b + "norm.key_norm.scale"] = sd[d + "attn.norm_k.weight"]
        _linear(out, sd, d + "proj_out", b + "linear2")
    if sum(t.numel() for t in out.values()) != sum(t.numel() for t in sd.values()):
        raise KeyError("transformer_to_bfl: some tensors were not placed")
    return out


def clip_file(model: Any) -> dict[str, Tensor]:
    """``clip_l.safetensors``: the transformers CLIP text model's tensors under ``text_model.``."""
    return {("text_model." + k if not k.startswith("text_model.") else k): v.detach().clone()
            for k, v in model.state_dict().items() if not k.endswith("position_ids")}


def t5_file(model: Any) -> dict[str, Tensor]:
    """``t5xxl_fp16.safetensors``: ``shared.weight`` + ``encoder.*`` (the tied copy stored once)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"}


def ae_file(model: Any) -> dict[str, Tensor]:
    return ldm_layout.vae_to_ldm(model.state_dict(), prefix="")


def _save(sd: dict[str, Tensor], path: Path, dtype: torch.dtype | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: (v.to(dtype) if dtype is not None else v).contiguous() for k, v in sd.items()}, str(path))
    return path


def write_split(models_dir: Path, tiny: TinyFlux, name: str = "flux1-dev-tiny.safetensors",
                folder: str = "Stable-diffusion", dtype: torch.dtype | None = None) -> dict[str, Path]:
    """The transformer alone in ``models/<folder>`` with clip_l / t5xxl in ``models/text_encoder`` and ae in
    ``models/VAE``, as Forge users keep them."""
    return {
        "transformer": _save(transformer_to_bfl(tiny.transformer), models_dir / folder / name, dtype),
        "clip_l": _save(clip_file(tiny.clip), models_dir / "text_encoder" / "clip_l.safetensors", dtype),
        "t5": _save(t5_file(tiny.t5), models_dir / "text_encoder" / "t5xxl_fp16.safetensors", dtype),
        "vae": _save(ae_file(tiny.vae), models_dir / "VAE" / "ae.safetensors", dtype),
    }


def write_all_in_one(path: Path, tiny: TinyFlux) -> Path:
    """ComfyUI's single-file Flux checkpoint."""
    sd = {"model.diffusion_model." + k: v for k, v in transformer_to_bfl(tiny.transformer).items()}
    sd.update({"text_encoders.clip_l.transformer." + k: v for k, v in clip_file(tiny.clip).items()})
    sd.update({"text_encoders.t5xxl.transformer." + k: v for k, v in t5_file(tiny.t5).items()})
    sd.update({"vae." + k: v for k, v in ae_file(tiny.vae).items()})
    return _save(sd, path)


def write_gguf(path: Path, sd: dict[str, Tensor], arch: str = "flux", only: Any = None) -> dict[str, Any]:
    """A GGUF file of ``sd`` as city96's files mix types: K-quant (Q4_K) for matrices whose rows are a multiple of
    256, Q8_0 / Q5_1 / Q4_0 in turn for those of 32, F16 for other matrices, F32 for vectors (``only``: that one
    type, e.g. Q8_0, for every matrix whose rows are a multiple of 32). Returns each tensor's values as the gguf
    package's own numpy dequantizer reads them back (the reference). The gguf package cannot quantize to K-quants,
    so those blocks are random bytes with small finite scales: valid blocks all the same."""
    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from gguf import GGUFWriter
    from gguf.quants import dequantize, quantize

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(path), arch=arch)
    expected: dict[str, Any] = {}
    cycle = [Q.Q8_0, Q.Q5_1, Q.Q4_0]
    for i, (name, tensor) in enumerate(sorted(sd.items())):
        array = tensor.detach().float().numpy()
        if only is not None and array.ndim == 2 and array.shape[1] % 32 == 0:
            qtype = only
        elif array.ndim == 2 and array.shape[1] % 256 == 0:
            qtype = Q.Q4_K
        elif array.ndim == 2 and array.shape[1] % 32 == 0:
            qtype = cycle[i % len(cycle)]
        elif array.ndim >= 2:
            qtype = Q.F16
        else:
            qtype = Q.F32
        if qtype in (Q.F16, Q.F32):
            data = array.astype(np.float16 if qtype == Q.F16 else np.float32)
            writer.add_tensor(name, data)
            expected[name] = data.astype(np.float32)
        elif qtype == Q.Q4_K:  # 144 bytes per 256 values: d, dmin (fp16), 12 bytes of scales, 128 of 4-bit values
            rows, width = array.shape
            blocks = np.random.RandomState(i).randint(0, 256, (rows * width // 256, 144)).astype(np.uint8)
            blocks[:, 0:2] = np.frombuffer(np.float16(0.004).tobytes(), np.uint8)
            blocks[:, 2:4] = np.frombuffer(np.float16(0.002).tobytes(), np.uint8)
            data = blocks.reshape(rows, width // 256 * 144)
            writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qtype)
            expected[name] = dequantize(data, qtype).reshape(array.shape)
        else:
            data = quantize(array, qtype)
            writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qtype)
            expected[name] = dequantize(data, qtype).reshape(array.shape)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return expected


def t5_llama_names(sd: dict[str, Tensor], blocks: int) -> dict[str, Tensor]:
    """T5 encoder weights under llama.cpp's names, mapped by the gguf package's own table (TensorNameMap)."""
    from gguf import MODEL_ARCH, get_tensor_name_map

    table = get_tensor_name_map(MODEL_ARCH.T5ENCODER, blocks)
    out: dict[str, Tensor] = {}
    for key, tensor in sd.items():
        name = table.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise KeyError(f"t5_llama_names: gguf has no name for {key}")
        out[name] = tensor
    return out


def lora_factors(transformer, rank: int = 2, seed: int = 5) -> dict[str, tuple[Tensor, Tensor]]:
    """(up, down) per BFL linear of the tiny transformer: the fused qkv / linear1 included."""
    gen = torch.Generator().manual_seed(seed)
    hidden = HEADS * HEAD_DIM
    sizes = {"double_blocks.0.img_attn.qkv": (3 * hidden, hidden), "double_blocks.0.txt_mlp.0": (4 * hidden, hidden),
             "single_blocks.1.linear1": (3 * hidden + 4 * hidden, hidden), "single_blocks.0.linear2":
             (hidden, hidden + 4 * hidden), "final_layer.adaLN_modulation.1": (2 * hidden, hidden)}
    return {name: (torch.randn(out, rank, generator=gen) * 0.3, torch.randn(rank, inp, generator=gen) * 0.3)
            for name, (out, inp) in sizes.items()}


def lora_file(factors, layout: str, alpha: float = 1.0) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for name, (up, down) in factors.items():
        if layout == "kohya":
            base = "lora_unet_" + name.replace(".", "_")
            out.update({f"{base}.lora_up.weight": up, f"{base}.lora_down.weight": down,
                        f"{base}.alpha": torch.tensor(alpha)})
        else:  # BFL / ComfyUI, peft factor names
            out.update({f"diffusion_model.{name}.lora_B.weight": up, f"diffusion_model.{name}.lora_A.weight": down,
                        f"diffusion_model.{name}.alpha": torch.tensor(alpha)})
    return out


def fp8_scaled(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """ComfyUI's fp8_scaled layout: each matrix stored as fp8 of weight / scale with its per-tensor scale_weight."""
    out: dict[str, Tensor] = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}
    for key, value in sd.items():
        if key.endswith(".weight") and value.ndim == 2:
            scale = value.abs().max() / 448.0
            out[key] = (value / scale).to(torch.float8_e4m3fn)
            out[key[:-len(".weight")] + ".scale_weight"] = scale.reshape(())
        else:
            out[key] = value
    return out


def write_fp8_files(folder: Path, tiny: TinyFlux) -> tuple[Path, Path, Path]:
    """The transformer as plain fp8 (``flux1-dev-fp8``) and ComfyUI's fp8_scaled, and T5 as fp8_scaled."""
    bfl = transformer_to_bfl(tiny.transformer)
    plain, scaled = folder / "flux1-dev-fp8.safetensors", folder / "flux1-dev-fp8_scaled.safetensors"
    t5_scaled = folder / "t5xxl_fp8_e4m3fn_scaled.safetensors"
    save_file({k: v.to(torch.float8_e4m3fn) for k, v in bfl.items()}, str(plain))
    save_file(fp8_scaled(bfl), str(scaled))
    save_file(fp8_scaled(t5_file(tiny.t5)), str(t5_scaled))
    return plain, scaled, t5_scaled
