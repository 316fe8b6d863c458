"""The offline checkpoint loader: tiny random models of every family, full-size layouts on meta, errors, devices."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from modules.models import configs, formats, loader
from modules.models.configs import make_tokenizer_files
from modules.models.devices import DevicePolicy, torch_gc
from modules.models.loader import build_from_state_dict, load_checkpoint, load_vae
from modules.models.types import CorruptFileError, ModelFileError, ModelKind, UnknownModelError
from tests.support.tiny_checkpoints import (
    FAMILIES,
    tiny_diffusers_state_dicts,
    tiny_ldm_state_dict,
    tiny_spec,
    write_tiny_checkpoint,
)
from tests.test_detect import full_size_meta_state_dict

EXPECTED_KIND = {
    "sd1": ModelKind("sd1"),
    "sd1-inpainting": ModelKind("sd1", inpainting=True, in_channels=9),
    "sd2": ModelKind("sd2"),
    "sd2-v": ModelKind("sd2", prediction="v_prediction"),
    "sdxl": ModelKind("sdxl"),
    "sdxl-inpainting": ModelKind("sdxl", inpainting=True, in_channels=9),
    "sdxl-refiner": ModelKind("sdxl_refiner"),
}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every tiny family written once, with its ``<stem>.yaml`` beside it."""
    directory = tmp_path_factory.mktemp("tiny")
    for family in FAMILIES:
        write_tiny_checkpoint(family, directory, family)
    return directory


def _same(module: torch.nn.Module, expected: dict[str, torch.Tensor]) -> bool:
    got = module.state_dict()
    return set(got) == set(expected) and all(torch.equal(got[k], expected[k].to(got[k].dtype)) for k in expected)


# --------------------------------------------------------------------------------------------------------------------
# Tiny models of every family, through the real loader


