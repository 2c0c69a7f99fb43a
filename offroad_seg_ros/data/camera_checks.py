"""Cheap per-frame checks of what a camera delivers, before the model sees it.

All measures are taken on a 320x180 grey copy of the frame (decimated:
nearest-neighbour, as an area resize costs several times the checks; well
under a millisecond for 960x540 on one core, bench/ times it):
- blurred: sharpness (variance of the Laplacian) below `min_sharpness`;
- dark: mean grey level below `min_brightness` (under-exposure, dusk);
- over_exposed: share of near-white pixels (>= 240) above `max_saturated`
  (over-exposure);
- glare: the largest connected near-white region above `max_glare` of the
  view: a low sun veiling the image around it. A clear sky's clouds break up
  into many smaller regions (their total share overlaps a glare's), and it is
  the region nearest the sun, washed out, that the model gets wrong;
- low_contrast: grey range p98 - p2 below `min_contrast` (a flat, washed-out image);
- hazy: black point (p2 grey) above `max_black`: dust or haze in the air
  lifts the darkest parts of the scene towards the veil's colour;
- frozen: the same image (bit for bit) `frozen_frames` times in a row;
- occluded: a share of the view above `occluded_share` (pixels of a 160x90
  copy) that stays still while the rest of the image changes, for
  `occlusion_frames` frames of change (dirt on the lens). Frames in which
  the scene itself hardly changes (a robot standing still) neither raise
  nor clear it.
A threshold of 0 turns its check off. Defaults are tuned on the corruption
set (evaluation/corruptions.py) and the generated clean frames; the
robustness evaluation reports each check's detection and false-alarm rates.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import cv2
import numpy as np

# What the node does with a frame that raised a check: publish it flagged only, publish its
# cost and ground outputs all unknown, or drop it (docs/trust.md).
DEGRADED_POLICIES = ("publish", "unknown", "drop")
DEFAULT_DEGRADED_POLICY = "unknown"

SIZE = (320, 180)  # (w, h) of the grey copy
CHANGING = 6.0  # median grey change of a pixel between frames for "the scene changes"
STILL = 0.15  # a pixel changing less than this share of the median change is "still"


def check_degraded_policy(policy: str) -> None:
    if policy not in DEGRADED_POLICIES:
        raise ValueError(f"degraded_policy must be one of {', '.join(DEGRADED_POLICIES)}, got {policy!r}")


@dataclass(frozen=True)
class CheckThresholds:
    min_sharpness: float = 350.0
    min_brightness: float = 80.0
    max_saturated: float = 0.15
    max_glare: float = 0.10
    min_contrast: float = 50.0
    max_black: float = 110.0
    frozen_frames: int = 2
    occluded_share: float = 0.015
    occlusion_frames: int = 4

    @classmethod
    def from_params(cls, p: dict[str, Any], prefix: str = "check_") -> CheckThresholds:
        """From node parameters `check_<field>`; missing ones keep their defaults."""
        kwargs = {f.name: type(getattr(cls, f.name))(p[prefix + f.name]) for f in fields(cls) if prefix + f.name in p}
        out = cls(**kwargs)
        bad = [f"{prefix}{f.name}={getattr(out, f.name)}" for f in fields(cls) if getattr(out, f.name) < 0]
        if bad:
            raise ValueError(f"camera check thresholds must be >= 0 (0 = off), got {', '.join(bad)}")
        return out


# name, measure, threshold field, fires below (else above) it, what /diagnostics says
_FRAME_CHECKS = (
    ("blurred", "sharpness", "min_sharpness", True, "blurred: sharpness {v:.1f} < {t:g}"),
    ("dark", "brightness", "min_brightness", True, "dark: mean grey {v:.0f} < {t:g}"),
    ("over_exposed", "saturated", "max_saturated", False, "over-exposed: {v:.0%} of the image near white > {t:.0%}"),
    ("glare", "glare", "max_glare", False, "glare: one near-white region covers {v:.0%} of the view > {t:.0%}"),
    ("low_contrast", "contrast", "min_contrast", True, "low contrast: grey range {v:.0f} < {t:g}"),
    ("hazy", "black", "max_black", False, "hazy (dust in the air?): black point {v:.0f} > {t:g}"),
)


@dataclass(frozen=True)
class Condition:
    name: str  # blurred | dark | over_exposed | glare | low_contrast | hazy | frozen | occluded
    measure: float
    text: str  # for /diagnostics: the condition and its measure


class CameraChecks:
    """One camera's checks; keeps the little state the temporal ones need."""

    def __init__(self, thresholds: CheckThresholds | None = None) -> None:
        self.t = thresholds or CheckThresholds()
        self._prev: np.ndarray | None = None
        self._repeats = 0
        self._still_for: np.ndarray | None = None  # per block: frames of change it stayed still through
        self.measures: dict[str, float] = {}

    def __call__(self, rgb: np.ndarray) -> list[Condition]:
        """The conditions this frame shows (empty: healthy)."""
        t = self.t
        grey = cv2.cvtColor(cv2.resize(rgb, SIZE, interpolation=cv2.INTER_NEAREST), cv2.COLOR_RGB2GRAY)
        hist = cv2.calcHist([grey], [0], None, [256], [0, 256])[:, 0]
        cdf = np.cumsum(hist) / grey.size
        lo, hi = int(np.searchsorted(cdf, 0.02)), int(np.searchsorted(cdf, 0.98))
        m = self.measures = {
            "sharpness": float(cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_16S))[1][0, 0] ** 2),
            "brightness": float((hist * np.arange(256)).sum() / grey.size),
            "saturated": float(hist[240:].sum() / grey.size),
            "contrast": float(hi - lo),
            "black": float(lo),
        }
        m["glare"] = self._largest_white(grey) if m["saturated"] > t.max_glare > 0 else 0.0
        out = []
        for name, measure, limit, below, text in _FRAME_CHECKS:
            value, threshold = m[measure], getattr(t, limit)
            if threshold and (value < threshold if below else value > threshold):
                out.append(Condition(name, value, text.format(v=value, t=threshold)))
        out += self._temporal(grey)
        self._prev = grey
        return out

    @staticmethod
    def _largest_white(grey: np.ndarray) -> float:
        # Only called when near-white pixels are more than max_glare of the view (no region can be
        # larger otherwise): ~0.2 ms then, nothing on most frames.
        n, _, stats, _ = cv2.connectedComponentsWithStats((grey >= 240).view(np.uint8), connectivity=8)
        return float(stats[1:, cv2.CC_STAT_AREA].max()) / grey.size if n > 1 else 0.0

    def _temporal(self, grey: np.ndarray) -> list[Condition]:
        t = self.t
        out: list[Condition] = []
        prev, self.measures["repeats"] = self._prev, 0.0
        if prev is None:
            return out
        if np.array_equal(grey, prev):
            self._repeats += 1
        else:
            self._repeats = 0
        self.measures["repeats"] = float(self._repeats)
        if t.frozen_frames and self._repeats + 1 >= t.frozen_frames:
            out.append(Condition("frozen", self._repeats + 1, f"frozen: the same image {self._repeats + 1} times "
                                 "in a row"))
        diff = cv2.absdiff(grey[::2, ::2], prev[::2, ::2])
        # the median of a uint8 image from its histogram: a fifth of np.median's time
        cdf = np.cumsum(cv2.calcHist([diff], [0], None, [256], [0, 256])[:, 0])
        typical = float(np.searchsorted(cdf, cdf[-1] / 2))
        if self._still_for is None:
            self._still_for = np.zeros(diff.shape, np.int32)
        if typical >= CHANGING:  # the scene changes: what stays still is covering the view
            self._still_for = np.where(diff < STILL * typical, self._still_for + 1, 0)
        share = float((self._still_for >= t.occlusion_frames).mean()) if t.occlusion_frames else 0.0
        self.measures["occluded"] = share
        if t.occluded_share and share >= t.occluded_share:
            out.append(Condition("occluded", share, f"occluded: {100 * share:.0f}% of the view unchanged for "
                                 f"{t.occlusion_frames} frames while the rest changed (dirt on the lens?)"))
        return out
