"""`offroad-seg check DIR`: validate a dataset folder before training on it."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from offroad_seg_ros.core.classes import ClassTable
from offroad_seg_ros.data.dataset import IMAGE_DIR, DatasetError, available_splits, pairing_problems, read_raw_mask


@dataclass
class SplitReport:
    name: str
    path: Path
    images: int = 0
    masks: int = 0
    resolutions: Counter = field(default_factory=Counter)
    raw_counts: np.ndarray = field(default_factory=lambda: np.zeros(65536, np.int64))
    problems: list[str] = field(default_factory=list)


def _scan(sample):
    """Per-sample: image size, mask raw-ID histogram, problems. Threads: cv2 drops the GIL."""
    problems = []
    header = cv2.imread(str(sample.image), cv2.IMREAD_UNCHANGED)
    size = None if header is None else (header.shape[1], header.shape[0])
    if header is None:
        problems.append(f"unreadable image {sample.image}")
    hist = None
    if sample.mask is not None:
        try:
            mask = read_raw_mask(sample.mask)
            hist = np.bincount(mask.ravel(), minlength=65536)
            if size is not None and (mask.shape[1], mask.shape[0]) != size:
                problems.append(
                    f"{sample.mask.name}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                    f"image is {size[0]}x{size[1]}"
                )
        except DatasetError as exc:
            problems.append(str(exc))
    return size, hist, problems


def check_dataset(root: str | Path, table: ClassTable, workers: int = 4) -> list[SplitReport]:
    if not Path(root).is_dir():
        raise DatasetError(f"dataset folder does not exist: {root}")
    splits = available_splits(root)
    if not splits:
        raise DatasetError(
            f"no train/val/test split found under {root}: expected {root}/<split>/{IMAGE_DIR}/"
        )
    reports = []
    for name, path in splits.items():
        rep = SplitReport(name, path)
        samples, rep.problems = pairing_problems(path)
        rep.images = len(samples)
        with ThreadPoolExecutor(workers) as pool:
            for size, hist, problems in pool.map(_scan, samples):
                if size:
                    rep.resolutions[size] += 1
                if hist is not None:
                    rep.masks += 1
                    rep.raw_counts += hist
                rep.problems += problems
        known = set(table.raw_ids) | set(table.ignore_raw_ids)
        unknown = {int(v): int(rep.raw_counts[v]) for v in np.flatnonzero(rep.raw_counts) if v not in known}
        if unknown:
            listed = ", ".join(f"{v} ({n} px)" for v, n in sorted(unknown.items()))
            rep.problems.append(f"unknown raw mask IDs in {name}: {listed}")
        reports.append(rep)
    return reports


def format_reports(reports: list[SplitReport], table: ClassTable) -> str:
    lines = []
    for rep in reports:
        res = ", ".join(f"{w}x{h} ({n})" for (w, h), n in rep.resolutions.most_common())
        lines.append(f"{rep.name:>5}: {rep.path}")
        lines.append(f"       {rep.images} image(s), {rep.masks} mask(s), resolution {res or '-'}")
    header = f"{'raw':>6} {'class':<15}" + "".join(f"{r.name + ' %':>10}" for r in reports)
    lines += ["", "class pixel frequency (% of labelled pixels)", header]
    totals = [max(1, int(r.raw_counts[table.raw_ids].sum())) for r in reports]
    for c in table.classes:
        cells = "".join(
            f"{100 * r.raw_counts[c.raw_id] / t:>10.2f}" if r.masks else f"{'-':>10}"
            for r, t in zip(reports, totals, strict=False)
        )
        lines.append(f"{c.raw_id:>6} {c.name:<15}{cells}")
    ignored = "".join(
        f"{int(r.raw_counts[list(table.ignore_raw_ids)].sum()):>10}" for r in reports
    )
    lines.append(f"{'':>6} {'ignored px':<15}{ignored}")
    problems = [p for r in reports for p in r.problems]
    lines.append("")
    if problems:
        lines.append(f"{len(problems)} problem(s):")
        lines += [f"  - {p}" for p in problems[:50]]
        if len(problems) > 50:
            lines.append(f"  ... and {len(problems) - 50} more")
    else:
        lines.append("OK: no problems found")
    return "\n".join(lines)