@pytest.mark.parametrize("family", FAMILIES)
def test_load_every_tiny_family(tiny_dir: Path, family: str) -> None:
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    model = load_checkpoint(tiny_dir / f"{family}.safetensors", DevicePolicy.cpu())
    spec = tiny_spec(family)
    assert model.kind == EXPECTED_KIND[family]
    assert model.extra["config_source"] == "beside" and model.extra["prediction_source"] == "yaml"
    assert model.extra["config_path"] == str(tiny_dir / f"{family}.yaml")

    # every tensor where diffusers/transformers expect it, bit for bit
    for name, expected in tiny_diffusers_state_dicts(family).items():
        assert _same(getattr(model, name), expected), name
    for key, value in spec.unet.items():
        got = model.unet.config[key]
        assert (list(got) if isinstance(got, (list, tuple)) else got) == value, key
    assert model.vae.config.scaling_factor == spec.vae["scaling_factor"]

    # text encoders and tokenizers in their slots
    if family == "sdxl-refiner":
        assert model.text_encoder is None and model.tokenizer is None
    else:
        assert type(model.text_encoder) is CLIPTextModel
        pad = "!" if family.startswith("sd2") else "<|endoftext|>"
        assert model.tokenizer.pad_token == pad
    if family.startswith("sdxl"):
        assert type(model.text_encoder_2) is CLIPTextModelWithProjection
        assert model.tokenizer_2.pad_token == "!" and model.tokenizer_2.pad_token_id == 0
    else:
        assert model.text_encoder_2 is None and model.tokenizer_2 is None
    for te in spec.text_encoders:
        encoder = getattr(model, te.role)
        assert encoder.config.num_hidden_layers == te.num_layers
        assert encoder.config.num_attention_heads == max(1, te.hidden_size // 64)
        assert encoder.config.hidden_act == ("quick_gelu" if te.style == "clip_l" else "gelu")
        assert model.extra[f"{te.role}_config"] == "inferred"

    # placement and scheduler
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    for module in (model.unet, model.vae, model.text_encoder, model.text_encoder_2):
        if module is not None:
            assert not module.training
            assert all(p.dtype == torch.float32 and not p.requires_grad for p in module.parameters())
    sc = model.scheduler_config
    assert sc["prediction_type"] == spec.prediction_type
    assert (sc["num_train_timesteps"], sc["beta_start"], sc["beta_end"]) == (1000, 0.00085, 0.012)
    assert (sc["beta_schedule"], sc["timestep_spacing"], sc["steps_offset"]) == ("scaled_linear", "leading", 1)
    assert model.extra["default_resolution"] == {"sd2-v": 768}.get(family, 1024 if family.startswith("sdxl") else 512)


def test_tiny_sdxl_unet_runs(tiny_dir: Path) -> None:
    """The vector conditioning width comes from the yaml (outdim), not diffusers' 256 default."""
    model = load_checkpoint(tiny_dir / "sdxl.safetensors")
    te2 = model.text_encoder_2.config.projection_dim
    with torch.no_grad():
        out = model.unet(
            torch.zeros(1, 4, 8, 8), torch.tensor([10]), encoder_hidden_states=torch.zeros(1, 77, 96),
            added_cond_kwargs={"text_embeds": torch.zeros(1, te2), "time_ids": torch.zeros(1, 6)},
        ).sample
    assert out.shape == (1, 4, 8, 8)


def test_ckpt_and_fp16_files(tmp_path: Path) -> None:
    expected = tiny_diffusers_state_dicts("sd1")
    ckpt = write_tiny_checkpoint("sd1", tmp_path, "pickled", fmt="ckpt")
    assert formats.sniff_format(ckpt) == "zip-pickle"
    model = load_checkpoint(ckpt)
    assert _same(model.unet, expected["unet"]) and _same(model.text_encoder, expected["text_encoder"])

    half = write_tiny_checkpoint("sd1", tmp_path, "half", dtype=torch.float16)
    model = load_checkpoint(half, DevicePolicy.cpu())
    weight = model.unet.conv_in.weight
    assert weight.dtype == torch.float32  # the policy decides the dtype, not the file
    assert torch.equal(weight, expected["unet"]["conv_in.weight"].half().float())


# --------------------------------------------------------------------------------------------------------------------
# Which yaml, which prediction type


def test_without_yaml_the_bundled_config_is_used(tmp_path: Path) -> None:
    path = write_tiny_checkpoint("sd1", tmp_path, "noyaml", with_yaml=False)
    with pytest.raises(UnknownModelError, match="do not match the config v1-inference.yaml"):
        load_checkpoint(path)


def test_explicit_config_wins(tiny_dir: Path) -> None:
    model = load_checkpoint(tiny_dir / "sd2.safetensors", config_path=tiny_dir / "sd2-v.yaml")
    assert model.kind.prediction == "v_prediction" and model.extra["config_source"] == "explicit"
    assert model.scheduler_config["prediction_type"] == "v_prediction"


@pytest.mark.parametrize("is_v", [True, False])
def test_sd2_without_yaml_uses_the_probe(tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                         is_v: bool) -> None:
    """No yaml beside an SD2 file: A1111's UNet probe decides, then the matching bundled yaml is chosen."""
    path = tmp_path / "sd2.safetensors"
    shutil.copy(tiny_dir / "sd2.safetensors", path)
    tiny_yaml = (tiny_dir / "sd2.yaml").read_text()
    chosen: list[ModelKind] = []

    def fake_bundled(kind: ModelKind) -> Path:  # stands in for the full-size bundled yamls
        chosen.append(kind)
        out = tmp_path / f"bundled-{kind.label}.yaml"
        extra = '    parameterization: "v"\n' if kind.prediction == "v_prediction" else ""
        out.write_text(tiny_yaml.replace("  params:\n", "  params:\n" + extra, 1))
        return out

    monkeypatch.setattr(loader.configs, "bundled_yaml", fake_bundled)
    monkeypatch.setattr(loader.detect, "guess_sd2_v_prediction", lambda unet: is_v)
    model = load_checkpoint(path)
    assert model.extra["config_source"] == "bundled" and model.extra["prediction_source"] == "heuristic"
    assert model.kind.prediction == ("v_prediction" if is_v else "epsilon")
    assert model.scheduler_config["prediction_type"] == model.kind.prediction
    assert chosen[-1] == model.kind


# --------------------------------------------------------------------------------------------------------------------
# Errors: always a ModelFileError with a sentence, never a raw KeyError


def _variant(tiny_dir: Path, tmp_path: Path, family: str, edit: Any, yaml: str | None = None) -> Path:
    sd = formats.load_state_dict(tiny_dir / f"{family}.safetensors")
    edit(sd)
    path = tmp_path / f"{family}-variant.safetensors"
    save_file(sd, str(path))
    shutil.copy(tiny_dir / f"{yaml or family}.yaml", path.with_suffix(".yaml"))
    return path


def _drop(prefix: str, only_first: bool = False):
    def edit(sd: dict[str, torch.Tensor]) -> None:
        keys = [k for k in sd if k.startswith(prefix)]
        for k in keys[:1] if only_first else keys:
            del sd[k]
    return edit


@pytest.mark.parametrize(
    "family, edit, error, message",
    [
        ("sd1", _drop("model.diffusion_model.output_blocks.2.", True), CorruptFileError, "UNet weights are missing"),
        ("sd1", _drop("first_stage_model."), CorruptFileError, "no VAE weights"),
        ("sd1", _drop("first_stage_model.decoder.conv_out."), CorruptFileError, "VAE weights are missing"),
        ("sd1", _drop("cond_stage_model.transformer.text_model.final_layer_norm."), CorruptFileError,
         "text encoder weights are missing"),
        ("sd2", _drop("cond_stage_model.model.token_embedding."), CorruptFileError, "incomplete text encoder"),
        ("sdxl", _drop("conditioner.embedders.1.model.ln_final."), CorruptFileError, "text encoder weights are missing"),
        ("sdxl", _drop("model.diffusion_model.label_emb."), UnknownModelError, "no label_emb"),
    ],
)
def test_damaged_checkpoints(tiny_dir: Path, tmp_path: Path, family: str, edit: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        load_checkpoint(_variant(tiny_dir, tmp_path, family, edit))


def test_wrong_yaml_beside_the_checkpoint(tiny_dir: Path, tmp_path: Path) -> None:
    path = _variant(tiny_dir, tmp_path, "sd2", lambda sd: None, yaml="sd1")
    with pytest.raises(UnknownModelError, match="do not match the config sd2-variant.yaml"):
        load_checkpoint(path)


def test_bad_yaml_beside_the_checkpoint(tiny_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    shutil.copy(tiny_dir / "sd1.safetensors", path)
    path.with_suffix(".yaml").write_text("model: [unclosed")
    with pytest.raises(CorruptFileError, match="cannot be read as YAML") as err:
        load_checkpoint(path)
    assert err.value.path.name == "m.yaml"
    path.with_suffix(".yaml").write_text("model:\n  params:\n    foo: 1\n")
    with pytest.raises(CorruptFileError, match="not a Stable Diffusion config"):
        load_checkpoint(path)


def test_non_sd_and_unsafe_files(tmp_path: Path) -> None:
    lora = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(4, 8)}, str(lora))
    with pytest.raises(UnknownModelError, match="LoRA"):
        load_checkpoint(lora)
    (tmp_path / "empty.ckpt").touch()
    with pytest.raises(ModelFileError, match="empty"):
        load_checkpoint(tmp_path / "empty.ckpt")


# --------------------------------------------------------------------------------------------------------------------
# Full-size layouts with the bundled configs, on the meta device (no memory, no weights)

META = DevicePolicy(device=torch.device("meta"), dtype=torch.float16, vae_dtype=torch.float16)
CONFIGS = configs.CONFIGS_DIR


@pytest.mark.parametrize(
    "family, in_channels, config, label, unet_params, yaml_name, encoders",
    [
        ("sd1", 4, None, "sd1", 859_520_964, "v1-inference.yaml", [("CLIPTextModel", 12, 768, 12)]),
        ("sd1", 9, None, "sd1-inpainting", 859_535_364, "v1-inpainting-inference.yaml", [("CLIPTextModel", 12, 768, 12)]),
        ("sd2", 4, CONFIGS / "v2-inference-v.yaml", "sd2-v", 865_910_724, "v2-inference-v.yaml",
         [("CLIPTextModel", 23, 1024, 16)]),
        ("sd2", 9, None, "sd2-inpainting", 865_925_124, "v2-inpainting-inference.yaml", [("CLIPTextModel", 23, 1024, 16)]),
        ("sdxl", 4, None, "sdxl", 2_567_463_684, "sd_xl_base.yaml",
         [("CLIPTextModel", 12, 768, 12), ("CLIPTextModelWithProjection", 32, 1280, 20)]),
        ("sdxl_refiner", 4, None, "sdxl_refiner", 2_259_526_660, "sd_xl_refiner.yaml",
         [("CLIPTextModelWithProjection", 32, 1280, 20)]),
    ],
)
def test_full_size_layouts_with_bundled_configs(family: str, in_channels: int, config: Path | None, label: str,
                                                unet_params: int, yaml_name: str, encoders: list) -> None:
    sd = full_size_meta_state_dict(family, in_channels)
    model = build_from_state_dict(sd, Path(f"/models/{family}.safetensors"), META, config_path=config)
    assert model.kind.label == label
    assert Path(model.extra["config_path"]).name == yaml_name
    assert sum(p.numel() for p in model.unet.parameters()) == unet_params
    assert model.extra["unused_tensors"] == 0
    got = [(type(e).__name__, e.config.num_hidden_layers, e.config.hidden_size, e.config.num_attention_heads)
           for e in (model.text_encoder, model.text_encoder_2) if e is not None]
    assert got == encoders
    assert all(v == "bundled" for k, v in model.extra.items() if k.endswith("encoder_config") or k.endswith("_2_config"))
    assert model.vae.config.scaling_factor == (0.13025 if family.startswith("sdxl") else 0.18215)
    if family == "sdxl":
        assert model.unet.config.addition_time_embed_dim == 256
        assert model.unet.config.projection_class_embeddings_input_dim == 2816
        assert model.text_encoder_2.config.projection_dim == 1280


def test_text_encoder_head_rule() -> None:
    """Shapes that do not match a bundled tower: heads = max(1, hidden // 64), lowered until it divides hidden."""
    def weights(hidden: int) -> dict[str, torch.Tensor]:
        meta = {"device": "meta"}
        return {
            "text_model.embeddings.token_embedding.weight": torch.empty(49408, hidden, **meta),
            "text_model.embeddings.position_embedding.weight": torch.empty(77, hidden, **meta),
            "text_model.encoder.layers.0.mlp.fc1.weight": torch.empty(4 * hidden, hidden, **meta),
            "text_model.encoder.layers.1.mlp.fc1.weight": torch.empty(4 * hidden, hidden, **meta),
        }

    for hidden, heads in [(32, 1), (64, 1), (128, 2), (192, 3), (200, 2), (768, 12)]:
        values, source = loader.text_encoder_config_for("clip_l", weights(hidden))
        assert (values["num_attention_heads"], values["num_hidden_layers"], source) == (heads, 2, "inferred")
        assert values["hidden_act"] == "quick_gelu"
    assert loader.text_encoder_config_for("openclip_h", weights(64))[0]["hidden_act"] == "gelu"


# --------------------------------------------------------------------------------------------------------------------
# VAE files


def _ldm_vae_file(tmp_path: Path, seed: int, prefix: str = "") -> Path:
    sd = tiny_ldm_state_dict("sd1", seed)
    vae = {prefix + k.removeprefix("first_stage_model."): v for k, v in sd.items() if k.startswith("first_stage_model.")}
    path = tmp_path / f"vae{seed}{prefix.strip('.')}.safetensors"
    save_file(vae, str(path))
    return path


def test_load_vae_replaces_weights(tiny_dir: Path, tmp_path: Path) -> None:
    model = load_checkpoint(tiny_dir / "sd1.safetensors")
    other = tiny_diffusers_state_dicts("sd1", seed=1)["vae"]
    load_vae(_ldm_vae_file(tmp_path, 1), model.vae)
    assert _same(model.vae, other)

    original = tiny_diffusers_state_dicts("sd1")["vae"]
    diffusers_file = tmp_path / "diffusers_vae.safetensors"
    save_file({k: v.contiguous() for k, v in original.items()}, str(diffusers_file))
    load_vae(diffusers_file, model.vae)  # the diffusers layout works too
    assert _same(model.vae, original)

    wrong = tmp_path / "wrong.safetensors"
    save_file({k: torch.zeros(2, 2) for k in original}, str(wrong))
    with pytest.raises(UnknownModelError, match="does not fit"):
        load_vae(wrong, model.vae)
    assert _same(model.vae, original)  # untouched after a refused file


# --------------------------------------------------------------------------------------------------------------------
# Devices


def test_device_policy_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from modules.models import devices

    monkeypatch.setattr(devices, "_cuda_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    p = DevicePolicy.from_flags(no_half=False, no_half_vae=False, precision="autocast", use_cpu=[])
    assert (p.device.type, p.dtype, p.vae_dtype) == ("cpu", torch.float32, torch.float32)
    torch_gc()


@pytest.mark.parametrize(
    "flags, device, dtype, vae_dtype",
    [
        ({}, "cuda", torch.float16, torch.float16),
        ({"no_half_vae": True}, "cuda", torch.float16, torch.float32),
        ({"no_half": True}, "cuda", torch.float32, torch.float32),
        ({"precision": "full"}, "cuda", torch.float32, torch.float32),
        ({"use_cpu": ["all"]}, "cpu", torch.float32, torch.float32),
        ({"use_cpu": ["SD"]}, "cpu", torch.float32, torch.float32),
        ({"use_cpu": ["esrgan"]}, "cuda", torch.float16, torch.float16),
    ],
)
def test_device_policy_with_cuda(monkeypatch: pytest.MonkeyPatch, flags: dict, device: str, dtype: torch.dtype,
                                 vae_dtype: torch.dtype) -> None:
    from modules.models import devices

    monkeypatch.setattr(devices, "_cuda_available", lambda: True)
    kwargs = {"no_half": False, "no_half_vae": False, "precision": "autocast", "use_cpu": []} | flags
    p = DevicePolicy.from_flags(**kwargs)
    assert (p.device.type, p.dtype, p.vae_dtype) == (device, dtype, vae_dtype)
    if flags.get("use_cpu") == ["esrgan"]:
        assert p.device_for("esrgan").type == "cpu" and p.device_for("gfpgan").type == "cuda"


def test_device_policy_mps(monkeypatch: pytest.MonkeyPatch) -> None:
    from modules.models import devices

    monkeypatch.setattr(devices, "_cuda_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: True)
    p = DevicePolicy.from_flags(no_half=False, no_half_vae=True, precision="autocast", use_cpu=None)
    assert (p.device.type, p.dtype, p.vae_dtype) == ("mps", torch.float16, torch.float32)
    assert p.describe() == {"device": "mps", "dtype": "float16", "vae_dtype": "float32", "cpu_tasks": [],
                            "memory_mode": "auto", "channels_last": False, "compile": None}


# --------------------------------------------------------------------------------------------------------------------
# Bundled tokenizer


def test_bundled_tokenizer_matches_clip() -> None:
    tok = configs.load_tokenizer()
    ids = tok("a photograph of an astronaut riding a horse").input_ids
    assert ids == [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]
    assert len(tok) == 49408 and tok.model_max_length == 77 and tok.pad_token_id == 49407
    assert configs.load_tokenizer(configs.PAD_OPENCLIP).pad_token_id == 0
    licence = (configs.TOKENIZER_DIR / "LICENSE").read_text()
    assert "Copyright (c) 2021 OpenAI" in licence and "Permission is hereby granted" in licence


def test_tokenizer_files_are_reproducible(tmp_path: Path) -> None:
    bpe = make_tokenizer_files.find_bpe_file()
    vocab, merges = make_tokenizer_files.build(bpe)
    assert json.loads((configs.TOKENIZER_DIR / "vocab.json").read_text(encoding="utf-8")) == vocab
    committed = (configs.TOKENIZER_DIR / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert committed == ["#version: 0.2", *merges]
    assert len(gzip.decompress(bpe.read_bytes())) > 1_000_000
