"""Newest-frame worker: inference never queues behind the camera.

`submit` never blocks: a frame that arrives while the model is busy replaces
the waiting one, which counts as dropped. One thread runs the model on the
newest frame only; `call` runs other work (loading the model) on that thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class LatestFrameWorker(Generic[T]):
    def __init__(self, process: Callable[[T], None], on_error: Callable[[T, BaseException], None] | None = None,
                 name: str = "inference"):
        self._process = process
        self._on_error = on_error
        self._cond = threading.Condition()
        self._pending: T | None = None
        self._has_pending = False
        self._busy = False
        self._stopping = False
        self._calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> None:
        with self._cond:
            self.received += 1
            if self._has_pending:
                self.dropped += 1
            self._pending, self._has_pending = item, True
            self._cond.notify()

    def call(self, fn: Callable[[], R]) -> R:
        """Run `fn` on the worker thread, ahead of any waiting frame, and
        return its result (or raise its exception) here."""
        future: Future[R] = Future()
        with self._cond:
            if self._stopping:
                raise RuntimeError("the worker is stopped")
            self._calls.append((fn, future))
            self._cond.notify()
        return future.result()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._has_pending or self._calls or self._stopping):
                    self._cond.wait()
                if self._stopping:
                    break
                call = self._calls.popleft() if self._calls else None
                if call is None:
                    item, self._pending, self._has_pending = self._pending, None, False
                self._busy = True
            try:
                if call is not None:
                    self._run_call(*call)
                else:
                    self._run_frame(item)  # type: ignore[arg-type]
            finally:
                with self._cond:
                    self._busy = False
        with self._cond:
            while self._calls:
                self._calls.popleft()[1].set_exception(RuntimeError("the worker stopped"))

    @staticmethod
    def _run_call(fn: Callable[[], Any], future: Future[Any]) -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            future.set_exception(exc)

    def _run_frame(self, item: T) -> None:
        try:
            self._process(item)
            self.processed += 1
        except Exception as exc:  # noqa: BLE001 - a bad frame must not stop the worker
            self.failed += 1
            if self._on_error:
                self._on_error(item, exc)

    def idle(self, timeout: float = 5.0) -> bool:
        """Wait until nothing is pending or being processed (for tests and shutdown)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._cond:
                if not self._has_pending and not self._busy:
                    return True
            time.sleep(0.001)
        return False

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            if self._has_pending:
                self.dropped += 1
            self._pending, self._has_pending = None, False
            self._cond.notify()
        self._thread.join(timeout)
