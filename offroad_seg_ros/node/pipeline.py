"""What the node does with one frame, without rclpy: parse, segment, build
output fields, count, summarise for diagnostics. The node module only moves
messages; this module holds the logic and is tested without ROS."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from offroad_seg_ros.core.classes import IGNORE_INDEX, UNKNOWN_COST
from offroad_seg_ros.data.camera_checks import DEFAULT_DEGRADED_POLICY, CameraChecks, Condition
from offroad_seg_ros.data.image_msgs import (
    FULL_BITS,
    MAX_PIXELS,
    ImageConversionError,
    ImageView,
    image_fields,
    parse_cdr,
    view_to_rgb,
)
from offroad_seg_ros.inference.outputs import ENCODINGS, ON_DEMAND
from offroad_seg_ros.inference.segmenter import Segmentation, Segmenter
from offroad_seg_ros.node.health import Health


@dataclass
class FrameResult:
    header: ImageView
    outputs: dict[str, dict[str, Any]]  # name -> Image fields (no header)
    known_mask: Any = None  # uint8 (H, W) classes, 255 unknown (outputs.KNOWN_MASK), when asked for
    conditions: list[Condition] = field(default_factory=list)  # what the camera checks found
    withheld: bool = False  # degraded_policy or shift_policy drop: nothing to publish
    shifted: bool = False  # the frame's shift score is above shift_threshold


@dataclass
class FramePipeline:
    segmenter: Segmenter
    compressed: bool = False
    max_pixels: int = MAX_PIXELS
    input_bits: int = FULL_BITS
    health: Health = field(default_factory=Health)
    checks: CameraChecks | None = None
    degraded_policy: str = DEFAULT_DEGRADED_POLICY
    shift_policy: str = "publish"  # for frames unlike the training data (the node's default, params.py)

    def check(self, rgb: np.ndarray) -> list[Condition]:
        """The camera checks on a frame; a degraded one is counted with its conditions."""
        found = self.checks(rgb) if self.checks is not None else []
        if found:
            self.health.frame_degraded("; ".join(c.text for c in found))
        return found

    def parse(self, raw: bytes | memoryview) -> tuple[ImageView, np.ndarray] | None:
        """Serialized Image / CompressedImage -> (header view, RGB); None for a
        bad frame, counted with its reason. Never raises."""
        try:
            view = parse_cdr(raw, self.compressed)
            return view, view_to_rgb(view, self.max_pixels, self.input_bits)
        except ImageConversionError as exc:
            self.health.frame_bad(str(exc))
        except Exception as exc:  # noqa: BLE001 - whatever a frame makes a decoder raise (cv2.error, MemoryError)
            self.health.frame_bad(f"{type(exc).__name__}: {exc}")
        return None

    def result(self, view: ImageView, seg: Segmentation, found: list[Condition],
               wanted: Sequence[str]) -> FrameResult:
        """A segmented frame's outputs: its novelty counted, degraded_policy (when the camera
        checks `found` something) and shift_policy (when it is unlike the training data) applied."""
        shifted = bool(seg.shifted)
        self.health.frame_scored(seg.novel_pixels, seg.shift, shifted, self.segmenter.shift_limit)
        withheld = False
        for policy, flagged in ((self.degraded_policy, bool(found)), (self.shift_policy, shifted)):
            if flagged:
                withheld = apply_policy(policy, seg) or withheld
        fields = {} if withheld else {n: image_fields(getattr(seg, n), ENCODINGS[n]) for n in wanted if n in ENCODINGS}
        return FrameResult(view, fields, seg.known_mask, found, withheld, shifted)

    def process(self, raw: bytes | memoryview, wanted: Sequence[str]) -> FrameResult | None:
        """One frame -> output fields. Never raises: a frame that cannot be
        converted is a bad frame, one the model fails on an inference failure,
        each counted with its reason (None returned)."""
        return process_batch(self.segmenter, [(self, raw, wanted)])[0]

    def diagnostics(self, received: int, dropped: int, rate_limited: int = 0, other_failures: int = 0,
                    now: float | None = None,
                    extra: list[tuple[int, str]] | None = None) -> tuple[int, str, list[tuple[str, str]]]:
        """(level, message, key/values) for a diagnostic_msgs/DiagnosticStatus."""
        total = self.health.counts(received, dropped, rate_limited, other_failures)
        level, msg, values = self.health.report(total, time.monotonic() if now is None else now, extra)
        seg = self.segmenter
        values += [("device", str(seg.device)), ("precision", seg.precision), ("backend", seg.backend),
                   ("model", seg.name), ("min_confidence", f"{seg.min_level / 255:.3f}"),
                   ("degraded_policy", self.degraded_policy), ("shift_policy", self.shift_policy)]
        if self.checks is not None:
            values += [(f"camera_{k}", f"{v:.4g}") for k, v in self.checks.measures.items()]
        return level, msg, values


def process_batch(segmenter: Segmenter, frames: Sequence[tuple[FramePipeline, bytes | memoryview, Sequence[str]]],
                  ) -> list[FrameResult | None]:
    """Frames of several cameras (each with its own pipeline, i.e. its own
    counts, and its own wanted outputs) through one model: frames of one size
    go in one forward pass. Results in input order; None where a frame was bad
    or its batch failed (counted in that camera's health). Never raises."""
    results: list[FrameResult | None] = [None] * len(frames)
    by_size: dict[tuple[int, ...], list[tuple[int, ImageView, np.ndarray, list[Condition]]]] = {}
    for i, (pipe, raw, _) in enumerate(frames):
        parsed = pipe.parse(raw)
        if parsed is None:
            continue
        view, rgb = parsed
        found = pipe.check(rgb)
        if found and apply_policy(pipe.degraded_policy, None):  # dropped before inference
            results[i] = FrameResult(view, {}, conditions=found, withheld=True)
        else:
            by_size.setdefault(rgb.shape, []).append((i, view, rgb, found))
    for group in by_size.values():
        union = list(dict.fromkeys(n for i, *_ in group for n in frames[i][2]))
        try:
            segs = segmenter.segment_batch([rgb for _, _, rgb, _ in group], union)
            done = [(i, frames[i][0].result(view, seg, found, frames[i][2]))
                    for (i, view, _, found), seg in zip(group, segs)]
            for i, result in done:
                results[i] = result
        except Exception as exc:  # noqa: BLE001 - counted and shown in /diagnostics; the node carries on
            for i, *_ in group:
                frames[i][0].health.frame_failed(f"{type(exc).__name__}: {exc}")
    return results


def apply_policy(policy: str, seg: Segmentation | None) -> bool:
    """A flagged frame under degraded_policy or shift_policy (the same three choices): True for
    drop (nothing published); unknown turns `seg`'s cost and what the ground outputs project all
    unknown; publish leaves it as it is (flagged in /diagnostics only)."""
    if policy == "drop":
        return True
    if policy == "unknown" and seg is not None:
        _all_unknown(seg)
    return False


def _all_unknown(seg: Segmentation) -> None:
    """The frame's cost and what the ground outputs project, all unknown."""
    if seg.cost is not None:
        seg.cost = np.full_like(seg.cost, UNKNOWN_COST)
    if seg.known_mask is not None:
        seg.known_mask = np.full_like(seg.known_mask, IGNORE_INDEX)


class FrameNotes:
    """What the node logs about a frame's outcome, as (logger method, text): an inference failure,
    a bad frame or a degraded camera; None for a frame processed as it should be, and for a kind
    already logged within `period` s (a broken camera must not flood the log). Throttled here per
    kind: rclpy's own throttle keys on the call site, and the node logs every kind from one, so a
    degraded camera's warning would hide a bad frame's."""

    def __init__(self, period: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.period, self.clock = period, clock
        self.last: dict[str, float] = {}

    def note(self, result: FrameResult | None, health: Health, failed_before: int) -> tuple[str, str] | None:
        if result is None and health.failed > failed_before:
            kind, found = "failed", ("error", f"inference failed: {health.last_failure}")
        elif result is None:
            kind, found = "bad", ("warning", f"skipping bad frame on {health.topic}: {health.last_bad}")
        elif result.conditions:
            kind, found = "degraded", ("warning", f"camera degraded on {health.topic}: {health.last_degraded}")
        elif result.shifted:
            kind, found = "shifted", ("warning", f"{health.last_shift} on {health.topic}")
        else:
            return None
        now = self.clock()
        if now - self.last.get(kind, -float("inf")) < self.period:
            return None
        self.last[kind] = now
        return found


def wanted_outputs(enabled: dict[str, bool], subscribers: Callable[[str], int]) -> list[str]:
    """Enabled outputs; the rgb8 ones only while someone subscribes."""
    return [n for n, on in enabled.items() if on and (n not in ON_DEMAND or subscribers(n) > 0)]
