"""OpenPose's body decoding as sd-webui-controlnet runs it (``annotator/openpose/body.py``): the body net's heatmaps
and part affinity fields (PAFs) at the image's size, peaks of each part's heatmap, limbs scored along the PAFs, and
the limbs joined into people.

Results keep the extension's arrays: ``candidate`` (N, 4) = x, y, score, id of every peak (ids 0..N-1 in part order)
and ``subset`` (P, 20) = 18 candidate ids (-1: part not found), the total score and the number of parts. Everything
that decides which peak wins (sums, rounding, sort order, thresholds) follows the extension step by step, so the same
maps give the same people, bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from scipy.ndimage import gaussian_filter

BOX_SIZE = 368  # OpenPose's network input height at scale 1
STRIDE = 8  # the nets' output is 1/8 of their input
PAD_VALUE = 128
BODY_SCALE = 0.5  # the extension runs the body net at one scale: 0.5 * 368 = 184 pixels high
PEAK_THRESHOLD = 0.1  # smoothed heatmap value a body peak must exceed
PAF_THRESHOLD = 0.05  # PAF projection a sample along a limb must exceed
PAF_SAMPLES = 10
PARTS = 18

# The 19 limbs as (part A, part B) with 0-based part indices (COCO order with the neck at 1), in the extension's
# order: it decides which limb joins people first. The last two (ears to shoulders) never start a person.
LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
         (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17))
# The PAF channels (x, y) of each limb, in the same order.
LIMB_PAFS = ((12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5), (6, 7), (8, 9),
             (10, 11), (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27))
STARTING_LIMBS = 17


def resize(x: np.ndarray, height: float, width: float) -> np.ndarray:
    """cv2 resize to int(height) x int(width) as the extension's ``smart_resize``: area interpolation when the sides'
    sum shrinks, Lanczos-4 otherwise. A map of other than 1 or 3 channels (HWC) is resized channel by channel, as
    there (cv2's result for one channel does not depend on the others, but its code path for many might)."""
    h, w = x.shape[:2]
    channels = 1 if x.ndim == 2 else x.shape[2]
    if channels not in (1, 3):
        return np.stack([resize(x[:, :, c], height, width) for c in range(channels)], axis=2)
    k = float(height + width) / float(h + w)
    return cv2.resize(x, (int(width), int(height)), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LANCZOS4)


def pad_to_stride(img: np.ndarray) -> np.ndarray:
    """Pad the bottom and right with grey (128) to a multiple of the stride."""
    h, w = img.shape[:2]
    return np.pad(img, ((0, -h % STRIDE), (0, -w % STRIDE), (0, 0)), constant_values=PAD_VALUE)


def net_input(img: np.ndarray, param: torch.Tensor) -> torch.Tensor:
    """BGR uint8 HWC -> (1, 3, H, W) in -0.5..0.5 (x / 256 - 0.5, exact in fp32), on the model's device."""
    x = torch.from_numpy(np.ascontiguousarray(img)).to(param.device).permute(2, 0, 1)[None].float()
    return (x / 256 - 0.5).to(param.dtype)


def to_image_size(out: torch.Tensor, net_h: int, net_w: int, height: int, width: int) -> np.ndarray:
    """A net output (1, C, h/8, w/8) -> (H, W, C) float32: upsampled x8, the stride padding cut off (``net_h`` x
    ``net_w`` is the image the net saw before padding), then resized to height x width."""
    maps = out[0].float().permute(1, 2, 0).cpu().numpy()
    maps = resize(maps, maps.shape[0] * STRIDE, maps.shape[1] * STRIDE)[:net_h, :net_w]
    return resize(maps, height, width)


def body_maps(model: torch.nn.Module, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The body net's heatmaps (H, W, 19) and PAFs (H, W, 38) at the BGR image's size, float32. The extension holds
    them in float64; the values are the same (the conversion is exact and the decoding below works in float64), at
    half the memory (57 maps of a 2048 x 2048 image are 1.9 GB in float64)."""
    height, width = bgr.shape[:2]
    scale = BODY_SCALE * BOX_SIZE / height  # the extension's expression: decides how int() truncates below
    img = resize(bgr, height * scale, width * scale)
    param = next(model.parameters())
    pafs, heatmaps = model(net_input(pad_to_stride(img), param))
    net_h, net_w = img.shape[:2]
    return (to_image_size(heatmaps, net_h, net_w, height, width),
            to_image_size(pafs, net_h, net_w, height, width))


def find_peaks(heat: np.ndarray) -> list[np.ndarray]:
    """Each part's peaks as (n, 4) rows x, y, score, id: local maxima (>= the 4 neighbours, beyond the border 0) of the
    heatmap smoothed with sigma 3 above the threshold, in row-major order; the score is the unsmoothed value; ids
    count on across the parts."""
    peaks: list[np.ndarray] = []
    next_id = 0
    for part in range(PARTS):
        raw = heat[:, :, part].astype(np.float64)  # filtered in float64 as there (a float32 input stays float32)
        smooth = gaussian_filter(raw, sigma=3)
        around = np.pad(smooth, 1)
        is_peak = ((smooth >= around[:-2, 1:-1]) & (smooth >= around[2:, 1:-1]) & (smooth >= around[1:-1, :-2])
                   & (smooth >= around[1:-1, 2:]) & (smooth > PEAK_THRESHOLD))
        ys, xs = np.nonzero(is_peak)
        ids = np.arange(next_id, next_id + len(xs))
        peaks.append(np.stack([xs, ys, raw[ys, xs], ids], axis=1).astype(np.float64).reshape(-1, 4))
        next_id += len(xs)
    return peaks


def score_limb(a: np.ndarray, b: np.ndarray, paf_x: np.ndarray, paf_y: np.ndarray, height: int) -> np.ndarray:
    """The chosen connections of one limb type, (m, 5) rows: id A, id B, score, index in a, index in b.

    A pair is a candidate when at least 9 of the 10 PAF samples on the segment point along it (projection > 0.05)
    and the mean projection plus the length penalty (limbs longer than half the image height lose) is positive;
    the best scores are taken greedily, each peak used once."""
    dx = b[None, :, 0] - a[:, None, 0]
    dy = b[None, :, 1] - a[:, None, 1]
    norm = np.maximum(np.sqrt(dx * dx + dy * dy), 0.001)
    ux, uy = dx / norm, dy / norm
    # Sample points at k/9 of the segment, rounded to pixels (a peak's coordinates are integers, so no sample lies
    # near a .5 and the rounding cannot depend on how the fractions are computed).
    t = np.linspace(0.0, 1.0, PAF_SAMPLES)
    sx = np.rint(a[:, None, None, 0] + dx[:, :, None] * t).astype(np.intp)
    sy = np.rint(a[:, None, None, 1] + dy[:, :, None] * t).astype(np.intp)
    dots = paf_x[sy, sx] * ux[:, :, None] + paf_y[sy, sx] * uy[:, :, None]  # float64 whatever the maps' dtype
    total = dots[:, :, 0]
    for k in range(1, PAF_SAMPLES):  # summed in order, as Python's sum() there (np.sum would pair them up)
        total = total + dots[:, :, k]
    score = total / PAF_SAMPLES + np.minimum(0.5 * height / norm - 1, 0)
    ok = ((dots > PAF_THRESHOLD).sum(axis=2) > 0.8 * PAF_SAMPLES) & (score > 0)
    ii, jj = np.nonzero(ok)  # row-major: the order the stable sort keeps among equal scores
    order = np.argsort(-score[ii, jj], kind="stable")
    chosen: list[list[float]] = []
    used_a: set[int] = set()
    used_b: set[int] = set()
    for i, j in zip(ii[order].tolist(), jj[order].tolist()):
        if i in used_a or j in used_b:
            continue
        chosen.append([a[i, 3], b[j, 3], score[i, j], i, j])
        used_a.add(i)
        used_b.add(j)
        if len(chosen) >= min(len(a), len(b)):
            break
    return np.array(chosen, dtype=np.float64).reshape(-1, 5)


def assemble(peaks: list[np.ndarray], connections: list[np.ndarray | None]) -> np.ndarray:
    """Join the limbs into people, in limb order (the extension's rules, quirks included: a limb found from its
    part A replaces a different part B already there, and two people sharing a limb end merge when disjoint)."""
    candidate_scores = np.concatenate([p[:, 2] for p in peaks]) if peaks else np.zeros(0)
    subset = np.zeros((0, PARTS + 2))
    for k, ((part_a, part_b), found_limbs) in enumerate(zip(LIMBS, connections)):
        if found_limbs is None:
            continue
        for id_a, id_b, score, _, _ in found_limbs:
            rows = np.nonzero((subset[:, part_a] == id_a) | (subset[:, part_b] == id_b))[0][:2]
            # A third match would crash the extension (IndexError); only the first two count here.
            gain = candidate_scores[int(id_b)] + score
            if len(rows) == 1:
                row = subset[rows[0]]
                if row[part_b] != id_b:
                    row[part_b] = id_b
                    row[-1] += 1
                    row[-2] += gain
            elif len(rows) == 2:
                first, second = subset[rows[0]], subset[rows[1]]
                if not np.any((first[:PARTS] >= 0) & (second[:PARTS] >= 0)):
                    first[:PARTS] += second[:PARTS] + 1  # -1 + id + 1 = id where only the second has the part
                    first[PARTS:] += second[PARTS:]
                    first[-2] += score
                    subset = np.delete(subset, rows[1], axis=0)
                else:
                    first[part_b] = id_b
                    first[-1] += 1
                    first[-2] += gain
            elif k < STARTING_LIMBS:
                row = -np.ones(PARTS + 2)
                row[part_a], row[part_b] = id_a, id_b
                row[-1] = 2
                row[-2] = candidate_scores[int(id_a)] + candidate_scores[int(id_b)] + score
                subset = np.vstack([subset, row])
    keep = (subset[:, -1] >= 4) & ~(subset[:, -2] / subset[:, -1] < 0.4)  # every row has >= 2 parts
    return subset[keep]


def find_people(heat: np.ndarray, paf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (H, W, >= 18) and PAFs (H, W, 38) at the image's size -> (candidate (N, 4), subset (P, 20))."""
    peaks = find_peaks(heat)
    connections: list[np.ndarray | None] = []
    for (part_a, part_b), (cx, cy) in zip(LIMBS, LIMB_PAFS):
        a, b = peaks[part_a], peaks[part_b]
        if len(a) == 0 or len(b) == 0:
            connections.append(None)
            continue
        connections.append(score_limb(a, b, paf[:, :, cx], paf[:, :, cy], heat.shape[0]))
    candidate = np.concatenate(peaks, axis=0)
    return candidate, assemble(peaks, connections)
