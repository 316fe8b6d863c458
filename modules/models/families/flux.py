"""Flux.1 (Black Forest Labs): detection and loading, from the files users download.

* The transformer in BFL's layout, alone (``flux1-dev.safetensors`` in ``models/Stable-diffusion`` or ``models/unet``)
  or under ``model.diffusion_model.`` in ComfyUI's all-in-one checkpoints, which also carry
  ``text_encoders.clip_l.*``, ``text_encoders.t5xxl.*`` and ``vae.*``; or a transformer saved from diffusers
  (``transformer_blocks.*``, ``x_embedder``), whose names are already the model's.
* What a file lacks comes from the chosen additional modules (Forge's "VAE / Text Encoder" choice): ``clip_l``,
  ``t5xxl_*`` and ``ae.safetensors`` files, each recognised by its keys, never by its name.

dev and schnell differ in the guidance embedding (``guidance_in``): dev is guidance-distilled (its "Distilled CFG
Scale" is an input of the network) and uses the resolution-dependent shift; schnell samples with shift 1.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from modules.models import configs, formats, memory, quantized, stored_weights, text_encoders, weight_storage
from modules.models.families import flux_layout
from modules.models.types import CorruptFileError, LoadedModel, MissingPartError, ModelKind, UnknownModelError

log = logging.getLogger(__name__)

FAMILY = "flux"
TRANSFORMER_PREFIXES = ("model.diffusion_model.", "")
DIFFUSERS_PREFIXES = ("transformer.", "model.diffusion_model.", "")
VAE_PREFIXES = ("vae.", "first_stage_model.", "")
VAE_MARK = "encoder.conv_in.weight"
LATENT_CHANNELS = 16
FILL_FEATURES = (LATENT_CHANNELS + LATENT_CHANNELS + 64) * 4  # 384: Flux.1 Fill's packed input
# The Flux autoencoder's latent normalisation (BFL's AutoEncoderParams: scale_factor, shift_factor).
VAE_SCALING, VAE_SHIFT = 0.3611, 0.1159
# Where each missing piece goes, named in the error (Forge's and ComfyUI's file names).
PART_HINTS = {
    "t5": "put t5xxl_fp16.safetensors (or t5xxl_fp8_e4m3fn.safetensors) in models/text_encoder",
    "clip_l": "put clip_l.safetensors in models/text_encoder",
    "vae": "put ae.safetensors in models/VAE",
}
PART_NAMES = {"t5": "T5 text encoder", "clip_l": "CLIP-L text encoder", "vae": "VAE"}


def transformer_prefix(keys: Any) -> str | None:
    """Where the transformer's keys start: BFL's layout, else diffusers' (then ``_is_diffusers_layout``)."""
    bfl = next((p for p in TRANSFORMER_PREFIXES if all(p + m in keys for m in flux_layout.BFL_MARKERS)), None)
    if bfl is not None:
        return bfl
    return next((p for p in DIFFUSERS_PREFIXES if all(p + m in keys for m in flux_layout.DIFFUSERS_MARKERS)), None)


def _is_diffusers_layout(keys: Any, prefix: str) -> bool:
    return prefix + flux_layout.DIFFUSERS_MARKERS[0] in keys


def detect(shapes: Mapping[str, tuple[int, ...]]) -> ModelKind | None:
    """A Flux.1 kind when the keys hold a transformer in BFL's or diffusers' layout, else None."""
    prefix = transformer_prefix(shapes)
    if prefix is None:
        return None
    first = "x_embedder.weight" if _is_diffusers_layout(shapes, prefix) else "img_in.weight"
    in_features = int(shapes[prefix + first][1])
    if in_features == FILL_FEATURES:  # Flux.1 Fill: latents + blanked-image latents + 8x8 mask patches, packed
        return ModelKind(family=FAMILY, prediction="flow", inpainting=True, in_channels=in_features)
    if in_features != LATENT_CHANNELS * 4:
        return ModelKind(family=FAMILY, prediction="flow", inpainting=False, in_channels=in_features)
    return ModelKind(family=FAMILY, prediction="flow", inpainting=False, in_channels=LATENT_CHANNELS)


def vae_prefix(keys: Any) -> str | None:
    return next((p for p in VAE_PREFIXES if p + VAE_MARK in keys and p + "decoder.conv_out.weight" in keys), None)


# Each piece a Flux model needs, and where its keys start in a file (None: not there).
PART_FINDERS = {"t5": text_encoders.t5_prefix, "clip_l": text_encoders.clip_prefix, "vae": vae_prefix}


