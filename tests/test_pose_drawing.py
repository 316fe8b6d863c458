"""The pose map and the OpenPose JSON (modules.controlnet.nets.pose_drawing): drawn pixel for pixel as controlnet_aux
draws the same keypoints (sd-webui-controlnet's drawing, which it copies), the extension's JSON read and written."""

from __future__ import annotations

import copy
import pickle
import importlib.util
import math
import random
import sys
import types

import cv2
import numpy as np
import pytest

from modules.controlnet.nets.pose_drawing import PixelFraction, decode_json, draw_poses, encode_json, fraction_of
from modules.controlnet.nets.pose_types import Body, Keypoint, Person, PoseResult
from tests.support.aux_reference import reference

# sd-webui-controlnet's tests/web_api/pose.json (the example its render_openpose_json test posts): pixel coordinates
# on a 512x512 canvas, integer confidences, no face.
EXTENSION_EXAMPLE = {
    "people": [{
        "pose_keypoints_2d": [
            275.2506064884899, 196.32469357280343, 1, 303.3188016469506, 272.70982071889466, 1,
            244.98447950024644, 292.09994638829477, 1, 236.38292745027104, 517.7037729015278, 1,
            168.3984479500246, 418.0022744632577, 1, 412.90526047751445, 257.2121425016039, 1,
            403.17894535813576, 510.14290732520925, 1, 294.43481869004336, 376.4781345848482, 1,
            265.25747216047955, 562.5137576822758, 1, 0, 0, 0, 0, 0, 0, 359.0078938961762,
            562.0711206495608, 1, 0, 0, 0, 0, 0, 0, 240.097671925037, 184.513914838073, 1,
            308.33409148775263, 161.22089906296208, 1, 204.7558201874076, 213.05887067565308, 1,
            366.61934701298674, 148.9278832878512, 1],
        "hand_right_keypoints_2d": [
            168.39790150130915, 418.0005271461072, 1, 181.79401055357368, 399.3767976307846, 1,
            184.8627576873498, 384.75709227716266, 1, 198.118414869015, 381.90007483819153, 1,
            215.15048903799024, 386.8527024571639, 1, 180.1325238303079, 346.88417988394843, 1,
            178.10795487568174, 321.1018085790239, 1, 190.70710955474613, 320.5669160600145, 1,
            203.3062827659017, 325.5456061326966, 1, 172.3536896669116, 350.7525276652412, 1,
            170.000622912838, 325.0336533262108, 1, 185.70972426755964, 323.476117950832, 1,
            208.50724912413568, 333.4635128502484, 1, 163.50256975319706, 356.1325737292637, 1,
            162.59147123450128, 335.0197021116338, 1, 183.9828354600188, 328.4553078224726, 1,
            201.57171021013423, 337.94383954551654, 1, 152.9805889462092, 357.94403689402753, 1,
            167.09651929267878, 341.7437601311937, 1, 180.9402668216081, 337.10207327446744, 1,
            194.60028340222678, 343.0449246874465, 1],
        "hand_left_keypoints_2d": [
            294.4393772120137, 376.476024395234, 1, 271.70933825161165, 384.48117305399165, 1,
            257.2452829806548, 374.58948859472207, 1, 238.26122936397638, 375.2887100029166, 1,
            219.89983184668415, 382.69322630254595, 1, 263.0323651487124, 320.1279349241104, 1,
            246.94602107917282, 309.8099960810156, 1, 233.73717716804694, 314.1485136789638, 1,
            224.27755744411303, 322.7892154545116, 1, 264.97558037166135, 334.6319791090978, 1,
            254.35598193615226, 315.5629746257517, 1, 238.25810853722876, 321.2812182403252, 1,
            223.57727818251382, 328.39525394113423, 1, 278.15831452661644, 337.1533682086847, 1,
            265.12624946042416, 323.3619430418993, 1, 250.5919197031302, 325.30525908324694, 1,
            235.2500911122877, 332.6721359855453, 1, 285.9427695830851, 341.50671458478496, 1,
            274.50497773130155, 333.1376809270594, 1, 261.49768784257105, 328.7012203257942, 1,
            248.90495501067193, 332.0535195828255, 1],
    }],
    "canvas_width": 512,
    "canvas_height": 512,
}


# ---------------------------------------------------------------------------------------------------------------------
# The reference drawing


