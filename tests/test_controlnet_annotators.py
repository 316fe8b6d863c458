"""The weighted preprocessors' plumbing: where their files are found (a flat annotator folder, the
sd-webui-controlnet ``downloads/<kind>/`` layout, the setting's folder), the message when files are missing, the
extension's resize-pad-unpad around the network, and the one-preprocessor model cache. The networks themselves
are checked against controlnet_aux in tests/test_annotator_*.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modules.controlnet import annotators, preprocessors
from modules.controlnet.annotator_files import EXTENSION_DOWNLOADS, AnnotatorSetup, annotator_setup
from tests.support.aux_reference import reference
from tests.support.tiny_lineart import write_lineart


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_files_are_found_flat_in_the_downloads_layout_and_in_any_case(tmp_path):
    cn = tmp_path / "models" / "ControlNet"
    extensions = tmp_path / "extensions"
    setup = annotator_setup([cn], extensions, extra_dir=tmp_path / "mine")
    assert setup.dirs == (tmp_path / "mine", cn / "annotators", extensions / EXTENSION_DOWNLOADS)
    lineart = preprocessors.find("lineart_realistic")
    why = lineart.unavailable(setup)
    assert "sk_model.pth" in why and str(tmp_path / "mine") in why and "lineart/ subfolder" in why
    write_lineart(extensions / EXTENSION_DOWNLOADS / "lineart", "sk_model.pth")  # the extension's own layout
    assert lineart.unavailable(setup) is None
    assert preprocessors.find("lineart_coarse").unavailable(setup) is not None  # sk_model2.pth is another file
    write_lineart(cn / "annotators", "SK_MODEL2.PTH")  # flat, another case
    assert preprocessors.find("lineart_coarse").unavailable(setup) is None


def test_a_preprocessor_of_several_files_names_every_missing_one(tmp_path):
    setup = annotator_setup([tmp_path / "ControlNet"])
    why = preprocessors.find("openpose_full").unavailable(setup)
    assert all(name in why for name in ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth"))
    why = preprocessors.find("dw_openpose_full").unavailable(setup)
    assert "yolox_l.onnx" in why and "dw-ll_ucoco_384.onnx" in why
    (tmp_path / "ControlNet" / "annotators" / "openpose").mkdir(parents=True)
    (tmp_path / "ControlNet" / "annotators" / "openpose" / "yolox_l.onnx").write_bytes(b"x")
    why = preprocessors.find("dw_openpose_full").unavailable(setup)
    assert "yolox_l.onnx" not in why and "dw-ll_ucoco_384.onnx" in why
    with pytest.raises(ValueError, match="dw-ll_ucoco_384.onnx"):
        preprocessors.find("dw_openpose_full")(_image(64, 64), 64, -1, -1, annotators=setup)


def test_every_weighted_preprocessor_has_an_annotator_and_files_or_a_depth_folder():
    weighted = [p for p in preprocessors.ordered() if p.run is None]
    assert {p.name for p in weighted} >= {"openpose", "openpose_full", "dw_openpose_full", "lineart", "lineart_anime",
                                         "hed", "pidinet", "mlsd", "normal_bae", "depth", "scribble_hed"}
    for pre in weighted:
        annotator = annotators.ANNOTATORS[pre.annotator]
        assert annotator.depth is not None or annotator.networks, pre.name
        assert pre.unavailable(AnnotatorSetup()) is not None  # nothing there: a message, not a crash


def test_the_map_is_made_at_the_padded_resolution_and_unpadded_like_the_extension(tmp_path):
    """lineart_realistic on a 90x70 image at resolution 64: the extension resizes the shortest side to 64 (cubic up,
    area down), edge-pads to a multiple of 64, runs the net, inverts, and crops the padding off."""
    import cv2

    path = write_lineart(tmp_path / "ControlNet" / "annotators", "sk_model.pth", seed=3, real_size=True)
    setup = annotator_setup([tmp_path / "ControlNet"])
    image = _image(90, 70, seed=4)
    ours = preprocessors.find("lineart_realistic")(image, 64, -1, -1, annotators=setup)
    # the oracle: the extension's steps written out, around controlnet_aux's generator with the same weights
    h, w = int(np.round(90 * 64 / 70)), 64
    resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    padded = np.pad(resized, [[0, -h % 64], [0, 0], [0, 0]], mode="edge")
    ref = reference("lineart").Generator(3, 1, 3)  # the real size (the reference class has fixed widths)
    ref.load_state_dict(torch.load(path, weights_only=True))
    with torch.no_grad():
        line = ref(torch.from_numpy(padded).float().permute(2, 0, 1)[None] / 255.0)[0, 0].numpy()
    want = 255 - (line * 255.0).clip(0, 255).astype(np.uint8)
    assert ours.shape == (h, w, 3) and (ours == ours[:, :, :1]).all()
    assert np.abs(ours[:, :, 0].astype(int) - want[:h].astype(int)).max() <= 1


def test_one_preprocessors_networks_stay_loaded_and_another_preprocessor_replaces_them(tmp_path, monkeypatch):
    folder = tmp_path / "ControlNet" / "annotators"
    write_lineart(folder, "sk_model.pth")
    write_lineart(folder, "sk_model2.pth", seed=1)
    setup = annotator_setup([tmp_path / "ControlNet"])
    loads: list[str] = []
    real = annotators._load_model
    monkeypatch.setattr(annotators, "_load_model", lambda key, paths: loads.append(key) or real(key, paths))
    monkeypatch.setattr(annotators, "_LOADED", annotators._Loaded())
    realistic, coarse = preprocessors.find("lineart_realistic"), preprocessors.find("lineart_coarse")
    first = realistic(_image(64, 64), 64, -1, -1, annotators=setup)
    again = realistic(_image(64, 64), 64, -1, -1, annotators=setup)
    assert loads == ["lineart"] and np.array_equal(first, again)
    other = coarse(_image(64, 64), 64, -1, -1, annotators=setup)
    assert loads == ["lineart", "lineart_coarse"] and not np.array_equal(first, other)
    assert [k[0] for k in annotators._LOADED.models] == ["lineart_coarse"]  # the other one was dropped


def test_scribble_hed_thins_and_binarises_after_the_padding_is_off(tmp_path):
    """scribble_hed = the soft HED map cropped to the image, then non-maximum suppression, blur, binarisation; on a
    90x70 image the padded rows would otherwise bleed into the blur at the bottom edge."""
    from modules.controlnet.nets import hed
    from modules.controlnet.preprocessors import resize_with_pad
    from tests.support.tiny_softedge import write_hed

    path = write_hed(tmp_path / "ControlNet" / "annotators")
    setup = annotator_setup([tmp_path / "ControlNet"])
    image = _image(90, 70, seed=5)
    soft = preprocessors.find("softedge_hed")(image, 64, -1, -1, annotators=setup)
    scribbled = preprocessors.find("scribble_hed")(image, 64, -1, -1, annotators=setup)
    padded, unpad = resize_with_pad(image, 64)
    net = hed.load(path)
    assert np.array_equal(soft[:, :, 0], unpad(hed.detect(net, padded, mode="soft")))
    h, w = soft.shape[:2]
    assert np.array_equal(scribbled[:, :, 0], hed.detect(net, padded, mode="scribble", size=(h, w)))
    assert set(np.unique(scribbled)) <= {0, 255}


def test_openpose_draws_the_bodies_it_finds_and_hands_over_their_json(tmp_path):
    """openpose (body only) from the extension's downloads/openpose/ layout: the map is the found people drawn on
    the padded canvas and cropped; the pose sink gets the OpenPose JSON of the same people."""
    from modules.controlnet.nets import openpose, pose_drawing
    from modules.controlnet.preprocessors import resize_with_pad
    from tests.support.tiny_openpose import write_body

    extensions = tmp_path / "extensions"
    path = write_body(extensions / EXTENSION_DOWNLOADS / "openpose")
    setup = annotator_setup([tmp_path / "ControlNet"], extensions)
    image = _image(80, 64, seed=6)
    poses: list[dict] = []
    drawn = preprocessors.find("openpose")(image, 64, -1, -1, annotators=setup, pose_sink=poses.append)
    padded, unpad = resize_with_pad(image, 64)
    found = openpose.detect(openpose.load_body(path), padded)
    assert found.people  # random weights still find (random) people: the drawing below means something
    assert np.array_equal(drawn, unpad(pose_drawing.draw_poses(found, draw_hand=False, draw_face=False)))
    (pose,) = poses
    assert (pose["canvas_height"], pose["canvas_width"]) == padded.shape[:2]
    assert len(pose["people"]) == len(found.people)
    assert all(person["hand_left_keypoints_2d"] is None for person in pose["people"])
