"""A network in memory scored on frames held in memory, at the model's input scale: per-frame
confusion matrices (for paired bootstrap bounds), the calibration of its confidence and the share
of pixels it gives each class. What `offroad-seg adapt` measures before and after; the deployed
path (`offroad-seg eval` on the written artifact) remains the number to report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from offroad_seg_ros.core.calibration import CalibrationAccumulator
from offroad_seg_ros.core.classes import IGNORE_INDEX
from offroad_seg_ros.core.metrics import confusion_matrix, scores
from offroad_seg_ros.core.preprocess import Preprocess


@dataclass
class Scored:
    """What a network did on a set of frames."""

    cms: list[np.ndarray] = field(default_factory=list)  # per labelled frame, (C, C + 1)
    calibration: CalibrationAccumulator = field(default_factory=CalibrationAccumulator)
    shares: np.ndarray | None = None  # predicted pixel share per class, over all frames
    preds: list[np.ndarray] = field(default_factory=list)  # class maps (kept when asked)

    @property
    def miou(self) -> float:
        return float(scores(np.sum(self.cms, 0))["miou"])

    @property
    def pixel_accuracy(self) -> float:
        return float(scores(np.sum(self.cms, 0))["pixel_accuracy"])

    def summary(self) -> dict[str, float]:
        if not self.cms:
            return {}
        return {"miou": self.miou, "pixel_accuracy": self.pixel_accuracy, "ece": self.calibration.ece(),
                "frames": len(self.cms)}


def _chunks(images: Sequence[np.ndarray], batch: int) -> list[range]:
    """Runs of up to `batch` consecutive frames of one size."""
    out: list[range] = []
    start = 0
    for i in range(1, len(images) + 1):
        if i == len(images) or i - start == batch or images[i].shape != images[start].shape:
            out.append(range(start, i))
            start = i
    return out


@torch.no_grad()
def score(model: torch.nn.Module, pre: Preprocess, num_classes: int, images: Sequence[np.ndarray],
          masks: Sequence[np.ndarray] | None = None, temperature: float = 1.0, keep_preds: bool = False,
          batch: int = 4) -> Scored:
    """Run `model` (eval mode) on uint8 frames at the input scale; `masks` (class indices,
    IGNORE_INDEX where unlabelled) when labelled."""
    model.eval()
    out = Scored()
    counts = np.zeros(num_classes, np.int64)
    for idx in _chunks(images, batch):
        x = torch.from_numpy(np.stack([images[i] for i in idx]))
        h, w = x.shape[1:3]
        logits = model(pre.normalize(x))[..., :h, :w].float() / temperature
        conf, pred = logits.softmax(1).max(1)
        level = (conf * 255).round().to(torch.uint8).numpy()
        pred_np = pred.to(torch.uint8).numpy()
        counts += np.bincount(pred_np.reshape(-1), minlength=num_classes)[:num_classes]
        for j, i in enumerate(idx):
            if keep_preds:
                out.preds.append(pred_np[j])
            if masks is not None:
                out.cms.append(confusion_matrix(torch.from_numpy(pred_np[j]), torch.from_numpy(masks[i]),
                                                num_classes).numpy())
                out.calibration.update(level[j], pred_np[j], masks[i], IGNORE_INDEX)
    out.shares = counts / max(1, counts.sum())
    return out


def paired_miou_drop(before: Sequence[np.ndarray], after: Sequence[np.ndarray], resamples: int = 2000,
                     seed: int = 0) -> tuple[float, float]:
    """mIoU(before) - mIoU(after) over the same frames, and the upper end of its one-sided 95%
    paired bootstrap interval (frames resampled together for both models)."""
    b, a = np.asarray(before), np.asarray(after)
    if b.shape != a.shape or not len(b):
        raise ValueError("the paired drop needs the same frames scored by both models")
    drop = float(scores(b.sum(0))["miou"] - scores(a.sum(0))["miou"])
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples)
    for i in range(resamples):
        pick = rng.integers(0, len(b), len(b))
        draws[i] = scores(b[pick].sum(0))["miou"] - scores(a[pick].sum(0))["miou"]
    return drop, float(np.quantile(draws, 0.95))