def _matplotlib_hsv_to_rgb(hsv):
    """matplotlib.colors.hsv_to_rgb's arithmetic (vectorised, float64), for a venv without matplotlib: controlnet_aux's
    draw_handpose imports it for the hand edge colours."""
    hsv = np.array(hsv, dtype=np.float64, ndmin=2)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    i = (h * 6.0).astype(int)
    f = (h * 6.0) - i
    p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
    table = {0: (v, t, p), 1: (q, v, p), 2: (p, v, t), 3: (p, q, v), 4: (t, p, v), 5: (v, p, q)}
    rgb = np.stack(table[int(i[0] % 6)], axis=-1)
    return rgb.reshape(-1)


@pytest.fixture(scope="module")
def util():
    if importlib.util.find_spec("matplotlib") is None:
        shim = types.ModuleType("matplotlib")
        shim.colors = types.SimpleNamespace(hsv_to_rgb=_matplotlib_hsv_to_rgb)
        sys.modules["matplotlib"] = shim
        try:
            yield reference("open_pose.util")
        finally:
            del sys.modules["matplotlib"]
    else:
        yield reference("open_pose.util")


def _offcanvas(points):
    """controlnet_aux's hand and face drawing crash on a missing point, which the extension's skip; a point left of
    and above the canvas is skipped by both."""
    return None if points is None else [Keypoint(-1.0, -1.0) if p is None else p for p in points]


def _reference_map(util, result: PoseResult, body=True, hand=True, face=True) -> np.ndarray:
    canvas = np.zeros((result.height, result.width, 3), dtype=np.uint8)
    for person in result.people:
        if body:
            canvas = util.draw_bodypose(canvas, person.body.keypoints)
        if hand:
            canvas = util.draw_handpose(canvas, _offcanvas(person.left_hand))
            canvas = util.draw_handpose(canvas, _offcanvas(person.right_hand))
        if face:
            canvas = util.draw_facepose(canvas, _offcanvas(person.face))
    return canvas


def _random_points(rng: random.Random, n: int, centre: tuple[float, float], spread: float, missing: float):
    points = []
    for _ in range(n):
        if rng.random() < missing:
            points.append(None)
        else:
            points.append(Keypoint(min(max(rng.gauss(centre[0], spread), -0.02), 1.02),
                                   min(max(rng.gauss(centre[1], spread), -0.02), 1.02), rng.random()))
    return points


def _random_result(seed: int, height: int, width: int, people: int) -> PoseResult:
    rng = random.Random(seed)
    found = []
    for _ in range(people):
        centre = (rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8))
        body = _random_points(rng, 18, centre, 0.2, 0.2)
        hands = [_random_points(rng, 21, (centre[0] + d, centre[1]), 0.04, 0.1) if rng.random() < 0.85 else None
                 for d in (-0.15, 0.15)]
        face = _random_points(rng, 70, (centre[0], centre[1] - 0.2), 0.03, 0.1) if rng.random() < 0.85 else None
        found.append(Person(Body(body), hands[0], hands[1], face))
    return PoseResult(found, height, width)


def _edge_cases(height: int, width: int) -> PoseResult:
    """Points exactly on pixel boundaries, in row/column 0 (not drawn for hands and faces), at the canvas edges and
    outside it, a limb of zero length, and two hands crossing."""
    body = [None] * 18
    body[0] = Keypoint(0.0, 0.0)
    body[1] = Keypoint(0.5, 0.5)
    body[2] = Keypoint(0.5, 0.5)  # zero-length limb neck -> r-shoulder
    body[5] = Keypoint(1.0, 1.0)
    body[14] = Keypoint(-0.01, 0.3)
    body[15] = Keypoint(1.5 / width, 2.0 / height)
    hand = [Keypoint(i / 20.0, (20 - i) / 20.0) for i in range(21)]  # from (0, 1) to (1, 0): ends on the edges
    face = [Keypoint(i / 69.0, 0.0 if i % 2 else 1.0 / height) for i in range(70)]
    other_hand = [Keypoint(k.x + 0.01, 1.0 - k.y) for k in hand]  # crossing the first: the drawing order shows
    return PoseResult([Person(Body(body), hand, other_hand, face)], height, width)


@pytest.mark.parametrize("seed,height,width,people", [(1, 512, 512, 1), (2, 333, 517, 3), (3, 768, 448, 2),
                                                      (4, 64, 64, 2)])
def test_map_matches_controlnet_aux_pixel_for_pixel(util, seed, height, width, people):
    result = _random_result(seed, height, width, people)
    ours = draw_poses(result)
    assert ours.shape == (height, width, 3) and ours.dtype == np.uint8
    assert ours.any()
    np.testing.assert_array_equal(ours, _reference_map(util, result))


