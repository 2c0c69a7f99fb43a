"""How well a per-pixel novelty score tells novel pixels from ordinary ones, from histograms.

The generator's novelty masks (docs/generator.md, `read_novelty_mask` in data/dataset.py) say
of each pixel: ordinary (0), novel (1), pasted ordinary patch (2: a control, not novel) or not
scored (255). A score is higher where the model should trust itself less. `NoveltyHistogram`
counts, per kind of pixel, how many scores fall in each of `bins` equal-width bins over a fixed
range [low, high] (scores outside are counted in the end bins, and how many were): constant
memory over any number of frames, and histograms of several splits merge by addition.

Every figure is exact for the score quantised to its bin: pixels in one bin are ties, and a
threshold flags the pixels of its bin and every bin above (bin k holds [edge k, edge k+1)).

- AUROC (novel against ordinary pixels): the area under the ROC curve through every bin edge;
  a tie counts half (the Mann-Whitney statistic).
- FPR at 95% TPR: the ordinary pixels flagged at the highest threshold that flags at least 95%
  of the novel ones.
- average precision, novel the positive class: the sum over thresholds of the recall gained
  times the precision there (step-wise, not interpolated).
- per threshold: the false-alarm rate (ordinary pixels flagged), the share of pasted-patch
  pixels flagged, and the threshold that keeps false alarms at or below a rate.

Written with numpy rather than torchmetrics' binned metrics: torchmetrics is a training
dependency, and the runtime, which will score frames on the robot, must not need it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from offroad_seg_ros.data.dataset import NOT_NOVEL, NOVEL, NOVELTY_IGNORE, PASTED

KINDS = (NOT_NOVEL, NOVEL, PASTED)  # the histogram's rows, in this order
DEFAULT_BINS = 4096
# Rates compared with counts: 0.95 x 20 pixels must be 19 pixels, not a rounding below or above it.
_TOLERANCE = 1e-12


class NoveltyHistogram:
    """Per-kind histograms of a score over `bins` equal-width bins of [low, high]."""

    def __init__(self, low: float, high: float, bins: int = DEFAULT_BINS) -> None:
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(f"the score range must be finite with low < high, got [{low}, {high}]")
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.low, self.high, self.bins = float(low), float(high), int(bins)
        self.edges = np.linspace(self.low, self.high, self.bins + 1)
        self.counts = np.zeros((len(KINDS), self.bins), np.int64)
        self.below = 0  # scored pixels under `low`, counted in the first bin
        self.above = 0  # scored pixels at or over `high`, counted in the last bin

    def bin_of(self, values: np.ndarray | float) -> np.ndarray:
        """The bin of each value (scores and thresholds alike): the k with edge k <= value, in 0..bins-1."""
        # searchsorted on the edges themselves, so a threshold equal to an edge lands in that
        # edge's bin whatever the rounding of (value - low) / width would say.
        return np.clip(np.searchsorted(self.edges, values, side="right") - 1, 0, self.bins - 1)

    def update(self, score: np.ndarray, novelty: np.ndarray) -> None:
        """One frame: a float score and its uint8 novelty mask, of one shape; 255 pixels are skipped."""
        if score.shape != novelty.shape:
            raise ValueError(f"score {score.shape} and novelty mask {novelty.shape} must have one shape")
        bad = np.setdiff1d(np.unique(novelty), [*KINDS, NOVELTY_IGNORE])
        if bad.size:
            raise ValueError(f"novelty mask holds value(s) {bad.tolist()}; expected 0, 1, 2 or 255")
        keep = novelty != NOVELTY_IGNORE
        values = score[keep]
        if values.size and not np.isfinite(values).all():
            raise ValueError("the score holds NaN or infinite values")
        kind = novelty[keep].astype(np.intp)  # 0, 1, 2: the row, as KINDS orders them
        self.below += int((values < self.low).sum())
        self.above += int((values >= self.high).sum())
        code = kind * self.bins + self.bin_of(values)
        self.counts += np.bincount(code, minlength=self.counts.size).reshape(self.counts.shape)

    def merge(self, other: NoveltyHistogram) -> NoveltyHistogram:
        """Add another histogram of the same range and bins (another split); returns self."""
        if (other.low, other.high, other.bins) != (self.low, self.high, self.bins):
            raise ValueError("histograms of different ranges or bins cannot be merged")
        self.counts += other.counts
        self.below += other.below
        self.above += other.above
        return self

    def pixels(self, kind: int) -> int:
        return int(self.counts[KINDS.index(kind)].sum())

    def _flagged(self, kind: int) -> np.ndarray:
        """Pixels of `kind` flagged at each threshold bin 0..bins (bins: nothing flagged)."""
        row = self.counts[KINDS.index(kind)]
        return np.concatenate([np.cumsum(row[::-1])[::-1], [0]])

    def flagged_share(self, kind: int, thresholds: np.ndarray | float) -> np.ndarray:
        """The share of `kind`'s pixels at or above each threshold's bin (NaN without such pixels)."""
        total = self.pixels(kind)
        flagged = self._flagged(kind)[self.bin_of(thresholds)]
        return flagged / total if total else np.full(np.shape(flagged), np.nan)

    def false_alarm_rate(self, thresholds: np.ndarray | float) -> np.ndarray:
        """The share of ordinary pixels flagged at each threshold."""
        return self.flagged_share(NOT_NOVEL, thresholds)

    def threshold_at_false_alarm(self, rate: float) -> float:
        """The lowest bin edge whose false-alarm rate is at most `rate`."""
        total = self.pixels(NOT_NOVEL)
        if not total:
            raise ValueError("no ordinary pixels: a false-alarm rate has no meaning")
        fp = self._flagged(NOT_NOVEL)[:-1]
        ok = np.flatnonzero(fp <= rate * total * (1 + _TOLERANCE))
        # The last bin's edge if even it flags too many: the histogram's range is too narrow.
        return float(self.edges[ok[0] if ok.size else self.bins - 1])

    def _rates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """True and false positives at thresholds bins..0 (nothing flagged first), or None
        without novel or ordinary pixels."""
        tp, fp = self._flagged(NOVEL)[::-1], self._flagged(NOT_NOVEL)[::-1]
        if tp[-1] == 0 or fp[-1] == 0:
            return None
        return tp, fp, tp / tp[-1], fp / fp[-1]

    def auroc(self) -> float:
        rates = self._rates()
        if rates is None:
            return float("nan")
        _, _, tpr, fpr = rates
        return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids: a tie counts half

    def fpr_at_tpr(self, tpr: float = 0.95) -> float:
        rates = self._rates()
        if rates is None:
            return float("nan")
        tp, _, _, fpr = rates
        # the first (highest) threshold there
        return float(fpr[np.flatnonzero(tp >= tpr * tp[-1] * (1 - _TOLERANCE))[0]])

    def average_precision(self) -> float:
        rates = self._rates()
        if rates is None:
            return float("nan")
        tp, fp, recall, _ = rates
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
        return float(np.sum(np.diff(recall) * precision[1:]))

    def summary(self, threshold: float | None = None) -> dict[str, Any]:
        """The figures of this histogram; with a threshold, also what it flags of each kind."""
        out: dict[str, Any] = {
            "auroc": self.auroc(), "fpr_at_95_tpr": self.fpr_at_tpr(0.95),
            "average_precision": self.average_precision(),
            "pixels": {"ordinary": self.pixels(NOT_NOVEL), "novel": self.pixels(NOVEL), "pasted": self.pixels(PASTED)},
            "outside_range": {"below": self.below, "above": self.above},
        }
        if threshold is not None:
            out["threshold"] = float(threshold)
            out["false_alarm_rate"] = float(self.false_alarm_rate(threshold))
            out["novel_flagged"] = float(self.flagged_share(NOVEL, threshold))
            out["pasted_flagged"] = float(self.flagged_share(PASTED, threshold))
        return out
