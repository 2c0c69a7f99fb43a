"""Footprint labels for `offroad-seg adapt` (offroad_seg_train/footprint_labels.py) from a recorded bag:
a robot driving straight along +x at 1 m/s with a pinhole camera pitched down. The pixels the wheel
tracks must (and must not) cover in the frame taken at t = 1 s are computed here by hand, independently
of the module's projection, then scaled to the frames' input size (the artifact's scale 0.5)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from conftest import make_artifact
from rosbags.rosbag2 import StoragePlugin, Writer

from offroad_seg_ros.core.artifact import load_artifact
from offroad_seg_ros.core.preprocess import Preprocess
from offroad_seg_ros.core.stamps import NS_PER_S, from_ns
from offroad_seg_ros.data.bag import TYPESTORE, BagError
from offroad_seg_ros.data.dataset import list_samples, read_image
from offroad_seg_ros.ground.footprints import FootprintSpec
from offroad_seg_train.adapt import LETHAL_COST, AdaptSettings, adapt
from offroad_seg_train.adapt_data import TargetFrames, read_target
from offroad_seg_train.footprint_labels import bag_footprints, frame_footprints
from offroad_seg_train.gate import GateSettings
from offroad_seg_train.scoring import score

W, H = 640, 360  # as recorded (and as the camera_info describes)
SCALE = 0.5  # the frames' input scale: 320 x 180
F, CX, CY = 400.0, 320.0, 180.0
HEIGHT, PITCH = 1.5, 0.26  # camera 1.5 m above the base, looking down by 0.26 rad (positive pitch: down)
CAMERA_POSE = [0.0, 0.0, HEIGHT, 0.0, PITCH, 0.0]
T0 = 1_700_000_000 * NS_PER_S
FRAME_TIMES = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
ODOM_RATE, ODOM_SECONDS, SPEED = 20, 20.0, 1.0
HALF = FootprintSpec().track_width / 2
IMAGE_TOPIC, INFO_TOPIC, ODOM_TOPIC = "/front/image_raw", "/front/camera_info", "/odom"


def _stamp(seconds: float) -> int:
    return T0 + round(seconds * NS_PER_S)


# -- the bag -------------------------------------------------------------------------------

def _header(ns: int, frame_id: str):
    t = TYPESTORE.types
    return t["std_msgs/msg/Header"](t["builtin_interfaces/msg/Time"](*from_ns(ns)), frame_id)


def _image(ns: int, rgb: np.ndarray):
    h, w = rgb.shape[:2]
    return TYPESTORE.types["sensor_msgs/msg/Image"](_header(ns, "camera_optical"), h, w, "rgb8", 0, w * 3,
                                                     np.ascontiguousarray(rgb).reshape(-1))


def _camera_info(ns: int):
    t = TYPESTORE.types
    roi = t["sensor_msgs/msg/RegionOfInterest"](0, 0, 0, 0, False)
    k = np.array([F, 0.0, CX, 0.0, F, CY, 0.0, 0.0, 1.0])
    p = np.array([F, 0.0, CX, 0.0, 0.0, F, CY, 0.0, 0.0, 0.0, 1.0, 0.0])
    return t["sensor_msgs/msg/CameraInfo"](_header(ns, "camera_optical"), H, W, "plumb_bob", np.zeros(5), k,
                                           np.eye(3).reshape(-1), p, 0, 0, roi)


def _odometry(ns: int, x: float):
    t = TYPESTORE.types
    point, quat = t["geometry_msgs/msg/Point"], t["geometry_msgs/msg/Quaternion"]
    pose = t["geometry_msgs/msg/Pose"](point(x, 0.0, 0.0), quat(0.0, 0.0, 0.0, 1.0))  # heading +x
    vec = t["geometry_msgs/msg/Vector3"]
    twist = t["geometry_msgs/msg/Twist"](vec(SPEED, 0.0, 0.0), vec(0.0, 0.0, 0.0))
    cov = np.zeros(36)
    return t["nav_msgs/msg/Odometry"](_header(ns, "odom"), "base_link",
                                      t["geometry_msgs/msg/PoseWithCovariance"](pose, cov),
                                      t["geometry_msgs/msg/TwistWithCovariance"](twist, cov))


def _frames(synth_root) -> list[np.ndarray]:
    """Six generated frames at the recorded size (content is irrelevant to the labels)."""
    samples = list_samples(synth_root / "train") + list_samples(synth_root / "val")
    return [cv2.resize(read_image(s.image), (W, H), interpolation=cv2.INTER_AREA) for s in samples[:6]]


@pytest.fixture(scope="module")
def drive_bag(tmp_path_factory, synth_root):
    """rosbag2 (mcap): 6 rgb8 frames at t = 0 .. 2.5 s, one CameraInfo, Odometry at 20 Hz for 20 s."""
    path = tmp_path_factory.mktemp("drive") / "drive_bag"
    frames = _frames(synth_root)
    assert len(frames) == len(FRAME_TIMES)
    msgs = [(INFO_TOPIC, _stamp(0.0), _camera_info(_stamp(0.0)))]
    msgs += [(IMAGE_TOPIC, _stamp(t), _image(_stamp(t), rgb)) for t, rgb in zip(FRAME_TIMES, frames)]
    n = round(ODOM_SECONDS * ODOM_RATE)
    msgs += [(ODOM_TOPIC, T0 + i * NS_PER_S // ODOM_RATE,
              _odometry(T0 + i * NS_PER_S // ODOM_RATE, SPEED * i / ODOM_RATE)) for i in range(n + 1)]
    msgs.sort(key=lambda m: m[1])
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {topic: writer.add_connection(topic, msgtype, typestore=TYPESTORE)
                 for topic, msgtype in ((IMAGE_TOPIC, "sensor_msgs/msg/Image"),
                                        (INFO_TOPIC, "sensor_msgs/msg/CameraInfo"),
                                        (ODOM_TOPIC, "nav_msgs/msg/Odometry"))}
        for topic, ns, msg in msgs:
            writer.write(conns[topic], ns, TYPESTORE.serialize_cdr(msg, msg.__msgtype__))
    return path


@pytest.fixture(scope="module")
def target(drive_bag) -> TargetFrames:
    return read_target(drive_bag, Preprocess(scale=SCALE), IMAGE_TOPIC)


@pytest.fixture(scope="module")
def masks(drive_bag, target) -> list[np.ndarray]:
    return bag_footprints(drive_bag, ODOM_TOPIC, INFO_TOPIC, CAMERA_POSE)(target)


# -- the known answer, by hand ---------------------------------------------------------------

def _pixel(ahead: float, left: float) -> tuple[float, float]:
    """The ground point `ahead` m in front of and `left` m left of the base -> (u, v) in the recorded
    640x360 image: the camera's forward / left / up axes in the base frame, then u = f x/z + cx."""
    forward = np.array([math.cos(PITCH), 0.0, -math.sin(PITCH)])
    left_axis = np.array([0.0, 1.0, 0.0])
    up = np.array([math.sin(PITCH), 0.0, math.cos(PITCH)])
    d = np.array([ahead, left, 0.0]) - np.array([0.0, 0.0, HEIGHT])
    z, x, y = d @ forward, -(d @ left_axis), -(d @ up)  # optical: x right, y down, z forward
    assert z > 0
    return F * x / z + CX, F * y / z + CY


