"""Coordinate frames over time, as TF keeps them (ROS-free).

`TransformBuffer` stores what arrives on /tf_static (one transform per child
frame, valid at any time) and on /tf (a bounded history per child frame) and
looks up the transform between two frames of the tree at a stamp: the chain
of edges through their common ancestor, each edge interpolated between its two
samples around the stamp (translation linearly, rotation by slerp). As with
tf2 (which is not on PyPI; node/tf_listener.py uses it where it imports), a
stamp outside an edge's history is refused, never extrapolated, and stamp 0
means the latest time every edge of the chain has. The errors name the frames
and the stamps, with tf2's three kinds: a frame TF does not know (lookup), two
frames in separate trees (connectivity), a stamp outside the data
(extrapolation). test/test_transforms.py runs the same known answers against
this buffer and, on a full ROS install, tf2_ros's.

Quaternions are (x, y, z, w), as in geometry_msgs/Quaternion.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from offroad_seg_ros.core.stamps import NS_PER_S, seconds_to_ns, to_ns
from offroad_seg_ros.ground.projection import CameraPose

KINDS = ("lookup", "connectivity", "extrapolation")


class TransformError(LookupError):
    """A transform TF cannot give; `kind` is one of KINDS, the message names the frames and stamps."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])


def quaternion_matrix(q: np.ndarray) -> np.ndarray:
    """A unit quaternion -> its 3x3 rotation matrix."""
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def quaternion_from_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Fixed-axis roll, pitch, yaw (URDF rpy: Rz(yaw) Ry(pitch) Rx(roll)) -> (x, y, z, w)."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return np.array([sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy,
                     cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy])


def slerp(a: np.ndarray, b: np.ndarray, f: float) -> np.ndarray:
    """The rotation a fraction `f` of the way from `a` to `b`, the short way round."""
    dot = float(np.dot(a, b))
    if dot < 0:  # q and -q are the same rotation: turn through the smaller angle
        b, dot = -b, -dot
    if dot > 1 - 1e-12:
        return a
    theta = math.acos(min(dot, 1.0))
    s = math.sin(theta)
    q = a * (math.sin((1 - f) * theta) / s) + b * (math.sin(f * theta) / s)
    return q / np.linalg.norm(q)


@dataclass(frozen=True)
class Transform:
    """A child frame's pose in its parent frame: it maps points of the child into the parent."""

    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)

    @classmethod
    def of(cls, translation: Any, rotation: Any) -> Transform:
        """From any 3 + 4 numbers; the quaternion normalised, a zero or non-finite one refused."""
        t, q = np.asarray(translation, np.float64).reshape(3), np.asarray(rotation, np.float64).reshape(4)
        norm = float(np.linalg.norm(q))
        if not (np.isfinite(t).all() and math.isfinite(norm) and norm > 1e-9):
            raise ValueError(f"invalid transform: translation {t.tolist()}, rotation {q.tolist()}")
        return cls(tuple(t.tolist()), tuple((q / norm).tolist()))  # type: ignore[arg-type]

    @classmethod
    def from_msg(cls, msg: Any) -> Transform:
        """A geometry_msgs/Transform (rclpy or rosbags message)."""
        t, r = msg.translation, msg.rotation
        return cls.of((t.x, t.y, t.z), (r.x, r.y, r.z, r.w))

    @classmethod
    def from_rpy(cls, xyz: Any, rpy: Any) -> Transform:
        """As a URDF joint's <origin xyz rpy> writes it."""
        return cls.of(xyz, quaternion_from_rpy(*rpy))

    @property
    def matrix(self) -> np.ndarray:
        return quaternion_matrix(np.array(self.rotation))

    def __mul__(self, other: Transform) -> Transform:
        """self (a in b) * other (c in a) = c in b."""
        t = np.array(self.translation) + self.matrix @ np.array(other.translation)
        return Transform.of(t, quaternion_multiply(np.array(self.rotation), np.array(other.rotation)))

    def inverse(self) -> Transform:
        x, y, z, w = self.rotation
        return Transform.of(-(self.matrix.T @ np.array(self.translation)), (-x, -y, -z, w))

    def interpolate(self, other: Transform, f: float) -> Transform:
        t = np.array(self.translation) + f * (np.array(other.translation) - np.array(self.translation))
        return Transform.of(t, slerp(np.array(self.rotation), np.array(other.rotation), f))

    @property
    def yaw(self) -> float:
        """The heading of the child's x axis in the parent's x-y plane."""
        x, y, z, w = self.rotation
        return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))

    def camera_pose(self) -> CameraPose:
        """This transform as a camera's optical frame in the base frame -> the camera's pose (body frame)."""
        return CameraPose.from_optical(self.translation, self.matrix)


class TransformLookup(Protocol):
    """What the ground outputs ask of TF: this buffer, or tf2_ros's (node/tf_listener.py)."""

    def lookup(self, target: str, source: str, stamp_ns: int) -> Transform:
        """`source`'s pose in `target` at `stamp_ns` (0: the latest); TransformError if TF cannot give it."""
        ...


def _s(ns: int) -> str:
    return f"{ns / NS_PER_S:.6f} s"


@dataclass
class _Edge:
    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)  # ascending
    transforms: list[Transform] = field(default_factory=list)