@pytest.mark.parametrize("body,hand,face", [(True, False, False), (True, True, False), (True, False, True),
                                            (False, False, True), (False, True, False)])
def test_parts_drawn_as_chosen(util, body, hand, face):
    result = _random_result(7, 384, 320, 2)
    ours = draw_poses(result, draw_body=body, draw_hand=hand, draw_face=face)
    np.testing.assert_array_equal(ours, _reference_map(util, result, body, hand, face))
    # White appears only from face dots; the hands' dots are pure blue (0, 0, 255).
    white = (ours == 255).all(axis=2).any()
    assert white == face


def test_edge_cases_match_controlnet_aux(util):
    for height, width in ((256, 256), (100, 300)):
        result = _edge_cases(height, width)
        np.testing.assert_array_equal(draw_poses(result), _reference_map(util, result))


def test_the_colours_and_sizes():
    """Independently of the reference: a nose dot, a neck -> r-shoulder limb at 60% red, a hand dot and a face dot."""
    body = [None] * 18
    body[0] = Keypoint(0.25, 0.25)
    result = PoseResult([Person(Body(body))], 100, 100)
    nose = draw_poses(result)
    assert tuple(nose[25, 25]) == (255, 0, 0)
    assert (nose.any(axis=2)).sum() == 49  # cv2's filled circle of radius 4: a 9x9 disc with 49 pixels
    body[1], body[2] = Keypoint(0.2, 0.7), Keypoint(0.8, 0.7)
    limb = draw_poses(PoseResult([Person(Body(body))], 100, 100))
    assert tuple(limb[70, 50]) == (153, 0, 0)  # int(255 * 0.6)
    assert not limb[70 - 6, 50].any() and limb[70 - 4, 50].any()  # the ellipse's half width is 4
    hand = [None] * 21
    hand[0] = Keypoint(0.5, 0.5)
    face = [Keypoint(0.3, 0.3)]
    drawn = draw_poses(PoseResult([Person(Body([None] * 18), left_hand=hand, face=face)], 100, 100))
    assert tuple(drawn[50, 50]) == (0, 0, 255) and tuple(drawn[30, 30]) == (255, 255, 255)
    assert (drawn[:, :, 0] == 255).sum() == 29  # the face dot: cv2's filled circle of radius 3


def test_empty_result_is_black_and_size_required():
    assert not draw_poses(PoseResult([], 64, 128)).any()
    assert draw_poses(PoseResult([], 64, 128)).shape == (64, 128, 3)
    with pytest.raises(ValueError, match="canvas size"):
        draw_poses(PoseResult([], 0, 0))


def test_fraction_gives_back_the_pixel():
    """Fractions made from pixels are drawn where the extension draws the pixels themselves: the float fraction times
    the size gives the pixel back exactly, or (the few where no float does) a PixelFraction carries the pixel."""
    rng = random.Random(5)
    carried = total = 0
    for size in [64 * k for k in range(1, 33)] + [49, 100, 333, 1000]:
        for _ in range(300):
            pixel = float(rng.randint(-3, size + 3)) if rng.random() < 0.4 else rng.uniform(-20, size + 20)
            f = fraction_of(pixel, size)
            assert abs(f - pixel / size) <= 8 * math.ulp(pixel / size)
            if isinstance(f, PixelFraction):
                assert (f.pixel, f.size) == (pixel, size) and float(f) == pixel / size
                carried += 1
            else:
                assert f * size == pixel
            total += 1
    assert 0 < carried < total * 0.1
    f = next(fraction_of(float(p), 832) for p in range(832) if isinstance(fraction_of(float(p), 832), PixelFraction))
    assert pickle.loads(pickle.dumps(f)).pixel == f.pixel and copy.deepcopy(f).size == 832


def _pixel_mode_limb(height, width, a, b):
    """The extension drawing neck -> r-shoulder between two pixel coordinates (its pixel mode: the coordinates used
    as they are), worked out with cv2 here: a limb of 60% red, then the two dots."""
    canvas = np.zeros((height, width, 3), np.uint8)
    length = math.hypot(a[0] - b[0], a[1] - b[1])
    angle = math.degrees(math.atan2(a[1] - b[1], a[0] - b[0]))
    polygon = cv2.ellipse2Poly((int((a[0] + b[0]) / 2), int((a[1] + b[1]) / 2)), (int(length / 2), 4), int(angle),
                               0, 360, 1)
    cv2.fillConvexPoly(canvas, polygon, [153, 0, 0])
    cv2.circle(canvas, (int(a[0]), int(a[1])), 4, (255, 85, 0), thickness=-1)
    cv2.circle(canvas, (int(b[0]), int(b[1])), 4, (255, 170, 0), thickness=-1)
    return canvas