def _at(mask: np.ndarray, ahead: float, left: float, radius: int) -> np.ndarray:
    """The scaled mask's (2 radius + 1)^2 pixels around where the ground point projects."""
    u, v = (int(round(c * SCALE)) for c in _pixel(ahead, left))
    h, w = mask.shape
    assert radius <= u < w - radius and radius <= v < h - radius, (u, v)
    return mask[v - radius:v + radius + 1, u - radius:u + radius + 1]


def test_bag_frames_are_stamped_and_scaled(target):
    assert target.stamps == [_stamp(t) for t in FRAME_TIMES]
    assert target.full_size == (H, W)
    assert [im.shape for im in target.images] == [(180, 320, 3)] * 6


def test_known_answer_wheel_tracks_at_one_second(target, masks):
    assert len(masks) == len(target.images)
    assert all(m.dtype == bool and m.shape == (180, 320) for m in masks)
    mask = masks[FRAME_TIMES.index(1.0)]
    for ahead in (2.0, 3.0, 5.0, 7.0):  # from near the bottom edge to near max_distance
        for side in (HALF, -HALF):
            assert _at(mask, ahead, side, radius=1).all(), (ahead, side)
    assert not _at(mask, 3.0, 0.0, radius=2).any()  # between the wheels, under the chassis
    for side in (1.3, -1.3):  # outside the tracks (outer edge at 0.725 m)
        assert not _at(mask, 3.0, side, radius=1).any(), side
    for side in (HALF, -HALF):  # beyond max_distance (8 m travelled)
        assert not _at(mask, 9.5, side, radius=1).any(), side
    horizon = CY - F * math.tan(PITCH)  # the row of points at infinity on flat ground
    assert 30 < horizon * SCALE < 40
    assert not mask[:math.ceil(horizon * SCALE) + 1].any()
    # Nothing further than max_distance: no label above the row 8 m ahead projects to.
    far_row = _pixel(FootprintSpec().max_distance, 0.0)[1] * SCALE
    assert not mask[:math.floor(far_row) - 2].any()
    assert mask[math.ceil(far_row) + 2:].any()
    # The tracks are mirror images about the optical axis's column (u = cx).
    cols = np.flatnonzero(mask.any(0))
    assert cols.min() < CX * SCALE < cols.max()
    assert abs((cols.min() + cols.max()) / 2 - CX * SCALE) <= 1.5


