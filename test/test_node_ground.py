"""~/grid and ~/obstacles from a node process over real DDS: fields, frames,
stamps and values equal the offline Segmenter + GroundProjector; waiting for
camera_info and refusing a bad one are visible in /diagnostics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid, Odometry
from rosutil import image_cdr, random_rgb
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from test_nav2 import readme_costmap, static_layer_cost

from offroad_seg_ros.ground.fusion import fuse_frames
from offroad_seg_ros.ground.local_map import LocalMap, MapSpec, odometry_pose
from offroad_seg_ros.ground.mapper import GroundFrame
from offroad_seg_ros.ground.projection import (
    UNKNOWN,
    CameraModel,
    CameraPose,
    ClassCosts,
    GridSpec,
    GroundProjector,
    obstacle_points,
    occupancy_values,
)
from offroad_seg_ros.inference.segmenter import Segmenter

H, W = 60, 80
K = [60.0, 0.0, 39.5, 0.0, 60.0, 29.5, 0.0, 0.0, 1.0]
POSE = [0.2, 0.0, 1.5, 0.0, 0.35, 0.0]


def _info(k=K, width=W, height=H) -> CameraInfo:
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.k, info.d = k, [-0.1, 0.01, 0.0, 0.0, 0.0]
    info.header.frame_id = "cam_optical"
    return info


def _diag(d: DiagnosticArray) -> dict[str, str]:
    return {kv.key: kv.value for kv in d.status[0].values}


def test_grid_and_obstacles(start_node, peer, tiny_artifact):
    node = start_node("-p", "publish_grid:=true", "-p", "publish_obstacles:=true", "-p", "base_frame:=base",
                      "-p", f"camera_pose:={POSE}", "-p", "grid_resolution:=0.1", "-p", "grid_size:=[20.0, 20.0]",
                      "-p", "max_range:=9.0", "-p", "diagnostics_period:=0.2", "-r", "camera_info:=/cam/camera_info")
    grids = peer.collect(OccupancyGrid, "/segmentation_node/grid")
    clouds = peer.collect(PointCloud2, "/segmentation_node/obstacles")
    diags = peer.collect(DiagnosticArray, "/diagnostics")
    pub = peer.publisher(Image, "/image")
    info_pub = peer.publisher(CameraInfo, "/cam/camera_info")
    node.wait_for_line("segmenting")
    peer.wait_for_subscriber(pub)
    peer.wait_for_subscriber(info_pub)
    rgb = random_rgb(H, W, seed=11)

    # No camera_info yet: the frame is segmented, the ground outputs wait, diagnostics say why.
    peer.send_until(pub, image_cdr(rgb, sec=1), lambda: diags and "no camera_info received on /cam/camera_info yet"
                    in diags[-1].status[0].message, what="the camera_info warning")
    assert grids == [] and diags[-1].status[0].level == b"\x01"

    # A zero focal length is refused and counted.
    peer.send_until(info_pub, _info(k=[0.0] + K[1:]), lambda: _diag(diags[-1]).get("camera_info_refused") != "0",
                    what="a refused camera_info")
    assert "zero or invalid focal length" in _diag(diags[-1])["ground_problem"]

    # camera_info goes best effort, as drivers send it: resent with each frame.
    # A copy of frame 1 may still reach the node after it and be projected too:
    # the outputs of frame 2 are the ones with its stamp.
    stamped = lambda msgs: [m for m in msgs if (m.header.stamp.sec, m.header.stamp.nanosec) == (2, 5)]  # noqa: E731
    _send_with_info(peer, pub, info_pub, image_cdr(rgb, sec=2, nanosec=5), _info(),
                    lambda: stamped(grids) and stamped(clouds), what="~/grid and ~/obstacles of frame 2")
    grid, cloud = stamped(grids)[-1], stamped(clouds)[-1]

    seg = Segmenter(tiny_artifact, device="cpu", warmup_size=None)
    camera = CameraModel(W, H, tuple(K), (-0.1, 0.01, 0.0, 0.0, 0.0), "plumb_bob")
    spec = GridSpec(0.1, 20.0, 20.0, max_range=9.0)
    cost, obstacle = GroundProjector(camera, CameraPose.from_list(POSE), spec).project(
        seg(rgb).mask, ClassCosts(seg.classes, seg.classes.cost_lut()))
    assert (grid.header.frame_id, grid.header.stamp.sec, grid.header.stamp.nanosec) == ("base", 2, 5)
    assert (grid.info.width, grid.info.height, grid.info.resolution) == (200, 200, pytest.approx(0.1))
    assert (grid.info.origin.position.x, grid.info.origin.position.y) == (-10.0, -10.0)
    np.testing.assert_array_equal(np.array(grid.data, np.int8), occupancy_values(cost))
    assert (np.array(grid.data) >= 0).sum() > 100  # the camera sees ground

    assert (cloud.header.frame_id, cloud.header.stamp.sec) == ("base", 2)
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        (n, o, PointField.FLOAT32, 1) for n, o in (("x", 0), ("y", 4), ("z", 8), ("cost", 12))]
    assert (cloud.height, cloud.point_step, cloud.is_bigendian) == (1, 16, False)
    want = obstacle_points(cost, obstacle, spec, 0.3)
    assert cloud.width == len(want) > 0
    np.testing.assert_array_equal(np.frombuffer(bytes(cloud.data), "<f4").reshape(-1, 4), want)

    # camera_info for another image size: refused for these frames, named.
    _send_with_info(peer, pub, info_pub, image_cdr(rgb, sec=3), _info(width=640, height=480),
                    lambda: "says 640x480, the image is 80x60" in _diag(diags[-1])["ground_problem"],
                    what="the size mismatch")


def _send_with_info(peer, pub, info_pub, frame, info, done, what):
    """camera_info, then the frame, again until `done()`: either may be lost
    (best effort) or overtaken on a busy computer."""
    peer.send_until(pub, frame, done, what=what, before=lambda: info_pub.publish(info))


@pytest.mark.parametrize("pose, message", [
    ("[0.0, 0.0, -0.5, 0.0, 0.0, 0.0]", "on or below the ground"),
    ("[0.0, 0.0, 1.0, 0.0, -1.5, 0.0]", "sees no ground"),
])
def test_a_pose_that_cannot_see_the_ground_is_fatal(start_node, pose, message):
    node = start_node("-p", "publish_grid:=true", "-p", f"camera_pose:={pose}")
    assert node.wait(60) == 1
    fatal = [line for line in node.output.splitlines() if "[FATAL]" in line]
    assert len(fatal) == 1 and message in fatal[0], node.output


@pytest.fixture
def sharp_artifact(tiny_artifact, tmp_path):
    """The tiny artifact with a low temperature: its random-weights confidence spreads over 0..1."""
    import json
    import shutil

    art = tmp_path / "sharp"
    shutil.copytree(tiny_artifact, art)
    meta = json.loads((art / "model.json").read_text())
    meta["calibration"] = {"temperature": 0.05}
    (art / "model.json").write_text(json.dumps(meta))
    return art


def test_min_confidence_makes_the_unsure_pixels_unknown_in_cost_and_grid(start_node, peer, sharp_artifact):
    rgb = random_rgb(H, W, seed=11)
    free = Segmenter(sharp_artifact, device="cpu", warmup_size=None)(rgb, ("mask", "confidence"))
    level = int(np.median(free.confidence))
    node = start_node("-p", "publish_grid:=true", "-p", f"camera_pose:={POSE}", "-p", "grid_resolution:=0.1",
                      "-p", "grid_size:=[20.0, 20.0]", "-p", "max_range:=9.0", "-p", "publish_confidence:=true",
                      "-p", f"min_confidence:={level / 255}", model=str(sharp_artifact))
    grids = peer.collect(OccupancyGrid, "/segmentation_node/grid")
    costs = peer.collect(Image, "/segmentation_node/cost")
    confs = peer.collect(Image, "/segmentation_node/confidence")
    pub = peer.publisher(Image, "/image")
    info_pub = peer.publisher(CameraInfo, "/camera_info")
    node.wait_for_line("segmenting")
    peer.wait_for_subscriber(pub)
    peer.wait_for_subscriber(info_pub)
    stamped = lambda msgs: [m for m in msgs if m.header.stamp.sec == 4]  # noqa: E731
    _send_with_info(peer, pub, info_pub, image_cdr(rgb, sec=4), _info(),
                    lambda: stamped(grids) and stamped(costs) and stamped(confs), what="grid, cost, confidence")
    cost = np.frombuffer(bytes(stamped(costs)[-1].data), np.uint8).reshape(H, W)
    conf = np.frombuffer(bytes(stamped(confs)[-1].data), np.uint8).reshape(H, W)
    unsure = conf < level
    assert 0.2 < unsure.mean() < 0.8
    seg = Segmenter(sharp_artifact, device="cpu", warmup_size=None)
    mask = seg(rgb).mask
    np.testing.assert_array_equal(cost, np.where(unsure, 255, seg.classes.cost_lut()[mask]))  # exactly those
    camera = CameraModel(W, H, tuple(K), (-0.1, 0.01, 0.0, 0.0, 0.0), "plumb_bob")
    proj = GroundProjector(camera, CameraPose.from_list(POSE), GridSpec(0.1, 20.0, 20.0, max_range=9.0))
    costs_of = ClassCosts(seg.classes, seg.classes.cost_lut())
    want = occupancy_values(proj.project(np.where(unsure, 255, mask).astype(np.uint8), costs_of)[0])
    got = np.array(stamped(grids)[-1].data, np.int8)
    np.testing.assert_array_equal(got, want)  # unsure pixels neither mark nor clear a cell
    assert (occupancy_values(proj.project(mask, costs_of)[0]) != got).any()  # and that changed the grid


TWO_POSES = {"front": [0.2, 0.0, 1.5, 0.0, 0.35, 0.0], "left": [0.0, 0.2, 1.5, 0.0, 0.35, 1.5708]}
SPEC = GridSpec(0.1, 20.0, 20.0, max_range=9.0)


def _start_two_cameras(start_node, peer, *args):
    """A node with cameras front and left (TWO_POSES) on SPEC's grid, and the peer's image and
    camera_info publishers for them, matched."""
    node = start_node("-p", "cameras:=['front', 'left']", "-p", "grid_resolution:=0.1",
                      "-p", "grid_size:=[20.0, 20.0]", "-p", "max_range:=9.0", *args,
                      *[a for c, pose in TWO_POSES.items() for a in ("-p", f"{c}.camera_pose:={pose}")])
    pubs = {c: peer.publisher(Image, f"/{c}/image") for c in TWO_POSES}
    infos = {c: peer.publisher(CameraInfo, f"/{c}/camera_info") for c in TWO_POSES}
    node.wait_for_line("segmenting /left/image")
    for pub in [*pubs.values(), *infos.values()]:
        peer.wait_for_subscriber(pub)
    return pubs, infos


def _offline_grids(tiny_artifact, rgb):
    """Each camera's frame segmented and projected offline onto SPEC, with pixel counts."""
    seg = Segmenter(tiny_artifact, device="cpu", warmup_size=None)
    costs = ClassCosts(seg.classes, seg.classes.cost_lut())
    camera = CameraModel(W, H, tuple(K), (-0.1, 0.01, 0.0, 0.0, 0.0), "plumb_bob")
    frames = []
    for c, pose in TWO_POSES.items():
        cost, obstacle, count = GroundProjector(camera, CameraPose.from_list(pose), SPEC).project_counted(
            seg(rgb[c]).mask, costs)
        frames.append(GroundFrame(cost, obstacle, False, count))
    return frames


