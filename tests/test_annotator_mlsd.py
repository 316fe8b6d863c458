"""M-LSD (modules.controlnet.nets.mlsd) against controlnet_aux's network and line decoding on the same random
weights, and its decoding on a hand-built TP map whose segments are written out here."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from modules.controlnet import preprocessors
from modules.controlnet.annotator_files import annotator_setup
from modules.controlnet.nets import mlsd
from tests.support.aux_reference import reference
from tests.support.tiny_mlsd import write_mlsd


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = write_mlsd(tmp_path_factory.mktemp("mlsd") / "annotators" / "mlsd")
    ref = reference("mlsd.models.mbv2_mlsd_large").MobileV2_MLSD_Large()
    ref.load_state_dict(torch.load(path, weights_only=True), strict=True)
    return path, mlsd.load(path), ref.eval()


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    image = np.zeros((h, w, 3), np.uint8)
    rng = np.random.default_rng(seed)
    for _ in range(6):  # a few bright bars: something line-like under the noise
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, min(h, w), 4))
        cv2.line(image, (x0, y0), (x1, y1), (255, 255, 255), 3)
    return np.clip(image.astype(int) + rng.integers(0, 40, image.shape), 0, 255).astype(np.uint8)


def test_network_matches_the_reference(weights):
    _path, ours, ref = weights
    x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (1, 4, 64, 96)).astype(np.float32))
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert a.shape == (1, 9, 32, 48)
    assert float(a.std()) > 0.05
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("value, distance", [(0.1, 0.1), (0.5, 2.0), (0.99, 0.1)])
def test_lines_match_the_reference_detector(weights, value, distance):
    _path, ours, ref = weights
    image = _image(64, 128, seed=2)
    got = mlsd.detect(ours, image, value, distance)
    utils = reference("mlsd.utils")
    want = np.zeros_like(image)
    try:  # the extension's steps: pred_lines at the image's own size, 1-px white lines; no line -> black
        with torch.no_grad():
            for line in utils.pred_lines(image, ref, [64, 128], value, distance):
                x0, y0, x1, y1 = (int(v) for v in line)
                cv2.line(want, (x0, y0), (x1, y1), [255, 255, 255], 1)
    except IndexError:  # pred_lines indexes an empty array when nothing passes (the extension catches it)
        pass
    assert got.dtype == np.uint8 and got.shape == (64, 128)
    assert np.array_equal(got, want[:, :, 0])
    if value < 0.9:
        assert got.any()


def test_segments_of_a_hand_built_tp_map():
    """Two centres (logit 4 -> score 0.982) with displacements written out; a weaker neighbour is suppressed by the
    3x3 maximum, a short segment by the distance threshold, a low score by the value threshold."""
    tp = torch.full((1, 9, 16, 16), -10.0)
    tp[0, 0, 5, 3] = 4.0
    tp[0, 1:5, 5, 3] = torch.tensor([-2.0, 0.0, 6.0, 0.0])  # along x: (1, 5) -> (9, 5)
    tp[0, 0, 5, 4] = 3.0  # beside the first: not a local maximum
    tp[0, 1:5, 5, 4] = torch.tensor([-5.0, -5.0, 5.0, 5.0])
    tp[0, 0, 12, 12] = 4.0
    tp[0, 1:5, 12, 12] = torch.tensor([0.0, -3.0, 0.0, 1.5])  # along y: (12, 9) -> (12, 13.5)
    tp[0, 0, 2, 12] = 4.0
    tp[0, 1:5, 2, 12] = torch.tensor([0.0, 0.0, 0.05, 0.0])  # 0.05 long: under the distance threshold
    tp[0, 0, 8, 8] = -1.0  # score 0.27: under the value threshold below
    tp[0, 1:5, 8, 8] = torch.tensor([-4.0, 0.0, 4.0, 0.0])
    found = mlsd.segments(tp, value_threshold=0.5, distance_threshold=0.1)
    expected = 2 * np.array([[1.0, 5.0, 9.0, 5.0], [12.0, 9.0, 12.0, 13.5]])  # TP-map pixels to image pixels
    assert sorted(map(tuple, found)) == sorted(map(tuple, expected))
    assert len(mlsd.segments(tp, 0.99, 0.1)) == 0


def test_the_preprocessor_runs_it_and_bad_files_are_clear_errors(weights, tmp_path):
    path, _ours, _ref = weights
    setup = annotator_setup([path.parent.parent.parent])  # <tmp>/annotators/mlsd/<file>
    pre = preprocessors.find("mlsd")
    assert pre.unavailable(setup) is None
    lines = pre(_image(80, 64, seed=3), 64, 0.1, 0.1, annotators=setup)
    assert lines.shape == (80, 64, 3) and set(np.unique(lines)) <= {0, 255}
    wrong = tmp_path / "mlsd_large_512_fp32.pth"
    torch.save({"conv.weight": torch.zeros(3, 3, 1, 1)}, wrong)
    with pytest.raises(ValueError, match="not the M-LSD large line detector"):
        mlsd.load(wrong)
    with pytest.raises(ValueError, match="RGB uint8"):
        mlsd.detect(_ours, np.zeros((8, 8), np.uint8), 0.1, 0.1)
