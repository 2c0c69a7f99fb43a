"""TF lookups (ground/transforms.py): known answers that the package's own TransformBuffer and,
on a full ROS 2 install, tf2_ros's Buffer (through node/tf_listener.py's adapter) must both
give; then the camera pose and ~/map's odometry taken from TF (ground/mapper.py,
node/ground_outputs.py), ROS-free, with the real buffer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from offroad_seg_ros.core.stamps import from_ns
from offroad_seg_ros.data.bag import TYPESTORE
from offroad_seg_ros.ground.local_map import LocalMap, Pose2D
from offroad_seg_ros.ground.mapper import GroundFrame, GroundMapper, MapperSpec
from offroad_seg_ros.ground.projection import (
    UNKNOWN,
    CameraModel,
    CameraPose,
    ClassCosts,
    GridSpec,
    GroundProjector,
    occupancy_values,
)
from offroad_seg_ros.ground.transforms import Transform, TransformBuffer, TransformError

S = 10**9
PITCH = 0.3
# URDF's camera_link -> camera_optical joint, rpy (-pi/2, 0, -pi/2), as a quaternion (x, y, z, w).
OPTICAL = (-0.5, 0.5, -0.5, 0.5)
YAW90 = (0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4))
PITCHED = (0.0, math.sin(PITCH / 2), 0.0, math.cos(PITCH / 2))
IDENTITY = (0.0, 0.0, 0.0, 1.0)

# (parent, child, stamp s, translation, rotation, static): what robot_state_publisher (static) and
# an odometry node (dynamic) would publish.
TREE = [
    ("base_link", "camera_mount", 0.0, (0.3, 0.0, 1.2), PITCHED, True),
    ("camera_mount", "camera_optical", 0.0, (0.05, 0.02, 0.0), OPTICAL, True),
    ("base_link", "lidar", 0.0, (0.0, 0.0, 1.0), YAW90, True),
    ("odom", "base_link", 1.0, (1.0, 0.0, 0.0), IDENTITY, False),
    ("odom", "base_link", 2.0, (3.0, 2.0, 0.0), YAW90, False),
    ("map", "island", 0.0, (0.0, 0.0, 0.0), IDENTITY, True),  # a tree of its own
]


def _rot(roll: float = 0.0, pitch: float = 0.0, yaw: float = 0.0) -> np.ndarray:
    """Rz(yaw) Ry(pitch) Rx(roll), written out here (not the package's)."""
    cr, sr, cp, sp, cy, sy = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch), math.cos(yaw), \
        math.sin(yaw)
    return (np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]]) @ np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
            @ np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]]))


OPTICAL_AXES = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]])  # the optical frame's axes in its camera link
CAMERA_IN_BASE = np.array([0.3 + 0.05 * math.cos(PITCH), 0.02, 1.2 - 0.05 * math.sin(PITCH)])

# (target, source, stamp s) -> (translation, rotation matrix): source's pose in target.
ANSWERS = [
    # the static chain, at any stamp; as a camera pose: the mount's pitch, the optical offset
    (("base_link", "camera_optical", 1.5), (CAMERA_IN_BASE, _rot(pitch=PITCH) @ OPTICAL_AXES)),
    (("base_link", "camera_optical", 0.0), (CAMERA_IN_BASE, _rot(pitch=PITCH) @ OPTICAL_AXES)),
    # the other way round: base_link's origin seen from the camera
    (("camera_optical", "base_link", 7.0), ((_rot(pitch=PITCH) @ OPTICAL_AXES).T @ -CAMERA_IN_BASE,
                                            (_rot(pitch=PITCH) @ OPTICAL_AXES).T)),
    # up one branch and down another
    (("lidar", "camera_mount", 1.0), (np.array([0.0, -0.3, 0.2]), _rot(pitch=PITCH, yaw=-math.pi / 2))),
    # a dynamic edge between its samples: translation linear, rotation by slerp (not a normalised
    # linear blend of the quaternions, which would turn 21.6 degrees at a quarter of the way)
    (("odom", "base_link", 1.5), (np.array([2.0, 1.0, 0.0]), _rot(yaw=math.pi / 4))),
    (("odom", "base_link", 1.25), (np.array([1.5, 0.5, 0.0]), _rot(yaw=math.pi / 8))),
    # stamp 0: the latest
    (("odom", "base_link", 0.0), (np.array([3.0, 2.0, 0.0]), _rot(yaw=math.pi / 2))),
    # dynamic and static edges in one chain
    (("odom", "camera_optical", 2.0), (np.array([3.0, 2.0, 0.0]) + _rot(yaw=math.pi / 2) @ CAMERA_IN_BASE,
                                       _rot(pitch=PITCH, yaw=math.pi / 2) @ OPTICAL_AXES)),
]
# (target, source, stamp s) -> the kind of TransformError; its message names both frames
REFUSED = [
    (("odom", "base_link", 2.5), "extrapolation"),  # beyond the newest sample: never extrapolated
    (("odom", "base_link", 0.5), "extrapolation"),  # before the oldest
    (("odom", "camera_optical", 3.0), "extrapolation"),
    (("base_link", "nowhere", 1.0), "lookup"),
    (("base_link", "island", 1.0), "connectivity"),
]


