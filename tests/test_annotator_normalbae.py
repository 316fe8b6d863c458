"""NormalBae (modules.controlnet.nets.normalbae) against controlnet_aux's NNET on the same random full-size weights:
the refined full-resolution prediction, the final map, the ``{"model": ...}`` file layout and bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.controlnet import preprocessors
from modules.controlnet.annotator_files import annotator_setup
from modules.controlnet.nets import normalbae
from tests.support.tiny_normalbae import reference_net, write_normalbae


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("nb")
    path = write_normalbae(root / "annotators" / "normal_bae")
    ref = reference_net()
    ref.load_state_dict(torch.load(path, weights_only=True)["model"], strict=True)
    return root, path, normalbae.load(path), ref


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_prediction_matches_the_reference(weights):
    _root, _path, ours, ref = weights
    x = torch.from_numpy(np.random.default_rng(1).normal(0, 1, (1, 3, 64, 96)).astype(np.float32))
    with torch.no_grad():
        a = ours(x)
        b = ref(x)[0][-1]  # the extension reads the last (full-resolution) prediction
    assert a.shape == (1, 4, 64, 96)
    assert float(a[:, :3].std()) > 0.05
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_map_matches_the_extensions_steps(weights):
    _root, _path, ours, ref = weights
    image = _image(64, 64, seed=2)
    got = normalbae.detect(ours, image)
    x = torch.from_numpy(image).float().permute(2, 0, 1)[None] / 255.0
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        normal = ref(x)[0][-1][:, :3]
    want = (((normal + 1) * 0.5).clip(0, 1)[0].permute(1, 2, 0).numpy() * 255.0).clip(0, 255).astype(np.uint8)
    assert got.shape == (64, 64, 3) and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    assert len(np.unique(got)) > 20


def test_the_preprocessor_runs_it_and_bad_files_are_clear_errors(weights, tmp_path):
    root, _path, ours, _ref = weights
    pre = preprocessors.find("normal_bae")
    setup = annotator_setup([root.parent / root.name])  # <root>/annotators/normal_bae/scannet.pt
    assert pre.unavailable(setup) is None
    assert pre(_image(70, 64, seed=3), 64, -1, -1, annotators=setup).shape == (70, 64, 3)
    wrong = tmp_path / "scannet.pt"
    torch.save({"model": {"conv.weight": torch.zeros(3, 3, 1, 1)}}, wrong)
    with pytest.raises(ValueError, match="not the NormalBae surface-normal model"):
        normalbae.load(wrong)
    with pytest.raises(ValueError, match="RGB uint8"):
        normalbae.detect(ours, np.zeros((8, 8), np.uint8))
