"""``restore_faces`` and ``tiling`` take effect (issue 17 section 5), as in A1111.

Restore faces: each finished image goes through the restorer of ``face_restoration_model`` (CodeFormer with fidelity
``code_former_weight``) before the scripts see it, and the infotext says ``Face restoration: CodeFormer``. The
oracle is the restorer itself applied to the same seed's unrestored image (the restorer is tested on its own in
test_face_restoration.py). The detector's weights are built to find exactly one face anywhere (its heads output
constants), so the check does not depend on what a random model happens to draw.

Tiling: circular padding in every UNet and VAE convolution makes both commute with a circular shift of their input
(a torus has no edges), which zero padding does not; that property is the oracle for "seamless".
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modules.processing.seamless import circular_padding
from modules.upscalers import face_align, retinaface
from modules.upscalers.face_restoration import FaceRestorers
from tests.support.engine import default_settings, load_tiny, run_txt2img
from tests.support.tiny_checkpoints import write_tiny_checkpoint


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return load_tiny(write_tiny_checkpoint("sd1", tmp_path_factory.mktemp("ckpt"), "tiny-sd1"))


def one_face_detector() -> retinaface.RetinaFace:
    """RetinaFace whose heads ignore the picture: only the coarsest level's smaller anchors are faces, with
    landmarks in the template's shape; they overlap, so NMS keeps one face of a 64x64 image."""
    torch.manual_seed(0)
    model = retinaface.RetinaFace()
    relative = (face_align.FACE_TEMPLATE_512 - 256.0) / 512.0 * 0.6  # a face 60% of the picture wide
    with torch.no_grad():
        for heads in (model.ClassHead, model.BboxHead, model.LandmarkHead):
            for head in heads:
                head.conv1x1.weight.zero_()
                head.conv1x1.bias.zero_()
        for level, head in enumerate(model.ClassHead):  # (not face, face) logits of its two anchor sizes
            head.conv1x1.bias.copy_(torch.tensor([-10.0, 10.0, 10.0, -10.0] if level == 2 else [10.0, -10.0] * 2))
        for anchor, size in enumerate(retinaface.MIN_SIZES[2]):
            scale = retinaface.VARIANCE[0] * size / 64.0  # landmark regressions are in units of variance x anchor
            bias = model.LandmarkHead[2].conv1x1.bias
            bias[anchor * 10:(anchor + 1) * 10] = torch.tensor((relative / scale).reshape(-1), dtype=bias.dtype)
    return model


@pytest.fixture(scope="module")
def restorers(tmp_path_factory):
    from modules.upscalers.spandrel_import import install_extra_arches

    install_extra_arches()
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    root = tmp_path_factory.mktemp("faces")
    (root / "GFPGAN").mkdir()
    (root / "Codeformer").mkdir()
    torch.save(one_face_detector().state_dict(), root / "Codeformer" / "detection_Resnet50_Final.pth")
    torch.manual_seed(1)
    codeformer = CodeFormer(dim_embd=512, n_head=8, n_layers=9, codebook_size=1024, latent_size=256,
                            connect_list=["32", "64", "128", "256"], fix_modules=["quantize", "generator"])
    save_file({k: v.contiguous() for k, v in codeformer.state_dict().items()},
              str(root / "Codeformer" / "codeformer-v0.1.0.safetensors"))
    return FaceRestorers(root / "GFPGAN", root / "Codeformer")


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_the_detector_built_for_the_test_finds_one_face(restorers):
    from PIL import Image

    detector = restorers._detector(restorers.get("CodeFormer"))
    assert len(retinaface.detect_faces(detector, Image.new("RGB", (64, 64), (10, 200, 30)))) == 1


def test_restore_faces_runs_the_chosen_restorer_on_each_image_and_names_it(sd1, tmp_path, restorers):
    common = dict(seed=5, n_iter=2, do_not_save_samples=True, do_not_save_grid=True)
    plain = run_txt2img(sd1, tmp_path, **common)
    settings = default_settings(code_former_weight=0.8, return_grid=False)
    restored = run_txt2img(sd1, tmp_path, restore_faces=True, face_restorers=restorers, settings=settings, **common)
    assert len(restored.images) == 2
    for before, after, text in zip(plain.images, restored.images, restored.infotexts):
        expected = restorers.apply("CodeFormer", before, 1.0, 0.8)
        assert not np.array_equal(pixels(expected), pixels(before))  # the oracle does change the picture
        assert np.array_equal(pixels(after), pixels(expected))
        assert "Face restoration: CodeFormer, Size: 64x64" in text  # in A1111's place, after Seed
        assert after.info["parameters"] == text
    assert "Face restoration" not in plain.infotexts[0]
    assert restored.info_dict()["restore_faces"] is True
    assert restored.info_dict()["face_restoration_model"] == "CodeFormer"