def test_every_frame_of_the_straight_drive_gets_the_same_labels(masks):
    """At constant speed in a straight line, each frame's later path is the same relative to the robot."""
    first = masks[0]
    assert first.sum() > 500
    for m in masks[1:]:
        iou = (m & first).sum() / (m | first).sum()
        assert iou > 0.97, iou


def test_labels_follow_each_frame_stamp_and_input_size(drive_bag, target):
    """frame_footprints directly: a frame outside the odometry or with less than min_distance left to drive
    gets no label; a frame of another input size gets its mask at that size."""
    from offroad_seg_ros.data.bag import first_message, read_odometry
    from offroad_seg_ros.ground.footprints import Trajectory
    from offroad_seg_ros.ground.projection import CameraModel, CameraPose

    trajectory = Trajectory(*read_odometry(drive_bag, ODOM_TOPIC))
    camera = CameraModel.from_camera_info(first_message(drive_bag, INFO_TOPIC, "sensor_msgs/msg/CameraInfo"))
    pose = CameraPose.from_list(CAMERA_POSE)
    small = np.zeros((90, 160, 3), np.uint8)
    stamps = [_stamp(-1.0), _stamp(19.5), _stamp(25.0), _stamp(1.0)]
    frames = TargetFrames([target.images[0]] * 3 + [small], ["a", "b", "c", "d"], stamps, "x", "bag", (H, W))
    out = frame_footprints(frames, camera, pose, trajectory)
    assert [m.shape for m in out] == [(180, 320)] * 3 + [(90, 160)]
    assert not out[0].any() and not out[1].any() and not out[2].any()
    assert out[3].any()
    u, v = (int(round(c * SCALE / 2)) for c in _pixel(4.0, HALF))  # a quarter of the recorded size
    assert out[3][v, u]
    # A wider track_width moves the tracks out: the default's left track is no longer labelled.
    wide = frame_footprints(frames, camera, pose, trajectory, FootprintSpec(track_width=2.4))
    u, v = (int(round(c * SCALE / 2)) for c in _pixel(4.0, 1.2))
    assert wide[3][v, u]
    u, v = (int(round(c * SCALE / 2)) for c in _pixel(4.0, HALF))
    assert not wide[3][v, u]


# -- what is refused -------------------------------------------------------------------------

@pytest.mark.parametrize("odom, info, pose, missing", [
    (ODOM_TOPIC, INFO_TOPIC, None, "--camera-pose"),
    (ODOM_TOPIC, INFO_TOPIC, [], "--camera-pose"),
    (None, INFO_TOPIC, CAMERA_POSE, "--odom-topic"),
    ("", None, CAMERA_POSE, "--odom-topic, --camera-info-topic"),
])
def test_missing_options_are_named(drive_bag, odom, info, pose, missing):
    with pytest.raises(ValueError, match=f"missing {missing}$"):
        bag_footprints(drive_bag, odom, info, pose)


def test_a_folder_of_images_is_refused(synth_root, drive_bag):
    with pytest.raises(ValueError, match="need a bag"):
        bag_footprints(synth_root / "val", ODOM_TOPIC, INFO_TOPIC, CAMERA_POSE)
    # A bag's labeller given a folder's frames (no stamps) refuses them too.
    folder = read_target(synth_root / "val", Preprocess(scale=SCALE))
    assert folder.stamps is None
    with pytest.raises(ValueError, match="stamped frames"):
        bag_footprints(drive_bag, ODOM_TOPIC, INFO_TOPIC, CAMERA_POSE)(folder)


