"""Frames lost upstream of the node, from gaps in one camera's header stamps (ROS-free).

A camera stamps its frames about one period apart; a stamp k periods after the previous one
means k - 1 frames never reached the node: dropped by the transport (best-effort DDS loses
most 960x540 frames without the large-frame profile, docs/input-and-diagnostics.md) or by the
driver. Frames the node itself drops (newest-frame policy, max_rate) did arrive and are not
counted here: the stamps are read as frames arrive, before either.

The period is estimated from the stamps, so no camera rate is configured: learnt from the
first LEARN differences (nothing is counted before), then followed over the last WINDOW, each
difference as a whole number of periods, so gaps don't stretch it. Stamp jitter up to +-20% of
the period counts nothing. A camera that slows down looks like a gap every frame at first: gaps
that repeat alike are held back, and RATE_CHANGE_RUN of them in a row become the new period
instead of losses (with jitter under about +-10%; more, and some count before it is followed).
Stamps going back (a bag loop, a simulator reset) start the estimate again; stamp 0 and another
copy of the last frame are ignored. With most frames missing the count stays a lower bound,
close with steady stamps (bench/ros_bench.py --only large_frames measures it against the truth).
"""

from __future__ import annotations

import statistics
from collections import deque

# The CDR reader's own primitives: the header alone, without parsing (or refusing) the rest.

WINDOW = 31  # stamp differences the period is estimated from
LEARN = 9  # differences before the period is known (and gaps are counted)
RATE_CHANGE_RUN = 8  # the same gap this many times in a row: the camera slowed down
PAUSE_PERIODS = 50  # a longer gap is a pause (reported as silence), not lost frames
LONGER = 1.25  # a difference this many periods or more is a gap, or a slower camera
SAME_GAP = 0.25  # gaps within this share of each other are alike (a possible new rate)
FIT = 0.15  # a shorter period must fit every difference to this share of a period


class StampGaps:
    """Frames missing between consecutive header stamps of one camera."""

    def __init__(self) -> None:
        self.seen = 0  # distinct stamped frames that arrived
        self.lost = 0  # frames missing between them
        self.restart()

    def restart(self) -> None:
        """Forget the stream, not the counts: time went back, or the node stopped listening."""
        self._last: int | None = None
        self._diffs: deque[int] = deque(maxlen=WINDOW)
        self._period: float | None = None
        self._run: list[int] = []  # alike gaps in a row, their losses held back in _pending
        self._pending = 0

    @property
    def period_ns(self) -> float | None:
        """The estimated period; None while it is being learnt."""
        return self._period

    @property
    def share(self) -> float:
        """Lost frames as a share of all the camera sent while it was watched."""
        return self.lost / (self.lost + self.seen) if self.lost else 0.0

    def add(self, ns: int) -> None:
        """One arriving frame's header stamp, in ns (core/stamps.py)."""
        if ns == 0 or ns == self._last:
            return  # unstamped (simulators, test publishers), or another copy of the last frame
        last, self._last = self._last, ns
        self.seen += 1
        if last is None:
            return
        if ns < last:  # a bag loop, a simulator reset
            self._commit()
            self.restart()
            self._last = ns
            return
        self._step(ns - last)

    def _commit(self) -> None:
        self.lost += self._pending
        self._pending = 0
        self._run = []

    def _step(self, d: int) -> None:
        p = self._period
        if p is None:
            self._diffs.append(d)
            if len(self._diffs) >= LEARN:  # from the mean: jitter cancels in a sum (not in a median)
                self._period = self._refit(statistics.fmean(self._diffs))
            return
        k = round(d / p)
        if k > PAUSE_PERIODS:
            self._commit()
            return
        self._diffs.append(d)
        longer = d >= LONGER * p
        if not longer or not self._alike(d):
            self._commit()
        if longer:  # k - 1 frames missing, or the camera slowed down: held back while alike gaps repeat
            self._run.append(d)
            self._pending += max(0, k - 1)
            if len(self._run) == RATE_CHANGE_RUN:
                self._diffs = deque(self._run, maxlen=WINDOW)
                self._run, self._pending = [], 0
                p = statistics.median(self._diffs)
        self._period = self._refit(p)

    def _alike(self, d: int) -> bool:
        """`d` is like the gaps held back so far (or there are none)."""
        if not self._run:
            return True
        m = statistics.median(self._run)
        return abs(d - m) <= SAME_GAP * m

    def _refit(self, q: float) -> float:
        """The period from the window, each difference taken as a whole number of periods of
        about `q`: sum of differences / sum of periods (a stamp's jitter counts once, not in
        every difference). Or a clearly shorter period that fits every difference: what a
        period learnt while most frames were missing (or a camera that sped up) comes down to."""
        p = sum(self._diffs) / sum(max(1, round(d / q)) for d in self._diffs)
        ordered = sorted(self._diffs)
        small = ordered[1]  # the second shortest: one odd difference can't decide
        if small > 0.8 * p:
            return p
        near = [d for d in ordered if d < 3.5 * small]  # a few times the shortest: their count is sure
        for m in (1, 2, 3):  # the shortest difference may itself be two or three periods
            c = sum(near) / sum(round(d * m / small) for d in near)
            if all(abs(d / c - round(d / c)) < FIT for d in ordered):
                return c
        return p
