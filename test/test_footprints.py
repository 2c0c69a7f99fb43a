"""Footprint labels against known answers: a pinhole camera on a robot driving a
straight line and a 90-degree turn; the pixels the wheel tracks must (and must
not) cover are computed here by hand, independently of the module's projection."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rosbags.rosbag2 import Writer

from offroad_seg_ros.core.stamps import NS_PER_S, from_ns
from offroad_seg_ros.data.bag import TYPESTORE, BagError, read_odometry
from offroad_seg_ros.ground.footprints import FootprintSpec, Trajectory, footprint_mask, footprint_masks
from offroad_seg_ros.ground.projection import CameraModel, CameraPose

W, H = 640, 360
F, CX, CY = 400.0, 319.5, 179.5
HEIGHT, PITCH = 1.5, math.radians(15)
CAMERA = CameraModel(W, H, (F, 0.0, CX, 0.0, F, CY, 0.0, 0.0, 1.0))
POSE = CameraPose(z=HEIGHT, pitch=PITCH)
T0 = 1_700_000_000 * NS_PER_S  # bag-like absolute stamps
DT = NS_PER_S // 20  # odometry every 0.05 s
HALF = 0.6  # the default track_width / 2


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _pixel(base_point) -> tuple[float, float]:
    """A base-frame point -> (u, v) through the pinhole camera at (0, 0, HEIGHT) pitched down by PITCH,
    written out by hand: the camera's forward / left / up axes in the base frame, then u = f x/z + cx."""
    forward = np.array([math.cos(PITCH), 0.0, -math.sin(PITCH)])
    left = np.array([0.0, 1.0, 0.0])
    up = np.array([math.sin(PITCH), 0.0, math.cos(PITCH)])
    d = np.asarray(base_point, float) - np.array([0.0, 0.0, HEIGHT])
    z, x, y = d @ forward, -(d @ left), -(d @ up)  # optical: x right, y down, z forward
    assert z > 0
    return F * x / z + CX, F * y / z + CY


def _at(mask: np.ndarray, base_point, radius: int = 0) -> np.ndarray:
    """The mask's values in the (2 radius + 1)^2 pixels around where `base_point` projects (must be inside)."""
    u, v = (int(round(c)) for c in _pixel(base_point))
    assert radius <= u < W - radius and radius <= v < H - radius, (u, v)
    return mask[v - radius:v + radius + 1, u - radius:u + radius + 1]


def _straight(seconds: float = 20.0, speed: float = 1.0) -> Trajectory:
    t = np.arange(int(round(seconds * NS_PER_S / DT)) + 1) * DT
    return Trajectory(T0 + t, 3.0 + speed * t / NS_PER_S, np.full(t.size, -2.0), np.zeros(t.size))


def _mask(trajectory: Trajectory, stamp: int, spec: FootprintSpec | None = None) -> np.ndarray:
    return footprint_mask(CAMERA, POSE, trajectory, stamp, spec or FootprintSpec(), (H, W))


STAMP = T0 + 2 * NS_PER_S  # the frame at t = 2 s


def test_straight_drive_labels_the_wheel_tracks_only():
    mask = _mask(_straight(), STAMP)
    assert mask.dtype == bool and mask.shape == (H, W)
    for ahead in (2.0, 3.0, 5.0):
        for side in (HALF, -HALF):
            assert _at(mask, (ahead, side, 0.0), radius=2).all(), (ahead, side)
    assert not _at(mask, (3.0, 0.0, 0.0), radius=2).any()  # under the body, between the wheels
    for ahead in (9.5, 12.0):  # beyond max_distance (8 m travelled)
        for side in (HALF, -HALF):
            assert not _at(mask, (ahead, side, 0.0)).any(), (ahead, side)
    for side in (1.2, -1.2):  # outside the tracks
        assert not _at(mask, (3.0, side, 0.0)).any()


def test_nothing_nearer_than_min_distance():
    mask = _mask(_straight(), STAMP, FootprintSpec(min_distance=3.0))
    assert not _at(mask, (2.0, HALF, 0.0), radius=1).any()
    assert not _at(mask, (2.5, -HALF, 0.0), radius=1).any()
    assert _at(mask, (4.0, HALF, 0.0), radius=1).all()


def test_wheel_width_sets_the_track_width_in_the_image():
    """A 0.25 m wheel at 3 m ahead: the label spans the track's edges, not much more."""
    mask = _mask(_straight(), STAMP)
    (u_in, v), (u_out, _) = _pixel((3.0, HALF + 0.1, 0.0)), _pixel((3.0, HALF + 0.2, 0.0))
    assert mask[round(v), round(u_in)] and not mask[round(v), round(u_out)]


