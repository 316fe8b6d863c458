"""The reverse (diffusers -> original LDM) converter and the tiny single-file fixtures are proven against diffusers'
own LDM -> diffusers conversion: every tensor must come back bit-identical, and the yaml written beside each
checkpoint must rebuild the same architecture through diffusers' config helpers."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.support import ldm_layout as L
from tests.support import tiny_checkpoints as T

su = pytest.importorskip("diffusers.loaders.single_file_utils")


def _assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], what: str) -> None:
    assert set(actual) == set(expected), (
        f"{what}: missing {sorted(set(expected) - set(actual))[:5]}, extra {sorted(set(actual) - set(expected))[:5]}"
    )
    for key, value in expected.items():
        got = actual[key]
        assert got.shape == value.shape and got.dtype == value.dtype, f"{what}: {key} {got.shape} vs {value.shape}"
        assert torch.equal(got, value), f"{what}: {key} differs"


def _no_text_model(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {L._strip_text_model(k): v for k, v in sd.items()}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny safetensors checkpoint (+ yaml) per family, read back from disk by the tests."""
    d = tmp_path_factory.mktemp("tiny")
    return {family: T.write_tiny_checkpoint(family, d, family) for family in T.FAMILIES}


@pytest.mark.parametrize("family", T.FAMILIES)
def test_round_trip_through_diffusers_converters(family: str, written: dict[str, Path]) -> None:
    spec = T.tiny_spec(family)
    ckpt = load_file(str(written[family]))
    parts = T.file_state_dicts(family)  # what was converted; the diffusers configs are spec.unet / spec.vae

    _assert_same(su.convert_ldm_unet_checkpoint(ckpt, spec.unet), parts["unet"], f"{family} unet")
    _assert_same(su.convert_ldm_vae_checkpoint(ckpt, spec.vae), parts["vae"], f"{family} vae")

    for te in spec.text_encoders:
        expected = _no_text_model(parts[te.role])
        if te.style == "clip_l":
            got = _no_text_model(su.convert_ldm_clip_checkpoint(ckpt))
            # real files carry position_ids (the count 197 for SD1.5 includes it); transformers 5 does not persist it
            pos = got.pop("embeddings.position_ids")
            assert pos.dtype == torch.int64 and torch.equal(pos, torch.arange(T.CLIP_POSITIONS)[None])
        else:
            stand_in = SimpleNamespace(config=SimpleNamespace(hidden_size=te.hidden_size))  # read only without a projection
            got = _no_text_model(su.convert_open_clip_checkpoint(stand_in, ckpt, prefix=te.prefix))
            assert ckpt[te.prefix + "logit_scale"].ndim == 0
            if te.file_text_projection and te.projection_dim is None:
                # SD2: diffusers ignores the (unused) projection; it is still in the file, transposed like OpenCLIP
                proj = expected.pop("text_projection.weight")
                assert torch.equal(ckpt[te.prefix + "text_projection"], proj.t())
        _assert_same(got, expected, f"{family} {te.role}")

    # nothing in the file is left unexplained
    known = ("model.diffusion_model.", "first_stage_model.") + tuple(te.prefix for te in spec.text_encoders)
    extras = {k for k in ckpt if not k.startswith(known)}
    schedule = set(L.ddpm_schedule_buffers(0.1, 0.2, 2)) | {"model_ema.decay", "model_ema.num_updates"}
    assert extras == (schedule if spec.schedule_buffers else set())


def _sdxl_text_time(config: dict[str, Any], original: dict[str, Any]) -> dict[str, Any]:
    """What the loader must add for SDXL-shaped yaml: diffusers only picks "text_time" when context_dim is 2048/1280."""
    params = original["model"]["params"]
    if "conditioner_config" in params and config["class_embed_type"] == "projection":
        outdims = {
            e["params"]["outdim"]
            for e in params["conditioner_config"]["params"]["emb_models"]
            if e["target"].endswith("ConcatTimestepEmbedderND")
        }
        assert len(outdims) == 1
        config = dict(config, class_embed_type=None, addition_embed_type="text_time", addition_time_embed_dim=outdims.pop())
    return config


