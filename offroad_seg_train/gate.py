"""The gate an adapted model passes before it is written: the numbers a person reads to decide
whether to deploy it. Labels exist only for the source; on the new place every check is label-free.

- source accuracy: the source validation mIoU drops by at most `tolerance`. With fewer than
  `min_source_frames` frames the one-sided 95% paired bootstrap bound of the drop must stay within
  it instead, so a small split's noise cannot pass a model that got worse;
- no class collapses: a class the parent gave at least `min_share` of the target's pixels keeps at
  least `keep_share` of that share (self-training's failure mode is a class swallowed by another);
- teacher and student agree on the target (a run still moving fast has not settled);
- footprints, when the recording has them: driven-over pixels are not called lethal more often.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .scoring import Scored, paired_miou_drop


@dataclass(frozen=True)
class GateSettings:
    tolerance: float = 0.02
    min_source_frames: int = 50
    min_share: float = 0.005
    keep_share: float = 0.25
    min_agreement: float = 0.85
    footprint_slack: float = 0.01

    def __post_init__(self) -> None:
        for name in ("tolerance", "min_share", "keep_share", "min_agreement", "footprint_slack"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"gate {name} must be within 0..1, got {value}")
        if self.min_source_frames < 1:
            raise ValueError(f"gate min_source_frames must be >= 1, got {self.min_source_frames}")


@dataclass
class Check:
    name: str
    passed: bool
    value: float
    limit: float
    detail: str


@dataclass
class GateResult:
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [asdict(c) for c in self.checks]}

    def table(self) -> str:
        rows = [f"{'check':<18} {'result':<7} {'value':>8} {'limit':>8}  detail"]
        rows += [f"{c.name:<18} {'pass' if c.passed else 'FAIL':<7} {c.value:>8.4f} {c.limit:>8.4f}  {c.detail}"
                 for c in self.checks]
        return "\n".join(rows)


def source_check(before: Scored, after: Scored, s: GateSettings) -> Check:
    drop, bound = paired_miou_drop(before.cms, after.cms)
    frames = len(before.cms)
    if frames >= s.min_source_frames:
        return Check("source mIoU drop", drop <= s.tolerance, drop, s.tolerance,
                     f"{before.miou:.4f} -> {after.miou:.4f} on {frames} source frames "
                     f"(95% bound of the drop {bound:.4f})")
    return Check("source mIoU drop", bound <= s.tolerance, bound, s.tolerance,
                 f"{before.miou:.4f} -> {after.miou:.4f} on {frames} source frames (< {s.min_source_frames}): "
                 f"the 95% paired bootstrap bound of the drop is judged (point drop {drop:.4f})")


def collapse_check(before: Scored, after: Scored, names: list[str], s: GateSettings) -> Check:
    assert before.shares is not None and after.shares is not None
    watched = before.shares >= s.min_share
    with np.errstate(divide="ignore", invalid="ignore"):
        kept = np.where(watched, after.shares / np.maximum(before.shares, 1e-12), np.inf)
    worst = int(np.argmin(kept))
    value = float(kept[worst]) if watched.any() else 1.0
    return Check("class shares", value >= s.keep_share, value, s.keep_share,
                 f"least kept: {names[worst]} {before.shares[worst]:.2%} -> {after.shares[worst]:.2%} "
                 "of the target's pixels" if watched.any() else "no class above the watched share")


def agreement_check(teacher: Scored, student: Scored, s: GateSettings) -> Check:
    same = sum(int((a == b).sum()) for a, b in zip(teacher.preds, student.preds))
    total = sum(a.size for a in teacher.preds)
    value = same / max(total, 1)
    return Check("teacher-student", value >= s.min_agreement, value, s.min_agreement,
                 f"pixels of the {len(teacher.preds)} target frames given the same class")


def footprint_check(before: float, after: float, s: GateSettings) -> Check:
    return Check("footprints lethal", after <= before + s.footprint_slack, after, before + s.footprint_slack,
                 f"share of driven-over pixels called a lethal class: {before:.2%} before, {after:.2%} after")


def run_gate(source_before: Scored, source_after: Scored, target_before: Scored, target_after: Scored,
             student: Scored, names: list[str], settings: GateSettings,
             footprints: tuple[float, float] | None = None) -> GateResult:
    """Every check; `target_after` and `student` must hold the class maps (keep_preds)."""
    checks = [source_check(source_before, source_after, settings),
              collapse_check(target_before, target_after, names, settings),
              agreement_check(target_after, student, settings)]
    if footprints is not None:
        checks.append(footprint_check(*footprints, settings))
    return GateResult(checks)
