"""sd-webui-controlnet's original depth files, converted to transformers' depth models: tiny random networks in each
original layout (tests/support/tiny_depth_files.py), saved under the real file names in the extension's
``annotator/downloads/<kind>/`` layout and run through the real preprocessor path.

The oracle is reference code run on the same weights, never our conversion: timm's ViT (DINOv2-style / hybrid) and
controlnet_aux's MiDaS blocks and DPT model (the extension's code), imported without torchvision
(tests/support/timm_reference.py). The maps are checked against the extension's steps written out here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from modules.controlnet import preprocessors
from modules.controlnet.annotator_files import EXTENSION_DOWNLOADS, annotator_setup
from tests.support import tiny_depth_files as tiny

if importlib.util.find_spec("timm") is None:
    pytest.skip("the reference needs timm (run_tests.sh installs it with --no-deps)", allow_module_level=True)


def _setup(root: Path):
    return annotator_setup([root / "ControlNet"], extensions_dir=root / "extensions")


def _downloads(root: Path, kind: str) -> Path:
    return root / "extensions" / EXTENSION_DOWNLOADS / kind


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    base = cv2.resize(g.integers(0, 256, (8, 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    return base  # smooth, so that the resizes do not alias


def _minmax_map(depth: np.ndarray) -> np.ndarray:
    grey = ((depth - depth.min()) / (depth.max() - depth.min()) * 255.0).clip(0, 255).astype(np.uint8)
    return np.stack([grey] * 3, axis=2)


# ---------------------------------------------------------------------------------------------------------------------
# Depth Anything V1: depth_anything_vitl14.pth


def test_depth_anything_file_matches_the_reference_network(tmp_path):
    from modules.controlnet.nets import depth_anything

    path, ref = tiny.write_depth_anything(tmp_path / "depth_anything", seed=1)
    sd = torch.load(path, weights_only=True)
    assert {"pretrained.mask_token", "pretrained.blocks.3.attn.qkv.weight", "pretrained.blocks.0.ls1.gamma",
            "depth_head.resize_layers.3.weight", "depth_head.scratch.refinenet4.resConfUnit1.conv1.weight",
            "depth_head.scratch.output_conv2.2.bias"} <= set(sd)  # the real file's names
    ours = depth_anything.load(path)
    assert ours.config.backbone_config.num_hidden_layers == 4 and ours.config.fusion_hidden_size == 32
    x = torch.randn(1, 3, 56, 56, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = ref(x)
        got = ours(pixel_values=x).predicted_depth
    assert got.shape == expected.shape == (1, 56, 56)
    assert float((expected > 0).float().mean()) > 0.5 and float(expected.std()) > 0.05
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_depth_anything_preprocessor_finds_the_extensions_file_and_draws_its_map(tmp_path):
    from modules.controlnet.nets import depth_anything

    setup = _setup(tmp_path)
    pre = preprocessors.find("depth_anything")
    message = pre.unavailable(setup)
    assert "depth_anything_vitl14.pth" in message and "depth_anything/" in message
    assert "depth-anything-large-hf" in message  # the hub folder is still an option
    # a pos_embed grid of 37: the 518-pixel input of the extension's resize needs no interpolation
    path, _ref = tiny.write_depth_anything(_downloads(tmp_path, "depth_anything"), seed=3, grid=37, dim=64,
                                           heads=1, out_channels=(8, 16, 32, 32), features=16)
    assert pre.unavailable(setup) is None
    image = _image(48, 48)
    got = pre(image, 64, 0, 0, annotators=setup)

    # the extension's steps: resize_with_pad to 64, both sides >= 518 in multiples of 14 (bicubic, on 0..1 floats),
    # ImageNet normalisation, the network, bilinear back to the padded size, min-max, the padding taken off
    padded, unpad = preprocessors.resize_with_pad(image, 64)
    h, w = padded.shape[:2]
    scale = max(518 / h, 518 / w)
    def side(x: float) -> int:  # the original Resize's constrain_to_multiple_of(min_val=518)
        y = int(np.round(x / 14) * 14)
        return y if y >= 518 else int(np.ceil(x / 14) * 14)

    nh, nw = side(scale * h), side(scale * w)
    assert (nh, nw) == (518, 518)
    x = cv2.resize(padded.astype(np.float32) / 255.0, (nw, nh), interpolation=cv2.INTER_CUBIC)
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    net = depth_anything.load(path)
    with torch.no_grad():
        depth = net(pixel_values=torch.from_numpy(x.transpose(2, 0, 1).copy())[None]).predicted_depth
    depth = torch.nn.functional.interpolate(depth[:, None], size=(h, w), mode="bilinear")[0, 0].numpy()
    expected = unpad(_minmax_map(depth))
    assert got.shape == expected.shape == (64, 64, 3) and got.dtype == np.uint8
    assert got.min() == 0 and got.max() == 255
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize("h, w, method, expected", [
    (64, 128, "lower_bound", (518, 1036)),   # both sides at least 518, in multiples of 14
    (100, 61, "lower_bound", (854, 518)),    # 849.2 rounds to 854 (a multiple of 14 over 518)
    (512, 768, "lower_bound", (518, 784)),   # 776.9 -> 784 (777 = 55.5 * 14 rounds to even: 56 * 14)
    (512, 768, "minimal", (518, 784)),       # the scale nearest 1 (here the height's)
    (600, 2000, "minimal", (518, 1722)),     # 0.86 is nearer 1 than 0.26; 1726.7 -> 1722
    (1024, 1000, "minimal", (532, 518)),     # the width's scale is nearer 1; 530.4 -> 532
])
def test_the_extensions_resize_rule(h, w, method, expected):
    from modules.controlnet.nets.depth_files import resize_to_multiple

    out = resize_to_multiple(np.zeros((h, w, 3), np.float32), 518, 14, method)
    assert out.shape[:2] == expected


def test_a_wrong_or_damaged_depth_anything_file_is_a_clear_error(tmp_path):
    setup = _setup(tmp_path)
    folder = _downloads(tmp_path, "depth_anything")
    folder.mkdir(parents=True)
    path = folder / "depth_anything_vitl14.pth"
    torch.save({"block1.convs.0.weight": torch.zeros(64, 3, 3, 3)}, path)  # another network's file
    pre = preprocessors.find("depth_anything")
    with pytest.raises(ValueError, match=r"depth_anything_vitl14\.pth: not the Depth Anything"):
        pre(_image(64, 64), 64, 0, 0, annotators=setup)
    path.write_bytes(b"PK\x03\x04 truncated download")
    with pytest.raises(ValueError, match=r"preprocessor cannot use its file: depth_anything_vitl14\.pth: damaged"):
        pre(_image(64, 64), 64, 0, 0, annotators=setup)


# ---------------------------------------------------------------------------------------------------------------------
# MiDaS v3 DPT-Hybrid: dpt_hybrid-midas-501f0c75.pt


@pytest.fixture(scope="module")
def midas(tmp_path_factory):
    root = tmp_path_factory.mktemp("midas")
    path, ref = tiny.write_midas(_downloads(root, "midas"), seed=5)
    return root, path, ref


def test_midas_file_matches_the_extensions_dpt_model(midas):
    from modules.controlnet.nets import midas_dpt

    _root, path, ref = midas
    sd = torch.load(path, weights_only=True)
    # the real file's names (and its unused ImageNet classifier)
    assert {"pretrained.model.patch_embed.backbone.stem.conv.weight", "pretrained.model.blocks.3.attn.qkv.bias",
            "pretrained.model.head.weight", "pretrained.act_postprocess4.4.weight", "scratch.refinenet4.out_conv.bias",
            "scratch.output_conv.4.weight",
            "pretrained.model.patch_embed.backbone.stages.2.blocks.0.downsample.conv.weight"} <= set(sd)
    ours = midas_dpt.load(path)
    assert ours.config.is_hybrid and ours.config.backbone_out_indices == [0, 1, 2, 3]
    for shape in ((128, 192), (64, 128)):  # any multiple of 32, as the extension runs it (pos_embed resized)
        x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(6))
        with torch.no_grad():
            expected = ref(x)
            got = midas_dpt.depth(ours, x)
        assert got.shape == expected.shape == (1, *shape)
        assert float((expected > 0).float().mean()) > 0.5 and float(expected.std()) > 0.05
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_depth_midas_runs_the_extensions_file_as_the_extension_does(midas):
    root, _path, ref = midas
    setup = _setup(root)
    pre = preprocessors.find("depth_midas")
    assert pre.unavailable(setup) is None
    assert "dpt_hybrid-midas-501f0c75.pt" in pre.unavailable(annotator_setup([root / "elsewhere"]))
    image = _image(40, 72, seed=7)
    got = pre(image, 64, 0, 0, annotators=setup)
    # the extension: the padded image itself (no resize) as x / 127.5 - 1, the network, min-max, padding off
    padded, unpad = preprocessors.resize_with_pad(image, 64)
    with torch.no_grad():
        depth = ref(torch.from_numpy(padded.transpose(2, 0, 1).copy()).float()[None] / 127.5 - 1.0)[0].numpy()
    expected = unpad(_minmax_map(depth))
    assert got.shape == expected.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_a_wrong_midas_file_names_itself(tmp_path):
    folder = _downloads(tmp_path, "midas")
    folder.mkdir(parents=True)
    path, _ref = tiny.write_depth_anything(tmp_path / "da", seed=8)  # a depth file, but Depth Anything's
    (folder / "dpt_hybrid-midas-501f0c75.pt").write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match=r"dpt_hybrid-midas-501f0c75\.pt: not the MiDaS DPT-Hybrid"):
        preprocessors.find("depth_midas")(_image(64, 64), 64, 0, 0, annotators=_setup(tmp_path))


# ---------------------------------------------------------------------------------------------------------------------
# ZoeDepth NYU: ZoeD_M12_N.pt


@pytest.fixture(scope="module")
def zoe(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoe")
    path, ref = tiny.write_zoe(_downloads(root, "zoedepth"), seed=9)
    return root, path, ref


def test_zoe_file_matches_the_extensions_zoedepth(zoe):
    from modules.controlnet.nets import zoedepth

    _root, path, ref = zoe
    sd = torch.load(path, weights_only=True)
    assert set(sd) == {"model"}  # a training checkpoint, as the download
    assert {"core.core.pretrained.model.blocks.3.attn.q_bias", "core.core.pretrained.model.blocks.0.gamma_1",
            "core.core.pretrained.model.blocks.0.attn.relative_position_bias_table",
            "core.core.pretrained.model.blocks.0.attn.relative_position_index",
            "core.core.pretrained.model.fc_norm.weight",
            "core.core.scratch.output_conv.4.weight", "seed_bin_regressor._net.2.bias", "attractors.3._net.2.weight",
            "conditional_log_binomial.log_binomial_transform.k_idx", "conditional_log_binomial.mlp.2.weight"
            } <= set(sd["model"])
    ours = zoedepth.load(path)
    assert ours.config.bin_configurations[0]["n_bins"] == 16 and ours.config.num_attractors == [16, 8, 4, 1]
    x = torch.randn(1, 3, 192, 256, generator=torch.Generator().manual_seed(10))  # not the BEiT's 384x384 grid
    with torch.no_grad():
        expected = ref(x)["metric_depth"][:, 0]
        got = ours(pixel_values=x).predicted_depth
    assert got.shape == expected.shape == (1, 192, 256)
    assert float(expected.std()) > 1e-3
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_depth_zoe_runs_the_extensions_file_as_its_infer_does(zoe):
    from tests.support.aux_reference import reference

    root, _path, ref = zoe
    setup = _setup(root)
    pre = preprocessors.find("depth_zoe")
    assert pre.unavailable(setup) is None
    assert "ZoeD_M12_N.pt" in pre.unavailable(annotator_setup([root / "elsewhere"]))
    image = _image(64, 64, seed=11)
    got = pre(image, 64, 0, 0, annotators=setup)
    # the extension: ZoeDepth.infer(image / 255) (reflect padding, flip averaging), its MidasCore prep (controlnet_aux's
    # Resize to 384x512 "minimal", then torchvision's Normalize(0.5, 0.5), written out), percentiles 2 and 85, inverted
    resize = reference("zoe.zoedepth.models.base_models.midas").Resize(
        512, 384, keep_aspect_ratio=True, ensure_multiple_of=32, resize_method="minimal")
    ref.core.prep = lambda x: (resize(x) - 0.5) / 0.5
    padded, unpad = preprocessors.resize_with_pad(image, 64)
    with torch.no_grad():
        depth = ref.infer(torch.from_numpy(padded.transpose(2, 0, 1).copy()).float()[None] / 255.0)[0, 0].numpy()
    low, high = np.percentile(depth, 2), np.percentile(depth, 85)
    grey = ((1.0 - (depth - low) / (high - low)) * 255.0).clip(0, 255).astype(np.uint8)
    expected = unpad(np.stack([grey] * 3, axis=2))
    assert got.shape == expected.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert len(np.unique(got)) > 20  # a real map, not a flat one


def test_a_wrong_zoe_file_names_itself(tmp_path, midas):
    _root, midas_file, _ref = midas
    folder = _downloads(tmp_path, "zoedepth")
    folder.mkdir(parents=True)
    (folder / "ZoeD_M12_N.pt").write_bytes(midas_file.read_bytes())  # MiDaS's file under Zoe's name
    with pytest.raises(ValueError, match=r"ZoeD_M12_N\.pt: not the ZoeDepth depth model"):
        preprocessors.find("depth_zoe")(_image(64, 64), 64, 0, 0, annotators=_setup(tmp_path))


# ---------------------------------------------------------------------------------------------------------------------
# Where the files are found


def test_a_hub_folder_wins_over_the_extensions_file_and_the_flat_folder_works(tmp_path):
    from modules.controlnet.annotators import DEPTH_MODELS
    from tests.support.tiny_controlnet import write_tiny_depth_anything

    spec = DEPTH_MODELS["depth_anything"]
    flat = annotator_setup([tmp_path / "ControlNet"])
    (flat.dirs[0]).mkdir(parents=True)
    file = flat.dirs[0] / "Depth_Anything_ViTL14.pth"  # any case, as Windows copies keep it
    file.write_bytes(b"")
    assert spec.locate(flat.dirs) == ("file", file)
    folder = write_tiny_depth_anything(flat.dirs[0], name="depth-anything-large-hf")
    assert spec.locate(flat.dirs) == ("folder", folder)
    custom = annotator_setup([tmp_path / "none"], extra_dir=tmp_path / "custom")  # control_net_modules_path
    (tmp_path / "custom" / "zoedepth").mkdir(parents=True)
    (tmp_path / "custom" / "zoedepth" / "ZoeD_M12_N.pt").write_bytes(b"")
    assert DEPTH_MODELS["depth_zoe"].locate(custom.dirs) == ("file", tmp_path / "custom" / "zoedepth" / "ZoeD_M12_N.pt")
