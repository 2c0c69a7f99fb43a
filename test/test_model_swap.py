"""Swapping the model of a running node, without ROS (offroad_seg_ros/node/model_swap.py): real
Segmenters on a real LatestFrameWorker, with loads held back by the test to order events."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import make_artifact
from rosutil import random_rgb

from offroad_seg_ros.core.artifact import read_artifact, update_artifact
from offroad_seg_ros.inference.segmenter import Segmenter
from offroad_seg_ros.node.health import OK, WARN
from offroad_seg_ros.node.latest import LatestFrameWorker
from offroad_seg_ros.node.model_swap import FAILED, IDLE, LOADING, READY, ModelSwap
from offroad_seg_ros.node.shutdown import MODEL_THREAD

PARENT = "tiny-random@0123456789ab"


def wait_for(done: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < end, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.005)


def load(path: str | Path) -> Segmenter:
    return Segmenter(path, device="cpu", warmup_size=None)


@pytest.fixture(scope="module")
def model_b(tmp_path_factory, table):
    """Other weights (another seed), another name, and the parent it records."""
    path = make_artifact(tmp_path_factory.mktemp("b") / "b", table, seed=1)
    update_artifact(path, name="tiny-b", provenance={"parent": PARENT})
    return path


@pytest.fixture(scope="module")
def model_c(tmp_path_factory, table):
    path = make_artifact(tmp_path_factory.mktemp("c") / "c", table, seed=2)
    update_artifact(path, name="tiny-c")
    return path


class Holder:
    """What the node is to the swap: an object whose `segmenter` is the model in use."""

    def __init__(self, segmenter: Segmenter):
        self.segmenter = segmenter


class Rig:
    """A worker whose frames go through `holder.segmenter`, as the node's do; each processed frame is
    logged with the model it started with and whether that was still the model in use at its end."""

    def __init__(self, model: str | Path, loader: Callable[[str], Segmenter] = load):
        self.holder = Holder(load(model))
        self.first = self.holder.segmenter
        self.log: list[tuple[int, Segmenter, bool, np.ndarray]] = []
        self.worker: LatestFrameWorker[tuple[int, threading.Event | None]] = LatestFrameWorker(self._frame)
        self.swap = ModelSwap(self.first, str(model), self.worker, loader, users=lambda: [self.holder])
        self.in_frame = threading.Event()

    def _frame(self, item: tuple[int, threading.Event | None]) -> None:
        n, hold = item
        seg = self.holder.segmenter
        if hold is not None:  # the test decides what happens while this frame is in the model
            self.in_frame.set()
            hold.wait(60)
        mask = seg(random_rgb(seed=n)).mask
        self.log.append((n, seg, self.holder.segmenter is seg, mask))

    def frame(self, n: int, hold: threading.Event | None = None) -> None:
        """Submit frame n; without `hold`, wait until it is processed."""
        before = self.worker.processed
        self.worker.submit((n, hold))
        if hold is None:
            wait_for(lambda: self.worker.processed > before, f"frame {n}")

    def close(self) -> None:
        self.worker.stop()


def released(seg: Segmenter) -> bool:
    return not hasattr(seg, "runtime")  # Segmenter.release drops it


def diagnostics(swap: ModelSwap) -> tuple[int, str, dict[str, str]]:
    level, message, values = swap.diagnostics(OK, "30.0 fps", [("frames_in", "3")])
    return level, message, dict(values)


def held_loader(gate: threading.Event, made: list[Segmenter]) -> Callable[[str], Segmenter]:
    """A loader held back until `gate` is set (the test decides when a load ends), keeping what it made."""
    def held_load(path: str) -> Segmenter:
        gate.wait(60)
        made.append(load(path))
        return made[-1]

    return held_load


def test_a_frame_during_the_load_runs_on_the_old_model_and_the_next_on_the_new(tiny_artifact, model_b):
    gate, started, made = threading.Event(), threading.Event(), []

    def held_load(path: str) -> Segmenter:
        started.set()
        gate.wait(60)
        made.append(load(path))
        return made[-1]

    rig = Rig(tiny_artifact, held_load)
    a, b = load(tiny_artifact), load(model_b)
    try:
        rig.swap.request(str(model_b))
        wait_for(started.is_set, "the load to start")
        assert rig.swap.state == LOADING
        rig.frame(1)  # arrives while B loads
        assert rig.log[-1][1] is rig.first
        np.testing.assert_array_equal(rig.log[-1][3], a(random_rgb(seed=1)).mask)
        assert diagnostics(rig.swap)[2]["model_swap"] == f"loading {model_b}"
        gate.set()
        wait_for(lambda: rig.swap.swaps == 1, "the switch")
        assert rig.holder.segmenter is made[0] and rig.swap.model is made[0] and rig.swap.state == IDLE
        assert released(rig.first)  # its memory goes back at the switch
        rig.frame(2)
        assert rig.log[-1][1] is made[0]
        want = b(random_rgb(seed=2)).mask
        assert not np.array_equal(want, a(random_rgb(seed=2)).mask)  # the two models tell apart
        np.testing.assert_array_equal(rig.log[-1][3], want)
    finally:
        gate.set()
        rig.close()


def test_the_switch_waits_for_the_frame_in_the_model(tiny_artifact, model_b):
    rig = Rig(tiny_artifact)
    hold = threading.Event()
    try:
        rig.frame(1, hold)
        wait_for(rig.in_frame.is_set, "frame 1 in the model")
        rig.swap.request(str(model_b))
        # B is loaded and warmed up; the switch waits on the model thread behind frame 1.
        wait_for(lambda: rig.swap.state == READY, "B ready to switch")
        assert rig.holder.segmenter is rig.first and diagnostics(rig.swap)[2]["model_swap"] == f"switching to {model_b}"
        rig.worker.submit((2, None))  # waits behind the switch
        hold.set()
        wait_for(lambda: len(rig.log) == 2, "both frames")
        (n1, seg1, whole1, _), (n2, seg2, whole2, _) = rig.log
        assert (n1, seg1, whole1) == (1, rig.first, True)  # all of frame 1 on A: the switch came after it
        assert (n2, seg2, whole2) == (2, rig.swap.model, True) and seg2 is not rig.first
        assert rig.worker.processed == 2 and rig.worker.dropped == 0 and rig.swap.swaps == 1
    finally:
        hold.set()
        rig.close()


def _bad_json(d: Path) -> None:
    (d / "model.json").write_text("{not json")


def _bad_weights(d: Path) -> None:
    (d / "weights.safetensors").write_bytes(b"\x00" * 64)


def _other_classes(d: Path) -> None:
    meta = json.loads((d / "model.json").read_text())
    meta["classes"]["classes"][2]["cost"] = 99  # Dry Grass
    (d / "model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("breakage, reason", [
    (None, "does not exist"),
    (_bad_json, "not valid JSON"),
    (_bad_weights, "not a readable safetensors file"),
    (_other_classes, "another class table than the model in use"),
])
def test_a_failed_load_keeps_the_old_model_and_says_why(tiny_artifact, model_b, tmp_path, breakage, reason):
    broken = tmp_path / "broken"
    if breakage is not None:
        shutil.copytree(model_b, broken)
        breakage(broken)
    rig = Rig(tiny_artifact)
    try:
        before = diagnostics(rig.swap)[2]["model_id"]
        rig.swap.request(str(broken))
        wait_for(lambda: rig.swap.state == FAILED, "the failure")
        assert reason in rig.swap.reason
        assert rig.holder.segmenter is rig.first and not released(rig.first) and rig.swap.swaps == 0
        level, message, values = diagnostics(rig.swap)
        assert level == WARN and message == f"model_swap: failed: {rig.swap.reason}"
        assert values["model_swap"].startswith("failed: ") and values["model_id"] == before
        # The node sets its parameter back to the model in use, once; that request loads nothing.
        assert rig.swap.take_revert() == str(tiny_artifact) and rig.swap.take_revert() is None
        rig.swap.request(str(tiny_artifact))
        assert rig.swap.state == FAILED and diagnostics(rig.swap)[0] == WARN  # still on show
        rig.frame(1)
        assert rig.log[-1][1] is rig.first
        # Worse conditions of the frames win over it.
        assert rig.swap.diagnostics(2, "1 inference failure(s)", [])[:2] == (2, "1 inference failure(s)")
    finally:
        rig.close()


def test_two_requests_in_a_row_the_last_wins(tiny_artifact, model_b, model_c):
    missing = str(model_b) + "-missing"
    gates = {path: threading.Event() for path in (str(model_b), str(model_c), missing)}
    made: dict[str, Segmenter] = {}

    def held_load(path: str) -> Segmenter:
        gates[path].wait(60)
        made[path] = load(path)
        return made[path]

    def loads_over() -> bool:  # the loader threads are named as the model thread (model_swap.py)
        return not any(t.name == MODEL_THREAD for t in threading.enumerate())

    rig = Rig(tiny_artifact, held_load)
    try:
        rig.swap.request(str(model_b))
        rig.swap.request(str(model_c))
        gates[str(model_c)].set()  # C ends first ...
        wait_for(lambda: rig.swap.swaps == 1, "the switch to C")
        assert rig.holder.segmenter is made[str(model_c)]
        gates[str(model_b)].set()  # ... and B, superseded, is dropped when its load ends
        wait_for(loads_over, "B's load to end")
        assert released(made[str(model_b)])
        assert rig.holder.segmenter is made[str(model_c)] and rig.swap.swaps == 1 and rig.swap.state == IDLE
        assert diagnostics(rig.swap)[2]["model_id"].startswith("tiny-c@")

        # A superseded request that fails later is not reported.
        rig.swap.request(missing)
        rig.swap.request(str(model_b))
        wait_for(lambda: rig.swap.swaps == 2, "the switch to B")
        gates[missing].set()
        wait_for(loads_over, "the failing load to end")
        assert rig.swap.state == IDLE and rig.swap.take_revert() is None and rig.swap.reason == ""
        assert rig.holder.segmenter is made[str(model_b)] and released(made[str(model_c)])
    finally:
        for gate in gates.values():
            gate.set()
        rig.close()


def test_asking_for_the_model_in_use_drops_a_load_in_progress(tiny_artifact, model_b):
    gate, made = threading.Event(), []
    held_load = held_loader(gate, made)

    rig = Rig(tiny_artifact, held_load)
    try:
        rig.swap.request(str(model_b))
        rig.swap.request(str(tiny_artifact))  # changed back before B was ready
        assert rig.swap.state == IDLE
        gate.set()
        wait_for(lambda: made and released(made[0]), "B dropped")
        assert rig.holder.segmenter is rig.first and rig.swap.swaps == 0 and rig.swap.take_revert() is None
    finally:
        gate.set()
        rig.close()


def test_a_load_that_ends_after_the_node_let_go_is_dropped_silently(tiny_artifact, model_b):
    gate, made = threading.Event(), []
    held_load = held_loader(gate, made)

    rig = Rig(tiny_artifact, held_load)
    rig.swap.request(str(model_b))
    rig.close()  # the node's cleanup stops the worker while B loads
    gate.set()
    wait_for(lambda: made and released(made[0]), "B dropped")
    assert rig.holder.segmenter is rig.first and rig.swap.state != FAILED and rig.swap.take_revert() is None


def test_model_id_and_parent(tiny_artifact, model_b, tmp_path):
    rig = Rig(model_b)
    try:
        values = diagnostics(rig.swap)[2]
        digest = hashlib.sha256((model_b / "weights.safetensors").read_bytes()).hexdigest()[:12]
        assert values["model_id"] == f"tiny-b@{digest}"
        assert values["model_parent"] == PARENT and values["model_swaps"] == "0" and values["model_swap"] == IDLE
        assert diagnostics(rig.swap)[:2] == (OK, "30.0 fps")
    finally:
        rig.close()
    assert read_artifact(tiny_artifact).parent is None
    other = shutil.copytree(model_b, tmp_path / "d")
    parent = {"id": "x", "path": "/m"}  # a record rather than a name: shown as JSON
    assert update_artifact(other, provenance={"parent": parent}).parent == '{"id": "x", "path": "/m"}'
    (other / "weights.safetensors").unlink()
    assert read_artifact(other).weights_digest() is None
