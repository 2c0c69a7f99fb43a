"""Outlier exposure: train the artifact's outlier head, the per-pixel novelty score.

The network stays frozen. Training frames get procedural outlier shapes pasted in
(offroad_seg_train/outliers.py: saturated patterns on random polygons, imitating none of the
object kinds kept for evaluation) and, as negatives, rocks and bushes cut from another frame
and pasted with their hard edges (offroad_seg_train/pasted_patches.py), so that a head that
learns paste edges instead of novelty is penalised for it. Half the ordinary cells' weight is
shared equally by the classes of the frames' ground truth: weighted by area alone, Landscape and
Sky outweigh rocks and bushes so far that the head flags a desert's rocks once they look a
little different from the training biome's (measured: docs/trust.md). The head
(offroad_seg_ros/inference/novelty_net.py `OutlierHead`) learns, from the features that feed
the segmentation head, which cells are outliers. Why this score and these outliers: docs/trust.md.

The features are computed once, and the head has a few thousand parameters: a plain loop over
the cached features trains it in about a minute on two CPU cores, where a Lightning trainer
would add its start-up and nothing the run needs (no checkpoints to resume, no validation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from offroad_seg_ros.core.artifact import load_artifact
from offroad_seg_ros.core.preprocess import Preprocess
from offroad_seg_ros.data.dataset import list_samples, read_image, read_raw_mask, split_folder
from offroad_seg_ros.inference.novelty_net import OutlierHead
from offroad_seg_ros.inference.novelty_scores import head_input
from offroad_seg_train.outliers import outlier_shape, paste_outlier
from offroad_seg_train.pasted_patches import cut_patches

POSITIVE, NEGATIVE = 0.5, 0.01  # a feature cell's outlier share to count as outlier / as ordinary


@dataclass(frozen=True)
class HeadSettings:
    frames: int = 60  # training frames used (spread over the split)
    variants: int = 3  # pasted versions of each frame
    steps: int = 600
    batch: int = 8
    lr: float = 2e-3
    width: int = 32  # the head's channels
    seed: int = 0


def pasted_frame(image: np.ndarray, raw: np.ndarray, source: tuple[np.ndarray, np.ndarray],
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A copy of `image` (raw mask `raw`) with 1-3 outlier shapes (3-23% of the frame's width,
    their tops in the lower 70% of it) and up to two ordinary patches of `source` (image, raw
    mask) pasted in; returns the frame, its bool outlier mask and its raw mask with the patches."""
    img, raw = image.copy(), raw.copy()
    h, w = img.shape[:2]
    outlier = np.zeros((h, w), bool)
    for _ in range(int(rng.integers(1, 4))):
        size = int(rng.uniform(0.03, 0.23) * w)
        patch, alpha = outlier_shape(rng, (max(8, int(size * rng.uniform(0.5, 2.0))), size))
        x = int(rng.integers(-20, w - 10))
        y = int(rng.integers(int(0.3 * h), h - 10))
        outlier |= paste_outlier(img, patch, alpha, x, y)
    patches = cut_patches(*source)
    for k in rng.permutation(len(patches))[:2]:
        p = patches[k]
        ph, pw = p.inside.shape
        x = int(rng.integers(0, max(1, w - pw + 1)))
        region = (slice(p.top, p.top + ph), slice(x, x + pw))
        inside = p.inside & ~outlier[region]
        img[region][inside] = p.image[inside]
        raw[region][inside] = p.raw
    return img, outlier, raw


