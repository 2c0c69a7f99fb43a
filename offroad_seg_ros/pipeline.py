"""What the node does with one frame, without rclpy: parse, segment, build
output fields, count, summarise for diagnostics. The node module only moves
messages; this module holds the logic and is tested without ROS."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .image_msgs import (
    ImageConversionError,
    ImageView,
    image_fields,
    parse_compressed_cdr,
    parse_image_cdr,
    view_to_rgb,
)
from .segmenter import Segmenter
from .stats import RateLatency

OUTPUT_ENCODINGS = {"mask": "mono8", "cost": "mono8", "confidence": "mono8", "color": "rgb8", "overlay": "rgb8"}
ON_DEMAND = ("color", "overlay")  # expensive rgb8 outputs: only while subscribed

OK, WARN, ERROR = 0, 1, 2


def parse_cost_overrides(entries: Iterable[str]) -> dict[str, int]:
    """["Dry Grass=60", ...] (node parameter) -> {"Dry Grass": 60}."""
    out: dict[str, int] = {}
    for entry in entries:
        if not entry.strip():
            continue
        name, sep, value = entry.rpartition("=")
        if not sep or not name.strip():
            raise ValueError(f"cost override {entry!r} is not 'Class Name=cost'")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise ValueError(f"cost override {entry!r}: {value!r} is not an integer") from None
    return out


def check_parameters(p: dict[str, Any]) -> None:
    """The node's own parameters (the Segmenter checks its own): a ValueError
    naming the parameter and its value, so a typo never silently falls back."""
    if p["qos_reliability"] not in ("best_effort", "reliable"):
        raise ValueError(f"parameter qos_reliability must be best_effort or reliable, got {p['qos_reliability']!r}")
    if int(p["qos_depth"]) < 1:
        raise ValueError(f"parameter qos_depth must be at least 1, got {p['qos_depth']}")
    if p["max_rate"] < 0:
        raise ValueError(f"parameter max_rate must be >= 0 Hz (0 = unlimited), got {p['max_rate']}")
    if p["diagnostics_period"] <= 0:
        raise ValueError(f"parameter diagnostics_period must be > 0 s, got {p['diagnostics_period']}")
    if not p["model"]:
        raise ValueError("parameter model is empty: pass model:=/path/to/artifact (model.json + weights.safetensors)")


@dataclass
class FrameResult:
    header: ImageView
    outputs: dict[str, dict[str, Any]]  # name -> Image fields (no header)


@dataclass
class FramePipeline:
    segmenter: Segmenter
    compressed: bool = False
    bad_frames: int = 0
    last_error: str = ""
    stats: RateLatency = field(default_factory=RateLatency)

    def process(self, raw: bytes | memoryview, wanted: Sequence[str]) -> FrameResult | None:
        """Serialized Image / CompressedImage -> output fields; None (counted)
        for a frame that cannot be converted."""
        try:
            view = parse_compressed_cdr(raw) if self.compressed else parse_image_cdr(raw)
            rgb = view_to_rgb(view)
        except ImageConversionError as exc:
            self.bad_frames += 1
            self.last_error = str(exc)
            return None
        seg = self.segmenter(rgb, wanted)
        return FrameResult(view, {name: image_fields(getattr(seg, name), OUTPUT_ENCODINGS[name]) for name in wanted})

    def record_latency(self, stamp_sec: int, stamp_nanosec: int, now_sec: float) -> None:
        self.stats.add(max(0.0, now_sec - (stamp_sec + stamp_nanosec * 1e-9)))

    def diagnostics(self, received: int, processed: int, dropped: int, rate_skipped: int = 0,
                    now: float | None = None) -> tuple[int, str, list[tuple[str, str]]]:
        """(level, message, key/values) for a diagnostic_msgs/DiagnosticStatus."""
        s = self.stats.summary(time.monotonic() if now is None else now)
        seg = self.segmenter
        if received == 0:
            level, msg = WARN, "no frames received yet"
        elif s["fps"] == 0:
            level, msg = WARN, "no frames processed in the last window"
        elif self.bad_frames:
            level, msg = WARN, f"{self.bad_frames} bad frame(s); last: {self.last_error}"
        else:
            level, msg = OK, f"{s['fps']:.1f} fps, p50 {s['latency_p50_ms']:.1f} ms"

        def fmt(v: float) -> str:
            return "n/a" if math.isnan(v) else f"{v:.2f}"

        values = [
            ("frames_in", str(received)), ("frames_processed", str(processed)),
            ("frames_dropped", str(dropped)), ("frames_rate_limited", str(rate_skipped)),
            ("bad_frames", str(self.bad_frames)), ("fps", fmt(s["fps"])),
            ("latency_p50_ms", fmt(s["latency_p50_ms"])), ("latency_p95_ms", fmt(s["latency_p95_ms"])),
            ("device", str(seg.device)), ("precision", seg.precision), ("backend", seg.backend),
            ("model", seg.name),
        ]
        return level, msg, values


def wanted_outputs(enabled: dict[str, bool], subscribers: Callable[[str], int]) -> list[str]:
    """Enabled outputs; the rgb8 ones only while someone subscribes."""
    return [n for n, on in enabled.items() if on and (n not in ON_DEMAND or subscribers(n) > 0)]