def test_two_cameras_fuse_into_one_grid(start_node, peer, tiny_artifact):
    grids = peer.collect(OccupancyGrid, "/segmentation_node/grid")
    clouds = peer.collect(PointCloud2, "/segmentation_node/obstacles")
    pubs, infos = _start_two_cameras(start_node, peer, "-p", "publish_grid:=true", "-p", "publish_obstacles:=true",
                                     "-p", "base_frame:=base")
    rgb = {c: random_rgb(H, W, seed=20 + i) for i, c in enumerate(TWO_POSES)}
    centres = SPEC.centres(np.arange(SPEC.rows * SPEC.cols))

    def sees(grid, axis):  # known cells more than 1 m out along x (front) or y (left)
        known = np.array(grid.data) >= 0
        return (known & (centres[:, axis] > 1.0) & (np.abs(centres[:, 1 - axis]) < 0.5)).any()

    _send_with_info(peer, pubs["front"], infos["front"], image_cdr(rgb["front"], sec=2), _info(),
                    lambda: grids and sees(grids[-1], 0), what="a fused grid with the front camera's view")
    _send_with_info(peer, pubs["left"], infos["left"], image_cdr(rgb["left"], sec=2, nanosec=1), _info(),
                    lambda: sees(grids[-1], 0) and sees(grids[-1], 1) and clouds and
                    clouds[-1].header.stamp.nanosec == 1, what="a fused grid with both views")
    grid = grids[-1]
    assert (grid.header.frame_id, grid.header.stamp.sec, grid.header.stamp.nanosec) == ("base", 2, 1)  # the newest

    want = fuse_frames(_offline_grids(tiny_artifact, rgb))
    np.testing.assert_array_equal(np.array(grid.data, np.int8), occupancy_values(want.cost))
    np.testing.assert_array_equal(np.frombuffer(bytes(clouds[-1].data), "<f4").reshape(-1, 4),
                                  obstacle_points(want.cost, want.obstacle, SPEC, 0.3))
    # per-camera grids only with per_camera_grids:=true
    assert peer.node.count_publishers("/segmentation_node/front/grid") == 0