def _cell_share(mask: np.ndarray, pre: Preprocess, padded: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """A frame's bool mask -> the share of each feature cell it covers, (h', w') on the grid of
    the padded network input (the padding counts as not covered)."""
    h, w = pre.scaled_size(*mask.shape)
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
    m = F.pad(m, (0, padded[1] - w, 0, padded[0] - h))
    return F.adaptive_avg_pool2d(m, grid)[0, 0]


def _cell_class(raw: np.ndarray, pre: Preprocess, padded: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """Each feature cell's most common raw class id (int64, (h', w'))."""
    ids = np.unique(raw)
    shares = torch.stack([_cell_share(raw == v, pre, padded, grid) for v in ids])
    return torch.from_numpy(ids.astype(np.int64))[shares.argmax(0)]


def cell_weights(share: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """The loss weight of each cell of a batch (outlier share and class id per cell): outlier
    cells (share > POSITIVE) weigh half in all, ordinary ones (share < NEGATIVE) the other half:
    a quarter by area, a quarter split equally between the classes present (the mix was chosen
    on the tuning data: docs/trust.md). Cells partly covered weigh nothing."""
    pos, neg = share > POSITIVE, share < NEGATIVE
    weight = pos / pos.sum().clamp_min(1) * 0.5 + neg / neg.sum().clamp_min(1) * 0.25
    present = cls[neg].unique()
    for c in present.tolist():
        ordinary = neg & (cls == c)
        weight = weight + ordinary / ordinary.sum() * (0.25 / len(present))
    return weight


def exposure_set(net: torch.nn.Module, pre: Preprocess, data: str | Path, split: str, settings: HeadSettings,
                 progress: Callable[[int, int], None] | None = None) -> list[tuple[torch.Tensor, ...]]:
    """(features (D, h', w') float16, outlier share per cell (h', w'), class per cell (h', w'))
    of each pasted frame."""
    samples = list_samples(split_folder(data, split))
    if len(samples) < 2:
        raise ValueError(f"{split_folder(data, split)} needs at least 2 labelled frames to train the outlier head "
                         f"(ordinary patches are cut from one frame into another), found {len(samples)}")
    picks = np.unique(np.linspace(0, len(samples) - 1, min(settings.frames, len(samples))).round().astype(int))
    frames = [(read_image(samples[i].image), read_raw_mask(samples[i].mask)) for i in picks]  # type: ignore[arg-type]
    rng = np.random.default_rng(settings.seed)
    out: list[tuple[torch.Tensor, ...]] = []
    total = len(frames) * settings.variants
    for i, (image, raw) in enumerate(frames):
        for _ in range(settings.variants):
            source = frames[(i + int(rng.integers(1, len(frames)))) % len(frames)]
            img, outlier, pasted_raw = pasted_frame(image, raw, source, rng)
            with torch.no_grad(), head_input(net) as seen:
                x = pre(torch.from_numpy(img)[None])
                net(x)
            features = seen[-1][0]
            padded, grid = (x.shape[2], x.shape[3]), (features.shape[-2], features.shape[-1])
            share = _cell_share(outlier, pre, padded, grid)
            out.append((features.half(), share, _cell_class(pasted_raw, pre, padded, grid)))
            if progress:
                progress(len(out), total)
    return out


def train_head(cells: list[tuple[torch.Tensor, ...]], settings: HeadSettings,
               progress: Callable[[int, int], None] | None = None) -> OutlierHead:
    """The head fitted to the cells (features, outlier share, class) by binary cross-entropy
    weighted by `cell_weights`. Deterministic for a seed."""
    gen = torch.Generator().manual_seed(settings.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        head = OutlierHead(int(cells[0][0].shape[0]), settings.width)
    opt = torch.optim.Adam(head.parameters(), settings.lr, weight_decay=1e-4)
    batch = min(settings.batch, len(cells))
    head.train()
    for step in range(settings.steps):
        idx = torch.randperm(len(cells), generator=gen)[:batch].tolist()
        x = torch.stack([cells[i][0].float() for i in idx])
        share = torch.stack([cells[i][1] for i in idx])
        weight = cell_weights(share, torch.stack([cells[i][2] for i in idx]))
        logit = head(x)[:, 0]
        target = (share > POSITIVE).float()
        loss = (F.binary_cross_entropy_with_logits(logit, target, reduction="none") * weight).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress:
            progress(step + 1, settings.steps)
    return head.eval()


def train_outlier_head(artifact: str | Path, data: str | Path, split: str = "train",
                       settings: HeadSettings = HeadSettings(),
                       stage: Callable[[str], None] | None = None) -> tuple[OutlierHead, dict[str, Any]]:
    """The outlier head of `artifact`'s network, trained on `split` of `data`, and its record."""
    stage = stage or (lambda _: None)
    art, net = load_artifact(artifact)
    stage(f"pasting outliers into up to {settings.frames} x {settings.variants} frames of {split} in {data}")
    cells = exposure_set(net, art.preprocess, data, split, settings)
    stage(f"training the outlier head ({settings.steps} steps)")
    head = train_head(cells, settings)
    record = {"method": "outlier exposure", "outliers": "procedural shapes (offroad_seg_train/outliers.py)",
              "negatives": "ordinary patches pasted from other frames",
              "ordinary_cells": "half by area, half equally per class",
              "trained_on": {"data": str(data), "split": split, "frames": len(cells) // settings.variants},
              "settings": asdict(settings)}
    return head, record


def fit_with_outlier_head(artifact: str | Path, data: str | Path, settings: HeadSettings = HeadSettings(),
                          stage: Callable[[str], None] | None = None, **fit: Any) -> dict[str, Any]:
    """Train the outlier head on the train split of `data`, then fit and store the novelty
    statistics with it (offroad_seg_ros/tools/novelty.py `fit_novelty`, its keywords in `fit`)."""
    from offroad_seg_ros.tools.novelty import fit_novelty

    head = train_outlier_head(artifact, data, fit.get("fit_split", "train"), settings, stage)
    return fit_novelty(artifact, data, outlier_head=head, stage=stage, **fit)
