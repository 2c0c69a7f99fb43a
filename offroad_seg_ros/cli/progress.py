"""What a command shows while it works, on stderr: a frame bar for commands that stream frames
(tqdm, imported when one runs), and timed stage lines for commands whose work is a few long steps
(`Stages`: calibrate, quantize, export, project)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress_bar(desc: str, disable: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A `progress(done, total)` callback drawing a frame counter; the total may grow as it is learnt."""
    from tqdm import tqdm

    with tqdm(unit="frame", desc=desc, dynamic_ncols=True, disable=disable) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield progress


class Stages:
    """The two callbacks the tools take: `stage(what)` prints "[12.3 s] what" (seconds since the
    command started), `frames(done, total)` draws a frame bar under the current stage, closed
    when the next stage begins. Quiet, both print nothing."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.start = time.perf_counter()
        self._bar: Any = None

    def stage(self, what: str) -> None:
        self.close_bar()
        if not self.quiet:
            print(f"[{time.perf_counter() - self.start:.1f} s] {what}", file=sys.stderr, flush=True)

    def frames(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="frame", dynamic_ncols=True, leave=False)
        self._bar.total = total
        self._bar.update(done - self._bar.n)

    def close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextmanager
def stages(quiet: bool = False) -> Iterator[Stages]:
    """`Stages` for one command; its last frame bar is closed however the command ends."""
    reporter = Stages(quiet)
    try:
        yield reporter
    finally:
        reporter.close_bar()
