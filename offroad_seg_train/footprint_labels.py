"""Footprint labels for `offroad-seg adapt`: for each frame of a recording, the pixels of ground the
robot later drove over (ground/footprints.py), at the frame's input scale. Needs the bag's odometry,
its camera_info and the camera's pose on the robot (the node's camera_pose parameter)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from offroad_seg_ros.data.bag import first_message, is_bag, read_odometry
from offroad_seg_ros.ground.footprints import FootprintSpec, Trajectory, footprint_mask
from offroad_seg_ros.ground.projection import CameraModel, CameraPose

from .adapt_data import TargetFrames

CAMERA_INFO = "sensor_msgs/msg/CameraInfo"


def frame_footprints(target: TargetFrames, camera: CameraModel, pose: CameraPose, trajectory: Trajectory,
                     spec: FootprintSpec | None = None) -> list[np.ndarray]:
    """Per target frame, its driven-over pixels (bool) at the frame's input size."""
    if target.stamps is None:
        raise ValueError(f"{target.source}: footprints need stamped frames from a bag, not a folder of images")
    spec = spec or FootprintSpec()
    out = []
    for image, stamp in zip(target.images, target.stamps):
        mask = footprint_mask(camera, pose, trajectory, stamp, spec, (camera.height, camera.width))
        h, w = image.shape[:2]
        out.append(cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool))
    return out


def bag_footprints(bag: str | Path, odom_topic: str | None, camera_info_topic: str | None,
                   camera_pose: Sequence[float] | None) -> Callable[[TargetFrames], list[np.ndarray]]:
    """The footprint labeller of a bag: all three of odometry, camera_info and the camera pose are needed."""
    missing = [name for name, value in (("--odom-topic", odom_topic), ("--camera-info-topic", camera_info_topic),
                                        ("--camera-pose", camera_pose)) if not value]
    if missing:
        raise ValueError(f"footprints need --odom-topic, --camera-info-topic and --camera-pose; missing "
                         f"{', '.join(missing)}")
    if not is_bag(bag):
        raise ValueError(f"{bag}: footprints need a bag (with odometry), not a folder of images")
    assert odom_topic and camera_info_topic and camera_pose
    trajectory = Trajectory(*read_odometry(bag, odom_topic))
    camera = CameraModel.from_camera_info(first_message(bag, camera_info_topic, CAMERA_INFO))
    pose = CameraPose.from_list(list(camera_pose))
    return lambda target: frame_footprints(target, camera, pose, trajectory)