def part_role(keys: Any) -> tuple[str, str] | None:
    """What an additional-module file holds, and where its keys start: ("t5" | "clip_l" | "vae", prefix), or None
    (judged by its keys)."""
    for role, find in PART_FINDERS.items():
        prefix = find(keys)
        if prefix is not None:
            return role, prefix
    return None


def vae_latent_channels(shapes: Mapping[str, tuple[int, ...]], prefix: str) -> int:
    """The latent channels of an LDM-layout autoencoder: half its encoder's output (mean and log-variance)."""
    return int(shapes[prefix + "encoder.conv_out.weight"][0]) // 2


def vae_config(shapes: Mapping[str, tuple[int, ...]], prefix: str) -> dict[str, Any]:
    """``AutoencoderKL`` arguments for an LDM-layout autoencoder (Flux's ``ae.safetensors``), sizes from shapes."""
    import re

    levels = sorted({int(m.group(1)) for k in shapes if (m := re.match(re.escape(prefix) + r"encoder\.down\.(\d+)\.", k))})
    widths = [int(shapes[f"{prefix}encoder.down.{i}.block.0.conv1.weight"][0]) for i in levels]
    per_level = {int(m.group(1)) for k in shapes if (m := re.match(re.escape(prefix) + r"encoder\.down\.0\.block\.(\d+)\.", k))}
    latent = vae_latent_channels(shapes, prefix)
    return {
        "in_channels": int(shapes[prefix + "encoder.conv_in.weight"][1]),
        "out_channels": int(shapes[prefix + "decoder.conv_out.weight"][0]),
        "down_block_types": ["DownEncoderBlock2D"] * len(widths),
        "up_block_types": ["UpDecoderBlock2D"] * len(widths),
        "block_out_channels": widths,
        "layers_per_block": max(per_level) + 1,
        "latent_channels": latent,
        "norm_num_groups": 32,
        "sample_size": 1024,
        "scaling_factor": VAE_SCALING,
        "shift_factor": VAE_SHIFT,
        "use_quant_conv": prefix + "quant_conv.weight" in shapes,
        "use_post_quant_conv": prefix + "post_quant_conv.weight" in shapes,
    }


def build_vae(sd: dict[str, torch.Tensor], path: Path, prefix: str) -> Any:
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    from modules.models.loader import assign_weights, empty_module

    part = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)} if prefix else dict(sd)
    config = vae_config({k: tuple(v.shape) for k, v in part.items()}, "")
    if config["latent_channels"] != LATENT_CHANNELS:
        raise UnknownModelError(path, f"a VAE with {config['latent_channels']} latent channels does not fit Flux "
                                      f"(it needs {LATENT_CHANNELS}: Flux's ae.safetensors)")
    try:
        weights = convert_ldm_vae_checkpoint(part, config)
    except (KeyError, IndexError) as e:
        raise CorruptFileError(path, f"incomplete VAE: {e} is missing") from None
    vae = empty_module(lambda: AutoencoderKL(**config))
    assign_weights(path, vae, weights, "VAE", f"a {config['block_out_channels']} Flux autoencoder")
    return vae


def build_transformer(sd: dict[str, torch.Tensor], path: Path, prefix: str, consume: bool, storage: str = "full",
                      dtype: torch.dtype = torch.float32) -> tuple[Any, dict]:
    """The transformer from ``sd``'s keys under ``prefix``; ``storage`` (``weight_storage.storage_mode``) says which
    Linear weights stay as stored, the rest is expanded to ``dtype``."""
    from diffusers import FluxTransformer2DModel

    from modules.models.loader import assign_weights, empty_module

    keys = [k for k in sd if k.startswith(prefix)] if prefix else [k for k in sd if not k.startswith(
        ("text_encoders.", "vae.", "first_stage_model."))]
    diffusers_layout = _is_diffusers_layout(sd, prefix)
    part = {k[len(prefix):]: (sd.pop(k) if consume else sd[k]) for k in keys}
    shapes = stored_weights.logical_shapes(part)
    try:
        if diffusers_layout:  # saved from diffusers: its names are the model's
            config, weights = flux_layout.diffusers_config(shapes), part
        else:
            config = flux_layout.transformer_config(shapes)
            weights = flux_layout.to_diffusers(part, config)
    except (KeyError, ValueError, RuntimeError) as e:
        raise CorruptFileError(path, f"incomplete or damaged Flux transformer ({type(e).__name__}: {e})") from None
    model = empty_module(lambda: FluxTransformer2DModel(**config))
    stored_weights.prepare(model, weights, storage, dtype)
    where = (f"a Flux transformer of {config['num_layers']} double and {config['num_single_layers']} single blocks, "
             f"width {config['num_attention_heads'] * config['attention_head_dim']}")
    assign_weights(path, model, weights, "Flux transformer", where)
    return model, config