@pytest.fixture(params=["transforms.py", "tf2_ros"])
def tf(request):
    """TREE in the package's own buffer, or in tf2_ros's through the node's adapter."""
    if request.param == "tf2_ros":
        tf2_ros = pytest.importorskip("tf2_ros", reason="tf2 is not on PyPI: this case runs on full ROS 2 "
                                                        "installs (source /opt/ros/<distro>/setup.bash)")
        from geometry_msgs.msg import TransformStamped

        from offroad_seg_ros.node.tf_listener import Tf2Lookup

        lookup = Tf2Lookup(tf2_ros)
        for parent, child, stamp, t, q, static in TREE:
            msg = TransformStamped()
            msg.header.frame_id, msg.child_frame_id = parent, child
            msg.header.stamp.sec, msg.header.stamp.nanosec = from_ns(int(stamp * S))
            msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = t
            r = msg.transform.rotation
            r.x, r.y, r.z, r.w = q
            lookup.set_transform(msg, static)
        return lookup
    buffer = TransformBuffer()
    for parent, child, stamp, t, q, static in TREE:
        buffer.set_transform(parent, child, int(stamp * S), Transform.of(t, q), static)
    return buffer


@pytest.mark.parametrize("query, answer", ANSWERS, ids=[f"{t}<-{s}@{at}" for (t, s, at), _ in ANSWERS])
def test_known_answers(tf, query, answer):
    target, source, stamp = query
    got = tf.lookup(target, source, int(stamp * S))
    np.testing.assert_allclose(got.translation, answer[0], atol=1e-9)
    np.testing.assert_allclose(got.matrix, answer[1], atol=1e-9)


@pytest.mark.parametrize("query, kind", REFUSED, ids=[f"{t}<-{s}@{at}" for (t, s, at), _ in REFUSED])
def test_refusals_name_the_frames(tf, query, kind):
    target, source, stamp = query
    with pytest.raises(TransformError) as err:
        tf.lookup(target, source, int(stamp * S))
    assert err.value.kind == kind
    assert target in str(err.value) and source in str(err.value)


def test_the_optical_frame_gives_the_camera_pose_its_urdf_joints_compose_to(tf):
    """What the ground outputs take: the camera body frame's pose (x forward, z up) in base_link."""
    pose = tf.lookup("base_link", "camera_optical", 1 * S).camera_pose()
    np.testing.assert_allclose([pose.x, pose.y, pose.z, pose.roll, pose.pitch, pose.yaw],
                               [*CAMERA_IN_BASE, 0.0, PITCH, 0.0], atol=1e-9)


