"""Load a single-file Stable Diffusion checkpoint into diffusers components, offline.

One pure function of the file: read the weights once (``formats``), detect the family (``detect``), pick the original
yaml (``<stem>.yaml`` beside the checkpoint, as A1111 honours, else the bundled one), build empty diffusers/transformers
modules from configs derived from that yaml, convert the weights with diffusers' own LDM converters, and assign them.
Nothing is fetched and nothing global is touched, so a failed load leaves nothing behind.

Yaml keys read (under ``model.params``): ``unet_config`` or ``network_config`` (via diffusers), ``first_stage_config``,
``scale_factor``, ``image_size``, ``parameterization``, ``timesteps``, ``linear_start``, ``linear_end``; for SGM (SDXL)
configs ``denoiser_config.params.{num_idx, scaling_config.target, discretization_config.params}`` and the ``outdim`` of
``conditioner_config.params.emb_models[*]`` (ConcatTimestepEmbedderND), which diffusers hard-codes to 256.

Text encoders: SD1 CLIP-L -> ``CLIPTextModel``; SD2 OpenCLIP ViT-H -> ``CLIPTextModel`` without the file's last
resblock (SD2 reads the penultimate layer, then ``final_layer_norm``, like diffusers' converted SD2); SDXL: CLIP-L ->
``text_encoder`` (``CLIPTextModel``), bigG -> ``text_encoder_2`` (``CLIPTextModelWithProjection``, all layers); the SDXL
refiner has only ``text_encoder_2``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from modules.models import acceleration, configs, detect, formats, memory, weight_storage
from modules.models.detect import detect_kind
from modules.models.devices import DevicePolicy
from modules.models.types import (
    COMPONENT_NAMES,
    CorruptFileError,
    LoadedModel,
    ModelFileError,
    ModelKind,
    ModuleParts,
    UnknownModelError,
    module_parts,
)

log = logging.getLogger(__name__)

# Out of memory is not the file's fault: let it through unchanged (it is a RuntimeError subclass).
_OutOfMemory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)

# Where each text tower lives in the original file, per family: (LoadedModel slot, style, key prefix).
_TEXT_TOWERS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "sd1": (("text_encoder", "clip_l", "cond_stage_model.transformer."),),
    "sd2": (("text_encoder", "openclip_h", "cond_stage_model.model."),),
    "sdxl": (
        ("text_encoder", "clip_l", "conditioner.embedders.0.transformer."),
        ("text_encoder_2", "openclip_bigg", "conditioner.embedders.1.model."),
    ),
    "sdxl_refiner": (("text_encoder_2", "openclip_bigg", "conditioner.embedders.0.model."),),
}


# ---------------------------------------------------------------------------------------------------------------------
# Original config (yaml)


def _choose_config(path: Path, config_path: Path | None) -> tuple[Path | None, str]:
    """An explicit config, else ``<stem>.yaml`` beside the checkpoint, else None (bundled, chosen by kind)."""
    if config_path is not None:
        return Path(config_path), "explicit"
    beside = path.with_suffix(".yaml")
    if beside.is_file():
        return beside, "beside"
    return None, "bundled"


def _read_yaml(yaml_path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(yaml_path, "config file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise CorruptFileError(yaml_path, f"config file cannot be read as YAML ({e})") from None
    params = data.get("model", {}).get("params") if isinstance(data, dict) else None
    if not isinstance(params, dict) or "first_stage_config" not in params or not (
        params.get("unet_config") or params.get("network_config")
    ):
        raise CorruptFileError(
            yaml_path,
            "not a Stable Diffusion config: expected model.params with unet_config/network_config and first_stage_config",
        )
    return data


def _params(original: Mapping[str, Any]) -> dict[str, Any]:
    return original["model"]["params"]


def _is_sgm(original: Mapping[str, Any]) -> bool:
    return "network_config" in _params(original)


def _yaml_prediction(original: Mapping[str, Any]) -> str:
    params = _params(original)
    if _is_sgm(original):
        scaling = str(_dig(params, "denoiser_config", "params", "scaling_config", "target") or "")
        return "v_prediction" if scaling.endswith("VScaling") else "epsilon"
    return "v_prediction" if params.get("parameterization") == "v" else "epsilon"


def _dig(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


def _latent_size(original: Mapping[str, Any]) -> int:
    """Default latent size: LDM's ``model.params.image_size``; SDXL configs have none and mean 1024 px."""
    size = _params(original).get("image_size")
    return int(size) if isinstance(size, int) and size > 0 else 128


