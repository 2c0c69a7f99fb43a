"""Several cameras in one node: one model, the newest frame of each camera
batched into one forward pass, each camera's outputs under ~/<name>/ with its
own headers, counts and diagnostics."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.parameter import Parameter
from rosutil import Peer, image_array, image_cdr, random_rgb
from sensor_msgs.msg import Image

from offroad_seg_ros.inference.segmenter import Segmenter
from offroad_seg_ros.node import node as node_module

CAMERAS = ["front", "rear", "left"]


@pytest.fixture(scope="module")
def offline(tiny_artifact):
    return Segmenter(tiny_artifact, device="cpu", warmup_size=None)


def test_each_camera_gets_its_own_outputs_and_headers(start_node, peer, offline):
    node = start_node("-p", f"cameras:={CAMERAS}", "-p", "diagnostics_period:=0.2",
                      "-r", "rear/image:=/robot/rear/image_raw")
    masks = {c: peer.collect(Image, f"/segmentation_node/{c}/mask") for c in CAMERAS}
    diags = peer.collect(DiagnosticArray, "/diagnostics")
    pubs = {c: peer.publisher(Image, "/robot/rear/image_raw" if c == "rear" else f"/{c}/image") for c in CAMERAS}
    node.wait_for_line("segmenting /left/image")
    for pub in pubs.values():
        peer.wait_for_subscriber(pub)
    frames = {c: random_rgb(60 + 8 * i, 80, seed=i) for i, c in enumerate(CAMERAS)}  # sizes differ by camera
    for i, c in enumerate(CAMERAS):  # both sides of every camera's connection matched
        peer.send_until(pubs[c], image_cdr(frames[c], sec=10 * (i + 1) + 9, frame_id=f"{c}_optical"),
                        lambda c=c: masks[c], what=f"the first mask of {c}")
    for k in range(3):
        for i, c in enumerate(CAMERAS):
            pubs[c].publish(image_cdr(frames[c], sec=10 * (i + 1) + k, frame_id=f"{c}_optical"))
        peer.spin_until(lambda n=k: all(any(m.header.stamp.sec % 10 == n for m in masks[c]) for c in CAMERAS),
                        what=f"round {k} on every camera")
    for i, c in enumerate(CAMERAS):
        want = offline(frames[c]).mask
        for m in masks[c]:  # never another camera's header or frame
            assert m.header.frame_id == f"{c}_optical" and m.header.stamp.sec // 10 == i + 1
            np.testing.assert_array_equal(image_array(m), want)

    # A camera that stops doesn't stall the others.
    before = {c: len(masks[c]) for c in CAMERAS}
    for k in range(3):
        pubs["front"].publish(image_cdr(frames["front"], sec=20 + k, frame_id="front_optical"))
        peer.spin_until(lambda n=k: len(masks["front"]) > before["front"] + n, what="front keeps going")
    assert len(masks["rear"]) == before["rear"] and len(masks["left"]) == before["left"]

    names = {s.name: {kv.key: kv.value for kv in s.values} for s in diags[-1].status}
    assert set(names) == {f"/segmentation_node: {c} segmentation" for c in CAMERAS}
    peer.spin_until(lambda: int({kv.key: kv.value for kv in diags[-1].status[0].values}["frames_in"]) >= 7,
                    what="front's counts")


def test_newest_frames_of_all_cameras_run_as_one_batch(tiny_artifact, monkeypatch):
    batches: list[int] = []
    original = node_module.Segmenter.segment_batch

    def recording(self, images, outputs=("mask",)):
        batches.append(len(images))
        return original(self, images, outputs)

    monkeypatch.setattr(node_module.Segmenter, "segment_batch", recording)
    ctx = Context()
    rclpy.init(context=ctx)
    peer = Peer(context=ctx)
    node = node_module.SegmentationNode(context=ctx, parameter_overrides=[
        Parameter("model", value=str(tiny_artifact)), Parameter("device", value="cpu"),
        Parameter("cameras", value=["a", "b"])])
    try:
        peer.executor.add_node(node)
        masks = {c: peer.collect(Image, f"/segmentation_node/{c}/mask") for c in "ab"}
        pubs = {c: peer.publisher(Image, f"/{c}/image") for c in "ab"}
        for pub in pubs.values():
            peer.wait_for_subscriber(pub)
        gate = threading.Event()
        assert node.worker is not None
        threading.Thread(target=node.worker.call, args=(gate.wait,), daemon=True).start()  # the worker is busy
        for c in "ab":
            peer.send_until(pubs[c], image_cdr(random_rgb(), sec=5), lambda c=c: node.worker.received_by.get(c),
                            what=f"a frame from {c} at the node")
        gate.set()
        peer.spin_until(lambda: masks["a"] and masks["b"], what="both masks")
        assert batches[-1] == 2  # one forward pass for both cameras
    finally:
        node.destroy_node()
        peer.close()


def test_camera_names_must_be_distinct(start_node):
    node = start_node("-p", "cameras:=[front, front]")
    assert node.wait(60) == 1 and "cameras must be distinct" in node.output


def test_camera_checks_are_per_camera(start_node, peer, offline):
    # Camera a sees a dark frame, b a healthy one: only a's cost goes unknown, only a's status warns.
    # (frozen off: a frame resent until it arrives would be a repeat)
    node = start_node("-p", "cameras:=[a, b]", "-p", "degraded_policy:=unknown", "-p", "diagnostics_period:=0.2",
                      "-p", "check_frozen_frames:=0")
    costs = {c: peer.collect(Image, f"/segmentation_node/{c}/cost") for c in "ab"}
    diags = peer.collect(DiagnosticArray, "/diagnostics")
    pubs = {c: peer.publisher(Image, f"/{c}/image") for c in "ab"}
    node.wait_for_line("segmenting /b/image")
    frames = {"a": (random_rgb(seed=3) // 8).astype(np.uint8), "b": random_rgb(seed=4)}
    for c in "ab":
        peer.wait_for_subscriber(pubs[c])
        peer.send_until(pubs[c], image_cdr(frames[c], sec=3), lambda c=c: costs[c], what=f"the cost of {c}")

    def messages(c):  # every status of camera c reported so far
        return [s.message for d in diags for s in d.status if s.name.endswith(f": {c} segmentation")]

    peer.spin_until(lambda: any("dark: mean grey" in m for m in messages("a")), what="a's warning")
    assert all((image_array(m) == 255).all() for m in costs["a"])
    assert (image_array(costs["b"][0]) == offline.classes.cost_lut()[offline(frames["b"]).mask]).all()
    assert messages("b") and not any("camera degraded" in m for m in messages("b"))
