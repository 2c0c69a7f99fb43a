"""Swapping the model of a running node (ROS-free).

Setting the node's `model` parameter while it is configured calls `request`:
the new artifact loads and warms up on a thread of its own while the model
thread goes on with the old one, so frames arriving during the load are
processed by the old model. Once it is ready, the switch runs on the model
thread through `LatestFrameWorker.call`, which runs between two frames, never
inside one: every frame goes through one whole model, none twice, and the
counts of health.py account for every frame across the swap.

    idle --request--> loading --loaded, warmed up--> ready --switched on the model thread--> idle
                         `--its load, warm-up or check fails--> failed (the old model runs on)

A newer request supersedes one still loading or ready (its model is dropped):
the last one wins. A request for the model in use loads nothing; it is also
how the node sets its parameter back after a failure (`take_revert`). With
`compile` the warm-up runs on the model thread, at the switch: torch.compile's
CUDA graphs belong to the thread that captured them (inference/segmenter.py);
frames wait meanwhile (a newer one replacing a waiting one counts as dropped).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from offroad_seg_ros.core.artifact import ArtifactError
from offroad_seg_ros.inference.segmenter import Segmenter
from offroad_seg_ros.node.health import WARN
from offroad_seg_ros.node.latest import LatestFrameWorker
from offroad_seg_ros.node.shutdown import MODEL_THREAD

IDLE, LOADING, READY, FAILED = "idle", "loading", "ready", "failed"


@dataclass(frozen=True)
class ModelInfo:
    """Which model is in use, for /diagnostics."""

    path: str  # as the `model` parameter names it
    id: str  # <artifact name>@<12 hex digits of weights.safetensors' sha256> (@<path> without that file)
    parent: str  # the artifact it was adapted from (its model.json's provenance.parent); "" if unrecorded
    novelty: str  # the novelty checks: on (pixel score: ...) | off | unavailable: why (Segmenter.novelty_status)

    @classmethod
    def of(cls, seg: Segmenter, path: str) -> ModelInfo:
        art = seg.artifact
        return cls(path, f"{art.name}@{art.weights_digest() or art.path}", art.parent or "", seg.novelty_status)


class ModelSwap:
    """The model in use and its replacement at run time (see the module's docstring).

    `load(path)` builds a Segmenter (not warmed up); `users()` gives every object whose
    `segmenter` attribute is the model (the node, each camera's FramePipeline): the switch
    points them at the new one. Frames run on `worker`'s thread, which also runs the switch.
    """

    def __init__(self, model: Segmenter, path: str, worker: LatestFrameWorker[Any], load: Callable[[str], Segmenter],
                 warm_up_on_worker: bool = False, users: Callable[[], Iterable[Any]] = list) -> None:
        self.model = model
        self.info = ModelInfo.of(model, path)
        self.state = IDLE
        self.swaps = 0
        self.loading = ""  # the path of the newest request
        self.reason = ""  # why the newest request failed
        self._worker, self._load, self._warm_on_worker, self._users = worker, load, warm_up_on_worker, users
        self._lock = threading.Lock()
        self._generation = 0  # of the newest request: an older one's model is dropped
        self._revert: str | None = None

    def request(self, path: str) -> None:
        """The `model` parameter set to `path` (the node's executor thread): load it beside the model in use."""
        with self._lock:
            self._generation += 1
            self._revert = None
            if path == self.info.path:  # nothing to load; a load in progress is dropped when it ends
                self.state = FAILED if self.state == FAILED else IDLE  # a failure stays on show (the revert)
                return
            self.state, self.loading, generation = LOADING, path, self._generation
        # Named as the model thread: a process leaving while a load runs skips interpreter
        # finalization, which can end in std::terminate under a C++ load (shutdown.must_leave_now).
        threading.Thread(target=self._load_and_switch, args=(path, generation), name=MODEL_THREAD,
                         daemon=True).start()

    def take_revert(self) -> str | None:
        """Once after a failed request (and none since): the path of the model in use, for the
        `model` parameter to name again."""
        with self._lock:
            path, self._revert = self._revert, None
        return path

    def diagnostics(self, level: int, message: str,
                    values: list[tuple[str, str]]) -> tuple[int, str, list[tuple[str, str]]]:
        """A camera's (level, message, values) with the model's: its id, its parent, the swaps so far and
        the newest request's state; a failed one is a WARN (the old model runs on) unless worse is shown."""
        with self._lock:
            info, state, swaps = self.info, self.state, self.swaps
            status = {LOADING: f"loading {self.loading}", READY: f"switching to {self.loading}",
                      FAILED: f"failed: {self.reason}"}.get(state, IDLE)
        values = [*values, ("model_id", info.id), ("model_parent", info.parent or "none"),
                  ("model_swaps", str(swaps)), ("model_swap", status), ("novelty", info.novelty)]
        if state == FAILED and level < WARN:
            level, message = WARN, f"model_swap: {status}"
        return level, message, values

    # -- the loader thread -----------------------------------------------------------
    def _load_and_switch(self, path: str, generation: int) -> None:
        try:
            new = self._load(path)
        except Exception as exc:  # noqa: BLE001 - whatever the load raises: the old model stays, with the reason
            self._failed(generation, f"{type(exc).__name__}: {exc}")
            return
        switched = False
        try:
            if new.classes != self.model.classes:
                # The ground outputs' class costs and the published class indices belong to the table.
                raise ArtifactError(f"{path} has another class table than the model in use; change it with a "
                                    f"lifecycle cleanup and configure, or a restart")
            if not self._warm_on_worker:
                new.warm_up()
            info = ModelInfo.of(new, path)  # reads the weights: here, not on the model thread
            with self._lock:
                if generation == self._generation:
                    self.state = READY
            switched = self._worker.call(lambda: self._switch(new, info, generation))
        except Exception as exc:  # noqa: BLE001 - as above; also the worker stopped (the node let go of its model)
            self._failed(generation, f"{type(exc).__name__}: {exc}")
        if not switched:
            new.release()

    def _switch(self, new: Segmenter, info: ModelInfo, generation: int) -> bool:
        """On the model thread, between two frames: every user takes `new`, the old model is released.
        False (nothing changed) when a newer request came meanwhile."""
        if self._warm_on_worker and generation == self._generation:
            new.warm_up()
        with self._lock:
            if generation != self._generation or self._worker.stopped:
                return False
            old, self.model, self.info = self.model, new, info
            self.state, self.swaps = IDLE, self.swaps + 1
        for user in self._users():
            user.segmenter = new
        old.release()
        return True

    def _failed(self, generation: int, reason: str) -> None:
        with self._lock:
            if generation != self._generation or self._worker.stopped:
                return  # superseded, or the node let go of its model meanwhile: nothing to report
            self.state, self.reason, self._revert = FAILED, reason, self.info.path