def _time_embed_dim(original: Mapping[str, Any]) -> int | None:
    """SDXL's size/crop embedding width (ConcatTimestepEmbedderND outdim); diffusers assumes 256."""
    for emb in _dig(_params(original), "conditioner_config", "params", "emb_models") or []:
        if isinstance(emb, Mapping) and str(emb.get("target", "")).endswith("ConcatTimestepEmbedderND"):
            outdim = _dig(emb, "params", "outdim")
            if isinstance(outdim, int):
                return outdim
    return None


def scheduler_config_from_yaml(original: Mapping[str, Any], prediction: str) -> dict[str, Any]:
    """A diffusers scheduler config equivalent to the yaml's training noise schedule.

    Same values as the diffusers configs of SD1.5/SD2/SDXL ("leading" spacing, steps_offset 1); samplers.py picks
    the scheduler class and A1111's schedule type on top of this.
    """
    params = _params(original)
    if _is_sgm(original):
        den = _dig(params, "denoiser_config", "params") or {}
        disc = _dig(den, "discretization_config", "params") or {}
        steps = den.get("num_idx", 1000)
        start, end = disc.get("linear_start", 0.00085), disc.get("linear_end", 0.012)
    else:
        steps = params.get("timesteps", 1000)
        start, end = params.get("linear_start", 0.00085), params.get("linear_end", 0.012)
    return {
        "num_train_timesteps": int(steps),
        "beta_start": float(start),
        "beta_end": float(end),
        "beta_schedule": "scaled_linear",
        "prediction_type": prediction,
        "timestep_spacing": "leading",
        "steps_offset": 1,
        "clip_sample": False,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "interpolation_type": "linear",
        "use_karras_sigmas": False,
        "sample_max_value": 1.0,
    }


# ---------------------------------------------------------------------------------------------------------------------
# Building modules from converted weights