def _turn() -> tuple[Trajectory, float, float, float, float]:
    """A left turn of radius 4 m at 1 m/s through 90 degrees, starting at odom (10, 5) heading 2.5 rad,
    so the heading wraps from +pi to -pi on the way (odometry reports yaw in [-pi, pi])."""
    radius, speed, x0, y0, yaw0 = 4.0, 1.0, 10.0, 5.0, 2.5
    rate = speed / radius
    t = np.arange(int(math.pi / 2 / rate / 0.05) + 1) * 0.05
    heading = yaw0 + rate * t
    cx, cy = x0 - radius * math.sin(yaw0), y0 + radius * math.cos(yaw0)  # the circle's centre
    x, y = cx + radius * np.sin(heading), cy - radius * np.cos(heading)
    yaw = np.array([math.remainder(h, math.tau) for h in heading])
    assert (np.diff(yaw) < 0).any()  # it does wrap
    return Trajectory(T0 + np.round(t * NS_PER_S).astype(np.int64), x, y, yaw), radius, cx, cy, rate


def _turn_base_point(after: float, lateral: float, frame_t: float) -> np.ndarray:
    """Where the ground point `lateral` m left of the path, `after` m along it after the frame at
    `frame_t` s, lies in the base frame at that frame: odom -> base with a rotation matrix by hand."""
    _, radius, cx, cy, rate = _turn()
    h0, h1 = 2.5 + rate * frame_t, 2.5 + rate * frame_t + after / radius
    on_circle = lambda h: np.array([cx + radius * math.sin(h), cy - radius * math.cos(h), 0.0])
    robot, point = on_circle(h0), on_circle(h1) + _rot_z(h1) @ np.array([0.0, lateral, 0.0])
    return _rot_z(h0).T @ (point - robot)


def test_turn_labels_where_the_robot_went():
    trajectory = _turn()[0]
    frame_t = 2.575  # between two odometry samples, where the heading wraps
    mask = _mask(trajectory, T0 + round(frame_t * NS_PER_S))
    for after, lateral in ((3.0, HALF), (3.0, -HALF), (3.5, HALF), (3.5, -HALF), (2.5, -HALF)):
        point = _turn_base_point(after, lateral, frame_t)
        assert _at(mask, point, radius=2).all(), (after, lateral, point)
    for after in (2.5, 3.0, 3.5):  # the path's centre line passed under the body
        assert not _at(mask, _turn_base_point(after, 0.0, frame_t), radius=1).any()
    mirrored = _turn_base_point(3.0, HALF, frame_t) * np.array([1.0, -1.0, 1.0])  # a right turn's left wheel
    assert not _at(mask, mirrored, radius=1).any()
    straight_on = np.array([3.5, HALF, 0.0])  # had the robot not turned
    assert not _at(mask, straight_on, radius=1).any()


def test_horizon_is_bounded_in_time():
    trajectory = _straight()
    early = _mask(trajectory, STAMP, FootprintSpec(min_distance=0.0, max_time=1.0))
    assert not _at(early, (3.0, HALF, 0.0)).any()
    assert not early.any()  # the first metre is under the camera's view
    later = _mask(trajectory, STAMP, FootprintSpec(min_distance=0.0, max_time=2.5))
    assert _at(later, (2.0, HALF, 0.0), radius=1).all()
    assert not _at(later, (3.0, HALF, 0.0), radius=1).any()


