"""LoRA files and their application: registry names, kohya/LoCon/peft key mapping (tiny and full-size layouts), the
merge numerics, bit-identical restore, per-file errors and the ``Lora hashes`` infotext value."""

from __future__ import annotations

import copy
import os
import pickle
from pathlib import Path

import pytest
import torch

from modules import hashing
from modules.models import configs
from modules.models import lora as L
from modules.models.devices import DevicePolicy
from modules.models.loader import build_from_state_dict, load_checkpoint
from tests.support.tiny_checkpoints import write_tiny_checkpoint
from tests.support.tiny_lora import expected_delta, kohya_lora, to_peft, write_lora

# --------------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def sd1(tmp_path_factory: pytest.TempPathFactory):
    path = write_tiny_checkpoint("sd1", tmp_path_factory.mktemp("sd1"), "tiny")
    return load_checkpoint(path, DevicePolicy.cpu())


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory: pytest.TempPathFactory):
    path = write_tiny_checkpoint("sdxl", tmp_path_factory.mktemp("sdxl"), "tinyxl")
    return load_checkpoint(path, DevicePolicy.cpu())


def _snapshot(model) -> dict[str, torch.Tensor]:
    out = {}
    for slot in L.COMPONENTS:
        comp = getattr(model, slot, None)
        if comp is not None:
            out.update({f"{slot}.{k}": v.detach().clone() for k, v in comp.state_dict().items()})
    return out


def _assert_same(model, snap: dict[str, torch.Tensor]) -> None:
    now = _snapshot(model)
    assert set(now) == set(snap)
    bad = [k for k in snap if not torch.equal(now[k], snap[k])]
    assert not bad, bad[:5]


# kohya name -> (component, diffusers/transformers module name) on the tiny SD1 model
SD1_LAYERS = {
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q":
        ("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"),
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k":
        ("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"),
    "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out_0":
        ("unet", "up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0"),
    "lora_unet_mid_block_attentions_0_transformer_blocks_0_ff_net_0_proj":
        ("unet", "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj"),
    "lora_unet_down_blocks_1_attentions_1_proj_in": ("unet", "down_blocks.1.attentions.1.proj_in"),  # 1x1 conv
    "lora_unet_down_blocks_0_resnets_0_conv1": ("unet", "down_blocks.0.resnets.0.conv1"),  # LoCon 3x3
    "lora_unet_down_blocks_0_downsamplers_0_conv": ("unet", "down_blocks.0.downsamplers.0.conv"),
    "lora_te_text_model_encoder_layers_0_mlp_fc1": ("text_encoder", "encoder.layers.0.mlp.fc1"),
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj": ("text_encoder", "encoder.layers.0.self_attn.q_proj"),
    "lora_te_text_model_encoder_layers_1_self_attn_out_proj": ("text_encoder", "encoder.layers.1.self_attn.out_proj"),
}

# SDXL: kohya trains on the SGM UNet, so its UNet names are the original LDM ones
SDXL_LAYERS = {
    "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q":
        ("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"),
    "lora_unet_output_blocks_0_1_transformer_blocks_1_attn2_to_k":
        ("unet", "up_blocks.0.attentions.0.transformer_blocks.1.attn2.to_k"),
    "lora_unet_middle_block_1_proj_out": ("unet", "mid_block.attentions.0.proj_out"),
    "lora_unet_input_blocks_1_0_in_layers_2": ("unet", "down_blocks.0.resnets.0.conv1"),
    "lora_unet_output_blocks_2_2_conv": ("unet", "up_blocks.0.upsamplers.0.conv"),
    "lora_te1_text_model_encoder_layers_0_self_attn_k_proj": ("text_encoder", "encoder.layers.0.self_attn.k_proj"),
    "lora_te2_text_model_encoder_layers_1_mlp_fc2": ("text_encoder_2", "text_model.encoder.layers.1.mlp.fc2"),
}


def _weight(model, component: str, name: str) -> torch.Tensor:
    return getattr(model, component).get_submodule(name).weight


def _shapes(model, layers) -> dict[str, tuple[int, ...]]:
    return {k: tuple(_weight(model, c, n).shape) for k, (c, n) in layers.items()}


