"""Ctrl-C and SIGTERM that always end in a clean exit 0 (ROS-free).

A terminal's Ctrl-C reaches every process of the foreground group and
`ros2 launch` forwards one more SIGINT, so a node usually gets two in quick
succession; Python's default handler raises KeyboardInterrupt for each, and
the second lands wherever the shutdown happens to be (a lock, rclpy's
destroy calls) as a traceback. Here the first SIGINT or SIGTERM asks for
shutdown and every later one is ignored. While starting up (imports, model
loading, warm-up) start-up stops at once: the waits for the model thread poll
`check()`, which raises `ShutdownRequested` in the waiting thread's own code.
The handler itself raises only around imports (`interruptible()`): raised
anywhere else, an exception can land between a lock's acquire and its release
inside rclpy or threading, and the shutdown then waits on that lock forever.
While running, the flag is checked by the spin loop between callbacks.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
MODEL_THREAD = "segmentation-model"  # the node's worker thread, which owns the model


class ShutdownRequested(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an error
    """The first SIGINT / SIGTERM, raised while start-up is interruptible."""


class Shutdown:
    def __init__(self) -> None:
        self.requested = threading.Event()
        self.signal_name = ""
        self._interruptible = False

    def install(self) -> Shutdown:
        """Take SIGINT and SIGTERM (main thread only, as Python requires)."""
        for sig in SIGNALS:
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():
            return  # a second Ctrl-C (or launch's forwarded copy): already on the way out
        self.signal_name = signal.Signals(signum).name
        self.requested.set()
        if self._interruptible:
            raise ShutdownRequested(self.signal_name)

    def check(self) -> None:
        """Raise ShutdownRequested if a signal has come (for polling waits)."""
        if self.requested.is_set():
            raise ShutdownRequested(self.signal_name)

    def exiting(self) -> None:
        """Ignore SIGINT / SIGTERM from here on. Python's finalization puts the
        default action back for signals with a Python handler, so a second
        Ctrl-C during interpreter teardown (torch takes a while) would kill the
        process with -2 after a clean shutdown; an ignored signal stays ignored."""
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """Inside: the first signal raises ShutdownRequested (also if it came
        before the block was entered). Only for code that holds no lock another
        thread or the shutdown needs: the imports before anything has started."""
        self.check()
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False


def must_leave_now(shutdown: Shutdown) -> bool:
    """After the node is shut down: stopped by a signal, or the model thread is
    still inside an uninterruptible model load or compile (C++ in torch /
    onnxruntime; finalizing Python under it ended in std::terminate). Either
    way interpreter finalization has nothing left to save and can wait on
    library threads still winding down."""
    return shutdown.requested.is_set() or any(t.name == MODEL_THREAD and t.is_alive() for t in threading.enumerate())


def leave(rc: int) -> None:
    """Exit at once with `rc`, skipping interpreter finalization (see must_leave_now)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
