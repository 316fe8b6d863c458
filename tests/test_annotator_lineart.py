"""The lineart annotator networks (lineart_realistic / lineart_coarse: ``sk_model.pth`` / ``sk_model2.pth``;
lineart_anime: ``netG.pth``) against controlnet_aux's, loaded with the same random weights."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from modules.controlnet.nets import lineart, lineart_anime
from modules.models.types import ModelFileError
from tests.support.aux_reference import reference
from tests.support.tiny_lineart import netg_state_dict, write_lineart, write_netg


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    # Smooth shapes plus noise: a net on pure noise would give a flat map that compares equal too easily.
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) % 64) * 4], -1)
    return np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)


def _reference_unet(ngf: int, depth: int) -> nn.Module:
    norm = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    return reference("lineart_anime").UnetGenerator(3, 1, depth, ngf, norm_layer=norm, use_dropout=False)


def _reference_load(net: nn.Module, path: Path) -> nn.Module:
    # As the extension: torch.load, "module." removed from every key, strict load.
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict({k.replace("module.", ""): v for k, v in ckpt.items()})
    return net.eval()


def _off_by_one(ours: np.ndarray, theirs: np.ndarray) -> tuple[int, int]:
    diff = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
    return int(diff.max()), int((diff > 0).sum())


# ---------------------------------------------------------------------------------------------- lineart


@pytest.fixture(scope="module")
def real_lineart(tmp_path_factory) -> tuple[Path, nn.Module, nn.Module]:
    """A real-size (width 64, 3 blocks) sk_model.pth, our net and the reference's fixed-width Generator on it."""
    path = write_lineart(tmp_path_factory.mktemp("lineart"), "sk_model.pth", real_size=True, seed=1)
    ref = _reference_load(reference("lineart").Generator(3, 1, 3), path)
    return path, lineart.load(path), ref


def test_lineart_real_size_matches_reference(real_lineart) -> None:
    _path, ours, ref = real_lineart
    assert ours.spec == lineart.GeneratorSpec(3, 1, 64, 2, 3)
    assert all(p.dtype == torch.float32 for p in ours.parameters()) and not ours.training
    x = torch.from_numpy(_image(64, 128)).float().permute(2, 0, 1)[None] / 255.0
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert a.shape == (1, 1, 64, 128)
    assert float(a.std()) > 0.05  # random weights still draw something: the comparison below means something
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_lineart_detect_matches_reference_postprocessing(real_lineart) -> None:
    _path, ours, ref = real_lineart
    image = _image(64, 128, seed=2)
    got = lineart.detect(ours, image)
    assert got.dtype == np.uint8 and got.shape == (64, 128)
    # controlnet_aux: same net output, (x*255).clip.astype(uint8), HWC3, same-size resizes, then 255 - map; the
    # extension's lineart preprocessor is 255 - LineartDetector(img), the same inversion.
    detector = reference("lineart").LineartDetector(ref, ref)
    want = detector(image, detect_resolution=64, image_resolution=64, output_type="np")
    assert want.shape == (64, 128, 3) and (want == want[..., :1]).all()
    worst, count = _off_by_one(got, want[..., 0])
    assert worst <= 1 and count <= 5, (worst, count)  # fp32 rounding at the truncation can flip a pixel by 1
    assert len(np.unique(got)) > 20
    # Exactly the extension's arithmetic on our own net output: float32 scale, clip, truncate, invert.
    with torch.no_grad():
        raw = ours(torch.from_numpy(image).float().permute(2, 0, 1)[None] / 255.0)[0, 0].numpy()
    np.testing.assert_array_equal(got, 255 - (raw * 255.0).clip(0, 255).astype(np.uint8))


@pytest.mark.parametrize("name", ["sk_model.pth", "sk_model2.pth"])
def test_lineart_tiny_sizes_come_from_the_file(tmp_path: Path, name: str) -> None:
    path = write_lineart(tmp_path, name, width=4, residual_blocks=5, seed=3)
    model = lineart.load(path)
    assert model.spec == lineart.GeneratorSpec(3, 1, 4, 2, 5)
    out = lineart.detect(model, _image(128, 64))
    assert out.shape == (128, 64) and out.dtype == np.uint8


def test_lineart_module_prefix(tmp_path: Path) -> None:
    path = write_lineart(tmp_path, width=4, seed=4)
    sd = torch.load(path, weights_only=True)
    prefixed = tmp_path / "prefixed" / "sk_model.pth"
    prefixed.parent.mkdir()
    torch.save({f"module.{k}": v for k, v in sd.items()}, prefixed)
    image = _image(64, 64)
    np.testing.assert_array_equal(lineart.detect(lineart.load(prefixed), image),
                                  lineart.detect(lineart.load(path), image))


# ---------------------------------------------------------------------------------------------- lineart_anime