def _unet_out(unet, seed: int = 0, added: dict | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    sample = torch.randn(1, 4, 8, 8, generator=g)
    context = torch.randn(1, 77, cross, generator=g)
    with torch.no_grad():
        return unet(sample, 10, encoder_hidden_states=context, added_cond_kwargs=added).sample


# --------------------------------------------------------------------------------------------------------------------
# Registry


def test_registry_names_alias_metadata_and_refresh(tmp_path: Path) -> None:
    lora_dir = tmp_path / "models" / "Lora"
    extra = tmp_path / "extra"
    sd = kohya_lora({"lora_te_text_model_encoder_layers_0_mlp_fc1": (128, 32)})
    write_lora(lora_dir, "plain", sd)
    write_lora(lora_dir / "style" / "anime", "detail", sd, metadata={"ss_output_name": "DetailTweaker", "ss_x": "1"})
    write_lora(lora_dir / "other", "detail", sd)  # same stem in another folder: the first in scan order wins
    write_lora(lora_dir, "a", sd, metadata={"ss_output_name": "shared"})
    write_lora(lora_dir, "b", sd, metadata={"ss_output_name": "shared"})  # alias used twice: not a name
    write_lora(lora_dir, "c", sd, metadata={"ss_output_name": "plain"})  # alias spelled like a stem: the stem wins
    write_lora(extra, "pickled", sd, fmt="pt")
    write_lora(extra, "old", sd, fmt="ckpt")
    (lora_dir / "notes.txt").write_text("not a lora")
    (lora_dir / "empty.safetensors").touch()

    reg = L.LoraRegistry([lora_dir, extra], hashing.HashCache(None))
    names = sorted(i.relpath for i in reg.items())
    assert names == ["a", "b", "c", "empty", "old", "other/detail", "pickled", "plain", "style/anime/detail"]
    assert "empty" in reg.find("empty").problem
    assert reg.find("detail").relpath == "other/detail"  # natural order: "other" before "style"
    assert reg.find("style/anime/detail").relpath == "style/anime/detail"
    assert reg.find("style\\anime\\detail").relpath == "style/anime/detail"
    assert reg.find("DetailTweaker").relpath == "style/anime/detail"
    assert reg.find("shared") is None
    assert reg.find("plain").name == "plain"
    assert reg.find("c").alias == "plain"
    assert reg.find("pickled").path.suffix == ".pt" and reg.find("old").path.suffix == ".ckpt"
    assert reg.find("nope") is None and reg.find("") is None
    assert [p.name for _, p in reg.duplicates] == ["detail.safetensors"]

    item = reg.find("DetailTweaker")
    assert item.metadata == {"ss_output_name": "DetailTweaker", "ss_x": "1"} and item.alias == "DetailTweaker"
    assert reg.find("pickled").metadata == {}
    api = item.api_dict()
    assert api == {"name": "detail", "alias": "DetailTweaker", "path": str(item.path), "metadata": item.metadata}
    assert len(reg.api_list()) == len(reg)

    write_lora(lora_dir / "new", "fresh", sd)
    assert reg.find("fresh") is None
    reg.refresh()
    assert reg.find("fresh").relpath == "new/fresh"


def test_names_never_resolve_outside_the_lora_folders(tmp_path: Path, sd1) -> None:
    models = tmp_path / "models"
    lora_dir = models / "Lora"
    sd = kohya_lora(dict(list(_shapes(sd1, SD1_LAYERS).items())[:1]))
    write_lora(models, "x", sd)  # models/x.safetensors: outside models/Lora
    write_lora(tmp_path, "x", sd)
    write_lora(lora_dir / "sub", "inside", sd)
    reg = L.LoraRegistry([lora_dir])
    for name in ["../x", "../../x", "../../models/x", str(models / "x"), str(models / "x.safetensors"),
                 "sub/../../x", "..\\x", "/x", "./../x", "sub/../inside"]:
        assert reg.find(name) is None, name
    assert reg.find("sub/inside") is not None
    snap = _snapshot(sd1)
    with L.applied_loras(sd1, [L.LoraRequest("../../x", 1.0)], registry=reg) as report:
        assert report.applied == [] and report.not_found == ["../../x"]
        assert report.warnings == ["Networks not found: ../../x"]
        _assert_same(sd1, snap)


def test_shorthash_is_a1111s_lora_hash_and_cached(tmp_path: Path) -> None:
    sd = kohya_lora({"lora_te_text_model_encoder_layers_0_mlp_fc1": (128, 32)})
    st = write_lora(tmp_path, "st", sd)
    pt = write_lora(tmp_path, "pk", sd, fmt="pt")
    write_lora(tmp_path, "meta", sd, metadata={"sshs_model_hash": "ABCDEF0123456789" * 4})
    cache = hashing.HashCache(None)
    reg = L.LoraRegistry([tmp_path], cache)
    assert reg.find("st").shorthash == hashing.addnet_hash_safetensors(st)[:12]
    assert reg.find("pk").shorthash == hashing.sha256_file(pt)[:12]
    assert reg.find("meta").shorthash == "abcdef012345"  # A1111 trusts the trainer's sshs_model_hash
    assert cache.entries("hashes-addnet")["lora/st"]["sha256"] == hashing.addnet_hash_safetensors(st)
    assert cache.entries("hashes")["lora/pk"]["sha256"] == hashing.sha256_file(pt)

    kept = reg.find("st")
    reg.refresh()  # an unchanged file keeps its computed hash across a re-scan
    assert reg.find("st") is not kept and reg.find("st")._hash == kept._hash

    # --no-hashing: only cached values
    assert L.LoraRegistry([tmp_path], cache, hashing=False).find("st").shorthash == reg.find("st").shorthash
    assert L.LoraRegistry([tmp_path], hashing.HashCache(None), hashing=False).find("st").shorthash is None


def test_request_arguments_follow_a1111() -> None:
    R = L.LoraRequest.from_args
    assert R(["x"]) == L.LoraRequest("x", 1.0, 1.0)
    assert R(["x", "0.5"]) == L.LoraRequest("x", 0.5, 0.5)
    assert R(["x", "0.5", "0.2"]) == L.LoraRequest("x", 0.5, 0.2)
    assert R(["x", "0.5"], {"unet": "0"}) == L.LoraRequest("x", 0.5, 0.0)
    assert R(["x"], {"te": "0.3"}).unet == 0.3
    assert R(["x", "1", "1", "8"]).dyn_dim == 8
    with pytest.raises(ValueError, match="lora:x"):
        R(["x", "strong"])
    with pytest.raises(ValueError):
        R([])
    assert L.LoraRequest("x", 0.4).unet == 0.4


# --------------------------------------------------------------------------------------------------------------------
# Numerics on tiny models


def test_sd1_kohya_merge_matches_hand_merge(tmp_path: Path, sd1) -> None:
    shapes = _shapes(sd1, SD1_LAYERS)
    sd = kohya_lora(shapes, rank=4, alpha=2.0, seed=1)
    write_lora(tmp_path, "tiny_lora", sd)
    reg = L.LoraRegistry([tmp_path])
    snap = _snapshot(sd1)
    w_te, w_unet = 0.8, 1.3

    # the hand-merged copy
    unet_ref, te_ref = copy.deepcopy(sd1.unet), copy.deepcopy(sd1.text_encoder)
    refs = {"unet": unet_ref, "text_encoder": te_ref}
    with torch.no_grad():
        for key, (comp, name) in SD1_LAYERS.items():
            w = w_unet if comp == "unet" else w_te
            refs[comp].get_submodule(name).weight += w * expected_delta(sd, key, shapes[key])
    tokens = torch.randint(0, 49408, (1, 77), generator=torch.Generator().manual_seed(3))
    base_out = _unet_out(sd1.unet)

    with L.applied_loras(sd1, [L.LoraRequest("tiny_lora", w_te, w_unet)], registry=reg) as report:
        assert [a.name for a in report.applied] == ["tiny_lora"]
        assert report.applied[0].layers == len(SD1_LAYERS) == report.patched_modules
        assert report.failed == {} and report.warnings == []
        for key, (comp, name) in SD1_LAYERS.items():
            w = w_unet if comp == "unet" else w_te
            expected = snap[f"{comp}.{name}.weight"] + w * expected_delta(sd, key, shapes[key])
            torch.testing.assert_close(_weight(sd1, comp, name), expected, rtol=1e-6, atol=1e-7)
        out = _unet_out(sd1.unet)
        torch.testing.assert_close(out, _unet_out(unet_ref), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(out, base_out)
        with torch.no_grad():
            torch.testing.assert_close(sd1.text_encoder(tokens).last_hidden_state,
                                       te_ref(tokens).last_hidden_state, rtol=1e-5, atol=1e-6)
        touched = {f"{c}.{n}.weight" for c, n in SD1_LAYERS.values()}
        now = _snapshot(sd1)
        assert all(torch.equal(now[k], snap[k]) for k in snap if k not in touched)  # nothing else moved
    _assert_same(sd1, snap)
    assert torch.equal(_unet_out(sd1.unet), base_out)


def test_multipliers_several_loras_and_peft_format(tmp_path: Path, sd1) -> None:
    shapes = _shapes(sd1, SD1_LAYERS)
    a = kohya_lora(shapes, seed=2, alpha=1.0)
    b = kohya_lora(shapes, seed=3, alpha=None, rank=2)  # no alpha: scale 1
    write_lora(tmp_path, "a", a)
    write_lora(tmp_path, "b", b, fmt="pt")
    dotted = {k: f"{c}.{'text_model.' + n if c != 'unet' else n}" for k, (c, n) in SD1_LAYERS.items()}
    write_lora(tmp_path, "a_peft", to_peft(a, dotted))
    reg = L.LoraRegistry([tmp_path])
    snap = _snapshot(sd1)

    with L.applied_loras(sd1, [("a", 0.5, 0.0), (reg.find("b"), 1.0, 2.0)], registry=reg) as report:
        assert [(x.name, x.te_multiplier, x.unet_multiplier) for x in report.applied] == [("a", 0.5, 0.0), ("b", 1.0, 2.0)]
        for key, (comp, name) in SD1_LAYERS.items():
            base = snap[f"{comp}.{name}.weight"]
            if comp == "unet":
                expected = base + 2.0 * expected_delta(b, key, shapes[key])
            else:
                expected = base + (0.5 * expected_delta(a, key, shapes[key]) + expected_delta(b, key, shapes[key]))
            torch.testing.assert_close(_weight(sd1, comp, name), expected, rtol=1e-6, atol=1e-7)
    _assert_same(sd1, snap)

    with L.applied_loras(sd1, ["a"], registry=reg):
        kohya_weights = _snapshot(sd1)
    with L.applied_loras(sd1, ["a_peft"], registry=reg) as report:
        assert report.warnings == [] and report.applied[0].layers == len(SD1_LAYERS)
        _assert_same(sd1, kohya_weights)
    _assert_same(sd1, snap)


def test_sdxl_te1_te2_and_ldm_unet_names(tmp_path: Path, sdxl) -> None:
    shapes = _shapes(sdxl, SDXL_LAYERS)
    sd = kohya_lora(shapes, rank=3, alpha=1.5, seed=4, dtype=torch.float16)  # fp16 files are common
    write_lora(tmp_path, "xl", sd)
    reg = L.LoraRegistry([tmp_path])
    snap = _snapshot(sdxl)
    with L.applied_loras(sdxl, [L.LoraRequest("xl", 0.6, 1.1)], registry=reg) as report:
        assert report.applied[0].layers == len(SDXL_LAYERS) and report.warnings == []
        for key, (comp, name) in SDXL_LAYERS.items():
            w = 1.1 if comp == "unet" else 0.6
            expected = snap[f"{comp}.{name}.weight"] + w * expected_delta(sd, key, shapes[key])
            torch.testing.assert_close(_weight(sdxl, comp, name), expected, rtol=1e-6, atol=1e-7)
    _assert_same(sdxl, snap)


def test_restore_is_bit_identical_after_many_applications(tmp_path: Path, sd1) -> None:
    shapes = _shapes(sd1, SD1_LAYERS)
    write_lora(tmp_path, "one", kohya_lora(shapes, seed=5))
    write_lora(tmp_path, "two", kohya_lora(shapes, seed=6, rank=8, alpha=8.0, dtype=torch.bfloat16))
    reg = L.LoraRegistry([tmp_path])
    snap = _snapshot(sd1)
    probe = "unet.down_blocks.0.resnets.0.conv1.weight"
    for i in range(100):
        requests = [("one", 0.3 + i / 50, 1.7 - i / 40)] + ([("two", -0.9, 0.45)] if i % 3 else [])
        with L.applied_loras(sd1, requests, registry=reg, backup_device=None if i % 2 else "cpu") as report:
            assert report.patched_modules == len(SD1_LAYERS)
            if i % 10 == 0:
                assert not torch.equal(_snapshot(sd1)[probe], snap[probe])
        with L.applied_loras(sd1, [], registry=reg) as report:  # a job without LoRAs
            assert report.applied == [] and report.lora_hashes is None
    _assert_same(sd1, snap)


def test_locon_cp_decomposition(tmp_path: Path, sd1) -> None:
    """LyCORIS LoCon with a Tucker/CP middle factor: delta[i, j, k, l] = sum up[i, n] mid[n, m, k, l] down[m, j]."""
    name = "lora_unet_down_blocks_0_resnets_1_conv2"
    weight = _weight(sd1, "unet", "down_blocks.0.resnets.1.conv2")
    out_ch, in_ch = weight.shape[:2]
    g = torch.Generator().manual_seed(11)
    up, mid, down = torch.randn(out_ch, 3, 1, 1, generator=g), torch.randn(3, 3, 3, 3, generator=g), \
        torch.randn(3, in_ch, 1, 1, generator=g)
    write_lora(tmp_path, "cp", {f"{name}.lora_up.weight": up, f"{name}.lora_mid.weight": mid,
                                f"{name}.lora_down.weight": down, f"{name}.alpha": torch.tensor(1.5)})
    base = weight.detach().clone()
    by_hand = (up.flatten(1) @ mid.permute(2, 3, 0, 1) @ down.flatten(1)).permute(2, 3, 0, 1)  # (out, in, 3, 3)
    with L.applied_loras(sd1, [("cp", 1.0, 0.7)], registry=L.LoraRegistry([tmp_path])) as report:
        assert report.patched_modules == 1
        torch.testing.assert_close(weight, base + 0.7 * 0.5 * by_hand, rtol=1e-5, atol=1e-6)
    assert torch.equal(weight, base)


@pytest.mark.parametrize("key, expected", [
    ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",
     ("lora_unet_down_blocks_0_attentions_0_proj_in", "lora_down.weight")),
    ("lora_te2_text_model_encoder_layers_0_mlp_fc1.alpha", ("lora_te2_text_model_encoder_layers_0_mlp_fc1", "alpha")),
    ("lora_unet_x.lora_B.weight", ("lora_unet_x", "lora_up.weight")),
    ("unet.down_blocks.0.attentions.0.proj_in.lora_A.weight",
     (("dotted", "unet", "down_blocks.0.attentions.0.proj_in"), "lora_down.weight")),
    ("unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora.up.weight",
     (("dotted", "unet", "mid_block.attentions.0.transformer_blocks.0.attn1.to_q"), "lora_up.weight")),
    ("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.down.weight",
     (("dotted", "unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0"), "lora_down.weight")),
    ("text_encoder.text_model.encoder.layers.3.mlp.fc2.lora_linear_layer.up.weight",
     (("dotted", "text_encoder", "text_model.encoder.layers.3.mlp.fc2"), "lora_up.weight")),
    ("text_encoder_2.text_model.encoder.layers.3.self_attn.k_proj.alpha",
     (("dotted", "text_encoder_2", "text_model.encoder.layers.3.self_attn.k_proj"), "alpha")),
    ("bundle_emb.x.string_to_param.*", None),
    ("model.diffusion_model.input_blocks.0.0.weight", None),
])
def test_key_spellings(key: str, expected) -> None:
    assert L._split_key(key) == expected


def test_restore_on_error_and_no_nesting(tmp_path: Path, sd1) -> None:
    write_lora(tmp_path, "one", kohya_lora(_shapes(sd1, SD1_LAYERS)))
    reg = L.LoraRegistry([tmp_path])
    snap = _snapshot(sd1)
    with pytest.raises(KeyError):
        with L.applied_loras(sd1, ["one"], registry=reg):
            raise KeyError("job failed")
    _assert_same(sd1, snap)
    patch = L.apply_loras(sd1, ["one"], registry=reg)
    with pytest.raises(RuntimeError, match="already applied"):
        L.apply_loras(sd1, ["one"], registry=reg)
    patch.restore()
    patch.restore()  # idempotent
    _assert_same(sd1, snap)
    L.apply_loras(sd1, ["one"], registry=reg).restore()  # released: can apply again


def test_inpainting_conv_in_is_padded(tmp_path: Path) -> None:
    """A 4-channel conv_in LoCon on a 9-channel inpainting UNet: the extra input channels get no delta (A1111)."""
    from diffusers import UNet2DConditionModel
    from types import SimpleNamespace

    from tests.support.tiny_checkpoints import tiny_spec

    unet = UNet2DConditionModel(**{**tiny_spec("sd1").unet, "in_channels": 9}).requires_grad_(False)
    model = SimpleNamespace(unet=unet, text_encoder=None, text_encoder_2=None)
    sd = kohya_lora({"lora_unet_conv_in": (32, 4, 3, 3)})
    write_lora(tmp_path, "cin", sd)
    before = unet.conv_in.weight.clone()
    with L.applied_loras(model, ["cin"], registry=L.LoraRegistry([tmp_path])) as report:
        assert report.patched_modules == 1
        delta = unet.conv_in.weight - before
        torch.testing.assert_close(delta[:, :4], expected_delta(sd, "lora_unet_conv_in", (32, 4, 3, 3)))
        assert torch.equal(delta[:, 4:], torch.zeros_like(delta[:, 4:]))
    assert torch.equal(unet.conv_in.weight, before)


# --------------------------------------------------------------------------------------------------------------------
# Errors: reported per LoRA, the job goes on


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_bad_files_are_reported_and_skipped(tmp_path: Path, sd1) -> None:
    shapes = _shapes(sd1, SD1_LAYERS)
    good = kohya_lora(shapes, seed=7)
    write_lora(tmp_path, "good", good)
    (tmp_path / "corrupt.safetensors").write_bytes(b"\xff" * 8 + b"{garbage")
    marker = tmp_path / "pwned"
    with open(tmp_path / "unsafe.pt", "wb") as f:
        pickle.dump({"lora_te_x.lora_down.weight": _Evil(marker)}, f, protocol=2)
    torch.save({"w": torch.ones(1), "x": _Evil(marker)}, tmp_path / "unsafe_zip.ckpt")
    # an SDXL-width LoRA: the names exist in SD1, the shapes do not fit
    write_lora(tmp_path, "xl_only", kohya_lora({
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k": (32, 2048),
        "lora_te_text_model_encoder_layers_0_mlp_fc1": (128, 32),
    }))
    write_lora(tmp_path, "foreign", kohya_lora({"lora_unet_single_blocks_0_linear1": (32, 32)}))
    loha = {"lora_unet_down_blocks_0_resnets_0_conv1.hada_w1_a": torch.zeros(32, 4),
            "lora_unet_down_blocks_0_resnets_0_conv1.hada_w1_b": torch.zeros(4, 288),
            "lora_unet_down_blocks_0_resnets_0_conv1.alpha": torch.tensor(4.0)}
    write_lora(tmp_path, "loha", loha)

    reg = L.LoraRegistry([tmp_path])
    assert reg.find("corrupt").problem and "damaged safetensors" in reg.find("corrupt").problem
    names = ["corrupt", "unsafe", "unsafe_zip", "xl_only", "foreign", "loha", "missing", "good"]
    snap = _snapshot(sd1)
    with L.applied_loras(sd1, names, registry=reg) as report:
        assert [a.name for a in report.applied] == ["good"]
        assert report.patched_modules == len(SD1_LAYERS)
        assert report.not_found == ["missing"]
        assert set(report.failed) == {"corrupt", "unsafe", "unsafe_zip", "xl_only", "foreign", "loha"}
        assert "damaged safetensors" in report.failed["corrupt"]
        assert "unsafe pickle" in report.failed["unsafe"] and "system" in report.failed["unsafe"]
        assert "unsafe pickle" in report.failed["unsafe_zip"]
        assert "do not fit this model" in report.failed["xl_only"] and "another model family" in report.failed["xl_only"]
        assert "32x2048" in report.failed["xl_only"]
        assert "none of its 3 tensors matches a layer" in report.failed["foreign"]
        assert "not supported (LoHa)" in report.failed["loha"]
        assert "Networks not found: missing" in report.warnings
        assert all(any(w.startswith(f"Lora {n}: ") for w in report.warnings) for n in report.failed)
        key = "lora_te_text_model_encoder_layers_0_mlp_fc1"
        torch.testing.assert_close(_weight(sd1, "text_encoder", "encoder.layers.0.mlp.fc1"),
                                   snap["text_encoder.encoder.layers.0.mlp.fc1.weight"]
                                   + expected_delta(good, key, shapes[key]))
    assert not marker.exists()
    _assert_same(sd1, snap)


def test_unmatched_keys_are_counted_not_fatal(tmp_path: Path, sd1) -> None:
    shapes = _shapes(sd1, SD1_LAYERS)
    sd = kohya_lora(shapes, seed=8)
    sd |= kohya_lora({"lora_unet_no_such_layer": (32, 32), "lora_te_text_model_encoder_layers_9_mlp_fc1": (128, 32)})
    sd["bundle_emb.fancy.string_to_param.*"] = torch.zeros(2, 32)
    sd["lora_unet_down_blocks_0_resnets_0_conv2.hada_w1_a"] = torch.zeros(32, 2)  # one LoHa layer among LoRA ones
    sd["lora_unet_down_blocks_0_resnets_0_conv2.hada_w1_b"] = torch.zeros(2, 288)
    sd["lora_unet_down_blocks_0_resnets_1_conv1.lora_down.weight"] = torch.zeros(2, 32, 3, 3)  # no up: malformed
    write_lora(tmp_path, "mixed", sd)
    with L.applied_loras(sd1, ["mixed"], registry=L.LoraRegistry([tmp_path])) as report:
        assert report.failed == {}
        applied = report.applied[0]
        assert applied.layers == len(SD1_LAYERS) and applied.unmatched_keys == 7
        assert any("7 keys match no layer" in w and "lora_unet_no_such_layer" in w for w in report.warnings)
        assert any("1 LoHa layers are not supported" in w for w in report.warnings)
        assert any("1 layers are incomplete or malformed" in w and "resnets_1_conv1" in w for w in report.warnings)


def test_lora_hashes_infotext(tmp_path: Path, sd1) -> None:
    shapes = _shapes(sd1, SD1_LAYERS)
    p1 = write_lora(tmp_path, "first", kohya_lora(shapes, seed=9))
    write_lora(tmp_path, "sec,ond", kohya_lora(shapes, seed=10), metadata={"ss_output_name": "Sec:Alias"})
    reg = L.LoraRegistry([tmp_path], hashing.HashCache(None))
    with L.applied_loras(sd1, ["first", ("Sec:Alias", 0.5), "zzz"], registry=reg) as report:
        h1 = hashing.addnet_hash_safetensors(p1)[:12]
        h2 = reg.find("sec,ond").shorthash
        assert report.lora_hashes == f"first: {h1}, SecAlias: {h2}"
        assert report.extra_generation_params() == {"Lora hashes": f"first: {h1}, SecAlias: {h2}"}
    no_hash = L.LoraRegistry([tmp_path], hashing.HashCache(None), hashing=False)
    with L.applied_loras(sd1, ["first"], registry=no_hash) as report:
        assert report.applied and report.lora_hashes is None and report.extra_generation_params() == {}


# --------------------------------------------------------------------------------------------------------------------
# Full-size layouts (meta tensors): real kohya names land on the right modules


META = DevicePolicy(device=torch.device("meta"), dtype=torch.float16, vae_dtype=torch.float16)


@pytest.fixture(scope="module")
def full_size():
    from tests.test_detect import full_size_meta_state_dict

    out = {}
    for family in ("sd1", "sd2", "sdxl"):
        sd = full_size_meta_state_dict(family)
        config = configs.CONFIGS_DIR / "v2-inference-v.yaml" if family == "sd2" else None
        out[family] = (sd, build_from_state_dict(sd, Path(f"/models/{family}.safetensors"), META, config_path=config))
    return out


# Names as kohya-ss sd-scripts / LyCORIS write them for real models -> (component, module, weight shape)
REAL_NAMES = {
    "sd1": {
        "lora_unet_down_blocks_0_attentions_0_proj_in": ("unet", "down_blocks.0.attentions.0.proj_in", (320, 320, 1, 1)),
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k":
            ("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", (320, 768)),
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0":
            ("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0", (320, 320)),
        "lora_unet_down_blocks_2_attentions_1_transformer_blocks_0_ff_net_0_proj":
            ("unet", "down_blocks.2.attentions.1.transformer_blocks.0.ff.net.0.proj", (10240, 1280)),
        "lora_unet_mid_block_attentions_0_transformer_blocks_0_ff_net_2":
            ("unet", "mid_block.attentions.0.transformer_blocks.0.ff.net.2", (1280, 5120)),
        "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn2_to_v":
            ("unet", "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_v", (320, 768)),
        "lora_unet_up_blocks_3_attentions_2_proj_out": ("unet", "up_blocks.3.attentions.2.proj_out", (320, 320, 1, 1)),
        "lora_unet_down_blocks_0_resnets_0_conv1": ("unet", "down_blocks.0.resnets.0.conv1", (320, 320, 3, 3)),
        "lora_unet_down_blocks_1_resnets_0_conv_shortcut":
            ("unet", "down_blocks.1.resnets.0.conv_shortcut", (640, 320, 1, 1)),
        "lora_unet_down_blocks_0_resnets_1_time_emb_proj": ("unet", "down_blocks.0.resnets.1.time_emb_proj", (320, 1280)),
        "lora_unet_down_blocks_2_downsamplers_0_conv": ("unet", "down_blocks.2.downsamplers.0.conv", (1280, 1280, 3, 3)),
        "lora_unet_up_blocks_0_upsamplers_0_conv": ("unet", "up_blocks.0.upsamplers.0.conv", (1280, 1280, 3, 3)),
        "lora_unet_up_blocks_1_resnets_2_conv2": ("unet", "up_blocks.1.resnets.2.conv2", (1280, 1280, 3, 3)),
        # compvis spellings of SD1 layers (some trainers write these; A1111 accepts them)
        "lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k":
            ("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", (320, 768)),
        "lora_unet_output_blocks_11_1_proj_out": ("unet", "up_blocks.3.attentions.2.proj_out", (320, 320, 1, 1)),
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj":
            ("text_encoder", "encoder.layers.0.self_attn.q_proj", (768, 768)),
        "lora_te_text_model_encoder_layers_11_self_attn_out_proj":
            ("text_encoder", "encoder.layers.11.self_attn.out_proj", (768, 768)),
        "lora_te_text_model_encoder_layers_11_mlp_fc1": ("text_encoder", "encoder.layers.11.mlp.fc1", (3072, 768)),
        "lora_te_text_model_encoder_layers_5_mlp_fc2": ("text_encoder", "encoder.layers.5.mlp.fc2", (768, 3072)),
    },
    "sd2": {
        "lora_unet_down_blocks_0_attentions_0_proj_in": ("unet", "down_blocks.0.attentions.0.proj_in", (320, 320)),
        "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k":
            ("unet", "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", (1280, 1024)),
        "lora_te_text_model_encoder_layers_22_mlp_fc1": ("text_encoder", "encoder.layers.22.mlp.fc1", (4096, 1024)),
        "lora_te_text_model_encoder_layers_0_self_attn_v_proj":
            ("text_encoder", "encoder.layers.0.self_attn.v_proj", (1024, 1024)),
    },
    "sdxl": {
        "lora_unet_input_blocks_4_1_proj_in": ("unet", "down_blocks.1.attentions.0.proj_in", (640, 640)),
        "lora_unet_input_blocks_4_1_transformer_blocks_1_attn2_to_k":
            ("unet", "down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k", (640, 2048)),
        "lora_unet_input_blocks_8_1_transformer_blocks_9_ff_net_2":
            ("unet", "down_blocks.2.attentions.1.transformer_blocks.9.ff.net.2", (1280, 5120)),
        "lora_unet_middle_block_1_transformer_blocks_9_attn1_to_q":
            ("unet", "mid_block.attentions.0.transformer_blocks.9.attn1.to_q", (1280, 1280)),
        "lora_unet_output_blocks_0_1_transformer_blocks_0_attn1_to_out_0":
            ("unet", "up_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0", (1280, 1280)),
        "lora_unet_output_blocks_5_1_proj_out": ("unet", "up_blocks.1.attentions.2.proj_out", (640, 640)),
        "lora_unet_input_blocks_1_0_in_layers_2": ("unet", "down_blocks.0.resnets.0.conv1", (320, 320, 3, 3)),
        "lora_unet_input_blocks_1_0_emb_layers_1": ("unet", "down_blocks.0.resnets.0.time_emb_proj", (320, 1280)),
        "lora_unet_input_blocks_3_0_op": ("unet", "down_blocks.0.downsamplers.0.conv", (320, 320, 3, 3)),
        "lora_unet_input_blocks_4_0_skip_connection": ("unet", "down_blocks.1.resnets.0.conv_shortcut", (640, 320, 1, 1)),
        "lora_unet_middle_block_2_out_layers_3": ("unet", "mid_block.resnets.1.conv2", (1280, 1280, 3, 3)),
        "lora_unet_output_blocks_2_2_conv": ("unet", "up_blocks.0.upsamplers.0.conv", (1280, 1280, 3, 3)),
        "lora_unet_output_blocks_5_2_conv": ("unet", "up_blocks.1.upsamplers.0.conv", (640, 640, 3, 3)),
        "lora_unet_output_blocks_6_0_skip_connection": ("unet", "up_blocks.2.resnets.0.conv_shortcut", (320, 960, 1, 1)),
        "lora_unet_output_blocks_8_0_skip_connection": ("unet", "up_blocks.2.resnets.2.conv_shortcut", (320, 640, 1, 1)),
        "lora_unet_time_embed_0": ("unet", "time_embedding.linear_1", (1280, 320)),
        "lora_unet_label_emb_0_0": ("unet", "add_embedding.linear_1", (1280, 2816)),
        "lora_te1_text_model_encoder_layers_11_self_attn_v_proj":
            ("text_encoder", "encoder.layers.11.self_attn.v_proj", (768, 768)),
        "lora_te2_text_model_encoder_layers_31_mlp_fc2": ("text_encoder_2", "text_model.encoder.layers.31.mlp.fc2", (1280, 5120)),
        "lora_te2_text_model_encoder_layers_0_self_attn_q_proj":
            ("text_encoder_2", "text_model.encoder.layers.0.self_attn.q_proj", (1280, 1280)),
    },
}


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_real_kohya_names_on_full_size_models(full_size, family: str) -> None:
    _, model = full_size[family]
    index = L.target_index(model)
    assert not index.ambiguous
    for key, (comp, name, shape) in REAL_NAMES[family].items():
        target = index.kohya.get(key)
        assert target is not None, key
        assert (target.component, target.module_name, tuple(target.module.weight.shape)) == (comp, name, shape), key
    if family == "sd2":  # the file's 24th resblock is not part of the model (SD2 uses the penultimate layer)
        assert index.kohya.get("lora_te_text_model_encoder_layers_23_mlp_fc1") is None
    # a whole LoRA on meta tensors: every layer found, shapes checked, nothing unmatched
    lora = {}
    for key, (_, _, shape) in REAL_NAMES[family].items():
        r = 4
        lora[key + ".lora_down.weight"] = torch.empty(r, *shape[1:], device="meta")
        lora[key + ".lora_up.weight"] = torch.empty(shape[0], r, *([1, 1] if len(shape) == 4 else []), device="meta")
        lora[key + ".alpha"] = torch.tensor(2.0)
    parsed = L.match_lora(lora, model)
    assert parsed.error is None and parsed.unmatched_keys == 0 and len(parsed.layers) == len(REAL_NAMES[family])


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_ldm_names_cover_the_original_file_layout(full_size, family: str) -> None:
    """Every patchable UNet weight of the original single file (what kohya's SGM names come from) has a target, and
    our LDM names agree with diffusers' own LDM->diffusers converter for every UNet tensor."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    sd, model = full_size[family]
    index = L.target_index(model)
    prefix = "model.diffusion_model."
    file_modules = {k[len(prefix):-len(".weight")]: v for k, v in sd.items()
                    if k.startswith(prefix) and k.endswith(".weight") and v.dim() in (2, 4)}
    for name, weight in file_modules.items():
        target = index.kohya.get("lora_unet_" + name.replace(".", "_"))
        assert target is not None, name
        assert tuple(target.module.weight.shape) == tuple(weight.shape), name

    unet_sd = model.unet.state_dict()
    ldm = {}
    for key, value in unet_sd.items():
        module, _, param = key.rpartition(".")
        ldm[prefix + L.ldm_unet_module_name(module, model.unet.config) + "." + param] = value
    assert set(ldm) == {k for k in sd if k.startswith(prefix)}
    back = convert_ldm_unet_checkpoint(ldm, model.unet.config)
    assert set(back) == set(unet_sd) and all(back[k] is unet_sd[k] for k in unet_sd)


def test_text_encoder_names_cover_every_layer(full_size) -> None:
    _, model = full_size["sdxl"]
    index = L.target_index(model)
    for slot, prefix in (("text_encoder", "lora_te1_"), ("text_encoder_2", "lora_te2_")):
        enc = getattr(model, slot)
        layers = enc.config.num_hidden_layers
        for i in range(layers):
            for part in ("self_attn_q_proj", "self_attn_k_proj", "self_attn_v_proj", "self_attn_out_proj",
                         "mlp_fc1", "mlp_fc2"):
                target = index.kohya.get(f"{prefix}text_model_encoder_layers_{i}_{part}")
                assert target is not None and target.component == slot, (slot, i, part)
        assert index.kohya.get(f"{prefix}text_model_encoder_layers_{layers}_mlp_fc1") is None
