"""The soft-edge annotator networks (HED, PiDiNet) against controlnet_aux's, on the same random weights written in
the real files' layouts, and their maps against the extension's post-processing.

The reference pipeline is the extension's: its network, then (for the scribble variants) nms/blur/threshold on the
map with the padding removed. controlnet_aux runs the same networks and the same post-processing code; given an image
that is already a multiple of 64 at the requested resolution its resizes are identities, so its detectors are the
extension's preprocessors on that image. HED's maps come out identical (same float ops); PiDiNet's converted
kernels round differently from the extension's on-the-fly pixel-difference convolutions (about 1e-7), so a few map
pixels may be 1 off (asserted: at most 0.1% of pixels, by at most 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modules.controlnet.nets import hed, pidinet
from modules.models.types import ModelFileError
from tests.support import tiny_softedge as T
from tests.support.aux_reference import reference

# controlnet_aux.pidi is imported whole (its __init__ holds the detector), never as reference("pidi.model"), which
# would leave the package bare for the rest of the session.


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Blocks of random colour with a smooth gradient over them: edges of every strength and direction."""
    rng = np.random.default_rng(seed)
    blocks = rng.random((h // 8 + 1, w // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:h, :w]
    ramp = np.linspace(0, 1, w)[None, :, None]
    return ((0.7 * blocks + 0.3 * ramp) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("softedge")
    return {"hed": T.write_hed(folder, seed=3), "pidinet": T.write_pidinet(folder, seed=5)}


@pytest.fixture(scope="module")
def hed_pair(files: dict[str, Path]) -> tuple[torch.nn.Module, object]:
    R = reference("hed")
    net = R.ControlNetHED_Apache2()
    net.load_state_dict(torch.load(files["hed"], map_location="cpu", weights_only=True))
    return hed.load(files["hed"]), R.HEDdetector(net.float().eval())


@pytest.fixture(scope="module")
def pidi_pair(files: dict[str, Path]) -> tuple[torch.nn.Module, object]:
    net = reference("pidi").model.pidinet()
    ckpt = torch.load(files["pidinet"], map_location="cpu", weights_only=True)
    net.load_state_dict({k.replace("module.", ""): v for k, v in ckpt["state_dict"].items()})
    return pidinet.load(files["pidinet"]), reference("pidi").PidiNetDetector(net.eval())


def _ext_scribble(soft: np.ndarray) -> np.ndarray:
    """The extension's scribble_hed / scribble_pidinet steps (annotator/util.nms, as controlnet_aux has it)."""
    import cv2

    util = reference("util")
    out = cv2.GaussianBlur(util.nms(soft, 127, 3.0), (0, 0), 3.0)
    out[out > 4] = 255
    out[out < 255] = 0
    return out


def _close(ours: np.ndarray, ref: np.ndarray) -> None:
    """Equal but for float rounding: at most 0.1% of pixels, each at most 1 off."""
    assert ours.shape == ref.shape and ours.dtype == np.uint8
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3, (diff.max(), (diff > 0).sum())


# ---------------------------------------------------------------------------------------------------------------------
# The files and the networks


def test_files_have_the_real_layouts(files: dict[str, Path]) -> None:
    sd = torch.load(files["hed"], map_location="cpu", weights_only=True)
    assert set(sd) == set(T.hed_shapes()) and len(sd) == 37 and sd["norm"].dtype == torch.float16
    assert 29_000_000 < files["hed"].stat().st_size < 30_000_000  # the real file is 29.4 MB
    ckpt = torch.load(files["pidinet"], map_location="cpu", weights_only=True)
    assert set(ckpt) == {"epoch", "state_dict"} and all(k.startswith("module.") for k in ckpt["state_dict"])
    assert ckpt["state_dict"]["module.block1_2.conv1.weight"].shape == (60, 1, 3, 3)  # rd stored as 3x3


def test_hed_network_matches_reference(hed_pair: tuple) -> None:
    ours, ref = hed_pair
    assert not ours.training and all(p.dtype == torch.float32 for p in ours.parameters())
    x = torch.from_numpy(_image(64, 128)).float().permute(2, 0, 1)[None]
    with torch.inference_mode():
        got, want = ours(x), ref.netNetwork(x)
    assert [tuple(t.shape[2:]) for t in got] == [(64, 128), (32, 64), (16, 32), (8, 16), (4, 8)]
    for a, b in zip(got, want):
        assert b.abs().max() > 1 and torch.allclose(a, b, rtol=1e-5, atol=1e-4)


def test_pidinet_network_matches_reference(pidi_pair: tuple) -> None:
    ours, ref = pidi_pair
    assert not ours.training and ours.block1_2.conv1.weight.shape == (60, 1, 5, 5)  # rd converted to 5x5
    x = torch.from_numpy(_image(64, 128)[:, :, ::-1].copy()).float().permute(2, 0, 1)[None] / 255.0
    with torch.inference_mode():
        got, want = ours(x), ref.netNetwork(x)[-1]
    assert got.shape == (1, 1, 64, 128) and want.std() > 0.05  # the weights give a spread of probabilities
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("pdc", ["cd", "ad", "rd", "cv"])
def test_pixel_difference_conversion_is_the_extensions_maths(pdc: str) -> None:
    model = reference("pidi").model
    g = torch.Generator().manual_seed(1)
    w, x = torch.randn(6, 1, 3, 3, generator=g), torch.randn(1, 6, 12, 12, generator=g)
    want = model.createConvFunc(pdc)(x, w, None, 1, 1, 1, 6)  # stride, padding, dilation, groups: as in a block
    kernel = pidinet.to_vanilla(pdc, w)
    got = torch.nn.functional.conv2d(x, kernel, padding=kernel.shape[-1] // 2, groups=6)
    assert torch.allclose(got, want, atol=1e-5)
    if pdc != "cv":
        assert not torch.allclose(kernel[..., :3, :3] if pdc != "rd" else kernel[..., 1:4, 1:4], w)


# ---------------------------------------------------------------------------------------------------------------------
# The maps, mode by mode


@pytest.mark.parametrize("mode", ["soft", "safe", "scribble"])
def test_hed_maps_equal_the_extensions(hed_pair: tuple, mode: str) -> None:
    ours, ref = hed_pair
    img = _image(64, 128, seed=1)
    got = hed.detect(ours, img, mode)
    want = ref(img, detect_resolution=64, image_resolution=64, safe=mode == "safe", scribble=mode == "scribble",
               output_type="np")[:, :, 0]
    np.testing.assert_array_equal(got, want)
    values = np.unique(got)
    assert {"soft": len(values) > 100, "safe": set(values) == {0, 127, 255},
            "scribble": set(values) == {0, 255}}[mode], values


@pytest.mark.parametrize("mode", ["soft", "safe", "scribble", "sketch"])
def test_pidinet_maps_equal_the_extensions(pidi_pair: tuple, mode: str) -> None:
    ours, ref = pidi_pair
    img = _image(64, 128, seed=2)
    got = pidinet.detect(ours, img, mode)
    want = ref(img, detect_resolution=64, image_resolution=64, safe=mode == "safe", scribble=mode == "scribble",
               apply_filter=mode == "sketch", output_type="np")[:, :, 0]
    _close(got, want)
    values = np.unique(got)
    assert {"soft": len(values) > 100, "safe": set(values) == {0, 127, 255},
            "scribble": set(values) == {0, 255}, "sketch": set(values) == {0, 255}}[mode], values


@pytest.mark.parametrize("net", ["hed", "pidinet"])
def test_scribble_runs_after_the_padding_is_removed(hed_pair: tuple, pidi_pair: tuple, net: str) -> None:
    """The extension crops the padded map before its scribble steps; ``size`` does the same, and the result differs
    from processing the padded map (so the crop matters)."""
    module, (ours, ref) = (hed, hed_pair) if net == "hed" else (pidinet, pidi_pair)
    h, w = 50, 100
    padded = np.pad(_image(h, w, seed=4), [[0, 64 - h], [0, 128 - w], [0, 0]], mode="edge")
    soft = ref(padded, detect_resolution=64, image_resolution=64, output_type="np")[:, :, 0]
    want = _ext_scribble(np.ascontiguousarray(soft[:h, :w]))
    got = module.detect(ours, padded, "scribble", size=(h, w))
    assert got.shape == (h, w)
    _close(got, want)
    assert (module.detect(ours, padded, "scribble")[:h, :w] != want).any()
    _close(module.detect(ours, padded, "soft", size=(h, w)), soft[:h, :w])


# ---------------------------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("net", ["hed", "pidinet"])
def test_truncated_and_garbage_files_are_model_file_errors(files: dict[str, Path], tmp_path: Path, net: str) -> None:
    module = hed if net == "hed" else pidinet
    data = files[net].read_bytes()
    cut = tmp_path / files[net].name
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=files[net].name):
        module.load(cut)
    junk = tmp_path / f"junk_{files[net].name}"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelFileError, match="junk_"):
        module.load(junk)


def test_the_wrong_network_is_a_clear_value_error(files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"table5_pidinet\.pth: not the HED network \(ControlNetHED\.pth\).*missing"):
        hed.load(files["pidinet"])
    with pytest.raises(ValueError, match=r"ControlNetHED\.pth: not the PiDiNet network \(table5_pidinet\.pth\)"):
        pidinet.load(files["hed"])


def test_a_wrong_shape_or_missing_key_names_it(files: dict[str, Path], tmp_path: Path) -> None:
    sd = torch.load(files["hed"], map_location="cpu", weights_only=True)
    sd["block3.convs.1.weight"] = sd["block3.convs.1.weight"][:128]
    torch.save(sd, tmp_path / "ControlNetHED.pth")
    shape_error = r"block3\.convs\.1\.weight is \(128, 256, 3, 3\), expected \(256, 256, 3, 3\)"
    with pytest.raises(ValueError, match=shape_error):
        hed.load(tmp_path / "ControlNetHED.pth")
    ckpt = torch.load(files["pidinet"], map_location="cpu", weights_only=True)
    del ckpt["state_dict"]["module.attentions.2.conv2.weight"]
    torch.save(ckpt, tmp_path / "table5_pidinet.pth")
    with pytest.raises(ValueError, match=r"missing 1 keys \(attentions\.2\.conv2\.weight\)"):
        pidinet.load(tmp_path / "table5_pidinet.pth")


def test_bad_inputs(hed_pair: tuple, pidi_pair: tuple) -> None:
    img = _image(64, 64)
    with pytest.raises(ValueError, match="unknown mode 'sketch'"):
        hed.detect(hed_pair[0], img, "sketch")
    with pytest.raises(ValueError, match="RGB uint8"):
        pidinet.detect(pidi_pair[0], img.astype(np.float32))
    with pytest.raises(ValueError, match="not inside"):
        pidinet.detect(pidi_pair[0], img, size=(65, 10))


@pytest.mark.gpu
def test_detect_on_cuda_matches_cpu(hed_pair: tuple, pidi_pair: tuple) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    img = _image(128, 192, seed=6)
    for module, (net, _ref) in ((hed, hed_pair), (pidinet, pidi_pair)):
        cpu = module.detect(net, img)
        cuda = module.detect(net.to("cuda"), img)
        net.to("cpu")
        diff = np.abs(cpu.astype(int) - cuda.astype(int))
        assert diff.max() <= 2 and (diff > 0).mean() < 0.01