def scheduler_config(guidance_embeds: bool) -> dict[str, Any]:
    """The flow-matching schedule of the variant (diffusers' FlowMatchEulerDiscreteScheduler values for dev and
    schnell): dev shifts by resolution (mu from the image's token count), schnell not at all."""
    return {
        "kind": "flow",
        "num_train_timesteps": 1000,
        "shift": 3.0 if guidance_embeds else 1.0,
        "use_dynamic_shifting": guidance_embeds,
        "base_shift": 0.5,
        "max_shift": 1.15,
        "base_image_seq_len": 256,
        "max_image_seq_len": 4096,
    }


def _run_dtype(policy: Any) -> torch.dtype:
    """bf16 on GPUs that have it (Flux's activations overflow fp16, as T5's do), else the policy's dtype."""
    if policy.dtype in (torch.float16, torch.bfloat16) and policy.device.type == "cuda":
        try:
            if torch.cuda.is_bf16_supported():
                return torch.bfloat16
        except RuntimeError:
            pass
    return policy.dtype


def build(sd: dict[str, torch.Tensor], path: Path, policy: Any, parts: Sequence[Path] = (),
          consume: bool = False, storage: str = weight_storage.AUTOMATIC) -> LoadedModel:
    """A LoadedModel for a Flux file, completed from ``parts`` (additional module files) where it lacks a piece.
    Raises MissingPartError naming the piece and where to put it; the parts are read only when needed.

    ``storage`` (``weight_storage.CHOICES``): Automatic keeps the
    transformer's and T5's fp8 and GGUF Linear weights as stored, a float8 choice stores the transformer's other
    Linear weights in it too, Full precision expands everything at load. CLIP-L and the VAE are always expanded."""
    kind = detect(stored_weights.logical_shapes(sd))
    if kind is None:
        raise UnknownModelError(path, "not a Flux transformer (no double_blocks / img_in)")
    if kind.in_channels not in (LATENT_CHANNELS, FILL_FEATURES):
        raise UnknownModelError(path, f"Flux transformers with {kind.in_channels} input features (Flux.1 Depth / "
                                      "Canny and other conditioned variants) are not supported yet")
    sources: dict[str, tuple[dict[str, torch.Tensor], str, Path]] = {}
    for role, find in PART_FINDERS.items():  # an all-in-one file's own pieces (under their prefixes) come first
        if prefix := find(sd):
            sources[role] = (sd, prefix, path)
    for part_path in parts:
        if len(sources) == len(PART_FINDERS):
            break
        part_sd = text_encoders.from_llama_names(  # GGUF T5 names
            formats.load_state_dict(part_path, device="cpu", keep_quantized=True))
        found = part_role(part_sd)
        if found is None:
            raise UnknownModelError(part_path, "not a text encoder or VAE file (chosen as an additional module)")
        sources.setdefault(found[0], (part_sd, found[1], Path(part_path)))
    missing = [role for role in PART_FINDERS if role not in sources]
    if missing:
        raise MissingPartError(path, "this Flux checkpoint has no " + " and no ".join(PART_NAMES[r] for r in missing)
                               + ": " + "; ".join(PART_HINTS[r] for r in missing)
                               + ", and choose it under VAE / Text Encoder (forge_additional_modules)")

    dtype, vae_dtype = _run_dtype(policy), policy.vae_dtype
    mode = weight_storage.storage_mode(storage)
    fp8 = quantized.has_fp8(sd)
    transformer, config = build_transformer(sd, path, transformer_prefix(sd) or "", consume, mode, dtype)
    t5_sd, t5_pre, t5_path = sources["t5"]
    t5 = text_encoders.build_t5(t5_sd, t5_path, t5_pre, consume=t5_sd is sd and consume,
                                storage="full" if mode == "full" else "automatic", dtype=dtype)
    clip_sd, clip_pre, clip_path = sources["clip_l"]
    stored_weights.expand_rest(clip_sd, dtype, clip_pre)
    clip = text_encoders.build_clip_l(clip_sd, clip_path, clip_pre, consume=clip_sd is sd and consume)
    vae_sd, vae_pre, vae_path = sources["vae"]
    stored_weights.expand_rest(vae_sd, vae_dtype, vae_pre)
    vae = build_vae(vae_sd, vae_path, vae_pre)
    # a text encoder of another width would fail only at the first step: say which file does not fit, now
    for encoder_path, width, wanted, what in (
            (t5_path, t5.config.d_model, config["joint_attention_dim"], "T5 text encoder"),
            (clip_path, clip.config.hidden_size, config["pooled_projection_dim"], "CLIP-L text encoder")):
        if width != wanted:
            raise UnknownModelError(encoder_path, f"this {what} is {width} wide but the Flux transformer of "
                                                  f"{path.name} reads {wanted}: choose the {what} made for it")

    from modules.models.loader import finish_module

    sizes = {"unet": stored_weights.stored_bytes(transformer, dtype),
             "text_encoder": stored_weights.stored_bytes(clip, dtype),
             "text_encoder_2": stored_weights.stored_bytes(t5, dtype), "vae": stored_weights.stored_bytes(vae, vae_dtype)}
    choice = memory.choose_mode(getattr(policy, "memory_mode", memory.AUTO), device_type=policy.device.type,
                                family=FAMILY, weight_bytes=sum(sizes.values()), largest_bytes=max(sizes.values()),
                                free_bytes=memory.free_bytes(policy.device))
    storage = memory.storage_device(choice.mode, policy.device)
    for module, module_dtype in ((transformer, dtype), (clip, dtype), (t5, dtype), (vae, vae_dtype)):
        finish_module(module, storage, module_dtype)
    # at load, on the loading thread: the live preview (read from request threads) then never touches the VAE
    try:
        rgb = latent_rgb_factors(vae, storage, vae_dtype) if storage.type != "meta" else None
    except RuntimeError as err:  # a dtype the storage device cannot run (fp16 on some CPUs): a plainer preview
        log.info("no fitted preview colours for %s: %s", path.name, err)
        rgb = None
    extra: dict[str, Any] = {
        "latent_rgb": rgb,
        "memory": memory.apply(choice, policy.device, unet=transformer, vae=vae, text_encoders=(clip, t5)),
        "default_resolution": 1024,
        "transformer_config": config,
        "guidance_embeds": bool(config["guidance_embeds"]),
        "parts": {role: str(source[2]) for role, source in sources.items()},
        "part_files": [str(p) for p in parts],  # what it was given: a different choice loads it again
        "config_source": "shapes",
        "stored_fp8": fp8,  # the transformer's file holds 8-bit floats
        "storage": mode,  # a different choice loads the file again
        "kept_layers": {"transformer": stored_weights.kept_layers(transformer), "t5": stored_weights.kept_layers(t5)},
        "weight_bytes": sizes,
    }
    variant = "dev" if config["guidance_embeds"] else "schnell"
    log.info("loaded %s as Flux.1 %s (%d double, %d single blocks; layers kept as stored: %s)", path.name, variant,
             config["num_layers"], config["num_single_layers"], extra["kept_layers"])
    return LoadedModel(kind=kind, path=path, unet=transformer, vae=vae, text_encoder=clip,
                       tokenizer=configs.load_tokenizer(configs.PAD_EOS), scheduler_config=scheduler_config(
                           bool(config["guidance_embeds"])), device=policy.device, dtype=dtype, vae_dtype=vae_dtype,
                       text_encoder_2=t5, tokenizer_2=configs.load_t5_tokenizer(), extra=extra)


@torch.inference_mode()
def latent_rgb_factors(vae: Any, device: Any, dtype: torch.dtype) -> torch.Tensor:
    """A (C + 1, 3) linear map latent -> RGB fitted to this VAE's own decoder on random latents (least squares
    against the decoded pixels averaged over each latent's 8x8 patch): the live preview's colours for any latent
    space, from the weights at hand (two 64x64 decodes)."""
    gen = torch.Generator().manual_seed(0)
    channels = int(vae.config.latent_channels)
    z = torch.randn(2, channels, 8, 8, generator=gen)
    decoded = vae.decode(z.to(device, dtype), return_dict=False)[0].float().cpu()
    rgb = torch.nn.functional.avg_pool2d(decoded, 8)  # (2, 3, 8, 8)
    design = torch.cat([z, torch.ones(2, 1, 8, 8)], dim=1).permute(0, 2, 3, 1).reshape(-1, channels + 1)
    target = rgb.permute(0, 2, 3, 1).reshape(-1, 3)
    return torch.linalg.lstsq(design, target).solution