def _empty(factory: Any) -> Any:
    """Build a module with parameters on the meta device (no allocation, no random init); buffers stay real."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return factory()


def _assign(path: Path, module: torch.nn.Module, weights: dict[str, torch.Tensor], what: str, where: str) -> int:
    """Load converted weights into an empty module; return how many unused tensors were ignored.

    Shape mismatches mean the weights are not the architecture the config describes; missing tensors (with every
    present one fitting) mean a damaged or pruned file. Both are explained in one sentence rather than as a raw KeyError/RuntimeError.
    """
    expected = module.state_dict()
    # Shapes first: another architecture (a config that does not fit) usually also lacks some names, and saying
    # "incomplete" for it would send the user looking for a broken download.
    wrong = [k for k, v in expected.items() if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    if wrong:
        k = wrong[0]
        raise UnknownModelError(
            path,
            f"the {what} weights do not match {where}: {k} has shape {tuple(weights[k].shape)}, "
            f"expected {tuple(expected[k].shape)} ({len(wrong)} mismatches)",
        )
    missing = [k for k in expected if k not in weights]
    if missing:
        raise CorruptFileError(
            path, f"incomplete checkpoint: {len(missing)} {what} weights are missing (e.g. {missing[0]})"
        )
    unused = [k for k in weights if k not in expected]
    module.load_state_dict({k: weights[k] for k in expected}, strict=True, assign=True)
    return len(unused)


# Shared with the other single-file loaders (ControlNet): empty modules from a config, checked weight assignment.
empty_module = _empty
assign_weights = _assign


def _build_unet(path: Path, sd: dict[str, torch.Tensor], original: Mapping[str, Any], where: str) -> tuple[Any, int]:
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, create_unet_diffusers_config_from_ldm

    config = create_unet_diffusers_config_from_ldm(original, sd)
    config["sample_size"] = _latent_size(original)
    if _is_sgm(original) and config.get("projection_class_embeddings_input_dim"):
        # SDXL's vector conditioning. diffusers infers it from context widths 2048/1280 only, and assumes a
        # 256-wide size embedding; the yaml says both, which also makes tiny test models work.
        config["class_embed_type"] = None
        config["addition_embed_type"] = "text_time"
        config["addition_time_embed_dim"] = _time_embed_dim(original) or 256
    weights = convert_ldm_unet_checkpoint(sd, config)
    unet = _empty(lambda: UNet2DConditionModel(**config))
    return unet, _assign(path, unet, weights, "UNet", where)


def _build_vae(path: Path, sd: Mapping[str, torch.Tensor], original: Mapping[str, Any], where: str) -> tuple[Any, int]:
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint, create_vae_diffusers_config_from_ldm

    if not any(k.startswith("first_stage_model.") for k in sd):
        raise CorruptFileError(path, "the checkpoint has no VAE weights (first_stage_model.*)")
    config = create_vae_diffusers_config_from_ldm(original, sd)
    config["sample_size"] = _latent_size(original) * 8
    vae_sd = {k: v for k, v in sd.items() if k.startswith("first_stage_model.")}
    weights = convert_ldm_vae_checkpoint(vae_sd, config)
    vae = _empty(lambda: AutoencoderKL(**config))
    return vae, _assign(path, vae, weights, "VAE", where)


def _layer_count(keys: Any, pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def _heads(hidden: int) -> int:
    """hidden // 64 heads (CLIP-L 12, ViT-H 16, bigG 20), at least 1, lowered until it divides ``hidden``."""
    heads = max(1, hidden // 64)
    while hidden % heads:
        heads -= 1
    return heads


def text_encoder_config_for(style: str, weights: Mapping[str, torch.Tensor]) -> tuple[dict[str, Any], str]:
    """CLIPTextConfig values for converted (transformers-layout) text-encoder weights, and "bundled" or "inferred".

    The bundled config when every dimension matches; else one inferred from the shapes, with ``_heads`` for the
    head count and the tower's activation (quick_gelu for OpenAI CLIP-L, gelu for OpenCLIP).
    """
    plain = {k.removeprefix("text_model."): v for k, v in weights.items()}
    vocab, hidden = plain["embeddings.token_embedding.weight"].shape
    positions = plain["embeddings.position_embedding.weight"].shape[0]
    inferred = {
        "vocab_size": int(vocab),
        "hidden_size": int(hidden),
        "max_position_embeddings": int(positions),
        "intermediate_size": int(plain["encoder.layers.0.mlp.fc1.weight"].shape[0]),
        "num_hidden_layers": _layer_count(plain, r"encoder\.layers\.(\d+)\."),
        "projection_dim": int(plain["text_projection.weight"].shape[0]) if "text_projection.weight" in plain else int(hidden),
    }
    bundled = configs.text_encoder_config(style)
    if all(bundled.get(k) == v for k, v in inferred.items()):
        return bundled, "bundled"
    return {**bundled, **inferred, "num_attention_heads": _heads(int(hidden))}, "inferred"


def _convert_text(sd: dict[str, torch.Tensor], style: str, prefix: str) -> dict[str, torch.Tensor]:
    """Original-layout text tower -> transformers keys (``text_model.*`` + ``text_projection.weight``)."""
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint

    if style == "clip_l":
        part = {k: v for k, v in sd.items() if k.startswith(prefix)}
        out = convert_ldm_clip_checkpoint(part)
        # Older files lack "text_model."; normalise so every tower has the same names.
        return {k if k.startswith("text_model.") else "text_model." + k: v for k, v in out.items()}
    # diffusers needs the hidden width only to split q/k/v when the file has no text_projection
    hidden = sd[prefix + "token_embedding.weight"].shape[1]
    stub = SimpleNamespace(config=SimpleNamespace(hidden_size=hidden))
    return convert_open_clip_checkpoint(stub, sd, prefix=prefix)


def _build_text_encoder(
    path: Path, sd: dict[str, torch.Tensor], style: str, prefix: str
) -> tuple[Any, dict[str, Any]]:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if not any(k.startswith(prefix) for k in sd):
        raise CorruptFileError(path, f"the checkpoint has no text encoder weights ({prefix}*)")
    try:
        weights = _convert_text(sd, style, prefix)
    except KeyError as e:
        raise CorruptFileError(path, f"incomplete text encoder: {e} is missing") from None
    info: dict[str, Any] = {}
    weights = {k: v for k, v in weights.items() if not k.endswith("position_ids")}  # a buffer, not a weight
    if style == "openclip_h":
        # SD2 conditions on the penultimate layer: drop the file's last resblock and the unused projection.
        # Counted in the file, because diffusers' converter already drops resblock 23 of a full-size ViT-H.
        n = _layer_count(sd, re.escape(prefix) + r"transformer\.resblocks\.(\d+)\.")
        if n > 1:
            last = f"text_model.encoder.layers.{n - 1}."
            weights = {k: v for k, v in weights.items() if not k.startswith(last)}
            info["dropped_last_layer"] = True
        weights.pop("text_projection.weight", None)
    try:
        values, info["config"] = text_encoder_config_for(style, weights)
    except KeyError as e:
        raise CorruptFileError(path, f"incomplete text encoder: {e} is missing") from None
    config = CLIPTextConfig(**values)
    with_projection = style == "openclip_bigg"
    if with_projection:
        model = _empty(lambda: CLIPTextModelWithProjection(config))
    else:
        model = _empty(lambda: CLIPTextModel(config))
        weights = {k.removeprefix("text_model."): v for k, v in weights.items()}
    where = f"a {values['hidden_size']}-wide, {values['num_hidden_layers']}-layer CLIP text encoder"
    info["unused"] = _assign(path, model, weights, "text encoder", where)
    return model, info


# ---------------------------------------------------------------------------------------------------------------------
# Public entry points


def _finish(module: Any, device: torch.device, dtype: torch.dtype) -> Any:
    # torch's own Module.to: diffusers' override only adds a warning about fp32-kept modules, which SD has none of.
    torch.nn.Module.to(module, device=device, dtype=dtype)
    module.eval()
    module.requires_grad_(False)
    return module


finish_module = _finish  # the other families' loaders place their modules the same way


def load_checkpoint(
    path: str | Path, device_policy: DevicePolicy | None = None, config_path: Path | None = None,
    reuse: LoadedModel | None = None, parts: ModuleParts = (), storage: str = weight_storage.AUTOMATIC,
) -> LoadedModel:
    """Load ``path`` into diffusers components placed as ``device_policy`` says (CPU fp32 when None).

    ``config_path`` overrides the yaml search (``<stem>.yaml`` beside the file, else the bundled config of the family).
    ``reuse``: a model about to be released (the previous checkpoint). When its modules have the new checkpoint's
    layout, the new weights are copied into them once the whole file has been read and converted, so a switch
    allocates no second model (peak memory: one model plus the file) and frees nothing the allocator would keep.
    ``reuse`` is then no longer valid; on any error it is untouched.
    ``parts``: additional module files (Forge's "VAE / Text Encoder" choice) a family whose checkpoints may come
    without their text encoders or VAE (Flux) completes the model from; SD checkpoints carry theirs and ignore them.
    ``storage``: which weights a family that can (Flux) keeps as the file stores them (``stored_weights``).
    Raises a ModelFileError subclass, with a sentence the user can act on, for every failure that comes from the file.
    """
    path = Path(path)
    sd = formats.load_state_dict(path, device="cpu", keep_quantized=True)
    return build_from_state_dict(sd, path, device_policy, config_path, consume=True, reuse=reuse, parts=parts,
                                 storage=storage)


def build_from_state_dict(
    sd: dict[str, torch.Tensor],
    path: str | Path,
    device_policy: DevicePolicy | None = None,
    config_path: Path | None = None,
    consume: bool = False,
    reuse: LoadedModel | None = None,
    parts: ModuleParts = (),
    storage: str = weight_storage.AUTOMATIC,
) -> LoadedModel:
    """The part of ``load_checkpoint`` after reading: ``sd`` is an original-layout state dict read from ``path``.

    ``consume=True`` removes tensors from ``sd`` as components are built (lower peak memory). Also usable with meta
    tensors and a ``meta`` device policy, to check full-size layouts without memory.
    """
    from modules.models import families, gguf_files, stored_weights

    path = Path(path)
    policy = device_policy or DevicePolicy.cpu()
    family = families.detect_family(stored_weights.logical_shapes(sd))
    if family is not None:  # a family with its own loader (the SD families are built below)
        return _guarded(path, f"a {family.name} model from this file",
                        lambda: family.build(sd, path, policy, parts=module_parts(parts), consume=consume,
                                             storage=storage))
    for key in [k for k, v in sd.items() if gguf_files.is_quantized(v)]:  # SD computes from expanded weights
        sd[key] = gguf_files.dequantize(sd[key])
    kind = detect_kind({k: tuple(v.shape) for k, v in sd.items()}, path)
    yaml_path, source = _choose_config(path, config_path)
    prediction_source = "keys" if kind.prediction != "epsilon" else "default"
    if yaml_path is None:
        yaml_path = configs.bundled_yaml(kind)
    original = _read_yaml(yaml_path)
    if source != "bundled":  # an explicit yaml always decides the prediction type
        kind = replace(kind, prediction=_yaml_prediction(original))
        prediction_source = "yaml"
    where = f"the config {yaml_path.name}"
    return _guarded(path, f"a {kind.label} model from this file with {where}",
                    lambda: _load(path, sd, kind, policy, yaml_path, original, source, prediction_source, where,
                                  consume, reuse))


def _guarded(path: Path, what: str, build: Any) -> LoadedModel:
    """``build()``, with an error from inside the libraries turned into a sentence naming the file ("cannot build
    <what> (...)"); the file's own errors and out-of-memory pass unchanged."""
    try:
        return build()
    except (ModelFileError, _OutOfMemory, MemoryError):
        raise
    except (KeyError, ValueError, RuntimeError, IndexError, TypeError, AttributeError) as e:
        raise UnknownModelError(path, f"cannot build {what} ({type(e).__name__}: {e})") from e


def _can_donate(model: LoadedModel, policy: DevicePolicy, choice: memory.MemoryChoice) -> bool:
    """Whether the previous model's modules may receive the new weights: same device, dtype and memory mode, and no
    LoRA merged in (its weights would be restored over the new ones)."""
    from modules.models import lora

    plan = model.extra.get("memory")
    return (model.device == policy.device and model.dtype == policy.dtype
            and getattr(plan, "mode", memory.NONE) == choice.mode
            and not any(lora.is_patched(m) for m in model.components().values()))


def _same_layout(old: Any, new: Any) -> bool:
    """Same class, same configuration and the same tensor names and shapes."""
    if old is None or new is None:
        return old is new
    if type(old) is not type(new) or _config_of(old) != _config_of(new):
        return False
    a, b = old.state_dict(), new.state_dict()
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)


