"""Face alignment for restorers: map five landmarks onto facexlib's 512x512 template with a similarity transform,
crop the face, and paste the restored face back with a soft, eroded mask (facexlib's ``paste_faces_to_input_image``
without face parsing). Pure numpy/scipy/PIL.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# facexlib's FaceRestoreHelper template for a 512 face: eyes, nose tip, mouth corners
FACE_TEMPLATE_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                              [201.26117, 371.41043], [313.08905, 371.15118]], dtype=np.float64)
BORDER_FILL = (132, 133, 135)  # facexlib pads crops with this grey


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, shift) mapping ``src`` points onto ``dst`` in least squares
    (Umeyama), what ``cv2.estimateAffinePartial2D`` estimates."""
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1
    rotation = u @ fix @ vt
    scale = np.trace(np.diag(sig) @ fix) / s.var(0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - matrix[:, :2] @ mu_s
    return matrix


def invert(matrix: np.ndarray) -> np.ndarray:
    a = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(a)[:2]


def _warp(image: Image.Image, forward: np.ndarray, size: tuple[int, int], fill: object) -> Image.Image:
    """``image`` seen through ``forward`` (source -> output coordinates), as cv2.warpAffine does."""
    inv = invert(forward)  # PIL asks, for each output pixel, where to read in the source
    return image.transform(size, Image.Transform.AFFINE, data=tuple(inv.reshape(-1)),
                           resample=Image.Resampling.BILINEAR, fillcolor=fill)


def align_face(image: Image.Image, landmarks: np.ndarray, size: int = 512) -> tuple[Image.Image, np.ndarray]:
    """(the face cropped onto the template, the image -> face matrix)."""
    matrix = similarity(landmarks, FACE_TEMPLATE_512 * (size / 512))
    return _warp(image.convert("RGB"), matrix, (size, size), BORDER_FILL), matrix


def paste_face(image: Image.Image, face: Image.Image, matrix: np.ndarray) -> Image.Image:
    """``face`` (restored, template space) put back where ``matrix`` took it from, blended over a soft edge."""
    from scipy import ndimage

    back = invert(matrix)
    restored = np.asarray(_warp(face.convert("RGB"), back, image.size, (0, 0, 0)), dtype=np.float32)
    ones = Image.fromarray(np.full((face.height, face.width), 255, dtype=np.uint8), "L")
    mask = np.asarray(_warp(ones, back, image.size, 0), dtype=np.float32) / 255.0
    mask = ndimage.grey_erosion(mask, size=(2, 2))  # drop the interpolated rim
    area = float(mask.sum())
    edge = max(1, int(area ** 0.5) // 20)
    inner = ndimage.grey_erosion(mask, size=(2 * edge, 2 * edge))
    kernel = 2 * edge + 1  # cv2.GaussianBlur((k, k), 0): sigma from the kernel size
    soft = ndimage.gaussian_filter(inner, sigma=0.3 * ((kernel - 1) * 0.5 - 1) + 0.8)
    soft = soft[..., None]
    original = np.asarray(image.convert("RGB"), dtype=np.float32)
    out = soft * restored + (1.0 - soft) * original
    return Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8))
