"""Score a model (or a bag recorded from the node) on a bag or a dataset split.

Streams frames (constant memory), runs the node's own `Segmenter`, accumulates
the shared metrics, keeps thumbnails only for the gallery, and writes the
report directory atomically (all of it, or nothing).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from offroad_seg_ros.core.calibration import CalibrationAccumulator
from offroad_seg_ros.core.classes import ClassTable
from offroad_seg_ros.core.metrics import MetricAccumulator
from offroad_seg_ros.data.bag import (
    GT_TOPIC,
    IMAGE_TOPIC,
    NAME_TOPIC,
    Frame,
    PairingStats,
    folder_frames,
    is_bag,
    read_frames,
)
from offroad_seg_ros.data.dataset import DatasetError

THUMB_W = 320


@dataclass
class Thumb:
    """A small copy of a frame for the gallery: RGB image, class-index maps."""

    name: str
    miou: float
    image: np.ndarray | None
    gt: np.ndarray
    pred: np.ndarray


@dataclass
class Gallery:
    """Best / worst / evenly spread frames, as small thumbnails (bounded memory)."""

    k: int = 5
    spread: int = 4
    best: list = field(default_factory=list)  # min-heap of (miou, i, Thumb)
    worst: list = field(default_factory=list)  # min-heap of (-miou, i, Thumb)
    sample: list[Thumb] = field(default_factory=list)
    seen: int = 0
    _rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def add(self, name: str, miou: float, make: Callable[[], Thumb]) -> None:
        """Offer a frame; its thumbnail is only made if the gallery keeps it."""
        self.seen += 1
        thumb: Thumb | None = None

        def get() -> Thumb:
            nonlocal thumb
            thumb = thumb or make()
            return thumb

        if miou == miou:  # not NaN
            for heap, key in ((self.best, miou), (self.worst, -miou)):
                if len(heap) < self.k:
                    heapq.heappush(heap, (key, self.seen, get()))
                elif key > heap[0][0]:
                    heapq.heapreplace(heap, (key, self.seen, get()))
        # Reservoir sample: representative frames without knowing the count.
        if len(self.sample) < self.spread:
            self.sample.append(get())
        else:
            j = int(self._rng.integers(0, self.seen))
            if j < self.spread:
                self.sample[j] = get()

    def ranked(self) -> tuple[list[Thumb], list[Thumb]]:
        best = [t for _, _, t in sorted(self.best, key=lambda x: -x[0])]
        worst = [t for _, _, t in sorted(self.worst, key=lambda x: -x[0])]
        return best, worst


def _thumb(arr: np.ndarray, nearest: bool) -> np.ndarray:
    h, w = arr.shape[:2]
    size = (THUMB_W, max(1, round(h * THUMB_W / w)))
    return cv2.resize(arr, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def open_frames(source: str | Path, stats: PairingStats, limit: int | None = None,
                predictions_topic: str | None = None, image_topic: str = IMAGE_TOPIC, gt_topic: str = GT_TOPIC,
                name_topic: str = NAME_TOPIC) -> Iterator[Frame]:
    """The frames of a bag (image or predictions, ground truth, name) or a dataset split folder."""
    if is_bag(source):
        topics = {"gt": gt_topic, "name": name_topic}
        topics.update({"pred": predictions_topic} if predictions_topic else {"image": image_topic})
        return read_frames(source, topics, stats, limit=limit)
    if predictions_topic:
        raise ValueError("--predictions needs a bag; a dataset folder has no predictions")
    return folder_frames(source, stats, limit)


def evaluate(
    source: str | Path,
    model: str | Path | None = None,
    predictions_topic: str | None = None,
    device: str = "auto",
    precision: str = "fp32",
    backend: str = "torch",
    threads: int = 0,
    limit: int | None = None,
    image_topic: str = IMAGE_TOPIC,
    gt_topic: str = GT_TOPIC,
    name_topic: str = NAME_TOPIC,
    classes: ClassTable | None = None,
    ignore_unknown: bool = False,
    progress: bool = True,
    min_confidence: float | None = None,
) -> tuple[dict[str, Any], Gallery]:
    """Metrics (docs/architecture.md) plus run information; and the gallery thumbnails.
    Running a model, also the calibration of its confidence (ECE, reliability,
    risk-coverage) and, with `min_confidence`, the share of pixels it leaves
    known and how often those are right."""
    if (model is None) == (predictions_topic is None):
        raise ValueError("give exactly one of --model (run a model) or --predictions TOPIC (score a replay bag)")
    segmenter = None
    if model is not None:
        from offroad_seg_ros.inference.segmenter import Segmenter

        segmenter = Segmenter(model, device=device, precision=precision, backend=backend, warmup_size=None,
                              threads=threads)
        table = segmenter.classes
    else:
        table = classes or ClassTable.default()
    stats = PairingStats()
    frames = open_frames(source, stats, limit, predictions_topic, image_topic, gt_topic, name_topic)

    acc = MetricAccumulator(len(table))
    calib = CalibrationAccumulator()
    gallery = Gallery()
    t_model = 0.0
    t_start = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit="frame", desc="eval", dynamic_ncols=True)
    for frame in frames:
        assert frame.gt_raw is not None
        try:
            gt = table.remap(frame.gt_raw, ignore_unknown=ignore_unknown, source=frame.name)
        except ValueError as exc:
            raise DatasetError(f"ground truth of frame {frame.name}: {exc}") from exc
        if segmenter is not None:
            assert frame.image is not None
            if frame.image.shape[:2] != gt.shape:
                stats.skip(f"{frame.name}: image {frame.image.shape[1]}x{frame.image.shape[0]} and mask "
                           f"{gt.shape[1]}x{gt.shape[0]} differ")
                continue
            t0 = time.perf_counter()
            seg = segmenter(frame.image, ("mask", "confidence"))
            t_model += time.perf_counter() - t0
            pred = seg.mask
            assert pred is not None and seg.confidence is not None
            calib.update(seg.confidence, pred, gt)
        else:
            pred = frame.pred
        assert pred is not None
        if pred.shape != gt.shape:
            stats.skip(f"{frame.name}: prediction {pred.shape[1]}x{pred.shape[0]} and mask "
                       f"{gt.shape[1]}x{gt.shape[0]} differ")
            continue
        acc.update(torch.from_numpy(pred), torch.from_numpy(gt), names=[frame.name])
        miou = acc.image_miou[-1]

        def make(f: Frame = frame, m: float = miou, g: np.ndarray = gt, p: np.ndarray = pred) -> Thumb:
            image = None if f.image is None else _thumb(f.image, False)
            return Thumb(f.name, m, image, _thumb(g, True), _thumb(p, True))

        gallery.add(frame.name, miou, make)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t_start
    scored = len(acc.image_miou)
    if scored == 0:
        raise DatasetError(f"no frame of {source} could be scored (paired: {stats.frames}, "
                           f"unmatched: {stats.unmatched}, skipped: {stats.bad_count})")
    out = acc.compute()
    out["classes"] = table.to_dict()
    if segmenter is not None:
        out["calibration"] = calibration_figures(calib, min_confidence, segmenter.artifact.calibration)
    out["run"] = {
        "source": str(source),
        "mode": "replay" if predictions_topic else ("bag" if is_bag(source) else "folder"),
        "model": str(model) if model else None,
        "model_name": segmenter.name if segmenter else None,
        "predictions_topic": predictions_topic,
        "frames_scored": scored,
        "frames_paired": stats.frames,
        "unmatched": stats.unmatched,
        "skipped": stats.bad_count,
        "skipped_examples": stats.bad,
        "device": str(segmenter.device) if segmenter else None,
        "precision": segmenter.precision if segmenter else None,  # what `auto` chose
        "backend": backend if segmenter else None,
        "seconds": wall,
        "fps": scored / wall if wall else float("nan"),
        "overhead_ms_per_frame": 1e3 * (wall - t_model) / scored,
        "model_ms_per_frame": 1e3 * t_model / scored if segmenter else None,
    }
    return out, gallery


def calibration_figures(calib: CalibrationAccumulator, min_confidence: float | None,
                        fitted: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the reports show of a model's confidence: ECE and friends, the reliability
    diagram, the risk-coverage curve, and the temperature fit recorded in the artifact."""
    return {**calib.summary(min_confidence), "reliability": calib.reliability(),
            "risk_coverage": calib.risk_coverage(), "temperature_fit": fitted or {}}
