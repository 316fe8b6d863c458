"""The people a pose preprocessor finds: the types the OpenPose and DWPose detectors return and the drawing and the
OpenPose JSON (``pose_keypoints_2d``...) read.

Coordinates are fractions of the image's width and height (0..1), as sd-webui-controlnet keeps them; a keypoint not
found is None. Body keypoints are OpenPose's 18 (COCO order with the neck: nose, neck, r-shoulder, r-elbow, r-wrist,
l-shoulder, l-elbow, l-wrist, r-hip, r-knee, r-ankle, l-hip, l-knee, l-ankle, r-eye, l-eye, r-ear, l-ear); a hand has
21, a face 68 (or DWPose's 68 of its 133 whole-body points).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class Keypoint:
    x: float  # 0..1 of the width
    y: float  # 0..1 of the height
    score: float = 1.0
    id: int = -1  # the detector's candidate index (OpenPose's peak list), -1 when none


Points = list[Optional[Keypoint]]


@dataclass(frozen=True)
class Body:
    keypoints: Points  # 18 entries
    total_score: float = 0.0
    total_parts: int = 0


@dataclass(frozen=True)
class Person:
    body: Body
    left_hand: Optional[Points] = None  # 21 entries when found
    right_hand: Optional[Points] = None
    face: Optional[Points] = None  # 68 entries when found


@dataclass(frozen=True)
class PoseResult:
    """Every person found in one image, with the image's size in pixels."""

    people: list[Person] = field(default_factory=list)
    height: int = 0
    width: int = 0
