"""The camera pose from TF in node processes over real DDS: a pose published on /tf_static
places ~/grid exactly where the same pose given as camera_pose does; a moving camera on /tf is
interpolated at the frame's stamp; a transform TF cannot give is a WARN naming the frames and
TF's reason, the grid skipped and counted, while segmentation goes on. tf2_msgs comes from a
sourced ROS 2 or is built for the test venv (the tf2_msgs fixture, test/ros_interfaces.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import OccupancyGrid
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosutil import image_cdr, random_rgb
from sensor_msgs.msg import CameraInfo, Image

from offroad_seg_ros.ground.projection import (
    CameraModel,
    CameraPose,
    ClassCosts,
    GridSpec,
    GroundProjector,
    occupancy_values,
)
from offroad_seg_ros.inference.segmenter import Segmenter

pytestmark = pytest.mark.ros

H, W = 60, 80
K = [60.0, 0.0, 39.5, 0.0, 60.0, 29.5, 0.0, 0.0, 1.0]
POSE = [0.2, 0.1, 1.5, 0.0, 0.35, 0.1]
SPEC = GridSpec(0.1, 20.0, 20.0, max_range=9.0)
# Frames are resent until answered: the frozen-camera check would flag the repeats and outrank the WARN looked for.
GRID_ARGS = ("-p", "publish_grid:=true", "-p", "grid_resolution:=0.1", "-p", "grid_size:=[20.0, 20.0]",
             "-p", "max_range:=9.0", "-p", "diagnostics_period:=0.2", "-p", "check_frozen_frames:=0")
OPTICAL = (-0.5, 0.5, -0.5, 0.5)  # URDF's camera_link -> camera_optical joint, rpy (-pi/2, 0, -pi/2)
TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def _rpy_quaternion(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy)


def _transform(parent: str, child: str, xyz, q, sec: int = 0, nanosec: int = 0) -> TransformStamped:
    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = parent, child
    t.header.stamp.sec, t.header.stamp.nanosec = sec, nanosec
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = xyz
    r = t.transform.rotation
    r.x, r.y, r.z, r.w = q
    return t


def _info() -> CameraInfo:
    info = CameraInfo(width=W, height=H, distortion_model="plumb_bob")
    info.k, info.d = K, [-0.1, 0.01, 0.0, 0.0, 0.0]
    return info


def _status(diags: list, node: str, label: str = "segmentation") -> dict[str, str]:
    """The key/values of `node`'s newest status `label` (several nodes share /diagnostics)."""
    for d in reversed(diags):
        for s in d.status:
            if s.name == f"/{node}: {label}":
                return {"level": str(s.level[0]), "message": s.message, **{kv.key: kv.value for kv in s.values}}
    return {}


def _offline_grid(seg: Segmenter, rgb, pose: CameraPose) -> np.ndarray:
    camera = CameraModel(W, H, tuple(K), (-0.1, 0.01, 0.0, 0.0, 0.0), "plumb_bob")
    cost, _ = GroundProjector(camera, pose, SPEC).project(seg(rgb).mask, ClassCosts(seg.classes,
                                                                                    seg.classes.cost_lut()))
    return occupancy_values(cost)


def _stamped(msgs: list, sec: int, nanosec: int = 0) -> list:
    return [m for m in msgs if (m.header.stamp.sec, m.header.stamp.nanosec) == (sec, nanosec)]


