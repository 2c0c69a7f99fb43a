"""Footprints as free labels: where the robot later drove, in an earlier image (ROS-free).

Self-supervised traversability: ground the robot drove over afterwards was
crossable, so in the image taken before it got there, the pixels showing that
ground must not be obstacle classes. Given odometry (a planar drive in the
odometry frame), the camera's intrinsics (`CameraModel`) and its pose on the
robot (`CameraPose`), `footprint_mask` marks those pixels in the frame taken at
a stamp.

- Eroded to the wheel tracks: only the two strips the wheels rolled over
  (`track_width` apart, each `wheel_width` wide) are labelled, not the whole
  body's swath; the ground between the wheels passed under the chassis and may
  hold anything low enough (a rock, tall grass), so it gets no label.
- Bounded horizon: odometry drifts, so the further the robot went after the
  frame, the less its pose says where that ground is in the frame. Only the
  path between `min_distance` and `max_distance` metres travelled, within
  `max_time` seconds of the frame, is used.
- Flat ground: the tracks lie on z = 0 of the base frame at the frame's stamp
  (as the ground projection assumes).

A frame whose stamp lies outside the odometry, or after which the robot did
not move far enough, gets an all-False mask: no label, never a guessed one.
The projection itself is `CameraModel.pixels` and `CameraPose.optical_to_base`
(ground/projection.py); the pose at a stamp is interpolated as
local_map.OdometryTrack does (linearly, yaw the short way round).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import ArrayLike

from offroad_seg_ros.core.stamps import seconds_to_ns
from offroad_seg_ros.ground.local_map import Pose2D
from offroad_seg_ros.ground.projection import CameraModel, CameraPose

# Ground points closer than this to the camera's image plane (m along the optical axis) are dropped.
MIN_DEPTH = 1e-3
# Sub-pixel precision of the rasterized quads (cv2 fixed point: 2**SHIFT steps per pixel).
SHIFT = 4


@dataclass(frozen=True)
class FootprintSpec:
    """The wheel tracks and the stretch of the later path to label: metres and seconds."""

    track_width: float = 1.2  # between the left and right wheel centre lines
    wheel_width: float = 0.25  # of one wheel's track
    min_distance: float = 1.0  # path length after the frame where the label starts
    max_distance: float = 8.0  # path length after the frame where it ends (odometry drifts)
    max_time: float = 20.0  # seconds after the frame
    step: float = 0.05  # between samples along (and across) the tracks

    def __post_init__(self) -> None:
        for name in ("track_width", "wheel_width", "max_distance", "max_time", "step"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"FootprintSpec.{name} must be a positive number, got {value}")
        if not (math.isfinite(self.min_distance) and 0 <= self.min_distance < self.max_distance):
            raise ValueError(f"FootprintSpec.min_distance must be >= 0 and below max_distance "
                             f"({self.max_distance}), got {self.min_distance}")


class Trajectory:
    """Planar poses of the base frame in the odometry frame: stamps (int ns, increasing), x, y (m), yaw (rad)."""

    def __init__(self, stamps: ArrayLike, x: ArrayLike, y: ArrayLike, yaw: ArrayLike) -> None:
        raw = np.asarray(stamps)
        if raw.size and raw.dtype.kind not in "iu":
            raise ValueError(f"Trajectory stamps must be integer ns, got {raw.dtype}")
        self.stamps = raw.astype(np.int64)
        self.x, self.y, self.yaw = (np.asarray(a, np.float64) for a in (x, y, yaw))
        n = self.stamps.size
        if n == 0:
            raise ValueError("a Trajectory needs at least one pose, got none")
        if any(a.shape != (n,) for a in (self.stamps, self.x, self.y, self.yaw)):
            raise ValueError(f"Trajectory stamps, x, y and yaw must be 1-D of one length, got shapes "
                             f"{[a.shape for a in (self.stamps, self.x, self.y, self.yaw)]}")
        if not all(np.isfinite(a).all() for a in (self.x, self.y, self.yaw)):
            raise ValueError("Trajectory x, y and yaw must be finite")
        if n > 1 and not (np.diff(self.stamps) > 0).all():
            i = int(np.flatnonzero(np.diff(self.stamps) <= 0)[0])
            raise ValueError(f"Trajectory stamps must be increasing: stamp {i + 1} ({self.stamps[i + 1]} ns) "
                             f"follows {self.stamps[i]} ns")
        self._t = (self.stamps - self.stamps[0]).astype(np.float64)  # small numbers: exact enough in float64
        self._yaw = np.unwrap(self.yaw)  # continuous: linear interpolation turns the short way round

    def __len__(self) -> int:
        return int(self.stamps.size)

    def covers(self, stamp: int) -> bool:
        return bool(self.stamps[0] <= stamp <= self.stamps[-1])

    def at(self, stamp: int) -> Pose2D | None:
        """The pose at `stamp`, interpolated (yaw on the circle); None outside the trajectory."""
        if not self.covers(stamp):
            return None
        x, y, yaw = self.poses(np.array([stamp], np.int64))[0]
        return Pose2D(float(x), float(y), math.remainder(float(yaw), math.tau))

    def poses(self, stamps: np.ndarray) -> np.ndarray:
        """(N, 3) x, y, yaw at `stamps` (inside the trajectory), yaw unwrapped (continuous, not in [-pi, pi])."""
        t = (np.asarray(stamps, np.int64) - self.stamps[0]).astype(np.float64)
        return np.stack([np.interp(t, self._t, a) for a in (self.x, self.y, self._yaw)], 1)

    def between(self, start: int, end: int) -> np.ndarray:
        """(N, 3) poses from `start` to `end` (both inside): the two ends interpolated, every sample between."""
        inner = self.stamps[(self.stamps > start) & (self.stamps < end)]
        return self.poses(np.concatenate([[start], inner, [end]]).astype(np.int64))


def _path_samples(path: np.ndarray, spec: FootprintSpec) -> np.ndarray:
    """(M, 3) poses every `spec.step` of path length from min_distance to max_distance (or the path's end)."""
    seg = np.hypot(np.diff(path[:, 0]), np.diff(path[:, 1]))
    moved = np.r_[True, seg > 1e-9]  # a standing robot adds no length: arc length must increase for interp
    s = np.r_[0.0, np.cumsum(seg)][moved]
    path = path[moved]
    end = min(spec.max_distance, float(s[-1]))
    if end <= spec.min_distance:
        return np.zeros((0, 3))
    q = np.linspace(spec.min_distance, end, max(2, math.ceil((end - spec.min_distance) / spec.step) + 1))
    return np.stack([np.interp(q, s, path[:, i]) for i in range(3)], 1)


def _track_points(samples: np.ndarray, spec: FootprintSpec) -> np.ndarray:
    """(2, M, L, 2) odometry-frame ground points of the left and right wheel tracks: per path sample,
    L points across the track's width, at most `spec.step` apart."""
    across = np.linspace(-spec.wheel_width / 2, spec.wheel_width / 2,
                         max(2, math.ceil(spec.wheel_width / spec.step) + 1))
    x, y, yaw = (samples[:, i, None] for i in range(3))
    tracks = []
    for side in (1.0, -1.0):  # left (+y of the base), right
        offset = side * spec.track_width / 2 + across[None, :]
        tracks.append(np.stack([x - np.sin(yaw) * offset, y + np.cos(yaw) * offset], -1))
    return np.stack(tracks)


def _ground_pixels(points: np.ndarray, robot: Pose2D, camera: CameraModel, pose: CameraPose) -> np.ndarray:
    """(..., 2) odometry-frame ground points -> (..., 2) pixels in the frame taken with the base at `robot`;
    NaN behind (or within MIN_DEPTH of) the camera's image plane."""
    c, s = math.cos(robot.yaw), math.sin(robot.yaw)
    dx, dy = points[..., 0].ravel() - robot.x, points[..., 1].ravel() - robot.y
    base = np.stack([c * dx + s * dy, -s * dx + c * dy, np.zeros_like(dx)], 1)  # odom -> base: R(yaw)^T (p - t)
    optical = (base - pose.position) @ pose.optical_to_base()  # base -> optical: R^T (p - c)
    uv = camera.pixels(optical)
    uv[optical[:, 2] <= MIN_DEPTH] = np.nan
    return uv.reshape(*points.shape[:-1], 2)


def _fill_quads(mask: np.ndarray, uv: np.ndarray) -> None:
    """Fill every quad of four neighbouring samples of each (M, L) grid of pixels in `uv` (T, M, L, 2).

    Rasterization: neighbouring samples are a few cm apart on the ground but, near the camera, several
    pixels apart in the image, so drawing the samples as points leaves holes. A quad of four neighbours
    (a ground patch of at most step x step) projects to a small convex quadrilateral (a pinhole maps a
    flat patch in front of it to one; lens distortion bends it by far less than a pixel), and filling
    each with cv2.fillConvexPoly (sub-pixel vertices) leaves none. Quads with a corner behind the camera
    or folded by the lens model are dropped; those reaching past the image are clipped by OpenCV, so
    only quads with a corner more than an image size outside it (huge, near the camera) are dropped too."""
    h, w = mask.shape
    quads = np.stack([uv[:, :-1, :-1], uv[:, 1:, :-1], uv[:, 1:, 1:], uv[:, :-1, 1:]], -2).reshape(-1, 4, 2)
    with np.errstate(invalid="ignore"):
        near = ((quads[..., 0] >= -w) & (quads[..., 0] <= 2 * w) & (quads[..., 1] >= -h) & (quads[..., 1] <= 2 * h))
        seen = ((quads[..., 0].max(1) >= -0.5) & (quads[..., 0].min(1) <= w - 0.5)
                & (quads[..., 1].max(1) >= -0.5) & (quads[..., 1].min(1) <= h - 0.5))
    keep = near.all(1) & seen  # NaN compares False
    fixed = np.round(quads[keep] * (1 << SHIFT)).astype(np.int32)
    for quad in fixed:
        cv2.fillConvexPoly(mask, quad, (1,), lineType=cv2.LINE_8, shift=SHIFT)


def footprint_mask(camera: CameraModel, pose: CameraPose, trajectory: Trajectory, stamp: int,
                   spec: FootprintSpec, shape: tuple[int, int]) -> np.ndarray:
    """bool (H, W): the pixels of the image taken at `stamp` showing ground the robot's wheels later rolled
    over (within the spec's horizon). `shape` is that image's (height, width), the size `camera` describes
    (ValueError otherwise); all False if `stamp` is outside the trajectory or the robot moved no further
    than `spec.min_distance` after it. Raises ProjectionError for an invalid camera model or pose."""
    camera.check()
    pose.check()
    if tuple(shape) != (camera.height, camera.width):
        raise ValueError(f"footprint mask shape {tuple(shape)} (height, width) is not the camera model's "
                         f"{camera.width}x{camera.height} image")
    mask = np.zeros(shape, np.uint8)
    robot = trajectory.at(stamp)
    if robot is None:
        return mask.astype(bool)
    end = min(stamp + seconds_to_ns(spec.max_time), int(trajectory.stamps[-1]))
    if end <= stamp:
        return mask.astype(bool)
    samples = _path_samples(trajectory.between(stamp, end), spec)
    if len(samples) >= 2:
        uv = _ground_pixels(_track_points(samples, spec), robot, camera, pose)
        _fill_quads(mask, uv)
    return mask.astype(bool)


def footprint_masks(camera: CameraModel, pose: CameraPose, trajectory: Trajectory, stamps: Iterable[int],
                    spec: FootprintSpec, shape: tuple[int, int]) -> np.ndarray:
    """bool (N, H, W): `footprint_mask` of each stamp."""
    masks = [footprint_mask(camera, pose, trajectory, int(s), spec, shape) for s in stamps]
    return np.stack(masks) if masks else np.zeros((0, *shape), bool)