@pytest.mark.parametrize(("ngf", "depth", "prefix"), [(4, 8, True), (2, 6, False)])
def test_anime_matches_reference(tmp_path: Path, ngf: int, depth: int, prefix: bool) -> None:
    path = write_netg(tmp_path, ngf=ngf, depth=depth, seed=5, module_prefix=prefix)
    ours = lineart_anime.load(path)
    assert ours.spec.depth == depth and ours.spec.channels[:3] == (3, ngf, 2 * ngf)
    ref = _reference_load(_reference_unet(ngf, depth), path)
    x = torch.from_numpy(_image(256, 512)).float().permute(2, 0, 1)[None] / 127.5 - 1.0
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert a.shape == (1, 1, 256, 512) and float(a.std()) > 0.05
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_anime_detect_matches_reference_postprocessing(tmp_path: Path) -> None:
    path = write_netg(tmp_path, ngf=4, depth=8, seed=6, module_prefix=True)
    ours = lineart_anime.load(path)
    ref = _reference_load(_reference_unet(4, 8), path)
    # 192x320 (a padded 64-multiple): the detector resizes it up to 256x512 and its output back, both bicubic.
    image = _image(192, 320, seed=7)
    got = lineart_anime.detect(ours, image)
    assert got.dtype == np.uint8 and got.shape == (192, 320)
    want = reference("lineart_anime").LineartAnimeDetector(ref)(
        image, detect_resolution=192, image_resolution=192, output_type="np")
    assert want.shape == (192, 320, 3)
    worst, count = _off_by_one(got, want[..., 0])
    assert worst <= 1 and count <= 5, (worst, count)
    assert len(np.unique(got)) > 20


def test_anime_full_size_layout() -> None:
    """The real netG (ngf 64, 8 levels) without writing 200 MB: shapes only, on the meta device."""
    with torch.device("meta"):
        ref_sd = _reference_unet(64, 8).state_dict()
        spec = lineart_anime.spec_of(Path("netG.pth"), dict(ref_sd))
        ours = lineart_anime.LineartAnimeUnet(spec)
    assert spec.channels == (3, 64, 128, 256, 512, 512, 512, 512, 512) and spec.out_channels == 1
    mine = ours.state_dict()
    for our_name, file_name in ours.file_state_dict_keys().items():
        assert mine[our_name].shape == ref_sd[file_name].shape, file_name
    assert set(ours.file_state_dict_keys().values()) == set(ref_sd)


# ---------------------------------------------------------------------------------------------- errors


def test_truncated_and_garbage_files(tmp_path: Path) -> None:
    good = write_lineart(tmp_path / "a", width=4)
    cut = tmp_path / "sk_model.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="sk_model.pth"):
        lineart.load(cut)
    junk = tmp_path / "netG.pth"
    junk.write_bytes(b"<html>rate limited</html>" * 10)
    with pytest.raises(ModelFileError, match="netG.pth"):
        lineart_anime.load(junk)


def test_wrong_network_is_a_clear_error(tmp_path: Path) -> None:
    netg = write_netg(tmp_path / "anime", ngf=2, depth=5)
    sk = write_lineart(tmp_path / "sk", width=4)
    with pytest.raises(ValueError, match=r"netG\.pth: not a lineart generator .*sk_model\.pth.*expected"):
        lineart.load(netg)
    with pytest.raises(ValueError, match=r"sk_model\.pth: not a lineart_anime U-Net \(netG\.pth\).*expected"):
        lineart_anime.load(sk)


def test_damaged_layouts_are_value_errors(tmp_path: Path) -> None:
    sd = torch.load(write_lineart(tmp_path / "src", width=4), weights_only=True)
    (tmp_path / "x").mkdir()
    no_head_bias = {k: v for k, v in sd.items() if k != "model4.1.bias"}
    torch.save(no_head_bias, tmp_path / "x" / "sk_model.pth")
    with pytest.raises(ValueError, match="missing model4.1.bias"):
        lineart.load(tmp_path / "x" / "sk_model.pth")
    wrong = dict(sd, **{"model2.1.conv_block.5.weight": torch.zeros(16, 8, 3, 3)})
    torch.save(wrong, tmp_path / "x" / "sk_model2.pth")
    with pytest.raises(ValueError, match="sk_model2.pth: .*shapes do not fit"):
        lineart.load(tmp_path / "x" / "sk_model2.pth")
    netg = netg_state_dict(ngf=2, depth=6)
    netg["model.model.1.model.3.model.5.weight"] = torch.zeros(8, 4, 4, 4)  # level 2 up conv, wrong widths
    torch.save(netg, tmp_path / "x" / "netG.pth")
    with pytest.raises(ValueError, match="netG.pth: .*shapes do not fit"):
        lineart_anime.load(tmp_path / "x" / "netG.pth")


def test_detect_rejects_non_rgb(tmp_path: Path) -> None:
    model = lineart.load(write_lineart(tmp_path, width=4))
    with pytest.raises(ValueError, match="RGB uint8"):
        lineart.detect(model, np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        lineart_anime.detect(model, np.zeros((64, 64, 4), np.uint8))
