"""A rolling local map in the odometry frame, with memory (ROS-free).

Each camera's grid (base frame, one frame's view) is placed into a square
window of the odometry frame at the robot's pose at that frame's stamp
(interpolated from odometry), so what the robot saw stays where it was as it
drives and turns. Per cell:
- ground seen (a free or rough cost, no obstacle): the cell takes that cost
  and clears an obstacle there;
- an obstacle seen: counted; it shows once `mark_after` frames saw it
  without a frame seeing free ground there in between;
- not seen for `memory_s` (against the newest stamp, so bags and sim time
  work): back to unknown.
Unknown cells of a frame (outside the view, unsure pixels) change nothing.
The window is centred on the robot and scrolls by whole cells as it moves.
Odometry that jumps (time going backwards, or a leap larger than `jump_m`
between two messages: a reset, a relocalisation) clears the map: what it
held is in an unknown place now.

Ground cells are sampled at each map cell's centre (no holes at any
resolution or heading); obstacle cells are splatted from every obstacle
cell of the grid (none is lost when the map is coarser).

The robot's pose comes from odometry messages (`on_odometry`), or is given
with each frame (`integrate_at`: odom -> base from TF at the frame's stamp).
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

from offroad_seg_ros.core.stamps import NS_PER_S, seconds_to_ns, to_ns
from offroad_seg_ros.ground.mapper import GroundFrame
from offroad_seg_ros.ground.projection import UNKNOWN, GridSpec

NEVER = np.iinfo(np.int64).min


@dataclass(frozen=True)
class MapSpec:
    resolution: float = 0.1
    size: float = 30.0  # side of the square window, m
    memory_s: float = 10.0
    mark_after: int = 2
    jump_m: float = 1.0
    odom_slop_s: float = 0.1  # how far a frame's stamp may lie beyond the odometry it is placed with
    # field -> the node parameter that sets it (node/params.py)
    PARAMETERS: ClassVar[dict[str, str]] = {
        "resolution": "map_resolution", "size": "map_size", "memory_s": "map_memory", "mark_after": "map_mark_after",
        "jump_m": "map_jump", "odom_slop_s": "map_odom_slop"}

    def __post_init__(self) -> None:
        bad = [f for f in ("resolution", "size", "memory_s", "jump_m") if not getattr(self, f) > 0]
        bad += ["mark_after"] if self.mark_after < 1 else []
        bad += ["odom_slop_s"] if self.odom_slop_s < 0 else []
        if bad:
            listed = ", ".join(f"{self.PARAMETERS[f]}={getattr(self, f)}" for f in bad)
            raise ValueError(f"parameters out of range (> 0; map_mark_after >= 1, map_odom_slop >= 0): {listed}")

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> MapSpec:
        """From the node's map_* parameters."""
        return cls(**{f.name: p[cls.PARAMETERS[f.name]] for f in fields(cls)})

    @property
    def cells(self) -> int:
        return max(1, int(round(self.size / self.resolution)))


@dataclass(frozen=True)
class Pose2D:
    """The base frame in the odometry frame: m, rad."""

    x: float
    y: float
    yaw: float


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def odometry_pose(msg: Any) -> tuple[int, Pose2D, str]:
    """(stamp ns, base pose, frame) of a nav_msgs/Odometry (rclpy or rosbags message)."""
    stamp, p, q = msg.header.stamp, msg.pose.pose.position, msg.pose.pose.orientation
    return (to_ns(stamp), Pose2D(float(p.x), float(p.y), yaw_from_quaternion(q.x, q.y, q.z, q.w)),
            str(msg.header.frame_id))