def test_a_camera_pose_on_tf_places_the_grid_as_camera_pose_does(start_node, peer, tiny_artifact, tf2_msgs):
    from tf2_msgs.msg import TFMessage

    # What robot_state_publisher publishes for a URDF with the camera at POSE: transient local, so
    # nodes that start later get it too.
    static = peer.publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
    static.publish(TFMessage(transforms=[_transform("base_link", "cam_link", POSE[:3], _rpy_quaternion(*POSE[3:])),
                                         _transform("cam_link", "cam_optical", (0.0, 0.0, 0.0), OPTICAL)]))
    nodes = {"by_parameter": start_node(*GRID_ARGS, "-p", "camera_pose_source:=parameter", "-p",
                                        f"camera_pose:={POSE}", "-r", "__node:=by_parameter", name="by_parameter"),
             # camera_pose left at its default: only TF can put this camera at POSE
             "by_tf": start_node(*GRID_ARGS, "-r", "__node:=by_tf", name="by_tf")}
    grids = {n: peer.collect(OccupancyGrid, f"/{n}/grid") for n in nodes}
    diags = peer.collect(DiagnosticArray, "/diagnostics")
    pub, info_pub = peer.publisher(Image, "/image"), peer.publisher(CameraInfo, "/camera_info")
    for node in nodes.values():
        node.wait_for_line("segmenting")
    peer.spin_until(lambda: pub.get_subscription_count() == 2 and info_pub.get_subscription_count() == 2,
                    what="both nodes on /image and /camera_info")
    rgb = random_rgb(H, W, seed=11)

    # Until /tf_static has reached the node, camera_pose stands in: wait for a frame placed by TF.
    peer.send_until(pub, image_cdr(rgb, sec=1, frame_id="cam_optical"),
                    lambda: _status(diags, "by_tf").get("camera_pose_source") == "tf base_link <- cam_optical",
                    before=lambda: info_pub.publish(_info()), what="a frame placed by TF")
    peer.send_until(pub, image_cdr(rgb, sec=2, nanosec=5, frame_id="cam_optical"),
                    lambda: all(_stamped(g, 2, 5) for g in grids.values()), before=lambda: info_pub.publish(_info()),
                    what="both grids of frame 2")
    by_tf = np.array(_stamped(grids["by_tf"], 2, 5)[-1].data, np.int8)
    by_parameter = np.array(_stamped(grids["by_parameter"], 2, 5)[-1].data, np.int8)
    np.testing.assert_array_equal(by_tf, by_parameter)
    seg = Segmenter(tiny_artifact, device="cpu", warmup_size=None)
    np.testing.assert_array_equal(by_parameter, _offline_grid(seg, rgb, CameraPose.from_list(POSE)))
    assert (by_tf != _offline_grid(seg, rgb, CameraPose())).any()  # not camera_pose's default
    assert _stamped(grids["by_tf"], 2, 5)[-1].header.frame_id == "base_link"
    peer.spin_until(lambda: _status(diags, "by_parameter").get("camera_pose_source") == "parameter",
                    what="the parameter named as the source")


def test_a_moving_camera_and_a_missing_transform(start_node, peer, tiny_artifact, tf2_msgs):
    from tf2_msgs.msg import TFMessage

    node = start_node(*GRID_ARGS)
    grids = peer.collect(OccupancyGrid, "/segmentation_node/grid")
    masks = peer.collect(Image, "/segmentation_node/mask")
    diags = peer.collect(DiagnosticArray, "/diagnostics")
    pub, info_pub = peer.publisher(Image, "/image"), peer.publisher(CameraInfo, "/camera_info")
    tf_pub = peer.publisher(TFMessage, "/tf", TF_QOS)
    node.wait_for_line("segmenting")
    for p in (pub, info_pub, tf_pub):
        peer.wait_for_subscriber(p)
    # A camera on a mast rising from 1.4 m to 1.6 m between t = 1 s and t = 2 s (pitched 0.35 rad).
    q = _rpy_quaternion(0.0, 0.35, 0.0)
    moves = TFMessage(transforms=[_transform("base_link", "cam_link", (0.0, 0.0, z), q, sec=s) for s, z in
                                  ((1, 1.4), (2, 1.6))] + [_transform("cam_link", "cam_optical", (0, 0, 0), OPTICAL,
                                                                      sec=s) for s in (1, 2)])
    rgb = random_rgb(H, W, seed=12)

    def send(sec: int, nanosec: int, done, what: str) -> None:
        peer.send_until(pub, image_cdr(rgb, sec=sec, nanosec=nanosec, frame_id="cam_optical"), done, what=what,
                        before=lambda: (tf_pub.publish(moves), info_pub.publish(_info())))

    send(1, 500_000_000, lambda: _status(diags, "segmentation_node").get("camera_pose_source") ==
         "tf base_link <- cam_optical", "a frame placed by TF")
    # Frames sent from now on are placed by TF (it gave the pose once): at 1.75 s the camera is at 1.55 m.
    send(1, 750_000_000, lambda: _stamped(grids, 1, 750_000_000), "the grid of the frame at 1.75 s")
    np.testing.assert_array_equal(np.array(_stamped(grids, 1, 750_000_000)[-1].data, np.int8),
                                  _offline_grid(Segmenter(tiny_artifact, device="cpu", warmup_size=None), rgb,
                                                CameraPose(0.0, 0.0, 1.55, 0.0, 0.35, 0.0)))

    # At 9 s TF has nothing: the frame is segmented and published, its grid skipped, counted and named.
    def missing() -> bool:
        s = _status(diags, "segmentation_node")
        return (s.get("level") == "1" and "camera pose: no transform base_link <- cam_optical at 9.000000 s"
                in s["message"] and "extrapolation" in s["message"] and s.get("camera_pose_missing", "0") != "0")

    send(9, 0, lambda: missing() and _stamped(masks, 9), "the missing transform in /diagnostics")
    assert not _stamped(grids, 9)
