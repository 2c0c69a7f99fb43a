"""Frames lost before the node, through real DDS: a node process counts the gaps in the header
stamps of what it receives (node/stamp_gaps.py) and reports them in /diagnostics."""

from __future__ import annotations

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosutil import image_cdr, random_rgb
from sensor_msgs.msg import Image

from offroad_seg_ros.core.stamps import NS_PER_S, from_ns


def _values(msg: DiagnosticArray) -> dict[str, str]:
    return {kv.key: kv.value for kv in msg.status[0].values}


@pytest.mark.ros
def test_frames_missing_from_the_stamps_show_in_diagnostics(start_node, peer):
    # Reliable delivery and a deep queue: every frame sent arrives, so the only frames missing
    # are the ones never sent, and the node's own drops (newest-frame policy) must not count.
    node = start_node("-p", "qos_reliability:=reliable", "-p", "qos_depth:=100", "-p", "diagnostics_period:=0.2")
    diags = peer.collect(DiagnosticArray, "/diagnostics")
    masks = peer.collect(Image, "/segmentation_node/mask")
    pub = peer.publisher(Image, "/image", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    node.wait_for_line("segmenting")
    peer.wait_for_subscriber(pub)
    # 10 Hz from 1 s: frame 10 and frames 20-22 are never sent (gaps of 2 and 4 periods: 1 + 3 lost).
    sent = [i for i in range(30) if i not in (10, 20, 21, 22)]
    frames = [image_cdr(random_rgb(30, 40, seed=i), *from_ns(NS_PER_S + i * NS_PER_S // 10)) for i in sent]
    # The first frame until the node answers (both sides matched): its resent copies carry one stamp.
    peer.send_until(pub, frames[0], lambda: masks, what="the first mask")
    for raw in frames[1:]:
        pub.publish(raw)
        pub.publish(raw)  # a second copy, as a resend: the same stamp counts nothing
    # Every copy taken in (frames_in), and still exactly the 4 never sent.
    want = {"frames_lost_upstream": "4", "lost_upstream_share": f"{4 / (4 + len(sent)):.3f}"}
    peer.spin_until(lambda: bool(diags) and int(_values(diags[-1])["frames_in"]) >= 2 * len(sent) - 1,
                    what="every frame taken in")
    peer.spin_until(lambda: {k: _values(diags[-1])[k] for k in want} == want, what=f"/diagnostics showing {want}")