class OdometryTrack:
    """Recent odometry poses by stamp: the pose at a frame's stamp, and jumps."""

    def __init__(self, jump_m: float, keep_s: float = 5.0) -> None:
        self.jump_m, self.keep_ns = jump_m, seconds_to_ns(keep_s)
        self._stamps: deque[int] = deque()
        self._poses: deque[Pose2D] = deque()

    def add(self, stamp_ns: int, pose: Pose2D) -> str | None:
        """Keep a pose; a reason string (and the history dropped) if it jumps."""
        reason = None
        if self._stamps:
            last_t, last = self._stamps[-1], self._poses[-1]
            leap = math.hypot(pose.x - last.x, pose.y - last.y)
            if stamp_ns < last_t:
                reason = f"odometry went back in time by {(last_t - stamp_ns) / NS_PER_S:.3f} s"
            elif leap > self.jump_m:
                reason = f"odometry leapt {leap:.2f} m between two messages (> {self.jump_m:g} m)"
        if reason:
            self._stamps.clear()
            self._poses.clear()
        self._stamps.append(stamp_ns)
        self._poses.append(pose)
        while self._stamps[-1] - self._stamps[0] > self.keep_ns:
            self._stamps.popleft()
            self._poses.popleft()
        return reason

    def at(self, stamp_ns: int, slop_ns: int) -> Pose2D | None:
        """The pose at `stamp_ns`, interpolated; the nearest end within `slop_ns`; else None."""
        if not self._stamps:
            return None
        stamps = self._stamps
        i = bisect_left(stamps, stamp_ns)
        if i == 0:
            return self._poses[0] if stamps[0] - stamp_ns <= slop_ns else None
        if i == len(stamps):
            return self._poses[-1] if stamp_ns - stamps[-1] <= slop_ns else None
        t0, t1, a, b = stamps[i - 1], stamps[i], self._poses[i - 1], self._poses[i]
        f = (stamp_ns - t0) / (t1 - t0) if t1 > t0 else 0.0
        turn = math.remainder(b.yaw - a.yaw, math.tau)
        return Pose2D(a.x + f * (b.x - a.x), a.y + f * (b.y - a.y), a.yaw + f * turn)

    @property
    def latest(self) -> tuple[int, Pose2D] | None:
        return (self._stamps[-1], self._poses[-1]) if self._stamps else None


