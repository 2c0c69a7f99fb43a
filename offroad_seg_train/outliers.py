"""Outlier shapes for TRAINING (outlier exposure): patches that are plainly not desert.

Random polygons filled with stripes, checkerboards, colour blocks or rings in saturated,
unnatural colours. They imitate none of the novel objects kept for evaluation
(offroad_seg_train/novel_objects.py: vehicles, people, fences, drums, tarps, water): no
silhouettes, no posts and wires, no plain fills, so what a model
learns from them says nothing in advance about those kinds.
"""

from __future__ import annotations

import cv2
import numpy as np

PATTERNS = ("stripes", "checker", "blocks", "rings")


def _colors(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` saturated, bright colours (HSV with s and v near 1), RGB uint8."""
    hsv = np.stack([rng.integers(0, 180, n), rng.integers(200, 256, n), rng.integers(210, 256, n)], 1)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0]


def _pattern(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    """Which of two (or, for blocks, several) colours each pixel takes: int (h, w)."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    period = float(rng.uniform(4, 12))
    if kind == "stripes":
        a = rng.uniform(0, np.pi)
        return ((xx * np.cos(a) + yy * np.sin(a)) // period % 2).astype(np.int64)
    if kind == "checker":
        return ((xx // period + yy // period) % 2).astype(np.int64)
    if kind == "rings":
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        return (np.hypot(yy - cy, xx - cx) // period % 2).astype(np.int64)
    cells = rng.integers(0, 4, size=(max(2, int(h // period)), max(2, int(w // period))))
    return cv2.resize(cells.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(np.int64)


def outlier_shape(rng: np.random.Generator, size: tuple[int, int] = (64, 64)) -> tuple[np.ndarray, np.ndarray]:
    """One outlier patch of `size` (width, height): RGB uint8 (h, w, 3) and alpha uint8 (h, w),
    255 inside a random star-like polygon and 0 outside. The same generator state gives the same
    patch."""
    w, h = size
    kind = PATTERNS[int(rng.integers(len(PATTERNS)))]
    n = int(rng.integers(5, 13))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(0.25, 0.5, n)
    pts = np.stack([w / 2 + radii * w * np.cos(angles), h / 2 + radii * h * np.sin(angles)], 1)
    alpha = np.zeros((h, w), np.uint8)
    cv2.fillPoly(alpha, [np.round(pts).astype(np.int32)], (255,))
    patch = _colors(rng, 4)[_pattern(rng, kind, h, w)]
    return np.ascontiguousarray(patch), alpha


def paste_outlier(image: np.ndarray, patch: np.ndarray, alpha: np.ndarray, x: int, y: int) -> np.ndarray:
    """Paste `patch` with top-left corner (x, y) into `image` in place (clipped at the frame's
    edges); returns the bool mask (H, W) of the pixels it covers, for the training step to label."""
    h, w = image.shape[:2]
    ph, pw = alpha.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + pw, w), min(y + ph, h)
    covered = np.zeros((h, w), bool)
    if x1 <= x0 or y1 <= y0:
        return covered
    inside = alpha[y0 - y:y1 - y, x0 - x:x1 - x] > 127
    image[y0:y1, x0:x1][inside] = patch[y0 - y:y1 - y, x0 - x:x1 - x][inside]
    covered[y0:y1, x0:x1] = inside
    return covered
