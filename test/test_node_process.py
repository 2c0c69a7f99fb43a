"""segmentation_node as users start it (`segmentation_node --ros-args ...`),
talked to over real DDS: outputs equal the offline Segmenter, diagnostics,
compressed input, bad frames, fatal start-up errors, sim time, and shutdown by
SIGINT (twice, as a terminal and `ros2 launch` deliver it) and SIGTERM at every
stage of the node's life."""

from __future__ import annotations

import signal
import threading
import time

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rosgraph_msgs.msg import Clock
from rosutil import RELIABLE, compressed_cdr, image_array, image_cdr, random_rgb
from sensor_msgs.msg import CompressedImage, Image

from offroad_seg_ros.inference.segmenter import Segmenter


@pytest.fixture(scope="module")
def offline(tiny_artifact):
    return Segmenter(tiny_artifact, device="cpu", warmup_size=None)


def _diag_values(msg: DiagnosticArray) -> dict[str, str]:
    return {kv.key: kv.value for kv in msg.status[0].values}


def test_outputs_equal_the_offline_segmenter(start_node, peer, offline, tmp_path):
    # Parameters from a YAML file as `ros2 run ... --params-file` passes them,
    # a namespace and a remapped input topic.
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    publish_confidence: true\n    qos_reliability: reliable\n")
    node = start_node("--params-file", str(params), "-r", "__ns:=/robot", "-r", "image:=/front/image_raw")
    outs = {name: peer.collect(Image, f"/robot/segmentation_node/{name}")
            for name in ("mask", "cost", "confidence", "color")}
    pub = peer.publisher(Image, "/front/image_raw", RELIABLE)  # the node's subscription is reliable here
    node.wait_for_line("segmenting /front/image_raw")
    peer.wait_for_subscriber(pub)
    frames = [(random_rgb(60, 80, seed=1), "rgb8", 0), (random_rgb(61, 97, seed=2), "bgr8", 5),
              (random_rgb(540 // 4, 960 // 4, seed=3), "rgb8", 0)]
    for i, (rgb, enc, pad) in enumerate(frames):
        wire = rgb[..., ::-1] if enc == "bgr8" else rgb
        raw = image_cdr(np.ascontiguousarray(wire), sec=100 + i, nanosec=i * 7, frame_id=f"cam{i}", encoding=enc,
                        pad=pad)
        peer.send_until(pub, raw, lambda n=i: all(any(m.header.stamp.sec == 100 + n for m in o) for o in outs.values()),
                        what=f"outputs of frame {i}")
    for i, (rgb, _, _) in enumerate(frames):
        want = offline(rgb, ("mask", "cost", "confidence", "color"))
        for name, got in outs.items():
            msg = next(m for m in got if m.header.stamp.sec == 100 + i)
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (100 + i, i * 7, f"cam{i}")
            assert (msg.height, msg.width) == rgb.shape[:2]
            assert msg.encoding == ("rgb8" if name == "color" else "mono8")
            np.testing.assert_array_equal(image_array(msg), getattr(want, name), err_msg=f"{name} of frame {i}")


def test_diagnostics_bad_frames_and_recovery(start_node, peer):
    node = start_node("-p", "diagnostics_period:=0.2")
    diags = peer.collect(DiagnosticArray, "/diagnostics")
    masks = peer.collect(Image, "/segmentation_node/mask")
    pub = peer.publisher(Image, "/image")
    node.wait_for_line("segmenting")
    peer.wait_for_subscriber(pub)
    rgb = random_rgb()
    sent = []  # every copy of the first frame: under load, resent copies can reach the node late
    peer.send_until(pub, image_cdr(rgb, sec=1), lambda: masks, what="the first mask",  # both sides matched
                    before=lambda: sent.append(1))
    peer.spin_until(lambda: diags and int(_diag_values(diags[-1])["frames_processed"]) >= 1, what="counts")
    base = {k: int(_diag_values(diags[-1])[k]) for k in ("frames_in", "frames_processed", "bad_frames")}
    pub.publish(image_cdr(rgb, encoding="xyz9"))  # a bad frame: the node must carry on
    peer.spin_until(lambda: int(_diag_values(diags[-1])["bad_frames"]) == base["bad_frames"] + 1, what="bad frame")
    for sec in (5, 6):
        pub.publish(image_cdr(rgb, sec=sec))
        peer.spin_until(lambda s=sec: any(m.header.stamp.sec == s for m in masks), what=f"mask of frame {sec}")
    # Late copies of the first frame may be counted too, whenever they arrive: wait for the two
    # frames and for nothing left in flight, then bound the counts by what was sent.
    peer.spin_until(lambda: int(_diag_values(diags[-1])["frames_processed"]) >= base["frames_processed"] + 2
                    and _diag_values(diags[-1])["frames_in_flight"] == "0", what="two more processed")
    status = diags[-1].status[0]
    values = _diag_values(diags[-1])
    assert status.name == "/segmentation_node: segmentation" and status.hardware_id == "cpu"
    assert int(values["frames_processed"]) <= base["frames_processed"] + 2 + len(sent) - 1
    assert base["frames_in"] + 3 <= int(values["frames_in"]) <= base["frames_in"] + 2 + len(sent)
    assert values["model"] == "tiny-random"
    assert int(values["bad_frames"]) == base["bad_frames"] + 1 == 1
    assert "xyz9" in node.output  # the reason is logged


def test_compressed_input(start_node, peer, offline):
    node = start_node("-p", "compressed:=true", "-r", "image/compressed:=/cam/compressed")
    masks = peer.collect(Image, "/segmentation_node/mask")
    pub = peer.publisher(CompressedImage, "/cam/compressed")
    node.wait_for_line("segmenting /cam/compressed")
    peer.wait_for_subscriber(pub)
    rgb = random_rgb(90, 120, seed=4)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    peer.send_until(pub, compressed_cdr(jpeg.tobytes(), sec=9), lambda: masks, what="a mask")
    decoded = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(image_array(masks[0]), offline(decoded).mask)
    assert masks[0].header.stamp.sec == 9


def test_use_sim_time_latency_from_clock(start_node, peer):
    node = start_node("-p", "use_sim_time:=true", "-p", "diagnostics_period:=0.2")
    diags = peer.collect(DiagnosticArray, "/diagnostics")
    clock = peer.publisher(Clock, "/clock", 10)
    pub = peer.publisher(Image, "/image")
    node.wait_for_line("segmenting")
    peer.wait_for_subscriber(pub)
    sim = Clock()
    sim.clock.sec = 5000
    # The node runs on /clock once its diagnostics carry the simulated time.
    peer.send_until(clock, sim, lambda: diags and diags[-1].header.stamp.sec == 5000, what="the node on sim time")
    peer.send_until(pub, image_cdr(random_rgb(), sec=4999, nanosec=750_000_000),
                    lambda: diags and _diag_values(diags[-1])["frames_processed"] != "0", what="a processed frame")
    clock.publish(sim)
    peer.spin_until(lambda: diags[-1].header.stamp.sec == 5000, what="diagnostics stamped with sim time")
    assert _diag_values(diags[-1])["latency_p50_ms"] == "250.00"


def test_short_soak_every_frame_accounted_for(start_node, peer):
    """bench/soak.py's short version: a burst of mixed good and bad frames, far
    faster than the model; every one ends in exactly one count."""
    node = start_node("-p", "qos_reliability:=reliable", "-p", "qos_depth:=500", "-p", "diagnostics_period:=0.2")
    diags = peer.collect(DiagnosticArray, "/diagnostics")
    pub = peer.publisher(Image, "/image", RELIABLE)
    node.wait_for_line("segmenting")
    peer.wait_for_subscriber(pub)
    masks = peer.collect(Image, "/segmentation_node/mask")
    peer.send_until(pub, image_cdr(random_rgb(120, 160), sec=1), lambda: masks, what="the first mask")
    peer.spin_until(lambda: diags and _diag_values(diags[-1])["frames_in_flight"] == "0", what="settled")
    base = int(_diag_values(diags[-1])["frames_in"])
    good = image_cdr(random_rgb(120, 160), sec=3)
    kinds = [good, image_cdr(random_rgb(120, 160), encoding="xyz"), image_cdr(random_rgb(120, 160), sec=0),
             image_cdr(random_rgb(120, 160))[:-50]]
    for i in range(300):
        pub.publish(kinds[i % 7 % 4])
    # A resent first frame may still reach the node after `base` was read: at most a few more.
    peer.spin_until(lambda: int(_diag_values(diags[-1])["frames_in"]) >= base + 300
                    and _diag_values(diags[-1])["frames_in_flight"] == "0", timeout=60, what="all 300 frames settled")
    v = {k: int(x) for k, x in _diag_values(diags[-1]).items() if k.startswith(("frames", "bad", "inference"))}
    assert v["frames_in"] == (v["frames_processed"] + v["frames_dropped"] + v["bad_frames"]
                              + v["frames_rate_limited"] + v["inference_failures"])
    assert base + 300 <= v["frames_in"] <= base + 303
    assert v["bad_frames"] > 0 and v["frames_dropped"] > 0 and v["inference_failures"] == 0
    assert node.proc.poll() is None


@pytest.mark.parametrize("model, param, message", [
    ("missing", None, "does not exist"),
    (None, "qos_reliability:=reliabel", "qos_reliability must be best_effort or reliable, got 'reliabel'"),
])
def test_fatal_start_up_errors_are_one_line_and_exit_1(start_node, tmp_path, model, param, message):
    node = start_node(*(["-p", param] if param else []), model=str(tmp_path / model) if model else None)
    assert node.wait(60) == 1
    fatal = [line for line in node.output.splitlines() if "[FATAL]" in line]
    assert len(fatal) == 1 and message in fatal[0], node.output
    assert "Traceback" not in node.output


# -- shutdown -------------------------------------------------------------------
STAGES = {"loading": "loading model", "warming up": "warming up", "idle": "segmenting", "frames": "segmenting"}
DELIVERIES = {"SIGINT twice, 0 ms": (signal.SIGINT, 0.0), "SIGINT twice, 20 ms": (signal.SIGINT, 0.02),
              "SIGINT twice, 200 ms": (signal.SIGINT, 0.2), "SIGTERM": (signal.SIGTERM, None)}


@pytest.mark.signals
@pytest.mark.parametrize("delivery", DELIVERIES)
@pytest.mark.parametrize("stage", STAGES)
def test_shutdown_is_clean_at_any_moment(start_node, peer, stage, delivery):
    sig, gap = DELIVERIES[delivery]
    node = start_node()
    feeding = threading.Event()
    if stage == "frames":
        masks = peer.collect(Image, "/segmentation_node/mask")
        pub = peer.publisher(Image, "/image")
        frame = image_cdr(random_rgb(270, 480))

        def feed() -> None:
            while not feeding.is_set():
                pub.publish(frame)
                time.sleep(1 / 30)

        feeder = threading.Thread(target=feed, daemon=True)
        node.wait_for_line(STAGES[stage])
        feeder.start()
        peer.spin_until(lambda: masks, what="the first mask")
    else:
        node.wait_for_line(STAGES[stage])
    node.send(sig)
    if gap is not None:
        time.sleep(gap)
        node.send(sig)
    rc = node.wait(30)
    feeding.set()
    assert rc == 0, node.output
    assert "Traceback" not in node.output and "KeyboardInterrupt" not in node.output, node.output


@pytest.mark.signals
def test_ctrl_c_during_a_long_uninterruptible_warm_up_exits_cleanly(start_node):
    # compile: true on the CPU keeps the model thread inside torch.compile for
    # a minute; Ctrl-C must not wait for it, nor end in std::terminate.
    node = start_node("-p", "compile:=true")
    node.wait_for_line("warming up")
    time.sleep(2.0)
    node.send(signal.SIGINT)
    time.sleep(0.05)
    node.send(signal.SIGINT)
    assert node.wait(30) == 0, node.output
    assert "Traceback" not in node.output and "terminate" not in node.output, node.output
