"""Pasted ordinary patches: the control for a novelty score.

A rock or bush cut with its mask from another generated scene of the same biome and pasted
into the frame, hard edges and all. Its pixels are ordinary classes, so they are NOT novel: a
score that flags them is detecting paste edges, not novelty. The novelty mask marks them
PASTED (offroad_seg_ros/data/dataset.py) and the raw mask keeps their class.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from offroad_seg_ros.data.dataset import NOT_NOVEL, PASTED
from offroad_seg_train.biomes import DRY_BUSH, LUSH, ROCKS

PASTE_CLASSES = (ROCKS, DRY_BUSH, LUSH)


@dataclass(frozen=True)
class Patch:
    image: np.ndarray  # (h, w, 3) uint8, the bounding box in the source frame
    inside: np.ndarray  # (h, w) bool, the object's pixels
    raw: int
    top: int  # the source row of the box's top: pasted at the same rows, it keeps its distance


def cut_patches(image: np.ndarray, mask: np.ndarray) -> list[Patch]:
    """Rocks and bushes of a frame, one connected region each, between 0.08 % and 4 % of the
    frame, whose foot lies well below any horizon (the lowest 40 % of rows)."""
    h, w = mask.shape
    patches = []
    for raw in PASTE_CLASSES:
        count, labels, stats, _ = cv2.connectedComponentsWithStats((mask == raw).astype(np.uint8), connectivity=8)
        for i in range(1, count):
            x, y, bw, bh, area = stats[i]
            if 0.0008 * h * w <= area <= 0.04 * h * w and y + bh > 0.6 * h:
                inside = labels[y:y + bh, x:x + bw] == i
                patches.append(Patch(image[y:y + bh, x:x + bw].copy(), inside, raw, int(y)))
    return patches


def paste_patches(image: np.ndarray, mask: np.ndarray, novelty: np.ndarray,
                  source: tuple[np.ndarray, np.ndarray], rng: np.random.Generator, n: int) -> int:
    """Paste up to `n` patches of the `source` frame (image, raw mask) into the frame in place,
    at their source rows and a random column, only where the novelty mask is NOT_NOVEL (never over
    a novel object or another patch); returns how many were pasted."""
    patches = cut_patches(*source)
    w = mask.shape[1]
    pasted = 0
    for k in rng.permutation(len(patches)):
        if pasted == n:
            break
        p = patches[k]
        ph, pw = p.inside.shape
        for _ in range(10):
            x = int(rng.integers(0, max(1, w - pw + 1)))
            region = (slice(p.top, p.top + ph), slice(x, x + pw))
            if (novelty[region][p.inside] == NOT_NOVEL).all():
                image[region][p.inside] = p.image[p.inside]
                mask[region][p.inside] = p.raw
                novelty[region][p.inside] = PASTED
                pasted += 1
                break
    return pasted
