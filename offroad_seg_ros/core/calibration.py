"""Does the confidence mean anything: calibration from a histogram of confidences.

The confidence output is the max softmax (after the artifact's temperature)
x 255, rounded to uint8: every pixel has one of 256 levels. Accumulating, per
level, how many pixels had it and how many of those were right is exact and
constant-memory; every figure here comes from those two histograms:
- ECE (expected calibration error): equal-width bins over [0, 1] (15 by
  default, as in Guo et al. 2017), sum over bins of (pixels in bin / all) x
  |accuracy in bin - mean confidence in bin|; a level l counts as l / 255.
- the reliability diagram: accuracy against mean confidence per bin.
- the risk-coverage curve: keep the pixels at or above a confidence level,
  drop the rest (as `min_confidence` does): the share kept (coverage) and
  the accuracy of what is kept, for every level.
Ignore pixels of the ground truth are left out; a pixel without a prediction
counts as wrong.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from offroad_seg_ros.core.classes import IGNORE_INDEX

ECE_BINS = 15
LEVELS = 256
# The node's and the evaluators' default: chosen from the demo model's risk-coverage curve (docs/trust.md).
DEFAULT_MIN_CONFIDENCE = 0.6


def confidence_level(min_confidence: float) -> int:
    """The uint8 confidence level a pixel needs to count as known under `min_confidence` (0..1)."""
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be within 0..1, got {min_confidence}")
    return int(round(min_confidence * (LEVELS - 1)))


class CalibrationAccumulator:
    def __init__(self) -> None:
        self.total = np.zeros(LEVELS, np.int64)
        self.correct = np.zeros(LEVELS, np.int64)

    def update(self, confidence: np.ndarray, pred: np.ndarray, gt: np.ndarray,
               ignore_index: int = IGNORE_INDEX) -> None:
        """uint8 confidence, class map and ground truth of one frame (same shape)."""
        if not confidence.shape == pred.shape == gt.shape:
            raise ValueError(f"confidence {confidence.shape}, prediction {pred.shape} and ground truth "
                             f"{gt.shape} must have one shape")
        keep = gt != ignore_index
        conf = confidence[keep].astype(np.intp)
        self.total += np.bincount(conf, minlength=LEVELS)
        self.correct += np.bincount(conf[pred[keep] == gt[keep]], minlength=LEVELS)

    def merge(self, other: CalibrationAccumulator) -> None:
        self.total += other.total
        self.correct += other.correct

    @property
    def pixels(self) -> int:
        return int(self.total.sum())

    def reliability(self, bins: int = ECE_BINS) -> dict[str, list[float]]:
        """Per equal-width bin: pixel count, mean confidence, accuracy (NaN where empty)."""
        levels = np.arange(LEVELS) / (LEVELS - 1)
        which = np.minimum((levels * bins).astype(int), bins - 1)
        count = np.bincount(which, self.total, bins)
        conf_sum = np.bincount(which, self.total * levels, bins)
        right = np.bincount(which, self.correct, bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"edges": list(np.linspace(0, 1, bins + 1)), "count": count.tolist(),
                    "confidence": (conf_sum / count).tolist(), "accuracy": (right / count).tolist()}

    def ece(self, bins: int = ECE_BINS) -> float:
        r = self.reliability(bins)
        n = np.asarray(r["count"])
        if n.sum() == 0:
            return float("nan")
        gap = np.abs(np.asarray(r["accuracy"]) - np.asarray(r["confidence"]))
        return float(np.nansum(n * gap) / n.sum())

    def accuracy(self) -> float:
        return float(self.correct.sum() / self.total.sum()) if self.total.sum() else float("nan")

    def mean_confidence(self) -> float:
        n = self.total.sum()
        return float((self.total * np.arange(LEVELS)).sum() / (LEVELS - 1) / n) if n else float("nan")

    def risk_coverage(self) -> dict[str, list[float]]:
        """For each level l (0..255): coverage and accuracy of the pixels with confidence >= l."""
        kept = np.cumsum(self.total[::-1])[::-1]
        right = np.cumsum(self.correct[::-1])[::-1]
        n = max(int(self.total.sum()), 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"level": list(range(LEVELS)), "coverage": (kept / n).tolist(),
                    "accuracy": np.where(kept > 0, right / np.maximum(kept, 1), np.nan).tolist()}

    def at(self, min_confidence: float) -> tuple[float, float]:
        """(coverage, accuracy of the kept pixels) under `min_confidence`."""
        rc = self.risk_coverage()
        level = confidence_level(min_confidence)
        return rc["coverage"][level], rc["accuracy"][level]

    def summary(self, min_confidence: float | None = None, bins: int = ECE_BINS) -> dict[str, Any]:
        out: dict[str, Any] = {"ece": self.ece(bins), "ece_bins": bins, "accuracy": self.accuracy(),
                               "mean_confidence": self.mean_confidence(), "pixels": self.pixels}
        if min_confidence is not None:
            out["min_confidence"] = min_confidence
            out["coverage"], out["known_accuracy"] = self.at(min_confidence)
        return out