def test_no_label_without_later_motion():
    trajectory = _straight()
    assert not _mask(trajectory, int(trajectory.stamps[-1])).any()  # the last stamp: nothing after it
    assert not _mask(trajectory, T0 - 1).any()  # before the odometry
    assert not _mask(trajectory, int(trajectory.stamps[-1]) + 1).any()  # after it
    still = Trajectory(trajectory.stamps, np.full(len(trajectory), 3.0), np.zeros(len(trajectory)),
                       np.zeros(len(trajectory)))
    assert not _mask(still, STAMP).any()
    # Close to the end: less than min_distance left to drive.
    assert not _mask(trajectory, int(trajectory.stamps[-1]) - NS_PER_S // 2).any()


def test_tracks_have_no_holes():
    """Every image row the left track crosses between 2 and 6 m ahead has a labelled pixel in the track's
    column band: near the camera, 5 cm samples are several pixels apart, so points alone would leave gaps."""
    mask = _mask(_straight(), STAMP)
    v_far, v_near = _pixel((6.0, HALF, 0.0))[1], _pixel((2.0, HALF, 0.0))[1]
    assert v_near - v_far > 50
    for v in range(math.ceil(v_far), math.floor(v_near) + 1):
        # The ground distance this row sees (flat ground, optical axis pitched down), then the band.
        angle = PITCH + math.atan((v - CY) / F)
        ahead = HEIGHT / math.tan(angle)
        u_outer, u_inner = _pixel((ahead, HALF + 0.125, 0.0))[0], _pixel((ahead, HALF - 0.125, 0.0))[0]
        band = mask[v, max(0, math.floor(u_outer) - 1):math.ceil(u_inner) + 2]
        assert band.any(), (v, ahead)
        assert band.mean() > 0.7, (v, ahead)


def test_trajectory_interpolates_yaw_on_the_circle():
    traj = Trajectory([0, 10], [0.0, 1.0], [0.0, 2.0], [3.0, -3.0])  # 0.28 rad across +-pi
    pose = traj.at(5)
    assert pose is not None
    assert pose.x == pytest.approx(0.5) and pose.y == pytest.approx(1.0)
    assert abs(math.remainder(pose.yaw - math.pi, math.tau)) < 1e-9
    assert traj.at(-1) is None and traj.at(11) is None
    for bad in (([], [], [], []), ([0, 0], [0, 1], [0, 0], [0, 0]), ([1, 0], [0, 1], [0, 0], [0, 0]),
                ([0.0, 1.5], [0, 1], [0, 0], [0, 0]), ([0, 1], [0], [0, 0], [0, 0])):
        with pytest.raises(ValueError, match="Trajectory"):
            Trajectory(*bad)


@pytest.mark.parametrize("field, value", [
    ("track_width", 0.0), ("wheel_width", -0.1), ("min_distance", -1.0), ("max_distance", 0.0),
    ("max_time", float("nan")), ("step", 0.0), ("min_distance", 9.0)])
def test_spec_is_validated(field, value):
    with pytest.raises(ValueError, match=f"FootprintSpec.{field}"):
        FootprintSpec(**{field: value})


def test_shape_must_match_the_camera_and_masks_stack():
    trajectory = _straight()
    with pytest.raises(ValueError, match="shape"):
        footprint_mask(CAMERA, POSE, trajectory, STAMP, FootprintSpec(), (W, H))
    masks = footprint_masks(CAMERA, POSE, trajectory, [STAMP, int(trajectory.stamps[-1])], FootprintSpec(), (H, W))
    assert masks.shape == (2, H, W) and masks[0].any() and not masks[1].any()
    assert (masks[0] == _mask(trajectory, STAMP)).all()


# -- read_odometry -------------------------------------------------------------------

def _odometry(stamp: int, x: float, y: float, yaw: float):
    ts = TYPESTORE
    t = ts.types
    header = t["std_msgs/msg/Header"](t["builtin_interfaces/msg/Time"](*from_ns(stamp)), "odom")
    point, quat = t["geometry_msgs/msg/Point"], t["geometry_msgs/msg/Quaternion"]
    pose = t["geometry_msgs/msg/Pose"](point(x, y, 0.0), quat(0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)))
    vec = t["geometry_msgs/msg/Vector3"]
    twist = t["geometry_msgs/msg/Twist"](vec(0.0, 0.0, 0.0), vec(0.0, 0.0, 0.0))
    cov = np.zeros(36)
    return t["nav_msgs/msg/Odometry"](header, "base_link", t["geometry_msgs/msg/PoseWithCovariance"](pose, cov),
                                      t["geometry_msgs/msg/TwistWithCovariance"](twist, cov))


def _write(path, poses):
    with Writer(path, version=8) as writer:
        odom = writer.add_connection("/odom", "nav_msgs/msg/Odometry", typestore=TYPESTORE)
        other = writer.add_connection("/camera/image_name", "std_msgs/msg/Header", typestore=TYPESTORE)
        for i, (stamp, x, y, yaw) in enumerate(poses):
            msg = _odometry(stamp, x, y, yaw)
            writer.write(odom, T0 + i, TYPESTORE.serialize_cdr(msg, msg.__msgtype__))
        writer.write(other, T0, TYPESTORE.serialize_cdr(msg.header, "std_msgs/msg/Header"))
    return path


POSES = [(T0 + 3 * DT, 1.5, -0.25, -3.0), (T0, 0.0, 0.0, 0.0), (T0 + DT, 0.5, 0.125, 0.75),
         (T0 + 2 * DT, 1.0, 0.5, 3.1), (T0 + 4 * DT, 2.0, -1.0, -1.5)]  # header stamps out of order


def test_read_odometry_round_trip(tmp_path):
    bag = _write(tmp_path / "odom_bag", POSES)
    stamps, x, y, yaw = read_odometry(bag, "/odom")
    expect = sorted(POSES)
    assert stamps.dtype == np.int64 and stamps.tolist() == [p[0] for p in expect]
    assert x.tolist() == [p[1] for p in expect] and y.tolist() == [p[2] for p in expect]
    np.testing.assert_allclose(yaw, [p[3] for p in expect], rtol=0, atol=1e-12)
    assert len(Trajectory(stamps, x, y, yaw)) == 5


def test_read_odometry_drops_repeated_stamps(tmp_path):
    bag = _write(tmp_path / "dup_bag", POSES + [(T0 + DT, 9.0, 9.0, 0.0)])
    stamps, x, _y, _yaw = read_odometry(bag, "/odom")
    assert stamps.size == 5 and x[1] == 0.5  # the first message of that stamp kept


def test_read_odometry_topic_errors(tmp_path):
    bag = _write(tmp_path / "bag", POSES)
    with pytest.raises(BagError, match=r"no topic /wheel_odom.*/odom \(nav_msgs/msg/Odometry\)"):
        read_odometry(bag, "/wheel_odom")
    with pytest.raises(BagError, match=r"/camera/image_name is std_msgs/msg/Header"):
        read_odometry(bag, "/camera/image_name")
    with pytest.raises(BagError, match="not found"):
        read_odometry(tmp_path / "missing", "/odom")