def _config_of(module: Any) -> dict[str, Any]:
    config = module.config
    return dict(config) if isinstance(config, Mapping) else config.to_dict()


def _copy_weights(target: torch.nn.Module, source: torch.nn.Module) -> None:
    """Copy ``source``'s tensors into ``target``'s, in place: each keeps its device, dtype and memory layout, and the
    parameter objects (which memory hooks, compiled code and extensions hold) stay the same."""
    with torch.no_grad():
        sources = dict(source.named_parameters())
        sources.update(source.named_buffers())
        for name, tensor in [*target.named_parameters(), *target.named_buffers()]:
            tensor.copy_(sources[name])


def _memory_choice(sd: Mapping[str, torch.Tensor], kind: ModelKind, policy: DevicePolicy,
                   replaced: LoadedModel | None) -> memory.MemoryChoice:
    """The memory mode for this checkpoint, from its size at the run dtypes and the device's free memory, counting
    as free what the model it replaces (``replaced``, released after this load) holds there."""
    sizes: dict[str, int] = {}
    prefixes = [("unet", "model.diffusion_model.", policy.dtype), ("vae", "first_stage_model.", policy.vae_dtype)]
    prefixes += [(slot, prefix, policy.dtype) for slot, _style, prefix in _TEXT_TOWERS[kind.family]]
    for name, prefix, dtype in prefixes:
        sizes[name] = sum(t.numel() for k, t in sd.items() if k.startswith(prefix)) * dtype.itemsize
    free = memory.free_bytes(policy.device)
    if free is not None and replaced is not None and replaced.device == policy.device:
        free += memory.resident_bytes(replaced)
    return memory.choose_mode(getattr(policy, "memory_mode", memory.AUTO), device_type=policy.device.type,
                              family=kind.family, weight_bytes=sum(sizes.values()),
                              largest_bytes=max(sizes.values(), default=0), free_bytes=free)