def test_local_map_over_odometry_from_two_cameras(start_node, peer, tiny_artifact):
    maps = peer.collect(OccupancyGrid, "/segmentation_node/map")
    diags = peer.collect(DiagnosticArray, "/diagnostics")
    odom_pub = peer.publisher(Odometry, "/odom")
    pubs, infos = _start_two_cameras(start_node, peer, "-p", "publish_map:=true", "-p", "map_resolution:=0.2",
                                     "-p", "map_size:=24.0", "-p", "map_rate:=10.0", "-p", "map_mark_after:=1",
                                     "-p", "diagnostics_period:=0.2")
    peer.wait_for_subscriber(odom_pub)
    assert peer.node.count_publishers("/segmentation_node/grid") == 0  # the map alone was asked for

    def odometry(sec: int, x: float, y: float, yaw: float) -> Odometry:
        msg = Odometry()
        msg.header.stamp.sec, msg.header.frame_id, msg.child_frame_id = sec, "odom", "base"
        msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
        msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
        return msg

    # The robot stands at (5, 3) facing +y; the offline answer: the same grids placed the same way.
    here = odometry(2, 5.0, 3.0, math.pi / 2)
    rgb = {c: random_rgb(H, W, seed=30 + i) for i, c in enumerate(TWO_POSES)}
    offline = LocalMap(MapSpec(resolution=0.2, size=24.0, mark_after=1), SPEC)
    offline.on_odometry(*odometry_pose(here))
    for frame in _offline_grids(tiny_artifact, rgb):
        assert offline.integrate(frame, 2 * 10**9)
    want_cost, window, _ = offline.snapshot()
    want = occupancy_values(want_cost).reshape(-1)
    assert (want >= 0).sum() > 300  # both cameras' views, in odom cells

    for c in TWO_POSES:  # odometry and camera_info with every frame: any of them may be lost
        peer.send_until(pubs[c], image_cdr(rgb[c], sec=2, frame_id=f"{c}_optical"),
                        lambda c=c: maps and (np.array(maps[-1].data) >= 0).sum() > (50 if c == "front" else 300),
                        what=f"~/map with {c}'s view", before=lambda c=c: (odom_pub.publish(here),
                                                                          infos[c].publish(_info())))
    peer.spin_until(lambda: np.array_equal(np.array(maps[-1].data, np.int8), want), what="~/map as placed offline")
    m = maps[-1]
    assert (m.header.frame_id, m.header.stamp.sec, m.info.resolution) == ("odom", 2, pytest.approx(0.2))
    assert (m.info.width, m.info.height) == (120, 120)
    assert (m.info.origin.position.x, m.info.origin.position.y) == pytest.approx(window.origin)
    # What Nav2's StaticLayer makes of it with the README's costmap: the class costs, within 2.
    nav2 = static_layer_cost(np.array(m.data, np.int8), readme_costmap()).astype(int)
    known = want_cost.reshape(-1) != UNKNOWN
    assert (np.abs(nav2[known] - want_cost.reshape(-1)[known]) <= 2).all() and (nav2[~known] == 255).all()

    # A 10 m leap of the odometry (a reset): the map clears, and /diagnostics says so.
    # (sent again until seen: best effort, like a driver's; a repeat of the same pose is no new jump)
    peer.send_until(odom_pub, odometry(3, 15.0, 3.0, math.pi / 2),
                    lambda: any(s.name.endswith(": local map") and "odometry leapt 10.00 m" in s.message
                                for d in diags for s in d.status), what="the jump in /diagnostics")
    peer.spin_until(lambda: (np.array(maps[-1].data) == -1).all() and maps[-1].header.stamp.sec == 3,
                    what="a cleared ~/map")