def _init_defaults(cls: Any) -> dict[str, Any]:
    import inspect

    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()}


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, (list, tuple)) else v


@pytest.mark.parametrize("family", T.FAMILIES)
def test_yaml_rebuilds_the_architecture(family: str, written: dict[str, Path]) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    spec = T.tiny_spec(family)
    path = written[family]
    original = yaml.safe_load(path.with_suffix(".yaml").read_text())
    assert original == spec.original_config
    ckpt = load_file(str(path))

    ucfg = _sdxl_text_time(su.create_unet_diffusers_config_from_ldm(original, ckpt), original)
    default = _init_defaults(UNet2DConditionModel)
    for key, value in ucfg.items():
        if key != "sample_size":
            assert _norm(value) == _norm(spec.unet.get(key, default[key])), key
    unet = UNet2DConditionModel(**ucfg)
    unet.load_state_dict(su.convert_ldm_unet_checkpoint(ckpt, ucfg), strict=True)

    vcfg = su.create_vae_diffusers_config_from_ldm(original, ckpt)
    for key, value in vcfg.items():
        if key != "sample_size":
            assert _norm(value) == _norm(spec.vae[key]), key
    vae = AutoencoderKL(**vcfg)
    vae.load_state_dict(su.convert_ldm_vae_checkpoint(ckpt, vcfg), strict=True)

    # text encoders: everything the loader infers is in the file's shapes (heads = max(1, hidden // 64))
    for te in spec.text_encoders:
        if te.style == "clip_l":
            emb = ckpt[te.prefix + "text_model.embeddings.token_embedding.weight"]
            fc1 = ckpt[te.prefix + "text_model.encoder.layers.0.mlp.fc1.weight"]
            layers = {k.split(".layers.")[1].split(".")[0] for k in ckpt if k.startswith(te.prefix + "text_model.encoder.layers.")}
        else:
            emb = ckpt[te.prefix + "token_embedding.weight"]
            fc1 = ckpt[te.prefix + "transformer.resblocks.0.mlp.c_fc.weight"]
            layers = {k.split(".resblocks.")[1].split(".")[0] for k in ckpt if k.startswith(te.prefix + "transformer.resblocks.")}
        assert tuple(emb.shape) == (T.CLIP_VOCAB, te.hidden_size)
        assert fc1.shape[0] == 4 * te.hidden_size
        assert len(layers) == te.num_layers + te.file_extra_layers
        if te.projection_dim is not None:
            assert tuple(ckpt[te.prefix + "text_projection"].shape) == (te.hidden_size, te.projection_dim)


def test_expected_models_hold_the_used_subset_of_the_file() -> None:
    # SD2: the loader's text encoder drops the file's last (unused) resblock, like real SD2 (24 resblocks, 23 used)
    file_sd = _no_text_model(T.file_state_dicts("sd2")["text_encoder"])
    used = T.tiny_diffusers_state_dicts("sd2")["text_encoder"]
    n = T.tiny_spec("sd2").text_encoders[0].num_layers
    assert {k.split(".")[2] for k in used if k.startswith("encoder.layers.")} == {str(i) for i in range(n)}
    assert f"encoder.layers.{n}.mlp.fc1.weight" in file_sd and "text_projection.weight" in file_sd
    assert "text_projection.weight" not in used
    for key, value in used.items():
        assert torch.equal(value, file_sd[key]), key
    sdxl = T.build_tiny_models("sdxl")
    assert type(sdxl["text_encoder"]).__name__ == "CLIPTextModel"
    assert type(sdxl["text_encoder_2"]).__name__ == "CLIPTextModelWithProjection"
    assert sdxl["unet"].config.cross_attention_dim == 32 + 64


def test_open_clip_non_square_projection_round_trip() -> None:
    # catches a transposition mistake that a square projection would hide
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=100, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, projection_dim=48, hidden_act="gelu")
    model = T._fill_(CLIPTextModelWithProjection(cfg), 7)
    ldm = L.open_clip_to_ldm(model.state_dict(), L.SDXL_OPEN_CLIP_PREFIX)
    assert tuple(ldm[L.SDXL_OPEN_CLIP_PREFIX + "text_projection"].shape) == (64, 48)
    assert tuple(ldm[L.SDXL_OPEN_CLIP_PREFIX + "transformer.resblocks.1.attn.in_proj_weight"].shape) == (192, 64)
    got = su.convert_open_clip_checkpoint(model, ldm, prefix=L.SDXL_OPEN_CLIP_PREFIX)
    _assert_same(got, model.state_dict(), "open_clip")