def test_restore_faces_unset_follows_the_setting_and_saves_the_image_before_it(sd1, tmp_path, restorers):
    settings = default_settings(face_restoration=True, save_images_before_face_restoration=True, return_grid=False)
    out = run_txt2img(sd1, tmp_path, seed=6, face_restorers=restorers, settings=settings)  # restore_faces: None
    assert "Face restoration: CodeFormer" in out.infotexts[0]
    saved = sorted(p.name for p in (tmp_path / "outputs" / "txt2img-images").rglob("*.png"))
    assert any(name.endswith("-before-face-restoration.png") for name in saved)
    assert len(saved) == 2


def test_without_weights_the_images_come_back_and_the_job_says_what_to_put_where(tiny_api_client):
    import json

    r = tiny_api_client.post("/sdapi/v1/txt2img", json={"prompt": "a face", "width": 64, "height": 64, "steps": 2,
                                                        "restore_faces": True})
    assert r.status_code == 200, r.text
    body = r.json()
    info = json.loads(body["info"])
    assert len(body["images"]) == 1
    assert "Face restoration" not in info["infotexts"][0] and info["face_restoration_model"] is None
    (comment,) = [c for c in info["comments"] if "Face restoration was skipped" in c]
    folder = tiny_api_client.app.state.runtime.face_restorers.get("CodeFormer").folder
    assert "CodeFormer weights are not installed: put them in" in comment and str(folder) in comment


# -- tiling ------------------------------------------------------------------------------------------------------------
def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


def test_circular_padding_makes_the_unet_and_the_vae_decoder_seamless(sd1):
    unet, vae = sd1.unet, sd1.vae
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 16, 16, generator=g)
    context = torch.randn(1, 77, unet.config.cross_attention_dim, generator=g)
    t = torch.tensor([500])

    def unet_out(latents):
        with torch.inference_mode():
            return unet(latents, t, encoder_hidden_states=context, return_dict=False)[0]

    def decode(latents):
        with torch.inference_mode():
            return vae.decode(latents, return_dict=False)[0]

    shift = 2 ** (len(unet.config.block_out_channels) - 1)  # a whole cell of the coarsest level
    plain_gap = (unet_out(_shift(x, shift, shift)) - _shift(unet_out(x), shift, shift)).abs().max()
    assert plain_gap > 1e-3  # zero padding: the edges are edges
    with circular_padding([unet, vae]) as switched:
        assert switched == sum(isinstance(m, torch.nn.Conv2d) for part in (unet, vae) for m in part.modules())
        gap = (unet_out(_shift(x, shift, shift)) - _shift(unet_out(x), shift, shift)).abs().max()
        assert gap < 1e-4
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        decoded_gap = (decode(_shift(x, 1, 1)) - _shift(decode(x), factor, factor)).abs().max()
        assert decoded_gap < 1e-4
    assert all(m.padding_mode == "zeros" for m in unet.modules() if isinstance(m, torch.nn.Conv2d))


def test_tiling_changes_the_image_is_written_in_the_infotext_and_is_undone_after_the_job(sd1, tmp_path):
    plain = run_txt2img(sd1, tmp_path, seed=8, do_not_save_samples=True)
    tiled = run_txt2img(sd1, tmp_path, seed=8, tiling=True, do_not_save_samples=True)
    assert not np.array_equal(pixels(plain.images[0]), pixels(tiled.images[0]))
    assert "Tiling: True" in tiled.infotexts[0] and "Tiling" not in plain.infotexts[0]
    assert "RNG" not in tiled.infotexts[0]
    assert tiled.infotexts[0].index("Tiling: True") > tiled.infotexts[0].index("Model:")  # A1111's order
    convs = [m for part in (sd1.unet, sd1.vae) for m in part.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.padding_mode == "zeros" for m in convs)
    again = run_txt2img(sd1, tmp_path, seed=8, do_not_save_samples=True)
    assert np.array_equal(pixels(plain.images[0]), pixels(again.images[0]))
    from_setting = run_txt2img(sd1, tmp_path, seed=8, do_not_save_samples=True,
                               settings=default_settings(tiling=True))  # tiling: None follows the setting
    assert np.array_equal(pixels(from_setting.images[0]), pixels(tiled.images[0]))


def test_tiling_is_undone_when_the_job_fails(sd1, tmp_path):
    def boom(step, cond, uncond):
        raise RuntimeError("a failing extension hook")

    with pytest.raises(RuntimeError, match="failing extension"):
        run_txt2img(sd1, tmp_path, seed=8, tiling=True, hooks=[boom], do_not_save_samples=True)
    assert all(m.padding_mode == "zeros" for m in sd1.unet.modules() if isinstance(m, torch.nn.Conv2d))
