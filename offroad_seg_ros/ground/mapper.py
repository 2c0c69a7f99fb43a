"""The node's ground outputs without rclpy: camera_info and depth in, the
grid and obstacle points of each segmented frame out (projection.py does the
geometry), with the reasons a frame got no grid, for /diagnostics.

The camera model comes from camera_info (serialized, parsed with rosbags'
typestore: one small message per frame); the lookup table is rebuilt only
when the model changes. Depth frames are kept by stamp for a short while and
paired with the colour frame of the same stamp (within `depth_slop`).

The camera's pose comes from camera_pose, or (camera_pose_source tf) from TF
for each image's frame at its stamp (transforms.py), camera_pose standing in
until TF has given it once; after that, a frame TF has no pose for gets no grid.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from offroad_seg_ros.core.stamps import NS_PER_S, seconds_to_ns, to_ns
from offroad_seg_ros.data.bag import TYPESTORE
from offroad_seg_ros.data.image_msgs import DEPTH_ENCODINGS, ImageConversionError, parse_image_cdr, to_array
from offroad_seg_ros.ground.projection import (
    CameraModel,
    CameraPose,
    ClassCosts,
    GridSpec,
    GroundProjector,
    ProjectionError,
    obstacle_points,
    occupancy_values,
)
from offroad_seg_ros.ground.transforms import TransformError, TransformLookup

CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
DEPTH_FALLBACKS = ("flat", "skip")
POSE_SOURCES = ("tf", "parameter")


@dataclass(frozen=True)
class MapperSpec:
    """How a camera's pixels reach the ground: its camera_info's model, and depth (node parameters of these names)."""

    rectified: bool = False  # project with camera_info's P and no distortion
    depth: bool = False  # place pixels by an aligned depth image
    depth_fallback: str = "flat"  # a frame without a paired depth image: flat ground, or skip (no grid)
    depth_slop: float = 0.02  # s: the largest stamp difference between a colour frame and its depth image
    # tf: the image frame's pose from TF, camera_pose until TF has it (robots publish their URDF; setups
    # without TF keep working unchanged); parameter: camera_pose only
    camera_pose_source: str = "tf"

    def __post_init__(self) -> None:
        if self.depth_fallback not in DEPTH_FALLBACKS:
            raise ValueError(f"depth_fallback must be {' or '.join(DEPTH_FALLBACKS)}, got {self.depth_fallback!r}")
        if self.camera_pose_source not in POSE_SOURCES:
            raise ValueError(f"camera_pose_source must be {' or '.join(POSE_SOURCES)}, "
                             f"got {self.camera_pose_source!r}")

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> MapperSpec:
        return cls(bool(p["rectified"]), bool(p["depth"]), str(p["depth_fallback"]), float(p["depth_slop"]),
                   str(p["camera_pose_source"]))


@dataclass
class GroundFrame:
    cost: np.ndarray  # uint8 (rows, cols), 255 unknown
    obstacle: np.ndarray  # bool (rows, cols)
    used_depth: bool
    count: np.ndarray | None = None  # int32 (rows, cols): ground and obstacle pixels behind each cell

    def occupancy(self) -> np.ndarray:
        return occupancy_values(self.cost)

    def points(self, grid: GridSpec, height: float) -> np.ndarray:
        return obstacle_points(self.cost, self.obstacle, grid, height)


class GroundMapper:
    def __init__(self, pose: CameraPose, grid: GridSpec, costs: ClassCosts, spec: MapperSpec | None = None,
                 info_topic: str = "camera_info", count: bool = False):
        pose.check()  # fatal at start: below the ground, or looking up
        spec = spec or MapperSpec()
        self.pose, self.grid, self.costs = pose, grid, costs
        self.rectified, self.depth, self.depth_fallback = spec.rectified, spec.depth, spec.depth_fallback
        self.pose_source = spec.camera_pose_source
        self.tf: TransformLookup | None = None  # set by use_tf
        self.base_frame = "base_link"
        self.frame_id = ""  # the image's frame (the node sets it before each project): its pose is TF's
        self._tf_given = False  # TF gave this camera's pose once: from then on it is the only source
        self.pose_in_use = "parameter"
        self.pose_missing = 0  # frames without a grid for want of a transform
        self.depth_slop_ns = seconds_to_ns(spec.depth_slop)
        self.info_topic = info_topic
        self.count = count  # pixels per cell, for fusing several cameras
        self._lock = threading.Lock()
        self._model: CameraModel | None = None
        self._projector: GroundProjector | None = None
        self._depth: OrderedDict[int, bytes] = OrderedDict()
        self.bad_camera_info = 0
        self.skipped = 0  # frames without a grid (no camera_info yet, size mismatch, no depth)
        self.projected = 0
        self.last_problem = ""
        self._refused = ""  # why the last camera_info was refused, while none is in use
        self._reported_skips = 0

    def use_tf(self, tf: TransformLookup | None, base_frame: str) -> None:
        """Take the pose from `tf` for each image's frame, if camera_pose_source is tf."""
        self.tf, self.base_frame = (tf if self.pose_source == "tf" else None), base_frame

    # -- inputs (executor thread) --------------------------------------------
    def on_camera_info(self, raw: bytes) -> None:
        try:
            msg = TYPESTORE.deserialize_cdr(bytes(raw), CAMERA_INFO)
            model = CameraModel.from_camera_info(msg, self.rectified)
        except Exception as exc:  # noqa: BLE001 - a malformed camera_info is refused, counted and named
            self.bad_camera_info += 1
            self._refused = self.last_problem = f"camera_info on {self.info_topic} refused: {exc}"
            return
        with self._lock:
            self._model = model
            self._refused = ""

    def on_depth(self, raw: bytes) -> None:
        view = parse_image_cdr(raw)
        with self._lock:
            self._depth[to_ns(view)] = bytes(raw)
            while len(self._depth) > 8:
                self._depth.popitem(last=False)

    # -- per frame (worker thread) ---------------------------------------------
    def project(self, mask: np.ndarray, stamp_ns: int) -> GroundFrame | None:
        """The grid of one frame, or None (counted, reason in last_problem)."""
        with self._lock:
            model = self._model
            depth_raw = self._pair_depth(stamp_ns) if self.depth else None
        if model is None:
            return self._skip(self._waiting())
        pose = self._pose(stamp_ns)
        if pose is None:
            return None
        projector = self._projector
        # A pose that changes (TF, a moving mount) rebuilds the table: 0.3 s for 960x540 (docs/ground.md).
        if projector is None or projector.camera != model or projector.pose != pose:
            try:
                projector = self._projector = GroundProjector(model, pose, self.grid)
            except ProjectionError as exc:
                self.bad_camera_info += 1
                return self._skip(f"camera_info on {self.info_topic} refused: {exc}")
            if not projector.sees_ground:
                source = "camera_pose" if self.pose_in_use == "parameter" else f"camera pose ({self.pose_in_use})"
                return self._skip(f"{source} and camera_info on {self.info_topic}: no pixel sees the ground "
                                  f"within max_range {self.grid.max_range} m")
        if mask.shape != (model.height, model.width):
            self.bad_camera_info += 1
            return self._skip(f"camera_info on {self.info_topic} says {model.width}x{model.height}, the image is "
                              f"{mask.shape[1]}x{mask.shape[0]}")
        depth = None
        if self.depth:
            if depth_raw is None:
                if self.depth_fallback == "skip":
                    return self._skip("no depth image with the colour frame's stamp")
            else:
                try:
                    depth = depth_metres(depth_raw, model.width, model.height)
                except ImageConversionError as exc:
                    return self._skip(f"depth image refused: {exc}")
        if self.count:
            cost, obstacle, count = projector.project_counted(mask, self.costs, depth)
        else:
            (cost, obstacle), count = projector.project(mask, self.costs, depth), None
        self.projected += 1
        return GroundFrame(cost, obstacle, depth is not None, count)

    def _pose(self, stamp_ns: int) -> CameraPose | None:
        """This frame's camera pose; None (the frame skipped, counted) when TF gave it before and cannot now."""
        if self.tf is None:
            return self.pose
        frames = f"{self.base_frame} <- {self.frame_id or '(no frame_id)'}"
        try:
            if not self.frame_id:
                raise TransformError("lookup", "the image has no header.frame_id")
            pose = self.tf.lookup(self.base_frame, self.frame_id, stamp_ns).camera_pose()
            pose.check()
        except TransformError as exc:
            # TF has never known this camera (no URDF, a bag without /tf_static): camera_pose stands in.
            # A stamp outside TF's data means TF does know it: a pose guessed for that frame could be wrong.
            if not self._tf_given and exc.kind != "extrapolation":
                self.pose_in_use = f"parameter (TF has no {frames}: {exc})"
                return self.pose
            self.pose_in_use = f"tf {frames}"
            self.pose_missing += 1
            self._skip(f"camera pose: no transform {frames} at {stamp_ns / NS_PER_S:.6f} s: {exc}")
            return None
        except ProjectionError as exc:
            self.pose_missing += 1
            self._skip(f"camera pose from TF {frames}: {exc}")
            return None
        self._tf_given = True
        self.pose_in_use = f"tf {frames}"
        return pose

    def _pair_depth(self, stamp_ns: int) -> bytes | None:
        if not self._depth:
            return None
        best = min(self._depth, key=lambda s: abs(s - stamp_ns))
        return self._depth[best] if abs(best - stamp_ns) <= self.depth_slop_ns else None

    def _skip(self, reason: str) -> GroundFrame | None:
        """Count a frame without a grid and keep the reason; None."""
        self.skipped += 1
        self.last_problem = reason
        return None

    def _waiting(self) -> str:
        # A frame that comes after a refused camera_info must not hide the
        # refusal behind "none received": one was, and why it is unusable matters.
        if self._refused:
            return f"no usable camera_info yet, the last one was refused ({self._refused}): ~/grid and ~/obstacles wait"
        return f"no camera_info received on {self.info_topic} yet: ~/grid and ~/obstacles wait"

    @property
    def waiting_for_camera_info(self) -> bool:
        return self._model is None

    def condition(self) -> str | None:
        """A WARN message for /diagnostics, or None: camera_info still missing,
        or frames that got no grid since the last call."""
        new = self.skipped - self._reported_skips
        self._reported_skips = self.skipped
        if self.waiting_for_camera_info:
            return self._waiting()
        if new:
            return f"{new} frame(s) without a grid: {self.last_problem}"
        return None

    def values(self) -> list[tuple[str, str]]:
        return [("grid_frames", str(self.projected)), ("grid_skipped", str(self.skipped)),
                ("camera_info_refused", str(self.bad_camera_info)),
                ("ground_problem", self.last_problem or "none"),
                ("camera_pose_source", self.pose_in_use), ("camera_pose_missing", str(self.pose_missing))]


def depth_metres(raw: bytes, width: int, height: int) -> np.ndarray:
    """A serialized depth Image (16UC1 / mono16 in mm, 32FC1 in m) -> float32
    metres at (height, width), resized (nearest) if it differs; invalid = 0 / NaN / inf."""
    view = parse_image_cdr(raw)
    arr = to_array(view.encoding, view.height, view.width, view.step, view.is_bigendian, view.data, DEPTH_ENCODINGS)
    metres: np.ndarray = arr.astype(np.float32) * (np.float32(0.001) if arr.dtype == np.uint16 else np.float32(1.0))
    if metres.shape != (height, width):
        metres = cv2.resize(metres, (width, height), interpolation=cv2.INTER_NEAREST)
    return metres
