"""The model of a running segmentation_node swapped by setting its `model` parameter
(`ros2 param set /segmentation_node model ...`), over real DDS: the node keeps segmenting with
the old model while the new one loads, switches between two frames, accounts for every frame,
and keeps the model it has when the new one cannot load (offroad_seg_ros/node/model_swap.py)."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import make_artifact
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rosutil import RELIABLE, image_array, image_cdr, random_rgb
from sensor_msgs.msg import Image

from offroad_seg_ros.core.artifact import update_artifact
from offroad_seg_ros.inference.segmenter import Segmenter

pytestmark = pytest.mark.ros
NODE = "/segmentation_node"
PARENT = "tiny-random@site-0"
COUNTS = ("frames_in", "frames_processed", "frames_dropped", "bad_frames", "frames_rate_limited",
          "inference_failures", "frames_in_flight")  # frames_in is the sum of the others


def _model_id(name: str, path: Path) -> str:
    return f"{name}@{hashlib.sha256((path / 'weights.safetensors').read_bytes()).hexdigest()[:12]}"


def _set_model(peer, path: Path) -> bool:
    value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(path))
    return peer.call(SetParameters, f"{NODE}/set_parameters", SetParameters.Request(
        parameters=[Parameter(name="model", value=value)])).results[0].successful


def _get_model(peer) -> str:
    answer = peer.call(GetParameters, f"{NODE}/get_parameters", GetParameters.Request(names=["model"]))
    return answer.values[0].string_value


def _values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


class Stream:
    """Camera frames with increasing stamps (sec 1, 2, ...), each published once: the next goes
    out when this one's mask is back, or after 0.5 s (lost on the way, or replaced in the node)."""

    def __init__(self, peer, pub, masks: list):
        self.peer, self.pub, self.masks = peer, pub, masks
        self.sent = 0

    def answered(self, sec: int) -> bool:
        return any(m.header.stamp.sec == sec for m in self.masks)

    def until(self, done: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
        end = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < end, f"timed out after {timeout} s waiting for {what}"
            self.sent += 1
            sec = self.sent
            self.pub.publish(image_cdr(random_rgb(seed=sec), sec=sec))
            resend = time.monotonic() + 0.5
            while time.monotonic() < resend and not self.answered(sec):
                self.peer.executor.spin_once(timeout_sec=0.02)

    def masks_after(self, sec: int) -> int:
        return sum(m.header.stamp.sec > sec for m in self.masks)


def test_model_swapped_between_two_frames_and_a_broken_one_refused(start_node, peer, tiny_artifact, table,
                                                                   tmp_path):
    b = make_artifact(tmp_path / "b", table, seed=1)  # other weights: other masks
    update_artifact(b, name="tiny-b", provenance={"parent": PARENT})
    a_id, b_id = _model_id("tiny-random", tiny_artifact), _model_id("tiny-b", b)
    offline = {name: Segmenter(path, device="cpu", warmup_size=None) for name, path in (("A", tiny_artifact), ("B", b))}
    node = start_node("-p", "diagnostics_period:=0.2", "-p", "qos_reliability:=reliable", "-p", "qos_depth:=10")
    diags = peer.collect(DiagnosticArray, "/diagnostics")
    masks = peer.collect(Image, f"{NODE}/mask")
    pub = peer.publisher(Image, "/image", RELIABLE)
    node.wait_for_line("segmenting")
    peer.wait_for_subscriber(pub)
    stream = Stream(peer, pub, masks)

    def last() -> DiagnosticStatus:
        return diags[-1].status[0]

    # Model A answers; /diagnostics names it.
    stream.until(lambda: len(masks) >= 3 and diags and _values(last())["model_id"] == a_id, "masks of model A")
    assert _values(last())["model_parent"] == "none" and _values(last())["model_swaps"] == "0"

    # Set B: accepted at once, loaded beside A while frames keep coming, then switched to.
    assert _set_model(peer, b)
    stream.until(lambda: _values(last())["model_id"] == b_id, "model B in /diagnostics")
    switched = stream.sent
    stream.until(lambda: stream.masks_after(switched) >= 3, "masks of model B")
    values = _values(last())
    assert values["model_parent"] == PARENT and values["model_swaps"] == "1" and values["model"] == "tiny-b"

    # A broken artifact: accepted, fails to load; B stays, the failure is a WARN with its reason,
    # and the parameter names B again.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text("{not json")
    assert _set_model(peer, broken)
    stream.until(lambda: last().message.startswith("model_swap: failed:"), "the failure in /diagnostics")
    failed = stream.sent
    assert last().level == DiagnosticStatus.WARN and "is not valid JSON" in last().message
    assert _values(last())["model_swap"].startswith("failed: ") and _values(last())["model_id"] == b_id
    stream.until(lambda: _get_model(peer) == str(b), "the parameter set back to B")
    stream.until(lambda: stream.masks_after(failed) >= 3, "masks after the failure")
    sent = stream.sent

    # Every frame accounted for, once nothing is in flight.
    peer.spin_until(lambda: _values(last())["frames_in_flight"] == "0"
                    and int(_values(last())["frames_processed"]) >= len({m.header.stamp.sec for m in masks}),
                    what="the last frames done")
    v = {k: int(_values(last())[k]) for k in COUNTS}
    assert v["bad_frames"] == v["frames_rate_limited"] == v["inference_failures"] == 0
    assert v["frames_in"] == v["frames_processed"] + v["frames_dropped"] + v["bad_frames"] <= sent
    for report in diags:  # and in every report on the way, with the frames then in flight
        r = {k: int(_values(report.status[0])[k]) for k in COUNTS}
        assert r["frames_in"] == sum(n for k, n in r.items() if k != "frames_in"), r

    # No frame answered twice; A's masks up to the switch, B's from it on, also after the failure.
    stamps = Counter(m.header.stamp.sec for m in masks)
    assert max(stamps.values()) == 1, [s for s, n in stamps.items() if n > 1]
    by = {}
    for m in masks:
        rgb = random_rgb(seed=m.header.stamp.sec)
        want = {k: seg(rgb).mask for k, seg in offline.items()}
        assert not np.array_equal(want["A"], want["B"])  # the two models tell apart on this frame
        got = image_array(m)
        by[m.header.stamp.sec] = next((k for k, w in want.items() if np.array_equal(got, w)), "neither")
    a_secs = [s for s, k in by.items() if k == "A"]
    b_secs = [s for s, k in by.items() if k == "B"]
    assert "neither" not in by.values() and len(a_secs) >= 3 and len(b_secs) >= 6
    assert max(a_secs) < min(b_secs)  # one switch, between two frames
    assert sum(s > failed for s in b_secs) >= 3
    assert "Traceback" not in node.output