def test_integer_pixels_on_an_odd_canvas_are_drawn_from_the_pixels():
    """Integer pixels that no fraction of 832 gives back (as an editor's JSON has them), drawn as the extension
    draws pixel coordinates: a 45-degree limb stays at 45 degrees, where the nearest float fractions would tilt it
    to int(44.99999...) = 44."""
    height, width = 512, 832
    tilted = 0
    for x in range(300, 832):
        if not isinstance(fraction_of(float(x), width), PixelFraction):
            continue
        a, b = (float(x), 300.0), (float(x - 100), 200.0)
        expected = _pixel_mode_limb(height, width, a, b)
        body = [None] * 18
        body[1] = Keypoint(fraction_of(a[0], width), a[1] / height)
        body[2] = Keypoint(fraction_of(b[0], width), b[1] / height)
        np.testing.assert_array_equal(draw_poses(PoseResult([Person(Body(body))], height, width)), expected)
        plain = [None] * 18
        plain[1], plain[2] = (Keypoint(float(k.x), k.y) for k in body[1:3])
        tilted += not np.array_equal(draw_poses(PoseResult([Person(Body(plain))], height, width)), expected)
    assert tilted  # the case exists: plain fractions would not have matched


# ---------------------------------------------------------------------------------------------------------------------
# JSON


def test_json_round_trip():
    result = _random_result(11, 400, 600, 3)
    data = encode_json(result)
    assert data["canvas_width"] == 600 and data["canvas_height"] == 400 and data["animals"] == []
    person = data["people"][0]
    assert set(person) == {"pose_keypoints_2d", "face_keypoints_2d", "hand_left_keypoints_2d",
                           "hand_right_keypoints_2d"}
    assert len(person["pose_keypoints_2d"]) == 54
    back = decode_json(data)
    assert (back.height, back.width) == (400, 600)
    for a, b in zip(result.people, back.people):
        for pa, pb in ((a.body.keypoints, b.body.keypoints), (a.left_hand, b.left_hand),
                       (a.right_hand, b.right_hand), (a.face, b.face)):
            assert (pa is None) == (pb is None)
            if pa is None:
                continue
            assert [k is None for k in pa] == [k is None for k in pb]
            for ka, kb in zip(pa, pb):
                if ka is not None:
                    assert (kb.x, kb.y) == pytest.approx((ka.x, ka.y), rel=1e-15, abs=1e-15)
    np.testing.assert_array_equal(draw_poses(back), draw_poses(result))


def test_json_writes_a_part_outside_the_canvas_in_pixels():
    """A fraction beyond -1..1 (a point off the image) would be read back as pixels: that part is written in
    pixels, the others stay fractions."""
    body = [Keypoint(0.5, 0.5)] * 18
    hand = [Keypoint(0.9, 0.5)] * 20 + [Keypoint(1.25, 0.5)]
    result = PoseResult([Person(Body(body), left_hand=hand)], 100, 200)
    data = encode_json(result)
    assert data["people"][0]["pose_keypoints_2d"][:3] == [0.5, 0.5, 1.0]
    assert data["people"][0]["hand_left_keypoints_2d"][-3:] == [250.0, 50.0, 1.0]
    back = decode_json(data)
    assert back.people[0].left_hand[-1] == Keypoint(1.25, 0.5) and back.people[0].body.keypoints[0] == body[0]


def test_json_in_pixels_round_trip():
    result = _random_result(12, 333, 517, 2)
    data = encode_json(result, pixels=True)
    nose = next(p.body.keypoints[0] for p in result.people if p.body.keypoints[0] is not None)
    flat = [v for p in data["people"] for v in p["pose_keypoints_2d"]]
    assert nose.x * 517 in flat
    assert max(abs(v) for v in flat) > 1  # pixels, read back as pixels
    np.testing.assert_array_equal(draw_poses(decode_json(data)), draw_poses(result))


def test_json_of_missing_points_and_parts():
    body = [None] * 18
    body[3] = Keypoint(0.25, 0.75, score=0.4)
    data = encode_json(PoseResult([Person(Body(body))], 10, 20))
    points = data["people"][0]["pose_keypoints_2d"]
    assert points[9:12] == [0.25, 0.75, 1.0] and points[:3] == [0.0, 0.0, 0.0]
    assert data["people"][0]["face_keypoints_2d"] is None and data["people"][0]["hand_left_keypoints_2d"] is None