def _load(
    path: Path,
    sd: dict[str, torch.Tensor],
    kind: ModelKind,
    policy: DevicePolicy,
    yaml_path: Path,
    original: dict[str, Any],
    source: str,
    prediction_source: str,
    where: str,
    consume: bool,
    reuse: LoadedModel | None = None,
) -> LoadedModel:
    def release(prefix: str) -> None:
        # Drop consumed source tensors so that at most one component exists twice (file dtype + target dtype).
        if consume:
            for k in [k for k in sd if k.startswith(prefix)]:
                del sd[k]

    choice = _memory_choice(sd, kind, policy, reuse)
    storage = memory.storage_device(choice.mode, policy.device)
    # With a donor, built components keep the file's tensors until all are built, then those are copied into the
    # donor's modules. Without one (or once a layout differs) each is converted to its run dtype right away.
    donor = reuse if reuse is not None and _can_donate(reuse, policy, choice) else None
    built: dict[str, Any] = dict.fromkeys(COMPONENT_NAMES)
    waiting: list[str] = []  # built, still holding the file's tensors for the donor

    def run_dtype(name: str) -> torch.dtype:
        return policy.vae_dtype if name == "vae" else policy.dtype

    def place(name: str, module: Any) -> None:
        nonlocal donor
        built[name] = module
        if donor is not None and _same_layout(getattr(donor, name), module):
            waiting.append(name)
            return
        donor = None  # no donor, or another layout: this one and any that waited are converted now
        for ready in (*waiting, name):
            _finish(built[ready], storage, run_dtype(ready))
        waiting.clear()

    unet, unused = _build_unet(path, sd, original, where)
    place("unet", unet)
    release("model.diffusion_model.")
    vae, unused_vae = _build_vae(path, sd, original, where)
    place("vae", vae)
    release("first_stage_model.")
    extra: dict[str, Any] = {}
    for slot, style, prefix in _TEXT_TOWERS[kind.family]:
        module, info = _build_text_encoder(path, sd, style, prefix)
        place(slot, module)
        release(prefix)
        unused += info.pop("unused")
        extra[f"{slot}_config"] = info["config"]  # "bundled" or "inferred" (from shapes)
        if info.get("dropped_last_layer"):
            extra["text_encoder_dropped_last_layer"] = True
    vae_dtype = policy.vae_dtype
    if donor is not None and all(_same_layout(getattr(donor, name), m) for name, m in built.items()):
        for name, module in built.items():
            if module is not None:
                _copy_weights(getattr(donor, name), module)
        built = {name: getattr(donor, name) for name in built}
        vae_dtype = donor.vae_dtype  # an fp32 upcast after a NaN lasts for the session
        extra.update({key: donor.extra[key] for key in ("memory", "compiled_modules") if key in donor.extra})
        extra["reused_modules"] = True
        log.info("loaded %s into the previous checkpoint's modules (same layout)", path.name)
    else:
        for ready in waiting:  # the donor has a component this checkpoint lacks: convert what waited for it
            _finish(built[ready], storage, run_dtype(ready))
        if getattr(policy, "channels_last", False):
            acceleration.channels_last(built["unet"])
        # Before anything runs the UNet (the SD2 probe below): offloaded weights need their hooks to be usable.
        extra["memory"] = memory.apply(choice, policy.device, unet=built["unet"], vae=built["vae"],
                                       text_encoders=(built["text_encoder"], built["text_encoder_2"]))
        if getattr(policy, "compile_mode", None):
            extra["compiled_modules"] = acceleration.compile_unet(built["unet"], policy.compile_mode)
    unet, vae = built["unet"], built["vae"]
    encoders = {"text_encoder": built["text_encoder"], "text_encoder_2": built["text_encoder_2"]}

    if kind.family == "sd2" and not kind.inpainting and prediction_source == "default":
        # Keys cannot tell SD2 v-prediction from epsilon: A1111's probe decides, and picks the matching bundled yaml.
        if detect.guess_sd2_v_prediction(unet):
            kind = replace(kind, prediction="v_prediction")
            yaml_path = configs.bundled_yaml(kind)
            original = _read_yaml(yaml_path)
            unet.register_to_config(sample_size=_latent_size(original))
            vae.register_to_config(sample_size=_latent_size(original) * 8)
        prediction_source = "heuristic"

    # SD1 and SDXL's CLIP-L pad with <|endoftext|>; OpenCLIP encoders (SD2, bigG) pad with "!".
    pad = configs.PAD_OPENCLIP if kind.family == "sd2" else configs.PAD_EOS
    tokenizer = configs.load_tokenizer(pad) if encoders["text_encoder"] is not None else None
    tokenizer_2 = configs.load_tokenizer(configs.PAD_OPENCLIP) if encoders["text_encoder_2"] is not None else None
    extra.update(
        config_path=str(yaml_path),
        config_source=source,
        prediction_source=prediction_source,
        default_resolution=_latent_size(original) * 8,
        unused_tensors=unused + unused_vae,
    )
    log.info("loaded %s as %s using %s (%s)", path.name, kind.label, yaml_path.name, source)
    return LoadedModel(
        kind=kind,
        path=path,
        unet=unet,
        vae=vae,
        text_encoder=encoders["text_encoder"],
        tokenizer=tokenizer,
        scheduler_config=scheduler_config_from_yaml(original, kind.prediction),
        device=policy.device,
        dtype=policy.dtype,
        vae_dtype=vae_dtype,
        text_encoder_2=encoders["text_encoder_2"],
        tokenizer_2=tokenizer_2,
        extra=extra,
    )


