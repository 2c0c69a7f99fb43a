"""The node's callbacks in this process on real rclpy: the node and a test peer
share one context and executor, so what the node does with each frame can be
watched from inside (which thread, which outputs were computed) as well as on
the wire."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy
from rosutil import Peer, image_array, image_cdr, random_rgb
from sensor_msgs.msg import Image

from offroad_seg_ros.node import node as node_module
from offroad_seg_ros.node import params as params_module


@pytest.fixture
def ros():
    ctx = Context()
    rclpy.init(context=ctx)
    peer = Peer(context=ctx)
    nodes = []

    def make(**params):
        # min_confidence and the camera checks off unless a test asks (see conftest.TRUST_OFF)
        defaults = {"device": "cpu", "min_confidence": 0.0, "degraded_policy": "publish"}
        overrides = [Parameter(k, value=v) for k, v in {**defaults, **params}.items()]
        node = node_module.SegmentationNode(context=ctx, parameter_overrides=overrides)
        peer.executor.add_node(node)
        nodes.append(node)
        return node

    peer.make = make
    yield peer
    for n in nodes:
        n.destroy_node()
    peer.close()


@pytest.fixture
def make_node(ros, tiny_artifact):
    return lambda **params: ros.make(model=str(tiny_artifact), **params)


def _send(ros, node, raw, topic="/image"):
    pub = ros.publisher(Image, topic)
    ros.wait_for_subscriber(pub)
    seen = lambda: node.worker.received + node.cameras[''].rate_limited  # noqa: E731
    before = seen()
    ros.send_until(pub, raw, lambda: seen() > before, every=1.0, what="the frame at the node")
    assert node.worker.idle()  # taken, processed and published


def test_declares_parameters_and_subscribes_raw_best_effort(make_node, ros):
    node = make_node()
    for name, (_, text) in node_module.PARAMETERS.items():
        assert node.describe_parameter(name).description == text
    ros.spin_until(lambda: ros.node.get_subscriptions_info_by_topic("/image"), what="the subscription")
    (info,) = ros.node.get_subscriptions_info_by_topic("/image")
    assert info.topic_type == "sensor_msgs/msg/Image" and info.node_name == "segmentation_node"
    assert info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    (sub,) = node.subscriptions  # depth is not on the wire: read it off the node's subscription
    assert sub.qos_profile.depth == 1 and sub.raw
    topics = {t for t, _ in node.get_publisher_names_and_types_by_node("segmentation_node", "/")}
    assert topics >= {"/segmentation_node/mask", "/segmentation_node/cost", "/segmentation_node/color",
                      "/segmentation_node/overlay", "/diagnostics"}


def test_colour_outputs_are_computed_only_while_subscribed(make_node, ros, table, monkeypatch):
    asked: list[tuple[str, ...]] = []
    original = node_module.Segmenter.segment_batch

    def recording(self, images, outputs=("mask",)):
        asked.append(tuple(outputs))
        return original(self, images, outputs)

    monkeypatch.setattr(node_module.Segmenter, "segment_batch", recording)
    node = make_node()
    masks = ros.collect(Image, "/segmentation_node/mask")
    costs = ros.collect(Image, "/segmentation_node/cost")
    _send(ros, node, image_cdr(random_rgb(), sec=42, frame_id="front"))
    ros.spin_until(lambda: masks and costs, what="mask and cost")
    assert asked[-1] == ("mask", "cost")
    assert (masks[0].header.stamp.sec, masks[0].header.frame_id) == (42, "front")
    np.testing.assert_array_equal(image_array(costs[0]), table.cost_lut()[image_array(masks[0])])

    overlays = ros.collect(Image, "/segmentation_node/overlay")
    overlay_pub = node.cameras[""].pubs["overlay"]
    ros.spin_until(lambda: overlay_pub.get_subscription_count() == 1, what="the overlay subscriber")
    _send(ros, node, image_cdr(random_rgb(), sec=43))
    ros.spin_until(lambda: overlays, what="an overlay")
    assert asked[-1] == ("mask", "cost", "overlay") and overlays[0].encoding == "rgb8"


def test_model_loads_and_runs_on_the_worker_thread(make_node, ros, monkeypatch):
    # torch.compile's CUDA graphs are kept per thread: loading (with its
    # warm-up) and inference must share one thread, never the executor's.
    threads = []

    class Recording(node_module.Segmenter):
        def __init__(self, *args, **kwargs):
            threads.append(("load", threading.get_ident()))
            super().__init__(*args, **kwargs)

        def segment_batch(self, *args, **kwargs):
            threads.append(("run", threading.get_ident()))
            return super().segment_batch(*args, **kwargs)

    monkeypatch.setattr(params_module, "Segmenter", Recording)  # node/params.py's load_segmenter builds it
    node = make_node()
    _send(ros, node, image_cdr(random_rgb()))
    assert [k for k, _ in threads] == ["load", "run", "run"]  # load, warm-up, the frame
    assert {t for _, t in threads} == {node.worker._thread.ident} != {threading.get_ident()}


def test_bad_frame_is_counted_and_in_diagnostics(make_node, ros):
    node = make_node(diagnostics_period=0.1)
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    masks = ros.collect(Image, "/segmentation_node/mask")
    _send(ros, node, image_cdr(random_rgb(), encoding="yuv999"))
    ros.spin_until(lambda: diags and diags[-1].status[0].values[0].value == "1", what="diagnostics")
    status = diags[-1].status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert values["bad_frames"] == "1" and values["frames_in"] == "1" and status.level == b"\x02"  # ERROR
    assert status.message.startswith("all 1 frames") and "'yuv999'" in status.message and masks == []


def test_max_rate_skips_frames_between_accepted_ones(make_node, ros):
    node = make_node(max_rate=0.01)  # one frame per 100 s
    masks = ros.collect(Image, "/segmentation_node/mask")
    _send(ros, node, image_cdr(random_rgb(), sec=1))
    _send(ros, node, image_cdr(random_rgb(), sec=2))
    ros.spin_until(lambda: masks, what="a mask")
    # The node's own counts say what happened to each frame (a copy of frame 1
    # resent by _send is rate-limited too): only the first frame reached the model.
    assert node.worker.received == node.worker.processed == 1 and node.cameras[''].rate_limited >= 1
    assert {m.header.stamp.sec for m in masks} == {1}


def test_compressed_parameter_switches_the_subscription(make_node, ros):
    node = make_node(compressed=True, publish_color=False, publish_overlay=False)
    ros.spin_until(lambda: ros.node.get_subscriptions_info_by_topic("/image/compressed"), what="the subscription")
    (info,) = ros.node.get_subscriptions_info_by_topic("/image/compressed")
    assert info.topic_type == "sensor_msgs/msg/CompressedImage"
    assert set(node.cameras[''].pubs) == {"mask", "cost"}


def test_bad_parameter_raises_naming_it(ros, tiny_artifact):
    with pytest.raises(ValueError, match="qos_depth must be at least 1, got 0"):
        ros.make(model=str(tiny_artifact), qos_depth=0)


def test_openvino_backend_through_the_node(make_node, ros, tiny_artifact, table):
    # The CPU robots' path, selected by parameters: the node's masks are the OpenVINO Segmenter's.
    from offroad_seg_ros.inference.openvino_backend import cpu_has_bf16
    from offroad_seg_ros.inference.segmenter import Segmenter

    node = make_node(backend="openvino", precision="auto", threads=1)
    ros.spin_until(lambda: node.segmenter is not None, what="the model")
    assert node.segmenter.backend == "openvino"
    assert node.segmenter.precision == ("bf16" if cpu_has_bf16() else "fp32")  # what `auto` chose
    masks = ros.collect(Image, "/segmentation_node/mask")
    costs = ros.collect(Image, "/segmentation_node/cost")
    rgb = random_rgb()
    _send(ros, node, image_cdr(rgb, sec=7))
    ros.spin_until(lambda: masks and costs, what="mask and cost")
    want = Segmenter(tiny_artifact, backend="openvino", precision="auto", warmup_size=None)(rgb).mask
    np.testing.assert_array_equal(image_array(masks[0]), want)
    np.testing.assert_array_equal(image_array(costs[0]), table.cost_lut()[want])


@pytest.mark.parametrize("policy", ["unknown", "drop"])
def test_a_degraded_frame_follows_degraded_policy(make_node, ros, tiny_artifact, policy):
    from offroad_seg_ros.inference.segmenter import Segmenter

    node = make_node(degraded_policy=policy, diagnostics_period=0.1, check_frozen_frames=0)  # resends repeat
    masks = ros.collect(Image, "/segmentation_node/mask")
    costs = ros.collect(Image, "/segmentation_node/cost")
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    dark = (random_rgb(seed=3) // 8).astype(np.uint8)  # mean grey ~16
    _send(ros, node, image_cdr(dark, sec=7))
    health = node.cameras[""].pipeline.health
    assert health.degraded >= 1 and "dark: mean grey 16 < 80" in health.last_degraded
    ros.spin_until(lambda: diags and "camera degraded" in diags[-1].status[0].message, what="the warning")
    status = diags[-1].status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == b"\x01" and "dark: mean grey" in status.message and values["degraded_policy"] == policy
    assert float(values["camera_brightness"]) < 80 and values["degraded_frames"] != "0"
    # a healthy frame after it comes through whole
    _send(ros, node, image_cdr(random_rgb(seed=4), sec=8))
    ros.spin_until(lambda: any(m.header.stamp.sec == 8 for m in costs), what="the healthy frame's cost")
    healthy = next(m for m in costs if m.header.stamp.sec == 8)
    assert (image_array(healthy) != 255).all()
    dark_costs = [m for m in costs if m.header.stamp.sec == 7]
    dark_masks = [m for m in masks if m.header.stamp.sec == 7]
    if policy == "drop":  # nothing at all for the dark frame (published before frame 8's, in order)
        assert dark_costs == [] and dark_masks == []
    else:  # the mask as the model sees it, the cost all unknown
        assert dark_costs and all((image_array(m) == 255).all() for m in dark_costs)
        want = Segmenter(tiny_artifact, device="cpu", warmup_size=None)(dark).mask
        np.testing.assert_array_equal(image_array(dark_masks[0]), want)