def test_extension_example_decodes_as_pixels(util):
    result = decode_json(EXTENSION_EXAMPLE)
    assert (result.height, result.width) == (512, 512) and len(result.people) == 1
    person = result.people[0]
    missing = [i for i, k in enumerate(person.body.keypoints) if k is None]
    assert missing == [9, 10, 12, 13]
    assert person.face is None and len(person.left_hand) == 21 and len(person.right_hand) == 21
    nose = person.body.keypoints[0]
    assert nose.x * 512 == 275.2506064884899 and nose.y * 512 == 196.32469357280343
    assert person.left_hand[0].x * 512 == 294.4393772120137
    drawn = draw_poses(result)
    np.testing.assert_array_equal(drawn, _reference_map(util, result))
    assert tuple(drawn[196, 275]) == (255, 0, 0)  # the nose dot at the pixel coordinates


def test_confidence_below_one_is_not_found_and_each_part_is_judged_alone():
    body = [0.5, 0.5, 1] * 18
    body[2] = 0.99  # point 0: a confidence under 1 means "not found" to the extension
    body[5] = 7  # over 1 is found
    hand = []
    for i in range(21):
        hand += [10.0 + i, 20.0, 1.0]  # pixels, though the body is in fractions
    result = decode_json({"people": [{"pose_keypoints_2d": body, "hand_left_keypoints_2d": hand}],
                          "canvas_width": 100, "canvas_height": 50})
    keypoints = result.people[0].body.keypoints
    assert keypoints[0] is None and keypoints[1] == Keypoint(0.5, 0.5)
    assert result.people[0].left_hand[3].x == pytest.approx(0.13) and result.people[0].left_hand[3].y == 0.4
    # A missing or empty body is a body with nothing found; missing people, nobody.
    empty = decode_json({"people": [{"pose_keypoints_2d": []}], "canvas_width": 8, "canvas_height": 8})
    assert empty.people[0].body.keypoints == [None] * 18
    assert decode_json({"canvas_width": 8, "canvas_height": 8}).people == []


@pytest.mark.parametrize("data,message", [
    ({"people": []}, "canvas_width"),
    ({"people": [], "canvas_width": 64}, "canvas_height"),
    ({"people": [], "canvas_width": 0, "canvas_height": 64}, "positive"),
    ({"people": [], "canvas_width": "64", "canvas_height": 64}, "positive"),
    ({"people": [], "canvas_width": 64.5, "canvas_height": 64}, "whole"),
    ({"people": {}, "canvas_width": 64, "canvas_height": 64}, "people must be a list"),
    ({"people": [[1, 2, 3]], "canvas_width": 64, "canvas_height": 64}, r"people\[0\] must be an object"),
    ({"people": [{"pose_keypoints_2d": [0.5, 0.5, 1] * 17}], "canvas_width": 64, "canvas_height": 64},
     "17 keypoints, expected 18"),
    ({"people": [{"pose_keypoints_2d": [0.5, 0.5, 1] * 18 + [0.5]}], "canvas_width": 64, "canvas_height": 64},
     "not a multiple of 3"),
    ({"people": [{"pose_keypoints_2d": [0.5, "0.5", 1] * 18}], "canvas_width": 64, "canvas_height": 64},
     r"pose_keypoints_2d\[1\] must be a finite number"),
    ({"people": [{"pose_keypoints_2d": [0.5, None, 1] * 18}], "canvas_width": 64, "canvas_height": 64},
     "finite number"),
    ({"people": [{"pose_keypoints_2d": [0.5, float("nan"), 1] * 18}], "canvas_width": 64, "canvas_height": 64},
     "finite number"),
    ({"people": [{"pose_keypoints_2d": "0.5 0.5 1"}], "canvas_width": 64, "canvas_height": 64}, "list of numbers"),
    ({"people": [{"hand_left_keypoints_2d": [0.5, 0.5, 1] * 20}], "canvas_width": 64, "canvas_height": 64},
     "hand_left_keypoints_2d has 20 keypoints, expected 21"),
    ({"people": [{"face_keypoints_2d": [0.5, 0.5, 1] * 72}], "canvas_width": 64, "canvas_height": 64},
     "expected 1 to 71"),  # OpenPose's face net gives up to 71 points
    ([{"people": []}], "JSON object"),
])
def test_malformed_json_is_a_clear_error(data, message):
    with pytest.raises(ValueError, match=message):
        decode_json(data)
