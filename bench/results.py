"""Shared helpers of the benchmark scripts: timing loops and the results table."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


class Table:
    """Results of one run: printed rows (name, value, unit) and values by key (for JSON)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []
        self.values: dict[str, float] = {}

    def row(self, name: str, value: float, unit: str, key: str, digits: int = 2) -> None:
        """Record one result and print it as it comes."""
        self.values[key] = float(value)
        self.rows.append((name, f"{value:,.{digits}f}", unit))
        print(f"{name:<66} {value:>12,.{digits}f} {unit}", flush=True)

    def markdown(self, title: str) -> str:
        lines = [f"| {title} | value | unit |", "| --- | ---: | --- |"]
        return "\n".join(lines + [f"| {n.strip()} | {v} | {u} |" for n, v, u in self.rows])


# The single-table scripts (gpu, ros, soak) record into this one.
DEFAULT = Table()
ROWS, RESULTS, row, markdown = DEFAULT.rows, DEFAULT.values, DEFAULT.row, DEFAULT.markdown


def timeit(fn: Callable[[], object], n: int, warmup: int = 1, sync: Callable[[], None] | None = None) -> np.ndarray:
    """Seconds per call over `n` calls after `warmup` calls; `sync` (e.g. a CUDA
    synchronize) runs after each call so that queued device work is counted."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        out.append(time.perf_counter() - t)
    return np.array(out)


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux /proc), MiB."""
    from pathlib import Path

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
