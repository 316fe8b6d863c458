"""Face restoration: RetinaFace in facexlib's layout, alignment onto the 512 template, paste-back, and GFPGAN run
through the real loader (random weights: no registry ships GFPGAN or the detector)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from modules.errors import FieldError
from modules.upscalers import face_align, retinaface
from modules.upscalers.face_restoration import FaceRestorers
from modules.upscalers.retinaface import Face


def scene(size: int = 160) -> Image.Image:
    image = Image.new("RGB", (size, size), (90, 140, 200))
    draw = ImageDraw.Draw(image)
    for i in range(0, size, 10):
        draw.line([(i, 0), (size - i, size)], fill=(240, 200, 120), width=2)
    return image


def template_face(image_size: int, scale: float, angle: float, centre: tuple[float, float]) -> np.ndarray:
    """Landmarks of a face: the 512 template shrunk, turned and placed at ``centre``."""
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]]) * scale
    points = (face_align.FACE_TEMPLATE_512 - 256.0) @ rot.T
    return points + np.asarray(centre)


def test_retinaface_loads_facexlib_names_and_detects(tmp_path):
    model = retinaface.RetinaFace()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}  # trained with DataParallel
    loaded = retinaface.load_retinaface(state)
    assert "body.layer3.5.conv3.weight" in loaded.state_dict() and "LandmarkHead.2.conv1x1.bias" in loaded.state_dict()
    x = torch.zeros(1, 3, 96, 128)
    boxes, scores, landmarks = loaded(x)
    assert boxes.shape[1] == scores.shape[1] == landmarks.shape[1] == len(retinaface.priors(96, 128))
    faces = retinaface.detect_faces(loaded, scene(96))  # random weights: any number of faces, never an error
    assert all(f.landmarks.shape == (5, 2) for f in faces)


def test_decode_and_nms():
    anchors = retinaface.priors(64, 64)
    boxes, points = retinaface.decode(np.zeros((len(anchors), 4)), np.zeros((len(anchors), 10)), anchors)
    first = anchors[0]
    assert np.allclose(boxes[0], [first[0] - first[2] / 2, first[1] - first[3] / 2,
                                  first[0] + first[2] / 2, first[1] + first[3] / 2])
    assert np.allclose(points[0], np.tile(first[:2], (5, 1)))
    keep = retinaface.nms(np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float),
                          np.array([0.9, 0.8, 0.7]), 0.4)
    assert keep == [0, 2]


def test_similarity_recovers_a_known_transform():
    src = face_align.FACE_TEMPLATE_512
    angle, scale, shift = 0.3, 0.4, np.array([20.0, -5.0])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) * scale
    dst = src @ rot.T + shift
    matrix = face_align.similarity(src, dst)
    assert np.allclose(matrix[:, :2], rot, atol=1e-9) and np.allclose(matrix[:, 2], shift, atol=1e-6)


def test_align_then_paste_back_unchanged_returns_the_picture():
    image = scene(160)
    landmarks = template_face(160, 0.2, 0.2, (80, 80))
    aligned, matrix = face_align.align_face(image, landmarks)
    assert aligned.size == (512, 512)
    back = face_align.paste_face(image, aligned, matrix)
    a, b = np.asarray(image, dtype=np.int16), np.asarray(back, dtype=np.int16)
    assert np.abs(a - b).mean() < 2.0  # resampling twice blurs the face area a little
    assert np.array_equal(a[:10], b[:10])  # far from the face nothing moves


@pytest.fixture(scope="module")
def restorers(tmp_path_factory):
    from modules.upscalers.spandrel_import import import_spandrel

    import_spandrel()
    from spandrel.architectures.GFPGAN import GFPGAN

    root = tmp_path_factory.mktemp("models")
    (root / "GFPGAN").mkdir()
    torch.manual_seed(0)
    gfpgan = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                    fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)
    save_file({k: v.half().contiguous() for k, v in gfpgan.state_dict().items()},
              str(root / "GFPGAN" / "GFPGANv1.4.safetensors"))
    torch.save(retinaface.RetinaFace().state_dict(), root / "GFPGAN" / "detection_Resnet50_Final.pth")
    from modules.upscalers.spandrel_import import install_extra_arches

    install_extra_arches()
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    (root / "Codeformer").mkdir()
    codeformer = CodeFormer(dim_embd=512, n_head=8, n_layers=9, codebook_size=1024, latent_size=256,
                            connect_list=["32", "64", "128", "256"], fix_modules=["quantize", "generator"])
    save_file({k: v.half().contiguous() for k, v in codeformer.state_dict().items()},
              str(root / "Codeformer" / "codeformer-v0.1.0.safetensors"))
    return FaceRestorers(root / "GFPGAN", root / "Codeformer")


def test_gfpgan_restores_only_the_face_and_visibility_blends(restorers):
    image = scene(160)
    face = Face((40, 40, 120, 120), 0.99, template_face(160, 0.2, 0.0, (80, 80)))
    full = restorers.apply("GFPGAN", image, 1.0, faces=[face])
    a, b = np.asarray(image, dtype=np.int16), np.asarray(full, dtype=np.int16)
    assert np.abs(a[60:100, 60:100] - b[60:100, 60:100]).mean() > 5  # the face area is redrawn
    assert np.array_equal(a[:10], b[:10]) and np.array_equal(a[:, :10], b[:, :10])  # the rest is the input's
    half = np.asarray(restorers.apply("GFPGAN", image, 0.5, faces=[face]), dtype=np.int16)
    assert np.abs(half - (a + b) / 2).max() <= 1


def test_codeformer_weight_changes_the_result(restorers):
    image = scene(160)
    face = Face((40, 40, 120, 120), 0.99, template_face(160, 0.2, 0.0, (80, 80)))
    low = np.asarray(restorers.apply("CodeFormer", image, 1.0, weight=0.0, faces=[face]), dtype=np.int16)
    high = np.asarray(restorers.apply("CodeFormer", image, 1.0, weight=1.0, faces=[face]), dtype=np.int16)
    original = np.asarray(image, dtype=np.int16)
    assert np.array_equal(low[:10], original[:10])  # outside the face: the input
    assert np.abs(low[60:100, 60:100] - high[60:100, 60:100]).mean() > 0.5  # the fidelity weight reaches the net


def test_restore_detects_then_restores_and_records_the_info(restorers):
    from modules.processing.postprocessing import ExtrasParams

    info: dict = {}
    out = restorers.restore(scene(96), ExtrasParams(gfpgan_visibility=0.8), info)
    assert out.size == (96, 96) and info == {"GFPGAN visibility": 0.8}


def test_reasons_when_something_is_missing(tmp_path):
    (tmp_path / "GFPGAN").mkdir()
    restorers = FaceRestorers(tmp_path / "GFPGAN", tmp_path / "Codeformer")
    status = restorers.status()
    assert status["GFPGAN"][0] == "GFPGAN weights are not installed: put them in"
    (tmp_path / "GFPGAN" / "GFPGANv1.4.pth").write_bytes(b"x")
    assert "detection_Resnet50_Final.pth" in restorers.status()["GFPGAN"][0]
    (tmp_path / "Codeformer").mkdir()
    (tmp_path / "Codeformer" / "codeformer-v0.1.0.pth").write_bytes(b"x")
    (tmp_path / "GFPGAN" / "detection_Resnet50_Final.pth").write_bytes(b"x")
    assert restorers.status()["GFPGAN"] is None  # it can run (the files are read on first use)
    assert restorers.status()["CodeFormer"] is None
    empty = FaceRestorers(tmp_path / "none", tmp_path / "none2")
    with pytest.raises(FieldError) as err:
        empty.apply("CodeFormer", scene(64), 1.0)
    assert err.value.field == "codeformer_visibility" and "not installed" in str(err.value)
