"""Segmented camera frames onto the ground around the robot (ROS-free).

Flat-ground inverse perspective mapping from a pinhole camera model (the
fields of sensor_msgs/CameraInfo) and the camera's pose in the robot's base
frame; or, with an aligned depth image, each pixel placed by its depth. The
result is a grid of Nav2 costs in the base frame (and the obstacle cells as
points), ready for nav_msgs/OccupancyGrid and sensor_msgs/PointCloud2.

Frames: the pose is the camera body frame (x forward, y left, z up, REP-103)
relative to the base frame, as in a URDF's `<origin xyz rpy>` for the camera
link; the optical frame (z forward, x right, y down, REP-103's `_optical`) is
derived from it. Positive pitch looks down.

Per cell: the highest cost among obstacle-class (or novel) pixels landing in
it, else the cost of the majority free / rough class, else unknown (255). Sky and
unpredicted (255) pixels, and every ray at or above the horizon, never
project. The pixel -> cell table is built once per camera model, pose and
grid (`GroundProjector`); a frame is then one gather and one bincount.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from offroad_seg_ros.core.classes import UNKNOWN_COST, ClassTable

UNKNOWN = UNKNOWN_COST
LETHAL = 254  # Nav2's LETHAL_OBSTACLE: a novel pixel's cost unless told otherwise
DISTORTION_MODELS = ("", "none", "plumb_bob", "rational_polynomial", "equidistant")
# The optical frame's axes (x right, y down, z forward) in the camera body frame (x forward, y left, z up).
OPTICAL_TO_BODY = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], np.float64)


class ProjectionError(ValueError):
    """A camera model, pose or depth image that cannot be projected; the message names it."""


@dataclass(frozen=True)
class CameraModel:
    width: int
    height: int
    k: tuple[float, ...]  # row-major 3x3
    d: tuple[float, ...] = ()
    distortion_model: str = "plumb_bob"

    @classmethod
    def from_camera_info(cls, info: Any, rectified: bool = False) -> CameraModel:
        """A sensor_msgs/CameraInfo (rclpy or rosbags message, or anything with
        its fields). `rectified`: the images are rectified, so P's left 3x3
        and no distortion describe them."""
        if rectified:
            p = [float(v) for v in info.p]
            model = cls(int(info.width), int(info.height), (p[0], p[1], p[2], p[4], p[5], p[6], 0.0, 0.0, 1.0))
        else:
            model = cls(int(info.width), int(info.height), tuple(float(v) for v in info.k),
                        tuple(float(v) for v in info.d), str(info.distortion_model))
        model.check()
        return model

    def check(self) -> None:
        fx, fy = self.k[0], self.k[4]
        if self.width <= 0 or self.height <= 0:
            raise ProjectionError(f"camera_info has no image size ({self.width}x{self.height})")
        if not (fx > 0 and fy > 0 and math.isfinite(fx) and math.isfinite(fy)):
            raise ProjectionError(f"camera_info has a zero or invalid focal length (fx={fx}, fy={fy}): K={self.k}")
        if self.distortion_model not in DISTORTION_MODELS:
            raise ProjectionError(f"camera_info distortion_model {self.distortion_model!r} is not supported; "
                                  f"use one of {', '.join(m for m in DISTORTION_MODELS if m)}")

    @property
    def matrix(self) -> np.ndarray:
        return np.array(self.k, np.float64).reshape(3, 3)

    def normalized(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) pixel coordinates -> (N, 2) undistorted normalized coordinates (x/z, y/z)."""
        pts = np.ascontiguousarray(uv, np.float64).reshape(-1, 1, 2)
        d = np.array(self.d, np.float64)
        # OpenCV's default 5 iterations leave pixel-sized errors near the
        # edges of a strongly distorted lens; the table is built once, so iterate to convergence.
        crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-10)
        eye = np.eye(3)
        if self.distortion_model == "equidistant":
            out = cv2.fisheye.undistortPoints(pts, self.matrix, d[:4] if d.size >= 4 else np.zeros(4), R=eye, P=eye,
                                              criteria=crit)
        elif d.size and np.any(d):
            if hasattr(cv2, "undistortPointsIter"):
                out = cv2.undistortPointsIter(pts, self.matrix, d, eye, eye, crit)
            else:  # OpenCV 5 (robots keep 4 for cv_bridge): undistortPoints takes the criteria
                undistort: Any = cv2.undistortPoints
                out = undistort(pts, self.matrix, d, R=eye, P=eye, criteria=crit)
        else:
            k = self.matrix
            return np.stack([(uv[:, 0] - k[0, 2]) / k[0, 0], (uv[:, 1] - k[1, 2]) / k[1, 1]], 1)
        return out.reshape(-1, 2)

    def pixels(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) points in the optical frame -> (N, 2) pixel coordinates, NaN where a point is
        behind the camera or where the lens model folds back (a point far outside the field of
        view that a distortion polynomial would map into the image: checked by undistorting)."""
        p = np.asarray(points, np.float64)
        ahead = p[:, 2] > 1e-9
        out = np.full((p.shape[0], 2), np.nan)
        if not ahead.any():
            return out
        obj = np.ascontiguousarray(p[ahead]).reshape(-1, 1, 3)
        d = np.array(self.d, np.float64)
        zero = np.zeros(3)
        if self.distortion_model == "equidistant":
            uv, _ = cv2.fisheye.projectPoints(obj, zero, zero, self.matrix, d[:4] if d.size >= 4 else np.zeros(4))
        else:
            uv, _ = cv2.projectPoints(obj, zero, zero, self.matrix, d if d.size and np.any(d) else np.zeros(5))
        uv = uv.reshape(-1, 2)
        back = self.normalized(uv)
        folded = np.hypot(*(back - p[ahead, :2] / p[ahead, 2:3]).T) > 1e-4
        uv[folded] = np.nan
        out[ahead] = uv
        return out


@dataclass(frozen=True)
class CameraPose:
    """The camera body frame in the base frame: metres and radians."""

    x: float = 0.0
    y: float = 0.0
    z: float = 1.0
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0

    @classmethod
    def from_list(cls, values: list[float]) -> CameraPose:
        if len(values) != 6:
            raise ProjectionError(f"camera_pose needs 6 values [x, y, z, roll, pitch, yaw], got {list(values)}")
        return cls(*map(float, values))

    @classmethod
    def from_optical(cls, position: Any, rotation: np.ndarray) -> CameraPose:
        """The pose whose optical frame sits at `position` turned by `rotation` (3x3) in the base frame:
        what TF gives for a camera image's frame (sensor_msgs/CameraInfo's frame is the optical one)."""
        r = np.asarray(rotation, np.float64) @ OPTICAL_TO_BODY.T  # the body frame's rotation
        pitch = math.asin(max(-1.0, min(1.0, -r[2, 0])))
        if abs(r[2, 0]) < 1 - 1e-12:
            roll, yaw = math.atan2(r[2, 1], r[2, 2]), math.atan2(r[1, 0], r[0, 0])
        else:  # looking straight down (or up): roll and yaw turn about one axis, all of it as yaw
            roll, yaw = 0.0, math.atan2(-r[0, 1], r[1, 1])
        x, y, z = (float(v) for v in position)
        return cls(x, y, z, roll, pitch, yaw)

    def check(self) -> None:
        if self.z <= 0:
            raise ProjectionError(f"camera_pose puts the camera at z={self.z} m, on or below the ground")
        # The optical axis in the base frame; a camera looking more than 80 deg
        # above the horizon cannot see the ground with any real lens.
        if self.optical_to_base()[2, 2] > math.sin(math.radians(80)):
            raise ProjectionError(f"camera_pose (roll {self.roll}, pitch {self.pitch}) looks up and sees no ground")

    def body_to_base(self) -> np.ndarray:
        cr, sr = math.cos(self.roll), math.sin(self.roll)
        cp, sp = math.cos(self.pitch), math.sin(self.pitch)
        cy, sy = math.cos(self.yaw), math.sin(self.yaw)
        rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
        ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
        rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
        return rz @ ry @ rx  # fixed-axis roll, pitch, yaw (URDF rpy)

    def optical_to_base(self) -> np.ndarray:
        return self.body_to_base() @ OPTICAL_TO_BODY

    @property
    def position(self) -> np.ndarray:
        return np.array([self.x, self.y, self.z])


@dataclass(frozen=True)
class GridSpec:
    """A grid in the base frame: `size_x` x `size_y` metres at `resolution`,
    its lower-left corner at (`origin_x`, `origin_y`) (default: centred on the robot)."""

    resolution: float = 0.05
    size_x: float = 10.0
    size_y: float = 10.0
    origin_x: float | None = None
    origin_y: float | None = None
    max_range: float = 8.0

    def __post_init__(self) -> None:
        if self.resolution <= 0 or self.size_x <= 0 or self.size_y <= 0 or self.max_range <= 0:
            raise ProjectionError(f"grid_resolution ({self.resolution}), grid_size ([{self.size_x}, {self.size_y}]) "
                                  f"and max_range ({self.max_range}) must be positive")

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> GridSpec:
        """From the node's parameters grid_resolution, grid_size [x, y] and max_range (centred on the robot)."""
        size = list(p["grid_size"])
        if len(size) != 2:
            raise ProjectionError(f"grid_size must be two values [x, y] in m, got {size}")
        return cls(p["grid_resolution"], float(size[0]), float(size[1]), max_range=p["max_range"])

    @property
    def cols(self) -> int:
        return int(round(self.size_x / self.resolution))

    @property
    def rows(self) -> int:
        return int(round(self.size_y / self.resolution))

    @property
    def origin(self) -> tuple[float, float]:
        return (-self.size_x / 2 if self.origin_x is None else self.origin_x,
                -self.size_y / 2 if self.origin_y is None else self.origin_y)

    def cells(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) base-frame points -> flat cell index (row-major, row = y), -1 outside or beyond range."""
        ox, oy = self.origin
        fc = (xy[:, 0] - ox) / self.resolution
        fr = (xy[:, 1] - oy) / self.resolution
        inside = (fc >= 0) & (fc < self.cols) & (fr >= 0) & (fr < self.rows)  # NaN compares False
        inside &= np.hypot(xy[:, 0], xy[:, 1]) <= self.max_range
        col = np.where(inside, fc, 0).astype(np.int64)
        row = np.where(inside, fr, 0).astype(np.int64)
        return np.where(inside, row * self.cols + col, -1)

    def centres(self, cells: np.ndarray) -> np.ndarray:
        ox, oy = self.origin
        return np.stack([ox + (cells % self.cols + 0.5) * self.resolution,
                         oy + (cells // self.cols + 0.5) * self.resolution], 1)


class ClassCosts:
    """Per class index: its cost (with overrides) and whether it is an obstacle; sky
    and 255 never project. The class table's novel_index (pixels the Segmenter flags
    novel) is an obstacle of `novel_cost` in a bucket of its own; a novel_cost of
    255 (unknown) drops it as sky is, so it neither marks nor clears a cell."""

    def __init__(self, table: ClassTable, cost_lut: np.ndarray, novel_cost: int = LETHAL):
        if not 0 <= novel_cost <= 255:
            raise ValueError(f"novel_cost must be within 0..255, got {novel_cost}")
        self.n = len(table)
        self.novel = table.novel_index  # == n: bucket n holds the novel pixels
        self.buckets = self.n + 2  # per class, novel, dropped
        self.cost = np.append(np.asarray(cost_lut[:self.n], np.int64), novel_cost)
        self.cost_u8 = self.cost.astype(np.uint8)
        groups = [c.group for c in table.classes]
        self.obstacle = np.array([g == "obstacle" for g in groups] + [novel_cost != UNKNOWN])
        self.ground = np.array([g in ("free", "rough") for g in groups] + [False])
        # Class index -> bucket of the per-cell histogram; sky / unpredicted -> the last (dropped) bucket.
        self.bucket = np.full(256, self.buckets - 1, np.uint8)
        keep = np.flatnonzero(self.obstacle | self.ground)
        self.bucket[keep] = keep
        # Obstacle classes by falling cost: the first present in a cell is its highest.
        obstacles = np.flatnonzero(self.obstacle)
        self.obstacle_order = obstacles[np.argsort(-self.cost[obstacles], kind="stable")]
        self.ground_classes = np.flatnonzero(self.ground)


class GroundProjector:
    """The pixel -> cell table of one camera model, pose and grid."""

    def __init__(self, camera: CameraModel, pose: CameraPose, grid: GridSpec):
        camera.check()
        pose.check()
        self.camera, self.pose, self.grid = camera, pose, grid
        h, w = camera.height, camera.width
        v, u = np.mgrid[0:h, 0:w]
        uv = np.stack([u.ravel(), v.ravel()], 1).astype(np.float64)  # pixel centres (OpenCV convention)
        xy = camera.normalized(uv)
        rays_opt = np.concatenate([xy, np.ones((xy.shape[0], 1))], 1)
        self.rays = rays_opt @ pose.optical_to_base().T  # (N, 3) base-frame direction per pixel, z-scaled by depth
        self.origin = pose.position
        down = self.rays[:, 2] < -1e-9  # at or above the horizon never projects
        t = np.where(down, -self.origin[2] / np.where(down, self.rays[:, 2], -1.0), np.nan)
        ground = self.origin[:2] + self.rays[:, :2] * t[:, None]
        cells = grid.cells(ground)  # NaN (above the horizon) lands nowhere
        self.pixels = np.flatnonzero(cells >= 0)  # the flat-ground table: pixels that land in the grid
        self.pixel_cells = cells[self.pixels]
        # Far away a pixel row spans more than a cell, and the cells between rows would stay unknown
        # (stripes): each seen cell no pixel lands in takes the pixel its centre projects to.
        hole_pixels, hole_cells = self._holes(camera, pose, grid, np.unique(self.pixel_cells))
        self.pixels = np.concatenate([self.pixels, hole_pixels])
        self.pixel_cells = np.concatenate([self.pixel_cells, hole_cells])
        # The cells any pixel can reach (the camera sees a wedge of the grid): the
        # per-frame histogram covers only those, numbered compactly.
        self.view_cells, self.pixel_view = np.unique(self.pixel_cells, return_inverse=True)
        self._keys: dict[int, np.ndarray] = {}  # cell x buckets, per number of buckets
        self._rays_xy = self.rays[:, :2].astype(np.float32)

    @staticmethod
    def _holes(camera: CameraModel, pose: CameraPose, grid: GridSpec,
               landed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pixel, cell) for every grid cell within range whose centre the camera sees on
        flat ground and that no pixel centre lands in: the pixel that centre falls in."""
        every = np.arange(grid.rows * grid.cols)
        centres = grid.centres(every)
        free = np.ones(every.size, bool)
        free[landed] = False
        free &= np.hypot(centres[:, 0], centres[:, 1]) <= grid.max_range
        cells = every[free]
        ground = np.concatenate([centres[free], np.zeros((cells.size, 1))], 1)
        uv = camera.pixels((ground - pose.position) @ pose.optical_to_base())  # base -> optical: R^T (p - o)
        with np.errstate(invalid="ignore"):
            u, v = np.floor(uv[:, 0] + 0.5), np.floor(uv[:, 1] + 0.5)  # the pixel whose square holds it
            seen = (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
        return (v[seen] * camera.width + u[seen]).astype(np.int64), cells[seen]

    @property
    def sees_ground(self) -> bool:
        return self.pixels.size > 0

    def project(self, mask: np.ndarray, costs: ClassCosts,
                depth: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 Nav2 costs with 255 unknown, bool obstacle), each (rows, cols),
        from a class mask of the camera's size; with `depth` (metres along the
        optical axis, same size; 0 / NaN / inf invalid) pixels are placed by
        depth instead of on the flat ground."""
        cost, obstacle, _ = self._project(mask, costs, depth, False)
        return cost, obstacle

    def project_counted(self, mask: np.ndarray, costs: ClassCosts,
                        depth: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`project`, and the int32 number of ground or obstacle pixels behind each cell (what
        fusing several cameras weighs them by; 0.26 ms more for 200x200 cells, so only on request)."""
        cost, obstacle, count = self._project(mask, costs, depth, True)
        assert count is not None
        return cost, obstacle, count

    def _project(self, mask: np.ndarray, costs: ClassCosts, depth: np.ndarray | None,
                 count: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        h, w = self.camera.height, self.camera.width
        if mask.shape != (h, w):
            raise ProjectionError(f"mask is {mask.shape[1]}x{mask.shape[0]}, camera_info says {w}x{h}")
        nb = costs.buckets
        if depth is None:
            keys = self._keys.get(nb)
            if keys is None:
                keys = self._keys[nb] = self.pixel_view * nb
            return self._reduce(keys + costs.bucket[mask.reshape(-1)[self.pixels]], costs, count, self.view_cells)
        cells, cls = self._depth_cells(depth), mask.reshape(-1)
        keep = cells >= 0
        return self._reduce(cells[keep] * nb + costs.bucket[cls[keep]], costs, count)

    def _depth_cells(self, depth: np.ndarray) -> np.ndarray:
        h, w = self.camera.height, self.camera.width
        if depth.shape != (h, w):
            raise ProjectionError(f"depth image is {depth.shape[1]}x{depth.shape[0]}, camera_info says {w}x{h}")
        d = depth.reshape(-1).astype(np.float32)
        valid = np.isfinite(d) & (d > 0)
        d = np.where(valid, d, np.float32(np.nan))  # invalid depth lands nowhere
        return self.grid.cells(self.origin[:2].astype(np.float32) + self._rays_xy * d[:, None])

    def _reduce(self, keys: np.ndarray, costs: ClassCosts, want_count: bool,
                cells: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """keys = cell x buckets + bucket -> per-cell class histogram ->
        the cell rule. `cells`: the grid cells the key's cell numbers stand for
        (None: all of the grid, in order)."""
        g = self.grid
        nb = costs.buckets
        n = g.rows * g.cols if cells is None else cells.size
        hist = np.bincount(keys, minlength=n * nb).reshape(-1, nb)
        obstacle_hist = hist[:, costs.obstacle_order] > 0
        obstacle = obstacle_hist.any(1)
        obstacle_cost = costs.cost_u8[costs.obstacle_order][obstacle_hist.argmax(1)]
        ground_hist = hist[:, costs.ground_classes]
        ground_cost = np.where(ground_hist.any(1), costs.cost_u8[costs.ground_classes][ground_hist.argmax(1)],
                               np.uint8(UNKNOWN))
        values = np.where(obstacle, obstacle_cost, ground_cost)
        count = hist[:, :nb - 1].sum(1, dtype=np.int32) if want_count else None  # all but the dropped
        shape = (g.rows, g.cols)
        if cells is None:
            return values.reshape(shape), obstacle.reshape(shape), None if count is None else count.reshape(shape)
        out = np.full(g.rows * g.cols, UNKNOWN, np.uint8)
        out[cells] = values
        flags = np.zeros(g.rows * g.cols, bool)
        flags[cells] = obstacle
        counts: np.ndarray | None = None
        if count is not None:
            counts = np.zeros(g.rows * g.cols, np.int32)
            counts[cells] = count
        return out.reshape(shape), flags.reshape(shape), None if counts is None else counts.reshape(shape)


class TorchGroundProjector:
    """The flat-ground table of a GroundProjector on a torch device, so a mask
    that is already there (the model's output on the GPU) is projected without
    a copy to the host: the same gather, bincount and cell rule in torch."""

    def __init__(self, projector: GroundProjector, costs: ClassCosts, device: Any = "cpu"):
        import torch

        self.grid = projector.grid
        self.shape = (projector.camera.height, projector.camera.width)
        nb = costs.buckets
        dev = torch.device(device)
        self.nb = nb
        self.pixels = torch.from_numpy(projector.pixels).to(dev)
        self.keys = torch.from_numpy(projector.pixel_view * nb).to(dev)
        self.cells = torch.from_numpy(projector.view_cells).to(dev)
        self.bucket = torch.from_numpy(costs.bucket.astype(np.int64)).to(dev)
        self.obstacle_order = torch.from_numpy(costs.obstacle_order).to(dev)
        self.ground_classes = torch.from_numpy(costs.ground_classes).to(dev)
        self.cost = torch.from_numpy(costs.cost_u8).to(dev)

    def project(self, mask: Any) -> tuple[Any, Any]:
        """uint8 (H, W) mask tensor -> (uint8 costs, bool obstacle) tensors (rows, cols) on its device."""
        import torch

        if tuple(mask.shape) != self.shape:
            raise ProjectionError(f"mask is {mask.shape[1]}x{mask.shape[0]}, camera_info says "
                                  f"{self.shape[1]}x{self.shape[0]}")
        keys = self.keys + self.bucket[mask.reshape(-1)[self.pixels].long()]
        n = self.cells.numel()
        hist = torch.bincount(keys, minlength=n * self.nb).reshape(n, self.nb)
        obstacle_hist = hist[:, self.obstacle_order] > 0
        obstacle = obstacle_hist.any(1)
        obstacle_cost = self.cost[self.obstacle_order][obstacle_hist.to(torch.uint8).argmax(1)]
        ground_hist = hist[:, self.ground_classes]
        unknown = torch.full_like(obstacle_cost, UNKNOWN)
        ground_cost = torch.where(ground_hist.amax(1) > 0, self.cost[self.ground_classes][ground_hist.argmax(1)],
                                  unknown)
        g = self.grid
        out = torch.full((g.rows * g.cols,), UNKNOWN, dtype=torch.uint8, device=mask.device)
        out[self.cells] = torch.where(obstacle, obstacle_cost, ground_cost)
        flags = torch.zeros(g.rows * g.cols, dtype=torch.bool, device=mask.device)
        flags[self.cells] = obstacle
        return out.reshape(g.rows, g.cols), flags.reshape(g.rows, g.cols)


def occupancy_values(grid: np.ndarray) -> np.ndarray:
    """Nav2 costs (0..254, 255 unknown) -> nav_msgs/OccupancyGrid data (0..100, -1 unknown)."""
    occ = np.round(grid.astype(np.float64) * (100.0 / 254.0)).astype(np.int8)
    return np.where(grid == UNKNOWN, np.int8(-1), occ).reshape(-1)


def obstacle_points(grid: np.ndarray, obstacle: np.ndarray, spec: GridSpec, height: float) -> np.ndarray:
    """(N, 4) float32 x, y, z, cost: the centres of the cells whose cost came from an obstacle class."""
    cells = np.flatnonzero(obstacle.reshape(-1))
    out = np.empty((cells.size, 4), np.float32)
    out[:, :2], out[:, 2], out[:, 3] = spec.centres(cells), height, grid.reshape(-1)[cells]
    return out
