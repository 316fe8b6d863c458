"""Drawing the people a pose preprocessor found, and the OpenPose JSON that carries them.

The map is drawn as sd-webui-controlnet draws it (``annotator/openpose/util.py``), pixel for pixel: on a black canvas,
per person the body (17 limbs as filled ellipses at 60% of their colour, then 18 dots of radius 4), the left and the
right hand (20 edges of width 2 in hues around the HSV circle, then blue dots of radius 4) and the face (white dots of
radius 3). A point is drawn at ``int(fraction * size)``, as the extension draws fractions; a fraction made from a
pixel coordinate (``fraction_of``: DWPose's keypoints, pixel JSON) gives that pixel back exactly, so the map is also
the extension's where it draws the pixel coordinates themselves.

The JSON is the extension's (OpenPose's ``people[].pose_keypoints_2d``... flattened ``x, y, confidence`` triples,
with ``canvas_width``/``canvas_height`` and ``animals``). The extension writes fractions for OpenPose and pixels for
DWPose and draws either: a part whose points all lie within -1..1 is taken as fractions, any other as pixels. A
triple whose confidence is below 1 is a point not found.
"""

from __future__ import annotations

import colorsys
import math
from typing import Any, Optional, Sequence

import cv2
import numpy as np

from modules.controlnet.nets.pose_types import Body, Keypoint, Person, Points, PoseResult

