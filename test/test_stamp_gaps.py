"""Frames lost upstream of the node (node/stamp_gaps.py), from gaps in the header stamps, and how
/diagnostics reports them (node/health.py), without ROS: deterministic stamp sequences."""

from __future__ import annotations

import random

import pytest
from rosutil import compressed_cdr, image_cdr, random_rgb

from offroad_seg_ros.core.stamps import NS_PER_S
from offroad_seg_ros.data.image_msgs import header_stamp_ns
from offroad_seg_ros.node.camera import Camera
from offroad_seg_ros.node.health import OK, WARN, Counts, Health
from offroad_seg_ros.node.pipeline import FramePipeline
from offroad_seg_ros.node.stamp_gaps import StampGaps

MS = 1_000_000  # ns
T0 = 1_000 * NS_PER_S


def stamps(n: int, period_ms: float, start: int = T0, missing=(), jitter: float = 0.0, seed: int = 0) -> list[int]:
    """n frames every period_ms from `start`, less the `missing` indices; each stamp moved by up to
    +-jitter periods (uniform, seeded)."""
    rng = random.Random(seed)
    return [start + round((i + rng.uniform(-jitter, jitter)) * period_ms * MS)
            for i in range(n) if i not in missing]


def fed(sequence: list[int], gaps: StampGaps | None = None) -> StampGaps:
    gaps = gaps or StampGaps()
    for ns in sequence:
        gaps.add(ns)
    return gaps


def test_steady_10hz_with_three_missing_frames_counts_three():
    gaps = fed(stamps(50, 100, missing={20, 30, 31}))  # a gap of 2 periods and one of 3
    assert (gaps.lost, gaps.seen) == (3, 47)
    assert gaps.period_ns == pytest.approx(100 * MS)
    assert gaps.share == pytest.approx(3 / 50)
    assert fed(stamps(50, 100)).lost == 0


@pytest.mark.parametrize("seed", range(20))
def test_jitter_of_20_percent_counts_nothing_and_gaps_still_count(seed):
    assert fed(stamps(1000, 100, jitter=0.2, seed=seed)).lost == 0
    assert fed(stamps(300, 100, missing={100, 200, 201}, jitter=0.2, seed=seed)).lost == 3


def test_nothing_counts_while_the_period_is_learnt():
    assert fed(stamps(9, 100)).period_ns is None  # 8 differences: not known yet
    assert fed(stamps(10, 100)).period_ns == pytest.approx(100 * MS)
    assert fed(stamps(12, 100, missing={5})).lost == 0  # a gap in the first frames is not counted


def test_stamps_going_back_start_the_estimate_again():
    gaps = fed(stamps(30, 100, missing={20}))
    assert gaps.lost == 1
    # A bag loop: back to the first stamp, now at 5 Hz. Without the reset its first frames would
    # be read against the 10 Hz period; after it, the new period is learnt and followed.
    fed(stamps(40, 200, missing={30}), gaps)
    assert gaps.lost == 2 and gaps.period_ns == pytest.approx(200 * MS)
    fed([T0 - 5 * NS_PER_S], gaps)  # back again
    assert gaps.period_ns is None and gaps.lost == 2


@pytest.mark.parametrize(("new_ms", "missing_at_new_rate"), [(200, 1), (50, 1), (300, 2)])
def test_a_rate_change_is_followed(new_ms, missing_at_new_rate):
    before = stamps(40, 100)
    after = [before[-1] + (i + 1) * new_ms * MS for i in range(60)]
    gaps = fed(before + after)
    assert gaps.lost == 0 and gaps.period_ns == pytest.approx(new_ms * MS)
    # and frames missing at the new rate count at that rate
    lost = set(range(50, 50 + missing_at_new_rate))
    gaps = fed(before + [t for i, t in enumerate(after) if i not in lost])
    assert gaps.lost == missing_at_new_rate


