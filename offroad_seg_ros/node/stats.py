"""Rolling frame-rate and latency statistics for the node's diagnostics."""

from __future__ import annotations

import time
from collections import deque

import numpy as np


class RateLatency:
    """Completion times and latencies (seconds) over the last `window` seconds.
    A frame without a latency (unstamped) counts for the rate only."""

    def __init__(self, window: float = 5.0, maxlen: int = 10000):
        self.window = window
        self._done: deque[float] = deque(maxlen=maxlen)
        self._lat: deque[tuple[float, float]] = deque(maxlen=maxlen)

    def add(self, latency: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._done.append(now)
        self._lat.append((now, latency))

    def add_frame(self, now: float | None = None) -> None:
        self._done.append(time.monotonic() if now is None else now)

    def _trim(self, now: float) -> None:
        while self._done and self._done[0] < now - self.window:
            self._done.popleft()
        while self._lat and self._lat[0][0] < now - self.window:
            self._lat.popleft()

    def summary(self, now: float | None = None) -> dict[str, float]:
        now = time.monotonic() if now is None else now
        self._trim(now)
        nan = float("nan")
        if not self._done:
            return {"fps": 0.0, "latency_p50_ms": nan, "latency_p95_ms": nan}
        span = max(now - self._done[0], 1e-9) if len(self._done) > 1 else self.window
        lat = np.fromiter((v for _, v in self._lat), float)
        return {
            "fps": len(self._done) / min(span, self.window) if len(self._done) > 1 else 1 / self.window,
            "latency_p50_ms": float(np.percentile(lat, 50) * 1e3) if lat.size else nan,
            "latency_p95_ms": float(np.percentile(lat, 95) * 1e3) if lat.size else nan,
        }
