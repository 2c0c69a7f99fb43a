"""Newest-frame worker: inference never queues behind the camera.

`submit` never blocks: a frame that arrives while the model is busy replaces
the waiting one of its source (`key`, e.g. the camera), which counts as
dropped. One thread runs the model on the newest frame of every source that
has one: with `batch=True` they come as one {key: item} batch (several
cameras, one forward pass), otherwise one item per call. `call` runs other
work (loading the model, switching to a new one: model_swap.py) on that
thread, between two frames.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class LatestFrameWorker(Generic[T]):
    def __init__(self, process: Callable[[Any], None], on_error: Callable[[Any, BaseException], None] | None = None,
                 name: str = "inference", batch: bool = False):
        self._process = process
        self._on_error = on_error
        self._batch = batch
        self._cond = threading.Condition()
        self._pending: dict[Any, T] = {}
        self._busy = False
        self._stopping = False
        self._calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self.received_by: dict[Any, int] = {}
        self.dropped_by: dict[Any, int] = {}
        self.processed = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def received(self) -> int:
        return sum(self.received_by.values())

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by.values())

    @property
    def stopped(self) -> bool:
        """`stop` was called: no more frames or calls are taken."""
        return self._stopping

    def submit(self, item: T, key: Any = None) -> None:
        with self._cond:
            self.received_by[key] = self.received_by.get(key, 0) + 1
            if key in self._pending:
                self.dropped_by[key] = self.dropped_by.get(key, 0) + 1
            self._pending[key] = item
            self._cond.notify()

    def call(self, fn: Callable[[], R], interrupt: Callable[[], None] | None = None) -> R:
        """Run `fn` on the worker thread, ahead of any waiting frame, and
        return its result (or raise its exception) here. `interrupt` is
        called every 50 ms while waiting: what it raises ends the wait (the
        call itself runs on; a model load cannot be interrupted)."""
        future: Future[R] = Future()
        with self._cond:
            if self._stopping:
                raise RuntimeError("the worker is stopped")
            self._calls.append((fn, future))
            self._cond.notify()
        while interrupt is not None and not future.done():
            interrupt()
            wait([future], timeout=0.05)
        return future.result()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._pending or self._calls or self._stopping):
                    self._cond.wait()
                if self._stopping:
                    break
                call = self._calls.popleft() if self._calls else None
                if call is None:
                    batch, self._pending = self._pending, {}
                self._busy = True
            try:
                if call is not None:
                    self._run_call(*call)
                else:
                    self._run_frame(batch)
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

    def _run_frame(self, batch: dict[Any, T]) -> None:
        try:
            self._process(batch if self._batch else next(iter(batch.values())))
            self.processed += len(batch)
        except Exception as exc:  # noqa: BLE001 - a bad frame must not stop the worker
            self.failed += len(batch)
            if self._on_error:
                self._on_error(batch, exc)

    def idle(self, timeout: float = 5.0) -> bool:
        """Wait until nothing is pending or being processed (for tests and shutdown)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._cond:
                if not self._pending and not self._busy:
                    return True
            time.sleep(0.001)
        return False

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop taking frames and end the thread; False if it is still busy
        after `timeout` (e.g. inside a long model load, which cannot be interrupted)."""
        with self._cond:
            self._stopping = True
            for key in self._pending:
                self.dropped_by[key] = self.dropped_by.get(key, 0) + 1
            self._pending = {}
            self._cond.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()