def test_the_buffer_messages_name_the_stamps_and_keep_a_bounded_history():
    buffer = TransformBuffer(cache_s=10.0)
    for k in range(30):  # 1 Hz for 30 s
        buffer.set_transform("odom", "base_link", k * S, Transform.of((k, 0, 0), IDENTITY))
    with pytest.raises(TransformError, match=r"odom <- base_link at 5\.000000 s .* into the past: odom -> "
                                             r"base_link has data from 19\.000000 s to 29\.000000 s"):
        buffer.lookup("odom", "base_link", 5 * S)
    assert buffer.lookup("odom", "base_link", 25 * S + S // 2).translation == pytest.approx((25.5, 0, 0))
    buffer.set_transform("odom", "base_link", 25 * S, Transform.of((99, 0, 0), IDENTITY))  # a repeat: ignored
    assert buffer.lookup("odom", "base_link", 25 * S).translation == pytest.approx((25, 0, 0))


def test_tf_messages_feed_the_buffer_and_bad_transforms_are_counted():
    msg_types = ("tf2_msgs/msg/TFMessage", "geometry_msgs/msg/TransformStamped", "geometry_msgs/msg/Transform",
                 "geometry_msgs/msg/Vector3", "geometry_msgs/msg/Quaternion", "std_msgs/msg/Header",
                 "builtin_interfaces/msg/Time")
    TF, Stamped, Tr, V, Q, Header, Time = (TYPESTORE.types[t] for t in msg_types)

    def stamped(parent, child, z, q):
        return Stamped(Header(Time(3, 0), parent), child, Tr(V(0.0, 0.0, z), Q(*q)))

    buffer = TransformBuffer()
    buffer.add_message(TF([stamped("base_link", "cam", 1.5, IDENTITY), stamped("base_link", "bad", 1.0, (0, 0, 0, 0)),
                           stamped("", "nameless", 1.0, IDENTITY)]), static=True)
    assert buffer.lookup("base_link", "cam", 0).translation == (0.0, 0.0, 1.5)
    assert buffer.rejected == 2 and "bad" not in buffer.frames


# -- the camera pose from TF in the ground outputs (ground/mapper.py) ----------------------------

H, W = 60, 80
K = (60.0, 0.0, 39.5, 0.0, 60.0, 29.5, 0.0, 0.0, 1.0)
CAMERA = CameraModel(W, H, K, (), "plumb_bob")
SPEC = GridSpec(0.1, 20.0, 20.0, max_range=9.0)
PARAMETER_POSE = CameraPose(0.0, 0.0, 1.5, 0.0, 0.3, 0.0)


def _camera_info_cdr() -> bytes:
    Info, Header, Time, Roi = (TYPESTORE.types[t] for t in ("sensor_msgs/msg/CameraInfo", "std_msgs/msg/Header",
                                                             "builtin_interfaces/msg/Time",
                                                             "sensor_msgs/msg/RegionOfInterest"))
    msg = Info(Header(Time(0, 0), "cam_optical"), H, W, "plumb_bob", np.zeros(5), np.array(K), np.eye(3).reshape(-1),
               np.zeros(12), 0, 0, Roi(0, 0, 0, 0, False))
    return bytes(TYPESTORE.serialize_cdr(msg, "sensor_msgs/msg/CameraInfo"))


@pytest.fixture
def costs(table):
    return ClassCosts(table, table.cost_lut())


@pytest.fixture
def mask(table):
    return np.random.default_rng(3).integers(0, len(table), (H, W)).astype(np.uint8)


def _mapper(costs, tf, source: str = "tf") -> GroundMapper:
    mapper = GroundMapper(PARAMETER_POSE, SPEC, costs, MapperSpec(camera_pose_source=source))
    mapper.on_camera_info(_camera_info_cdr())
    mapper.use_tf(tf, "base_link")
    mapper.frame_id = "cam_optical"
    return mapper


def _grid(pose: CameraPose, mask, costs) -> np.ndarray:
    return GroundProjector(CAMERA, pose, SPEC).project(mask, costs)[0]


def _optical(x: float, y: float, z: float, pitch: float) -> Transform:
    """The optical frame of a camera body at (x, y, z) pitched down by `pitch`."""
    return Transform.of((x, y, z), (0.0, math.sin(pitch / 2), 0.0, math.cos(pitch / 2))) * Transform.of((0, 0, 0),
                                                                                                       OPTICAL)


def test_camera_pose_stands_in_until_tf_has_the_frame_then_tf_places_the_grid(costs, mask):
    buffer = TransformBuffer()
    mapper = _mapper(costs, buffer)
    frame = mapper.project(mask, 1 * S)  # TF knows nothing yet: camera_pose
    assert frame is not None and (frame.cost == _grid(PARAMETER_POSE, mask, costs)).all()
    source = dict(mapper.values())["camera_pose_source"]
    assert source.startswith("parameter (TF has no base_link <- cam_optical") and "does not exist" in source

    buffer.set_transform("base_link", "cam_optical", 0, _optical(0.5, 0.2, 2.0, 0.45), static=True)
    frame = mapper.project(mask, 2 * S)
    want = _grid(CameraPose(0.5, 0.2, 2.0, 0.0, 0.45, 0.0), mask, costs)
    assert frame is not None and (frame.cost == want).all() and (want != _grid(PARAMETER_POSE, mask, costs)).any()
    assert dict(mapper.values())["camera_pose_source"] == "tf base_link <- cam_optical"
    assert mapper.condition() is None

    # Once TF gave the pose, a frame it has none for gets no grid (camera_pose would be a guess), named.
    mapper.frame_id = "cam2_optical"
    assert mapper.project(mask, 3 * S) is None
    warning = mapper.condition() or ""
    assert warning.startswith("1 frame(s) without a grid: camera pose: no transform base_link <- cam2_optical at "
                              "3.000000 s") and "does not exist" in warning
    assert dict(mapper.values())["camera_pose_missing"] == "1"


def test_a_moving_camera_is_interpolated_and_a_stamp_beyond_tf_skips_the_grid(costs, mask):
    buffer = TransformBuffer()
    buffer.set_transform("base_link", "cam_optical", 1 * S, _optical(0.0, 0.0, 1.4, 0.3))
    buffer.set_transform("base_link", "cam_optical", 2 * S, _optical(0.0, 0.0, 1.6, 0.3))
    mapper = _mapper(costs, buffer)
    # beyond TF's data: TF knows the frame, so camera_pose does not stand in even before a first pose
    assert mapper.project(mask, 5 * S) is None
    warning = mapper.condition() or ""
    assert "no transform base_link <- cam_optical at 5.000000 s" in warning and "extrapolation" in warning
    frame = mapper.project(mask, S + S // 4)
    assert frame is not None and (frame.cost == _grid(CameraPose(0.0, 0.0, 1.45, 0.0, 0.3, 0.0), mask, costs)).all()


def test_a_tf_pose_under_the_ground_skips_the_frame_and_parameter_ignores_tf(costs, mask):
    buffer = TransformBuffer()
    buffer.set_transform("base_link", "cam_optical", 0, _optical(0.0, 0.0, -0.2, 0.3), static=True)
    mapper = _mapper(costs, buffer)
    assert mapper.project(mask, S) is None  # not fatal, unlike a camera_pose parameter under the ground
    assert "camera pose from TF base_link <- cam_optical: camera_pose puts the camera at z=-0.2" in mapper.last_problem
    fixed = _mapper(costs, buffer, source="parameter")
    frame = fixed.project(mask, S)
    assert frame is not None and (frame.cost == _grid(PARAMETER_POSE, mask, costs)).all()
    assert dict(fixed.values())["camera_pose_source"] == "parameter"


# -- ~/map with odom -> base from TF (node/ground_outputs.py) ---------------------------------------

def _config(**params):
    from offroad_seg_ros.node.params import PARAMETERS, NodeConfig

    defaults = {name: default for name, (default, _) in PARAMETERS.items()}
    return NodeConfig.from_params({**defaults, "model": "m", "publish_map": True, "grid_size": [6.0, 6.0],
                                   "grid_resolution": 0.1, "max_range": 3.0, "map_resolution": 0.2,
                                   "map_mark_after": 1, **params})


def _ground(grid: GridSpec) -> GroundFrame:
    rng = np.random.default_rng(5)
    cost = np.where(rng.random((grid.rows, grid.cols)) < 0.5, 20, UNKNOWN).astype(np.uint8)
    obstacle = rng.random((grid.rows, grid.cols)) < 0.02
    cost[obstacle] = 254
    return GroundFrame(cost, obstacle, False)


def test_map_from_tf_odometry_equals_the_map_from_odometry_messages():
    from offroad_seg_ros.node.ground_outputs import GroundOutputs
    from offroad_seg_ros.node.messages import grid_fields, header_fields

    c = _config(odom_frame="odom")
    assert c.grid is not None and c.local_map is not None
    buffer = TransformBuffer()
    outputs = GroundOutputs(c, buffer)
    frame = _ground(c.grid)
    outputs.take("", frame, S, ())  # no odom -> base_link in TF yet: not placed, and TF's reason given
    (_, level, message, values), = outputs.diagnostics()
    assert level == 1 and message.startswith("no odometry received yet: ~/map waits (no transform odom <- "
                                             "base_link at 1.000000 s") and "does not exist" in message
    assert ("odometry_source", "tf odom <- base_link") in values and outputs.map_fields() is None

    buffer.set_transform("odom", "base_link", 1 * S, Transform.of((4.03, 1.07, 0.0), IDENTITY))
    buffer.set_transform("odom", "base_link", 2 * S, Transform.of((5.03, 2.07, 0.0), YAW90))
    outputs.take("", frame, S + S // 2, ())
    want = LocalMap(c.local_map, c.grid)  # the same grid placed by odometry at the pose TF interpolates
    want.on_odometry(S + S // 2, Pose2D(4.53, 1.57, math.pi / 4), "odom")
    assert want.integrate(frame, S + S // 2)
    snapshot = want.snapshot()
    assert snapshot is not None and (snapshot[0] != UNKNOWN).sum() > 100
    cost, window, stamp = snapshot
    want_fields = grid_fields(window, occupancy_values(cost), header_fields(from_ns(stamp), "odom"))
    assert outputs.map_fields() == want_fields

    # A stamp beyond TF's odometry: the frame stays out of ~/map, and /diagnostics says why.
    outputs.take("", frame, 9 * S, ())
    (_, level, message, _), = outputs.diagnostics()
    assert level == 1 and message.startswith("1 frame(s) not in ~/map: no transform odom <- base_link at 9.000000 s")
    assert "extrapolation" in message
    assert outputs.map_fields() == want_fields