_STICK_WIDTH = 4
# OpenPose's limbs as pairs of its 18 body points (0-based), each drawn in the colour of the same index.
_LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
          (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
_BODY_COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
                 (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
                 (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
# The hand's 21 points: the wrist, then four per finger from its root to its tip.
_HAND_EDGES = tuple((0 if joint == 0 else 4 * finger + joint, 4 * finger + joint + 1)
                    for finger in range(5) for joint in range(4))
# The hand edge colours: hue i/20 at full saturation and value, as floats (cv2 rounds them) -- colorsys's arithmetic
# is matplotlib's hsv_to_rgb, which the extension uses, operation for operation.
_HAND_COLOURS = tuple(tuple(c * 255.0 for c in colorsys.hsv_to_rgb(i / float(len(_HAND_EDGES)), 1.0, 1.0))
                      for i in range(len(_HAND_EDGES)))
_EPS = 0.01  # hand and face points at pixel row or column 0 (or left of / above it) are not drawn

BODY_POINTS, HAND_POINTS = 18, 21
# DWPose's 68 (70 with the two eyes the extension adds); OpenPose's face net gives one point per heatmap that
# passes its threshold, so up to 71 (the extension does not check the count either)
FACE_POINTS = tuple(range(1, 72))


def draw_poses(result: PoseResult, draw_body: bool = True, draw_hand: bool = True, draw_face: bool = True
               ) -> np.ndarray:
    """The pose map (``result.height`` x ``result.width`` x 3, uint8): the chosen parts of every person drawn in the
    order the extension draws them (per person: body, left hand, right hand, face)."""
    if result.height <= 0 or result.width <= 0:
        raise ValueError(f"a pose result needs a canvas size, got {result.width}x{result.height}")
    canvas = np.zeros((result.height, result.width, 3), dtype=np.uint8)
    for person in result.people:
        if draw_body:
            _draw_body(canvas, person.body.keypoints)
        if draw_hand:
            _draw_hand(canvas, person.left_hand)
            _draw_hand(canvas, person.right_hand)
        if draw_face:
            _draw_face(canvas, person.face)
    return canvas


def _draw_body(canvas: np.ndarray, points: Points) -> None:
    if len(points) < BODY_POINTS:
        raise ValueError(f"a body has {BODY_POINTS} keypoints, got {len(points)}")
    height, width = float(canvas.shape[0]), float(canvas.shape[1])
    for (a, b), colour in zip(_LIMBS, _BODY_COLOURS):
        p, q = points[a], points[b]
        if p is None or q is None:
            continue
        # The extension's float steps, in its order: pixel coordinates, the midpoint, the length and the angle, each
        # truncated to an int only where cv2 takes it.
        xs = np.array([_pixel(p.x, width), _pixel(q.x, width)])
        ys = np.array([_pixel(p.y, height), _pixel(q.y, height)])
        mid_x, mid_y = np.mean(xs), np.mean(ys)
        length = ((ys[0] - ys[1]) ** 2 + (xs[0] - xs[1]) ** 2) ** 0.5
        angle = math.degrees(math.atan2(ys[0] - ys[1], xs[0] - xs[1]))
        polygon = cv2.ellipse2Poly((int(mid_x), int(mid_y)), (int(length / 2), _STICK_WIDTH), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, [int(float(c) * 0.6) for c in colour])
    for point, colour in zip(points, _BODY_COLOURS):
        if point is not None:
            cv2.circle(canvas, (int(_pixel(point.x, width)), int(_pixel(point.y, height))), 4, colour, thickness=-1)


def _draw_hand(canvas: np.ndarray, points: Optional[Points]) -> None:
    if not points:
        return
    if len(points) < HAND_POINTS:
        raise ValueError(f"a hand has {HAND_POINTS} keypoints, got {len(points)}")
    height, width = canvas.shape[0], canvas.shape[1]
    pixels = [None if p is None else (int(_pixel(p.x, width)), int(_pixel(p.y, height))) for p in points]
    for (a, b), colour in zip(_HAND_EDGES, _HAND_COLOURS):
        p, q = pixels[a], pixels[b]
        if p is not None and q is not None and min(p[0], p[1], q[0], q[1]) > _EPS:
            cv2.line(canvas, p, q, colour, thickness=2)
    for p in pixels:
        if p is not None and p[0] > _EPS and p[1] > _EPS:
            cv2.circle(canvas, p, 4, (0, 0, 255), thickness=-1)


def _draw_face(canvas: np.ndarray, points: Optional[Points]) -> None:
    if not points:
        return
    height, width = canvas.shape[0], canvas.shape[1]
    for p in points:
        if p is None:
            continue
        x, y = int(_pixel(p.x, width)), int(_pixel(p.y, height))
        if x > _EPS and y > _EPS:
            cv2.circle(canvas, (x, y), 3, (255, 255, 255), thickness=-1)


# ---------------------------------------------------------------------------------------------------------------------
# OpenPose JSON


def encode_json(result: PoseResult, *, pixels: bool = False) -> dict[str, Any]:
    """The extension's OpenPose JSON of ``result``: a found point as ``x, y, 1.0``, one not found as ``0, 0, 0``, a
    part not found as null.

    Coordinates are fractions of the canvas (as the extension writes OpenPose's), or with ``pixels`` pixel
    coordinates (as it writes DWPose's). A part with a point outside the canvas by more than its size (a fraction
    beyond -1..1, which readers such as the extension's take for pixels) is written in pixels either way, so it reads
    back where it was."""
    size_x, size_y = result.width, result.height

    def flat(points: Optional[Points]) -> Optional[list[float]]:
        if not points:
            return None
        found = [p for p in points if p is not None]
        in_pixels = pixels or any(abs(p.x) > 1 or abs(p.y) > 1 for p in found)
        if not in_pixels:
            return [v for p in points for v in ((0.0, 0.0, 0.0) if p is None else (float(p.x), float(p.y), 1.0))]
        return [v for p in points for v in ((0.0, 0.0, 0.0) if p is None else
                                            (float(_pixel(p.x, size_x)), float(_pixel(p.y, size_y)), 1.0))]

    return {
        "people": [{
            "pose_keypoints_2d": flat(person.body.keypoints),
            "face_keypoints_2d": flat(person.face),
            "hand_left_keypoints_2d": flat(person.left_hand),
            "hand_right_keypoints_2d": flat(person.right_hand),
        } for person in result.people],
        "animals": [],
        "canvas_height": result.height,
        "canvas_width": result.width,
    }


def decode_json(data: dict[str, Any]) -> PoseResult:
    """The people of an OpenPose JSON pose (what the extension's ``/controlnet/render_openpose_json`` takes: one
    element of its list), their coordinates turned into fractions of the canvas.

    Raises ValueError, saying what is wrong, for a pose that is not an object, a missing or non-positive canvas
    size, a keypoint list that is not numbers or not a whole number of triples, or a part with the wrong number of
    points (body 18, hands 21, face 1 to 71). A missing or empty body is a body with no point found. ``animals``
    (which the render endpoint ignores) is not read.
    """
    if not isinstance(data, dict):
        raise ValueError(f"a pose must be a JSON object, got {type(data).__name__}")
    width = _canvas_size(data, "canvas_width")
    height = _canvas_size(data, "canvas_height")
    people = data.get("people", [])
    if people is None:
        people = []
    if not isinstance(people, list):
        raise ValueError(f"people must be a list, got {type(people).__name__}")
    found = []
    for n, person in enumerate(people):
        where = f"people[{n}]"
        if not isinstance(person, dict):
            raise ValueError(f"{where} must be an object, got {type(person).__name__}")
        body = _part(person, "pose_keypoints_2d", (BODY_POINTS,), width, height, where)
        found.append(Person(
            body=Body(keypoints=body if body is not None else [None] * BODY_POINTS),
            left_hand=_part(person, "hand_left_keypoints_2d", (HAND_POINTS,), width, height, where),
            right_hand=_part(person, "hand_right_keypoints_2d", (HAND_POINTS,), width, height, where),
            face=_part(person, "face_keypoints_2d", FACE_POINTS, width, height, where),
        ))
    return PoseResult(people=found, height=height, width=width)


def _canvas_size(data: dict[str, Any], key: str) -> int:
    if key not in data or data[key] is None:
        raise ValueError(f"the pose has no {key}")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value <= 0:
        raise ValueError(f"{key} must be a positive whole number, got {value!r}")
    return int(value)


def _part(person: dict[str, Any], key: str, counts: Sequence[int], width: int, height: int, where: str
          ) -> Optional[Points]:
    numbers = person.get(key)
    if not numbers:  # null, missing or empty: the part was not found (the extension reads it so)
        return None
    if not isinstance(numbers, list):
        raise ValueError(f"{where}.{key} must be a list of numbers, got {type(numbers).__name__}")
    for i, v in enumerate(numbers):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{where}.{key}[{i}] must be a finite number, got {v!r}")
    if len(numbers) % 3:
        raise ValueError(f"{where}.{key} must hold x, y, confidence triples; its length {len(numbers)} is not a "
                         "multiple of 3")
    if len(numbers) // 3 not in counts:
        expected = " or ".join(str(c) for c in counts) if len(counts) < 4 else f"{counts[0]} to {counts[-1]}"
        raise ValueError(f"{where}.{key} has {len(numbers) // 3} keypoints, expected {expected}")
    triples = [(float(numbers[i]), float(numbers[i + 1]), float(numbers[i + 2])) for i in range(0, len(numbers), 3)]
    found = [(x, y) for x, y, c in triples if c >= 1.0]
    # The extension draws a part as fractions when all its points lie within -1..1 and as pixels otherwise.
    as_pixels = not found or not all(abs(x) <= 1 and abs(y) <= 1 for x, y in found)
    return [None if c < 1.0 else Keypoint(fraction_of(x, width) if as_pixels else x,
                                           fraction_of(y, height) if as_pixels else y)
            for x, y, c in triples]


class PixelFraction(float):
    """A fraction of the canvas that remembers the pixel coordinate it was made from, for the few pixels that no
    float fraction gives back exactly (``fraction * size != pixel``): the map is drawn from the pixel itself, as the
    extension draws pixel coordinates. In every other respect it is the float fraction."""

    __slots__ = ("pixel", "size")

    def __new__(cls, fraction: float, pixel: float = 0.0, size: int = 1) -> "PixelFraction":
        value = super().__new__(cls, fraction)
        value.pixel, value.size = pixel, size
        return value

    def __reduce__(self) -> tuple[Any, ...]:
        return PixelFraction, (float(self), self.pixel, self.size)


def fraction_of(pixel: float, size: int) -> float:
    """``pixel / size``, chosen among its nearest neighbours so that ``fraction * size`` gives back ``pixel`` exactly,
    so that the map is drawn at the same pixels as the extension draws the pixel coordinates themselves; where no
    float does, a PixelFraction carrying the pixel."""
    fraction = pixel / size
    if fraction * size == pixel:
        return fraction
    for direction in (math.inf, -math.inf):
        f = fraction
        for _ in range(4):
            f = math.nextafter(f, direction)
            if f * size == pixel:
                return f
    return PixelFraction(fraction, pixel, size)


def _pixel(value: float, size: float) -> float:
    """A coordinate in pixels on a canvas of ``size``: the fraction times the size, as the extension computes it."""
    if isinstance(value, PixelFraction) and value.size == size:
        return value.pixel
    return value * size