class TransformBuffer:
    """The frame tree over the last `cache_s` seconds of each dynamic edge (tf2's default: 10 s).

    Thread-safe: transforms arrive on the executor, lookups come from the worker thread.
    """

    def __init__(self, cache_s: float = 10.0) -> None:
        self.cache_ns = seconds_to_ns(cache_s)
        self._edges: dict[str, _Edge] = {}  # child frame -> the edge to its parent
        self._lock = threading.Lock()
        self.rejected = 0  # transforms refused (invalid numbers, no frame names, a frame its own parent)

    def set_transform(self, parent: str, child: str, stamp_ns: int, transform: Transform,
                      static: bool = False) -> None:
        """One edge sample. A static edge holds one transform for all time; a dynamic one its
        history; a child given a new parent starts a new history (the tree changed)."""
        if not parent or not child or parent == child:
            raise ValueError(f"a transform needs two different frames, got {parent!r} -> {child!r}")
        with self._lock:
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent or edge.static != static:
                edge = self._edges[child] = _Edge(parent, static)
            if static:
                edge.stamps, edge.transforms = [stamp_ns], [transform]
                return
            i = bisect_left(edge.stamps, stamp_ns)
            if i < len(edge.stamps) and edge.stamps[i] == stamp_ns:
                return  # a repeat of a stamp already held is ignored, as tf2 does
            if edge.stamps and stamp_ns < edge.stamps[-1] - self.cache_ns:
                return  # older than the history kept
            edge.stamps.insert(i, stamp_ns)
            edge.transforms.insert(i, transform)
            old = bisect_left(edge.stamps, edge.stamps[-1] - self.cache_ns)
            if old:
                del edge.stamps[:old], edge.transforms[:old]

    def add_message(self, msg: Any, static: bool = False) -> None:
        """Every transform of a tf2_msgs/TFMessage (rclpy or rosbags message); invalid ones counted in `rejected`."""
        for t in msg.transforms:
            try:
                self.set_transform(str(t.header.frame_id), str(t.child_frame_id), to_ns(t.header.stamp),
                                   Transform.from_msg(t.transform), static)
            except ValueError:
                self.rejected += 1

    @property
    def frames(self) -> set[str]:
        with self._lock:
            return set(self._edges) | {e.parent for e in self._edges.values()}

    def lookup(self, target: str, source: str, stamp_ns: int) -> Transform:
        """`source`'s pose in `target` at `stamp_ns` (0: the latest common time of the chain)."""
        with self._lock:
            for frame, role in ((target, "target"), (source, "source")):
                if frame not in self._edges and all(e.parent != frame for e in self._edges.values()):
                    raise TransformError("lookup", f'frame "{frame}" ({role} of {target} <- {source}) does not '
                                                   f"exist in TF")
            if target == source:
                return Transform()
            up_source, up_target = self._path_up(source), self._path_up(target)
            common = next((f for f in up_source if f in set(up_target)), None)
            if common is None:
                raise TransformError("connectivity", f'"{target}" and "{source}" are not part of the same tree: '
                                                     f"{' -> '.join(reversed(up_target))} and "
                                                     f"{' -> '.join(reversed(up_source))}")
            chain_s = up_source[:up_source.index(common)]
            chain_t = up_target[:up_target.index(common)]
            if stamp_ns == 0:
                newest = [self._edges[f].stamps[-1] for f in chain_s + chain_t if not self._edges[f].static]
                stamp_ns = min(newest, default=0)
            in_common_s = self._compose(chain_s, stamp_ns, target, source)
            in_common_t = self._compose(chain_t, stamp_ns, target, source)
        return in_common_t.inverse() * in_common_s

    def _path_up(self, frame: str) -> list[str]:
        """[frame, its parent, ..., the root]; a loop in the tree ends the walk."""
        path = [frame]
        while path[-1] in self._edges and len(path) <= len(self._edges):
            path.append(self._edges[path[-1]].parent)
        return path

    def _compose(self, chain: list[str], stamp_ns: int, target: str, source: str) -> Transform:
        """chain[0]'s pose in the parent of chain[-1]."""
        out = Transform()
        for child in chain:
            out = self._at(child, stamp_ns, target, source) * out
        return out

    def _at(self, child: str, stamp_ns: int, target: str, source: str) -> Transform:
        edge = self._edges[child]
        if edge.static:
            return edge.transforms[0]
        stamps = edge.stamps
        i = bisect_left(stamps, stamp_ns)
        if i < len(stamps) and stamps[i] == stamp_ns:
            return edge.transforms[i]
        if i == 0 or i == len(stamps):
            held = (f"only has data at {_s(stamps[0])}" if len(stamps) == 1 else
                    f"has data from {_s(stamps[0])} to {_s(stamps[-1])}")
            raise TransformError("extrapolation", f"{target} <- {source} at {_s(stamp_ns)} would need extrapolation "
                                                  f"into the {'past' if i == 0 else 'future'}: {edge.parent} -> "
                                                  f"{child} {held}")
        t0, t1 = stamps[i - 1], stamps[i]
        return edge.transforms[i - 1].interpolate(edge.transforms[i], (stamp_ns - t0) / (t1 - t0))
