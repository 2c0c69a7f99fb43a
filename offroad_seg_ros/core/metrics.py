"""Segmentation metrics from one confusion matrix (rows: ground truth, cols: prediction).

Used by training validation and the evaluator, so both report the same numbers.
Definitions (docs/architecture.md, Metrics): a class with neither ground truth nor prediction is
n/a (NaN) and left out of every mean; mIoU is over classes present in the
ground truth (and, shown separately, over all classes that are not n/a).
torchmetrics computes the same per-class values (checked in the tests) but not
these n/a rules, the per-image distribution or smp's two reference figures,
which is why this module exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from offroad_seg_ros.core.classes import IGNORE_INDEX


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """(C, C + 1) int64 counts, on the inputs' device: rows ground truth,
    columns prediction, the last column "no prediction" (a predicted value
    outside 0..C-1, e.g. 255). Ignore pixels in `target` are excluded; a
    missing prediction counts as wrong for its ground-truth class."""
    if pred.dtype == torch.uint8 and target.dtype == torch.uint8 and num_classes < 255:
        # Fast path for class maps (the evaluator, validation): one bincount
        # over a 16-bit code gt << 8 | pred, no masking or int64 copies.
        code = (target.reshape(-1).to(torch.int32) << 8) | pred.reshape(-1).to(torch.int32)
        full = torch.bincount(code, minlength=65536).view(256, 256)
        if full.device.type == "cpu":  # small-matrix work is cheaper in numpy
            f = full.numpy()
            if f[num_classes:ignore_index].any() or f[ignore_index + 1:].any():
                bad = int(np.flatnonzero(f[num_classes:].sum(1))[0]) + num_classes
                raise ValueError(f"ground truth holds class index {bad} >= {num_classes}")
            frows = f[:num_classes]
            out = np.concatenate([frows[:, :num_classes], frows[:, num_classes:].sum(1, keepdims=True)], 1)
            return torch.from_numpy(out)
        if full[num_classes:ignore_index].any() or full[ignore_index + 1:].any():
            bad = int(torch.nonzero(full[num_classes:].sum(1))[0]) + num_classes
            raise ValueError(f"ground truth holds class index {bad} >= {num_classes}")
        rows = full[:num_classes]
        return torch.cat([rows[:, :num_classes], rows[:, num_classes:].sum(1, keepdim=True)], 1)
    target = target.reshape(-1).long()
    pred = pred.reshape(-1).long()
    keep = target != ignore_index
    target, pred = target[keep], pred[keep]
    if target.numel() and (target.max() >= num_classes or target.min() < 0):
        raise ValueError(f"ground truth holds class index {int(target.max())} >= {num_classes}")
    pred = torch.where((pred >= 0) & (pred < num_classes), pred, num_classes)
    counts = torch.bincount(target * (num_classes + 1) + pred, minlength=num_classes * (num_classes + 1))
    return counts.view(num_classes, num_classes + 1)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def scores(cm: np.ndarray | torch.Tensor) -> dict[str, Any]:
    """Every metric of docs/architecture.md (Metrics) from a (C, C + 1) confusion matrix. NaN = n/a."""
    cm = cm.detach().cpu().numpy() if isinstance(cm, torch.Tensor) else np.asarray(cm)
    cm = cm.astype(np.float64)
    gt = cm.sum(1)  # includes "no prediction"
    cm = cm[:, : cm.shape[0]]
    tp = np.diag(cm)
    pr = cm.sum(0)
    fp, fn = pr - tp, gt - tp
    union = tp + fp + fn
    iou = _div(tp, union)
    dice = _div(2 * tp, 2 * tp + fp + fn)
    precision = _div(tp, pr)
    recall = _div(tp, gt)
    total = gt.sum()
    present = gt > 0
    accuracy = float(tp.sum() / total) if total else float("nan")
    freq = gt / total if total else np.zeros_like(gt)
    # smp "micro": sum tp / sum (tp + fp + fn) over classes. With one label per
    # pixel, sum fp = sum fn = wrong pixels, so it equals acc / (2 - acc).
    correct = tp.sum()
    micro = float(correct / (correct + fp.sum() + fn.sum())) if total else float("nan")
    return {
        "iou": iou,
        "dice": dice,
        "precision": precision,
        "recall": recall,
        "present": present,
        "miou": float(np.nanmean(iou[present])) if present.any() else float("nan"),
        "miou_all": float(np.nanmean(iou)) if not np.isnan(iou).all() else float("nan"),
        "mdice": float(np.nanmean(dice[present])) if present.any() else float("nan"),
        "pixel_accuracy": accuracy,
        "fwiou": float(np.nansum(freq[present] * iou[present])) if present.any() else float("nan"),
        "smp_micro_iou": micro,
        "gt_pixels": gt.astype(np.int64),
        "pred_pixels": pr.astype(np.int64),
    }


@dataclass
class MetricAccumulator:
    """Accumulates the split's confusion matrix and per-image scores.

    `update` takes batches of class-index maps (any device); the matrix stays
    on that device until `compute`, so training validation does no host sync
    per step.
    """

    num_classes: int
    ignore_index: int = IGNORE_INDEX
    per_image: bool = True
    cm: torch.Tensor | None = None
    image_names: list[str] = field(default_factory=list)
    image_miou: list[float] = field(default_factory=list)
    image_micro: list[float] = field(default_factory=list)

    def update(self, pred: torch.Tensor, target: torch.Tensor, names: list[str] | None = None) -> None:
        if pred.shape != target.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(target.shape)} differ")
        if pred.ndim == 2:
            pred, target = pred[None], target[None]
        batch = torch.stack([confusion_matrix(p, t, self.num_classes, self.ignore_index)
                             for p, t in zip(pred, target)])
        total = batch.sum(0)
        self.cm = total if self.cm is None else self.cm + total
        if self.per_image:
            for i, cm in enumerate(batch.cpu().numpy()):
                s = scores(cm)
                self.image_miou.append(s["miou"])
                self.image_micro.append(s["smp_micro_iou"])
                self.image_names.append(names[i] if names else str(len(self.image_names)))

    def compute(self) -> dict[str, Any]:
        cm = self.cm if self.cm is not None else torch.zeros(self.num_classes, self.num_classes + 1)
        out = scores(cm)
        out["confusion_matrix"] = cm.detach().cpu().numpy().astype(np.int64)
        vals = np.array(self.image_miou, dtype=np.float64)
        valid = ~np.isnan(vals)
        if valid.any():
            order = np.argsort(vals[valid])
            names = np.array(self.image_names)[valid]
            out["per_image"] = {
                "count": int(valid.sum()),
                "mean": float(vals[valid].mean()),
                "std": float(vals[valid].std()),
                "min": float(vals[valid].min()),
                "max": float(vals[valid].max()),
                "worst": [(str(names[i]), float(vals[valid][i])) for i in order[:5]],
                "best": [(str(names[i]), float(vals[valid][i])) for i in order[::-1][:5]],
                "miou": [None if np.isnan(v) else float(v) for v in vals],
                "names": list(self.image_names),
            }
            micro = np.array(self.image_micro, dtype=np.float64)
            out["smp_micro_imagewise_iou"] = float(np.nanmean(micro))
        return out

    def reset(self) -> None:
        self.cm = None
        self.image_names.clear()
        self.image_miou.clear()
        self.image_micro.clear()