def test_repeated_copies_unstamped_frames_and_pauses_count_nothing():
    copies = [t for ns in stamps(40, 100, missing={25}) for t in (ns, ns, 0)]  # resent copies; stamp 0
    gaps = fed(copies)
    assert (gaps.lost, gaps.seen) == (1, 39)
    # the camera stops for 20 s (200 periods) and comes back: silence, reported as such elsewhere
    fed(stamps(20, 100, start=copies[-2] + 20 * NS_PER_S), gaps)
    assert gaps.lost == 1


@pytest.mark.parametrize("seed", range(5))
def test_most_frames_missing_is_counted_close_to_the_truth(seed):
    # What best effort does to 960x540 frames without the large-frame profile: 80% lost.
    rng = random.Random(seed)
    arrived = [i for i in range(1000) if i == 0 or rng.random() > 0.8]
    gaps = fed([T0 + i * 100 * MS for i in arrived])
    truth = arrived[-1] + 1 - len(arrived)
    assert 0.85 * truth <= gaps.lost <= truth


def test_header_stamp_read_from_serialized_frames():
    rgb = random_rgb()
    assert header_stamp_ns(image_cdr(rgb, sec=12, nanosec=345)) == 12 * NS_PER_S + 345
    assert header_stamp_ns(image_cdr(rgb, sec=3, encoding="xyz9")) == 3 * NS_PER_S  # a bad frame still arrived
    assert header_stamp_ns(compressed_cdr(b"\xff\xd8 not a jpeg", sec=7)) == 7 * NS_PER_S
    assert header_stamp_ns(b"\x00\x01\x00\x00\x01") is None  # no header: counted bad where it is parsed


def test_the_camera_counts_every_arriving_frame_before_its_fate():
    # Camera.arrived is what the node's subscription callback calls for every frame, before
    # max_rate and the newest-frame policy: those frames must not look lost.
    health = Health()
    cam = Camera("", FramePipeline(None, health=health))  # type: ignore[arg-type]  # no model needed
    for i in range(30):
        if i not in (12, 13):
            cam.arrived(image_cdr(random_rgb(4, 4), sec=1, nanosec=i * 50 * MS))
        cam.accept(float(i), 10.0)  # max_rate turns most of them away
    assert (health.upstream.lost, health.upstream.seen) == (2, 28)


def _report(health: Health, now: float, frames_in: int):
    return health.report(Counts(frames_in=frames_in, processed=frames_in), now)


def test_diagnostics_warn_when_many_frames_are_missing_upstream():
    h = Health("/cam/image")
    fed(stamps(31, 100), h.upstream)
    level, msg, values = _report(h, 1.0, 31)
    assert level == OK and dict(values)["frames_lost_upstream"] == "0"
    assert dict(values)["lost_upstream_share"] == "0.000"
    # the next second: 8 of 10 frames arrive (2 missing of 10, 20% > 10%)
    fed([T0 + (30 + i) * 100 * MS for i in (1, 2, 3, 5, 6, 7, 9, 10)], h.upstream)
    level, msg, values = _report(h, 2.0, 39)
    assert (level, msg.split(":")[0]) == (WARN, "2 of 10 frames in the last 1.0 s missing upstream (stamps skip)")
    assert "Fast DDS large-frame profile" in msg and "camera driver" in msg
    v = dict(values)
    assert v["frames_lost_upstream"] == "2" and v["lost_upstream_share"] == f"{2 / 41:.3f}"
    assert v["frames_dropped"] == "0"  # the node's own drops are another count
    # one missing of 21 the second after: under the threshold, OK again; the total stays
    fed([T0 + (40 + i) * 100 * MS for i in range(1, 22) if i != 11], h.upstream)
    level, _, values = _report(h, 3.0, 59)
    assert level == OK and dict(values)["frames_lost_upstream"] == "3"


def test_bad_frames_outrank_frames_missing_upstream():
    h = Health()
    fed(stamps(40, 100, missing=set(range(20, 30))), h.upstream)
    h.frame_bad("unsupported encoding")
    level, msg, _ = h.report(Counts(frames_in=30, processed=29, bad=1), 1.0)
    assert level == WARN and "were bad" in msg
    assert h.upstream.share == pytest.approx(10 / 40)