def test_wrong_topics_and_pose_are_refused(drive_bag, tmp_path):
    with pytest.raises(BagError, match=r"no topic /wheel/odom\b.*/odom \(nav_msgs/msg/Odometry\)"):
        bag_footprints(drive_bag, "/wheel/odom", INFO_TOPIC, CAMERA_POSE)
    with pytest.raises(BagError, match=r"no topic /camera_info\b"):
        bag_footprints(drive_bag, ODOM_TOPIC, "/camera_info", CAMERA_POSE)
    with pytest.raises(BagError, match=r"/odom is nav_msgs/msg/Odometry, not sensor_msgs/msg/CameraInfo"):
        bag_footprints(drive_bag, ODOM_TOPIC, ODOM_TOPIC, CAMERA_POSE)
    with pytest.raises(BagError, match=r"/front/image_raw is sensor_msgs/msg/Image, not nav_msgs/msg/Odometry"):
        bag_footprints(drive_bag, IMAGE_TOPIC, INFO_TOPIC, CAMERA_POSE)
    with pytest.raises(ValueError, match="6 values"):
        bag_footprints(drive_bag, ODOM_TOPIC, INFO_TOPIC, CAMERA_POSE[:5])
    with pytest.raises(ValueError, match="need a bag"):  # not there at all: not a bag either
        bag_footprints(tmp_path / "missing_bag", ODOM_TOPIC, INFO_TOPIC, CAMERA_POSE)


# -- through adapt ---------------------------------------------------------------------------

# Small and quick: the parent works at a quarter of the recorded size (160 x 90 target frames); the gate
# is opened wide (an untrained model's numbers move at random), this is about the footprints' numbers.
SETTINGS = AdaptSettings(steps=2, batch=1, crop=64, max_frames=6, source_frames=4,
                         gate=GateSettings(tolerance=1.0, min_agreement=0.0, keep_share=0.0, footprint_slack=1.0))
PARENT_SIZE = (90, 160)


@pytest.fixture(scope="module")
def parent(tmp_path_factory, table):
    return make_artifact(tmp_path_factory.mktemp("parent") / "tiny", table, scale=0.25)


def test_adapt_reports_and_gates_footprints(tmp_path, parent, synth_root, drive_bag):
    labeller = bag_footprints(drive_bag, ODOM_TOPIC, INFO_TOPIC, CAMERA_POSE)
    seen: list[tuple[TargetFrames, list[np.ndarray]]] = []

    def footprints(frames: TargetFrames) -> list[np.ndarray]:
        out = labeller(frames)
        seen.append((frames, out))
        return out

    out = tmp_path / "adapted"
    result = adapt(parent, drive_bag, out, synth_root, SETTINGS, image_topic=IMAGE_TOPIC, footprints=footprints,
                   quiet=True)
    assert result.gate.passed and result.out == out and (out / "model.json").is_file()
    assert len(seen) == 1
    frames, masks = seen[0]
    assert frames.stamps == [_stamp(t) for t in FRAME_TIMES]
    assert [m.shape for m in masks] == [im.shape[:2] for im in frames.images] == [PARENT_SIZE] * 6
    assert all(m.any() for m in masks)
    before, after = result.before["footprints_lethal"], result.after["footprints_lethal"]
    for value in (before, after):
        assert isinstance(value, float) and 0.0 <= value <= 1.0
    checks = {c.name: c for c in result.gate.checks}
    assert "footprints lethal" in checks
    check = checks["footprints lethal"]
    assert check.value == pytest.approx(after) and check.limit == pytest.approx(before + 1.0)
    assert result.provenance["gate"]["checks"][-1]["name"] == "footprints lethal"

    # The parent's share, by hand: lethal-class pixels among the driven-over ones.
    art, model = load_artifact(parent)
    lethal = [i for i, c in enumerate(art.classes.classes) if c.cost == LETHAL_COST]
    assert lethal
    preds = score(model, art.preprocess, len(art.classes), frames.images, temperature=art.temperature,
                  keep_preds=True).preds
    called = sum(int(np.isin(p[m], lethal).sum()) for p, m in zip(preds, masks))
    assert before == pytest.approx(called / sum(int(m.sum()) for m in masks), abs=1e-3)


def test_adapt_without_footprints_reports_none(tmp_path, parent, synth_root, drive_bag):
    out = tmp_path / "adapted"
    result = adapt(parent, drive_bag, out, synth_root, SETTINGS, image_topic=IMAGE_TOPIC, quiet=True)
    assert result.gate.passed and out.is_dir()
    assert result.before["footprints_lethal"] is None and result.after["footprints_lethal"] is None
    assert "footprints lethal" not in {c.name for c in result.gate.checks}
