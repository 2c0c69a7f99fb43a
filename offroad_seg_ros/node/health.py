"""What happened to every frame, and the worst current condition with its
reason, for the node's /diagnostics (ROS-free).

Every frame the subscription delivers ends as exactly one of: processed,
dropped (replaced by a newer one while the model was busy), bad (could not be
converted), rate_limited (max_rate), failed (inference raised); until then it
is in flight (waiting or being processed, at most two). So at every report
frames_in = processed + dropped + bad + rate_limited + failed + in_flight.
Frames that never reached the node are counted apart, from gaps in the header
stamps (stamp_gaps.py): frames_lost_upstream.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass, fields

from offroad_seg_ros.core.stamps import StampLike, to_ns, to_seconds
from offroad_seg_ros.node.stamp_gaps import StampGaps
from offroad_seg_ros.node.stats import RateLatency

OK, WARN, ERROR = 0, 1, 2
# Frames missing upstream above this share of a report's frames is a WARN: a lost frame now
# and then is not, most frames of a 960x540 camera over best effort without the profile are.
LOST_UPSTREAM_WARN = 0.1
LOST_UPSTREAM_CAUSE = ("best-effort transport dropping large frames (give the node and the camera driver "
                       "the Fast DDS large-frame profile, config/fastdds_large_frames.xml) or the camera driver")


@dataclass
class Counts:
    frames_in: int = 0
    processed: int = 0
    dropped: int = 0
    bad: int = 0
    rate_limited: int = 0
    failed: int = 0

    @property
    def in_flight(self) -> int:
        return self.frames_in - (self.processed + self.dropped + self.bad + self.rate_limited + self.failed)

    def __sub__(self, other: Counts) -> Counts:
        return Counts(*(a - b for a, b in zip(astuple(self), astuple(other))))


def _fmt(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.2f}"


class Health:
    """Counts and reasons for one input topic; `report` once per period."""

    def __init__(self, topic: str = "image", stale_after: float = 3.0):
        self.topic = topic
        self.stale_after = stale_after  # seconds without input before a WARN
        self.processed = self.bad = self.failed = self.unstamped = 0
        self.last_bad = self.last_failure = ""
        # Frames the camera checks flagged (data/camera_checks.py): not a fate of their own,
        # they are processed (or withheld, which counts as processed) like any other.
        self.degraded = self._prev_degraded = 0
        self.last_degraded = ""
        # The novelty of the last segmented frame (None: not scored), and frames unlike the training data.
        self.novel_pixels: int | None = None
        self.shift: float | None = None
        self.shifted = self._prev_shifted = 0
        self.last_shift = ""
        self.stats = RateLatency()
        self.upstream = StampGaps()  # fed with each arriving frame's stamp (node/camera.py)
        self._prev_upstream = (0, 0)  # (lost, seen) at the last report
        self._prev = Counts()
        self._prev_time: float | None = None
        self._last_input: float | None = None

    def frame_bad(self, reason: str) -> None:
        self.bad += 1
        self.last_bad = reason

    def frame_degraded(self, conditions: str) -> None:
        self.degraded += 1
        self.last_degraded = conditions

    def frame_scored(self, novel_pixels: int | None, shift: float | None, shifted: bool,
                     limit: float | None) -> None:
        """A segmented frame's novel pixel count and shift score; `shifted`: above `limit`."""
        self.novel_pixels, self.shift = novel_pixels, shift
        if shifted:
            self.shifted += 1
            self.last_shift = f"frame unlike the training data (shift {shift:.1f} > {limit:.1f})"

    def frame_failed(self, reason: str) -> None:
        self.failed += 1
        self.last_failure = reason

    def frame_done(self, stamp: StampLike, now_sec: float, done_at: float | None = None) -> None:
        """A processed frame; its latency from the header stamp to `now_sec`
        (the node's clock). Unstamped frames (stamp 0, common in simulators and
        test publishers) are counted and left out of the latency figures."""
        self.processed += 1
        if to_ns(stamp) == 0:
            self.unstamped += 1
            self.stats.add_frame(done_at)
        else:
            self.stats.add(max(0.0, now_sec - to_seconds(stamp)), done_at)

    def counts(self, received: int, dropped: int, rate_limited: int, other_failures: int = 0) -> Counts:
        """Totals, given the subscription's and the worker's own counters. Read
        the outcome counters before `received` so in_flight is never negative."""
        return Counts(frames_in=received + rate_limited, processed=self.processed, dropped=dropped, bad=self.bad,
                      rate_limited=rate_limited, failed=self.failed + other_failures)

    def report(self, total: Counts, now: float,
               extra: list[tuple[int, str]] | None = None) -> tuple[int, str, list[tuple[str, str]]]:
        """(level, message, key/values) for a diagnostic_msgs/DiagnosticStatus:
        the worst condition of the window since the last report, with its
        reason; `extra` conditions (e.g. the ground outputs') compete too."""
        window = total - self._prev
        degraded, self._prev_degraded = self.degraded - self._prev_degraded, self.degraded
        shifted, self._prev_shifted = self.shifted - self._prev_shifted, self.shifted
        up = self.upstream
        lost, seen = up.lost - self._prev_upstream[0], up.seen - self._prev_upstream[1]
        self._prev_upstream = (up.lost, up.seen)
        period = now - self._prev_time if self._prev_time is not None else math.nan
        if self._last_input is None:
            self._last_input = now  # silence is measured from the first report
        if window.frames_in:
            self._last_input = now
        self._prev, self._prev_time = total, now
        s = self.stats.summary(now)
        span = f"in the last {period:.1f} s" if not math.isnan(period) else "so far"
        quiet = now - self._last_input
        if window.failed:
            level, msg = ERROR, f"{window.failed} inference failure(s) {span}: {self.last_failure}"
        elif window.bad and not window.processed:
            level, msg = ERROR, f"all {window.bad} frames {span} were bad: {self.last_bad}"
        elif window.bad:
            level, msg = WARN, f"{window.bad} of {window.frames_in} frames {span} were bad: {self.last_bad}"
        elif degraded:
            level, msg = WARN, (f"camera degraded in {degraded} of {window.frames_in} frames {span}: "
                                f"{self.last_degraded}")
        elif shifted:
            level, msg = WARN, f"{self.last_shift}: {shifted} of {window.frames_in} frames {span}"
        elif lost > LOST_UPSTREAM_WARN * (lost + seen):
            level, msg = WARN, (f"{lost} of {lost + seen} frames {span} missing upstream (stamps skip): "
                                f"{LOST_UPSTREAM_CAUSE}")
        elif total.frames_in == 0:
            level, msg = WARN, f"no frames received on {self.topic} yet"
        elif quiet >= self.stale_after:
            level, msg = WARN, f"no frames on {self.topic} for {quiet:.1f} s"
        elif s["fps"] > 0 and not math.isnan(s["latency_p50_ms"]):
            level, msg = OK, f"{s['fps']:.1f} fps, p50 {s['latency_p50_ms']:.1f} ms"
        else:
            level, msg = OK, f"{s['fps']:.1f} fps"
        for extra_level, extra_msg in extra or []:
            if extra_level > level:
                level, msg = extra_level, extra_msg
        values = [(f.name if f.name == "frames_in" else _KEYS[f.name], str(getattr(total, f.name)))
                  for f in fields(Counts)]
        values += [
            ("frames_in_flight", str(total.in_flight)), ("unstamped_frames", str(self.unstamped)),
            ("frames_lost_upstream", str(up.lost)), ("lost_upstream_share", f"{up.share:.3f}"),
            ("fps", _fmt(s["fps"])), ("latency_p50_ms", _fmt(s["latency_p50_ms"])),
            ("latency_p95_ms", _fmt(s["latency_p95_ms"])),
            ("last_bad_frame", self.last_bad or "none"), ("last_failure", self.last_failure or "none"),
            ("degraded_frames", str(self.degraded)), ("last_camera_condition", self.last_degraded or "none"),
            ("novel_pixels", "n/a" if self.novel_pixels is None else str(self.novel_pixels)),
            ("shift", "n/a" if self.shift is None else f"{self.shift:.2f}"), ("shifted_frames", str(self.shifted)),
        ]
        return level, msg, values


_KEYS = {"processed": "frames_processed", "dropped": "frames_dropped", "bad": "bad_frames",
         "rate_limited": "frames_rate_limited", "failed": "inference_failures"}
