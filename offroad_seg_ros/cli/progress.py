"""The progress bar of commands that stream frames (tqdm, imported when one runs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(desc: str, disable: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A `progress(done, total)` callback drawing a frame counter; the total may grow as it is learnt."""
    from tqdm import tqdm

    with tqdm(unit="frame", desc=desc, dynamic_ncols=True, disable=disable) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield progress