def test_full_size_sd15_layout_on_meta() -> None:
    comps = T.sd15_meta_ldm_components()
    assert {k: len(v) for k, v in comps.items()} == {"unet": 686, "vae": 248, "text_encoder": 197}
    flat = {k: v for comp in comps.values() for k, v in comp.items()}
    shapes = {
        "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
        "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
        "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "model.diffusion_model.input_blocks.4.0.skip_connection.weight": (640, 320, 1, 1),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
        "model.diffusion_model.middle_block.1.transformer_blocks.0.ff.net.0.proj.weight": (10240, 1280),
        "model.diffusion_model.output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.8.2.conv.weight": (640, 640, 3, 3),
        "model.diffusion_model.output_blocks.11.0.skip_connection.weight": (320, 640, 1, 1),
        "model.diffusion_model.time_embed.2.weight": (1280, 1280),
        "model.diffusion_model.out.2.weight": (4, 320, 3, 3),
        "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight": (256, 128, 1, 1),
        "first_stage_model.encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "first_stage_model.decoder.mid.attn_1.proj_out.weight": (512, 512, 1, 1),
        "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight": (128, 256, 1, 1),
        "first_stage_model.decoder.up.3.upsample.conv.weight": (512, 512, 3, 3),
        "first_stage_model.decoder.up.0.block.2.conv2.weight": (128, 128, 3, 3),
        "first_stage_model.quant_conv.weight": (8, 8, 1, 1),
        "first_stage_model.post_quant_conv.weight": (4, 4, 1, 1),
        "cond_stage_model.transformer.text_model.embeddings.position_ids": (1, 77),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
        "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight": (768, 3072),
        "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,),
    }
    for key, shape in shapes.items():
        assert tuple(flat[key].shape) == shape, key
    # and diffusers maps every one of them back (key sets and shapes; meta tensors carry no data)
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**T.SD15_UNET)
        vae = AutoencoderKL(**T.SD15_VAE)
    for got, model in ((su.convert_ldm_unet_checkpoint(flat, dict(unet.config)), unet),
                       (su.convert_ldm_vae_checkpoint(flat, dict(vae.config)), vae)):
        exp = model.state_dict()
        assert set(got) == set(exp)
        assert all(got[k].shape == exp[k].shape for k in exp)


def test_formats_dtypes_and_determinism(tmp_path: Path, written: dict[str, Path]) -> None:
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    again = T.write_tiny_checkpoint("sd1", tmp_path, "again")
    assert digest(again) == digest(written["sd1"])
    assert digest(T.write_tiny_checkpoint("sd1", tmp_path, "other", seed=1)) != digest(again)

    ckpt = T.write_tiny_checkpoint("sd1", tmp_path, "pickled", fmt="ckpt")
    assert ckpt.suffix == ".ckpt" and (tmp_path / "pickled.yaml").is_file()
    loaded = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert set(loaded) == {"state_dict"}
    _assert_same(loaded["state_dict"], load_file(str(again)), "ckpt vs safetensors")

    half = load_file(str(T.write_tiny_checkpoint("sdxl", tmp_path, "half", dtype=torch.float16, with_yaml=False)))
    assert not (tmp_path / "half.yaml").exists()
    dtypes = {v.dtype for k, v in half.items() if not k.endswith("position_ids")}
    assert dtypes == {torch.float16}
    assert half["conditioner.embedders.0.transformer.text_model.embeddings.position_ids"].dtype == torch.int64

    # the public state dict is a copy: changing it does not touch what later files get
    sd = T.tiny_ldm_state_dict("sd1")
    sd["model.diffusion_model.out.2.bias"].zero_()
    assert not torch.equal(T.tiny_ldm_state_dict("sd1")["model.diffusion_model.out.2.bias"], sd["model.diffusion_model.out.2.bias"])