class LocalMap:
    """The map's cells and the odometry that places frames into it (thread-safe:
    odometry arrives on the executor, frames on the worker, snapshots on a timer)."""

    def __init__(self, spec: MapSpec, grid: GridSpec) -> None:
        self.spec, self.grid = spec, grid
        n = spec.cells
        self.cost = np.full((n, n), UNKNOWN, np.uint8)
        self.seen = np.full((n, n), NEVER, np.int64)  # stamp of the cell's last observation
        self.hits = np.zeros((n, n), np.uint8)  # obstacle observations since ground was last seen there
        self.corner = (0, 0)  # (col, row) of the window's lower-left cell on the odometry frame's lattice
        self.track = OdometryTrack(spec.jump_m)
        self.newest_ns = 0
        self.frame_id = ""  # the odometry's frame: the map's
        self.frames = self.skipped = self.jumps = 0
        self.last_jump = ""
        self.last_skip = ""  # why the last frame had no pose, when its source said (TF)
        self._reported_jumps = self._reported_skips = 0
        self._lock = threading.Lock()
        # The grid's cell centres in the base frame, once (ground sampling goes the other way).
        self._grid_xy = grid.centres(np.arange(grid.rows * grid.cols))

    # -- odometry (executor thread) ------------------------------------------------
    def on_odometry(self, stamp_ns: int, pose: Pose2D, frame_id: str = "") -> str | None:
        """A pose of the base in the odometry frame; the jump reason if it cleared the map."""
        with self._lock:
            self.frame_id = frame_id or self.frame_id
            reason = self.track.add(stamp_ns, pose)
            if reason:
                self.jumps += 1
                self.last_jump = reason
                self._clear()
                self.newest_ns = stamp_ns  # time may have gone back
            self.newest_ns = max(self.newest_ns, stamp_ns)
            self._centre_on(pose)
            return reason

    # -- frames (worker thread) ----------------------------------------------------
    def integrate(self, frame: GroundFrame, stamp_ns: int, pose: Pose2D | None = None) -> bool:
        """Place one grid taken at `stamp_ns`, with the base at `pose` or, without one, where odometry
        puts it at that stamp; False (counted) without odometry for that stamp."""
        with self._lock:
            if pose is None:
                pose = self.track.at(stamp_ns, seconds_to_ns(self.spec.odom_slop_s))
            if pose is None:
                self.skipped += 1
                return False
            self._place(frame, pose, stamp_ns)
            self.frames += 1
            self.newest_ns = max(self.newest_ns, stamp_ns)
            return True

    def integrate_at(self, frame: GroundFrame, stamp_ns: int, pose: Pose2D, frame_id: str) -> bool:
        """Place one grid with the base's pose at its stamp given (from TF). A stamp newer than all
        before also moves the window and is checked for jumps, as odometry is (the leap is then
        measured between frames); one older than the track keeps is time going back (a bag loop).
        Older stamps within it (another camera's frame) are placed without moving anything."""
        latest = self.track.latest
        if latest is None or stamp_ns > latest[0] or stamp_ns < latest[0] - self.track.keep_ns:
            self.on_odometry(stamp_ns, pose, frame_id)
        return self.integrate(frame, stamp_ns, pose)

    def pose_missing(self, reason: str) -> None:
        """A frame left out for want of the base's pose at its stamp, and why (TF's reason)."""
        with self._lock:
            self.skipped += 1
            self.last_skip = reason

    def _place(self, frame: GroundFrame, pose: Pose2D, stamp_ns: int) -> None:
        g, n, res = self.grid, self.spec.cells, self.spec.resolution
        c, s = math.cos(pose.yaw), math.sin(pose.yaw)
        # Obstacles, forward: every obstacle cell of the grid counts for the map cell it falls in.
        flat = np.flatnonzero(frame.obstacle.reshape(-1))
        marked = np.zeros(0, np.int64)
        if flat.size:
            xy = self._grid_xy[flat]
            col = np.floor((pose.x + c * xy[:, 0] - s * xy[:, 1]) / res).astype(np.int64) - self.corner[0]
            row = np.floor((pose.y + s * xy[:, 0] + c * xy[:, 1]) / res).astype(np.int64) - self.corner[1]
            inside = (col >= 0) & (col < n) & (row >= 0) & (row < n)
            cells = row[inside] * n + col[inside]
            values = frame.cost.reshape(-1)[flat][inside]
            order = np.lexsort((values, cells))  # by cell, then cost: the last of each cell is its highest
            cells, values = cells[order], values[order]
            last = np.r_[cells[1:] != cells[:-1], True]
            marked, highest = cells[last], values[last]
        # Ground, backward: each map cell near the robot samples the grid cell under its centre.
        reach = min(g.max_range, math.hypot(*(max(abs(o), abs(o + e)) for o, e in zip(g.origin, (g.size_x, g.size_y)))))
        c0 = max(0, int(math.floor((pose.x - reach) / res)) - self.corner[0])
        c1 = min(n, int(math.ceil((pose.x + reach) / res)) - self.corner[0] + 1)
        r0 = max(0, int(math.floor((pose.y - reach) / res)) - self.corner[1])
        r1 = min(n, int(math.ceil((pose.y + reach) / res)) - self.corner[1] + 1)
        if c1 > c0 and r1 > r0:
            rows, cols = np.mgrid[r0:r1, c0:c1]
            ox = (cols + self.corner[0] + 0.5) * res - pose.x
            oy = (rows + self.corner[1] + 0.5) * res - pose.y
            base = np.stack([(c * ox + s * oy).ravel(), (-s * ox + c * oy).ravel()], 1)
            at = g.cells(base)
            ok = at >= 0
            sampled = np.where(ok, frame.cost.reshape(-1)[np.where(ok, at, 0)], UNKNOWN)
            ground = ok & (sampled != UNKNOWN) & ~frame.obstacle.reshape(-1)[np.where(ok, at, 0)]
            cells = (rows.ravel() * n + cols.ravel())[ground]
            cells_cost = sampled[ground]
            keep = ~np.isin(cells, marked)  # an obstacle seen in the same frame wins
            cells, cells_cost = cells[keep], cells_cost[keep]
            self.cost.reshape(-1)[cells] = cells_cost
            self.hits.reshape(-1)[cells] = 0
            self.seen.reshape(-1)[cells] = stamp_ns
        if marked.size:
            hits = self.hits.reshape(-1)
            hits[marked] = np.minimum(hits[marked].astype(np.int32) + 1, 255).astype(np.uint8)
            shown = hits[marked] >= self.spec.mark_after
            self.cost.reshape(-1)[marked[shown]] = highest[shown]
            self.seen.reshape(-1)[marked] = stamp_ns

    # -- output (timer) --------------------------------------------------------------
    def snapshot(self) -> tuple[np.ndarray, GridSpec, int] | None:
        """(Nav2 costs with 255 unknown, the window as a GridSpec in the odometry frame,
        the newest stamp), cells older than memory_s forgotten first; None before odometry."""
        with self._lock:
            if self.track.latest is None:
                return None
            stale = self.seen < self.newest_ns - seconds_to_ns(self.spec.memory_s)
            self.cost[stale] = UNKNOWN
            self.hits[stale] = 0
            self.seen[stale] = NEVER
            n, res = self.spec.cells, self.spec.resolution
            window = GridSpec(res, n * res, n * res, self.corner[0] * res, self.corner[1] * res, max_range=math.inf)
            return self.cost.copy(), window, self.newest_ns

    def condition(self) -> str | None:
        """A WARN message for /diagnostics since the last call: a jump, or frames without odometry."""
        jumps, skips = self.jumps - self._reported_jumps, self.skipped - self._reported_skips
        self._reported_jumps, self._reported_skips = self.jumps, self.skipped
        if jumps:
            return f"local map cleared: {self.last_jump}"
        if self.track.latest is None:
            return "no odometry received yet: ~/map waits" + (f" ({self.last_skip})" if self.last_skip else "")
        if skips:
            return f"{skips} frame(s) not in ~/map: " + (
                self.last_skip or f"no odometry within {self.spec.odom_slop_s:g} s of their stamp")
        return None

    def values(self) -> list[tuple[str, str]]:
        return [("map_frames", str(self.frames)), ("map_frames_without_odometry", str(self.skipped)),
                ("odometry_jumps", str(self.jumps)), ("last_odometry_jump", self.last_jump or "none")]

    # -- the window ------------------------------------------------------------------
    def _clear(self) -> None:
        self.cost.fill(UNKNOWN)
        self.seen.fill(NEVER)
        self.hits.fill(0)

    def _centre_on(self, pose: Pose2D) -> None:
        n, res = self.spec.cells, self.spec.resolution
        corner = (int(math.floor(pose.x / res)) - n // 2, int(math.floor(pose.y / res)) - n // 2)
        dc, dr = corner[0] - self.corner[0], corner[1] - self.corner[1]
        if (dc, dr) == (0, 0):
            return
        self.corner = corner
        for a, fill in ((self.cost, UNKNOWN), (self.seen, NEVER), (self.hits, 0)):
            a[...] = _shifted(a, dr, dc, fill)


def _shifted(a: np.ndarray, dr: int, dc: int, fill: int) -> np.ndarray:
    """`a` seen from a window moved by (dr, dc) cells: out[i, j] = a[i + dr, j + dc], `fill` where new."""
    n_r, n_c = a.shape
    out = np.full_like(a, fill)
    if abs(dr) < n_r and abs(dc) < n_c:
        out[max(-dr, 0):n_r - max(dr, 0), max(-dc, 0):n_c - max(dc, 0)] = \
            a[max(dr, 0):n_r - max(-dr, 0), max(dc, 0):n_c - max(-dc, 0)]
    return out