def load_vae(path: str | Path, vae: Any) -> None:
    """Replace the weights of a loaded ``AutoencoderKL`` with a VAE file's (A1111 ``models/VAE`` files).

    Accepts the original layout (``encoder.down.*``, optionally under ``first_stage_model.``/``vae.``) and the diffusers
    layout. Weights are copied into the existing parameters (keeping their device and dtype); on any error the VAE is
    left untouched, because everything is checked before the first copy.
    """
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    path = Path(path)
    sd = formats.load_state_dict(path, device="cpu")
    sd = {k: v for k, v in sd.items() if not k.startswith(("loss.", "model_ema."))}
    if any(k.startswith(("encoder.down_blocks.", "decoder.up_blocks.")) for k in sd):
        weights = sd
    elif any(".down." in k or ".up." in k or k.startswith(("encoder.", "decoder.")) for k in sd):
        try:
            weights = convert_ldm_vae_checkpoint(sd, dict(vae.config))
        except (KeyError, IndexError) as e:
            raise CorruptFileError(path, f"incomplete VAE file: {e} is missing") from None
    else:
        raise UnknownModelError(path, f"not a VAE file ({len(sd)} tensors, none under encoder./decoder.)")
    expected = vae.state_dict()
    missing = [k for k in expected if k not in weights]
    if missing:
        raise CorruptFileError(path, f"incomplete VAE file: {len(missing)} weights are missing (e.g. {missing[0]})")
    wrong = [k for k, v in expected.items() if tuple(weights[k].shape) != tuple(v.shape)]
    if wrong:
        raise UnknownModelError(
            path, f"this VAE does not fit the loaded model: {wrong[0]} has shape {tuple(weights[wrong[0]].shape)}"
        )
    with torch.no_grad():
        vae.load_state_dict({k: weights[k] for k in expected}, strict=True)
