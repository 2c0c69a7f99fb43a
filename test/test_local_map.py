"""The rolling local map: memory (decay), k observations to mark, clearing, odometry jumps,
scrolling, and a known-answer drive past obstacles with a real camera projection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from offroad_seg_ros.ground.local_map import LocalMap, MapSpec, OdometryTrack, Pose2D, yaw_from_quaternion
from offroad_seg_ros.ground.mapper import GroundFrame
from offroad_seg_ros.ground.projection import UNKNOWN, CameraModel, CameraPose, ClassCosts, GridSpec, GroundProjector

S = 10**9
GRID = GridSpec(0.1, 6.0, 6.0, max_range=3.0)  # base frame, centred on the robot


def _frame(ground: float | None = 0, obstacles: list[tuple[float, float]] = ()) -> GroundFrame:
    """A base-frame grid: every cell within range ground of cost `ground` (None: unknown),
    the cells at `obstacles` (base x, y) obstacles of cost 254."""
    cost = np.full((GRID.rows, GRID.cols), UNKNOWN, np.uint8)
    centres = GRID.centres(np.arange(GRID.rows * GRID.cols))
    if ground is not None:
        cost.reshape(-1)[np.hypot(*centres.T) <= GRID.max_range] = ground
    obstacle = np.zeros_like(cost, bool)
    for x, y in obstacles:
        i = GRID.cells(np.array([[x, y]]))[0]
        cost.reshape(-1)[i], obstacle.reshape(-1)[i] = 254, True
    return GroundFrame(cost, obstacle, False, np.ones_like(cost, np.int32))


def _at(m: LocalMap, x: float, y: float) -> int:
    cost, window, _ = m.snapshot()
    col = int(math.floor((x - window.origin[0]) / window.resolution))
    row = int(math.floor((y - window.origin[1]) / window.resolution))
    return int(cost[row, col])


def test_cells_decay_to_unknown_after_memory():
    m = LocalMap(MapSpec(resolution=0.1, size=10, memory_s=1.0), GRID)
    assert m.snapshot() is None and m.condition() == "no odometry received yet: ~/map waits"
    m.on_odometry(0, Pose2D(0, 0, 0))
    assert m.integrate(_frame(60), 0)
    assert _at(m, 1.0, 0.5) == 60
    m.on_odometry(S // 2, Pose2D(0, 0, 0))
    assert _at(m, 1.0, 0.5) == 60  # 0.5 s old: remembered
    m.on_odometry(3 * S // 2, Pose2D(0, 0, 0))
    assert _at(m, 1.0, 0.5) == UNKNOWN  # 1.5 s old: forgotten
    assert (m.snapshot()[0] == UNKNOWN).all()


def test_an_obstacle_needs_k_observations_and_free_ground_clears_it():
    m = LocalMap(MapSpec(resolution=0.1, size=10, mark_after=3), GRID)

    def see(frame, stamp):  # standing still: odometry with every frame
        m.on_odometry(stamp, Pose2D(0, 0, 0))
        assert m.integrate(frame, stamp)

    for k in range(3):
        assert k == 0 or _at(m, 2.0, 0.0) == UNKNOWN  # seen as an obstacle k times: not shown yet (nor free)
        see(_frame(0, [(2.0, 0.0)]), k * S // 10)
    assert _at(m, 2.0, 0.0) == 254  # the third observation marks it
    see(_frame(0), S // 2)  # free ground seen there: cleared
    assert _at(m, 2.0, 0.0) == 0
    see(_frame(0, [(2.0, 0.0)]), 6 * S // 10)  # counting starts again: still free
    assert _at(m, 2.0, 0.0) == 0
    see(_frame(None), 7 * S // 10)  # unknown in a frame changes nothing
    assert _at(m, 1.0, 1.0) == 0 and _at(m, 2.0, 0.0) == 0


def test_odometry_jumps_clear_the_map_and_say_why():
    m = LocalMap(MapSpec(resolution=0.1, size=10, jump_m=1.0), GRID)
    m.on_odometry(0, Pose2D(0, 0, 0))
    m.integrate(_frame(20), 0)
    assert m.on_odometry(S // 10, Pose2D(0.05, 0, 0)) is None  # driving
    assert "leapt 4.95 m" in m.on_odometry(2 * S // 10, Pose2D(5.0, 0, 0))
    assert (m.snapshot()[0] == UNKNOWN).all() and m.jumps == 1
    assert m.condition().startswith("local map cleared: odometry leapt 4.95 m")
    assert m.condition() is None  # said once
    m.integrate(_frame(20), 2 * S // 10)
    assert "back in time" in m.on_odometry(S // 10, Pose2D(5.0, 0, 0))  # a bag looping, a reset clock
    assert (m.snapshot()[0] == UNKNOWN).all() and m.values()[2] == ("odometry_jumps", "2")


def test_frames_without_odometry_at_their_stamp_are_counted_not_placed():
    m = LocalMap(MapSpec(odom_slop_s=0.1), GRID)
    m.on_odometry(S, Pose2D(0, 0, 0))
    m.on_odometry(2 * S, Pose2D(0.5, 0, 0))
    assert not m.integrate(_frame(0), 3 * S)  # a second after the newest pose
    assert m.integrate(_frame(0), 2 * S + S // 20)  # within the slop: the newest pose
    assert m.values()[:2] == [("map_frames", "1"), ("map_frames_without_odometry", "1")]
    assert "1 frame(s) not in ~/map" in m.condition()


def test_odometry_interpolates_position_and_heading_across_pi():
    track = OdometryTrack(jump_m=5.0)
    track.add(0, Pose2D(0, 0, math.pi - 0.1))
    track.add(S, Pose2D(1.0, 2.0, -math.pi + 0.1))  # turned 0.2 rad through +-pi
    p = track.at(S // 2, 0)
    assert (p.x, p.y) == pytest.approx((0.5, 1.0)) and math.cos(p.yaw) == pytest.approx(-1.0)
    assert track.at(2 * S, S // 10) is None and track.at(-S // 20, S // 10).x == 0
    assert yaw_from_quaternion(0, 0, math.sin(0.3), math.cos(0.3)) == pytest.approx(0.6)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="resolution=0.*mark_after=0"):
        MapSpec(resolution=0, mark_after=0)


def test_known_answer_drive_straight_and_turn_past_obstacles(table):
    """A camera on a robot driving 4 m straight, then a 90-degree left turn, past small
    obstacles at known odometry positions: the mask each frame is what the camera sees of
    them (the pixels whose ground point lies on an obstacle), projected and placed by the
    interpolated pose; every obstacle ends in its own cell (within one) and nowhere else."""
    costs = ClassCosts(table, table.cost_lut())
    land = next(i for i, c in enumerate(table.classes) if c.name == "Landscape")
    rocks = next(i for i, c in enumerate(table.classes) if c.name == "Rocks")
    camera = CameraModel(320, 240, (200.0, 0, 159.5, 0, 200.0, 119.5, 0, 0, 1), (-0.05, 0.01, 0, 0, 0))
    grid = GridSpec(0.05, 12.0, 12.0, max_range=6.0)
    proj = GroundProjector(camera, CameraPose(x=0.3, z=1.2, pitch=0.35), grid)
    down = proj.rays[:, 2] < 0
    t = np.where(down, -proj.origin[2] / np.where(down, proj.rays[:, 2], -1), np.nan)
    ground_xy = proj.origin[:2] + proj.rays[:, :2] * t[:, None]  # base frame, per pixel
    # each seen in several frames: ahead before the turn, left of the road after it
    obstacles = np.array([[3.0, 0.4], [5.0, -0.5], [6.5, 1.0], [5.5, 4.0], [6.0, 5.5]])
    spec = MapSpec(resolution=0.1, size=30, memory_s=60, mark_after=2)
    m = LocalMap(spec, grid)

    def pose_at(s: float) -> Pose2D:  # 1 m/s straight along x for 4 s, then a 2 m-radius left turn
        if s <= 4.0:
            return Pose2D(s, 0.0, 0.0)
        a = (s - 4.0) / 2.0
        return Pose2D(4.0 + 2.0 * math.sin(a), 2.0 - 2.0 * math.cos(a), a)

    seen = np.zeros(len(obstacles), int)
    for k in range(0, 141):  # odometry at 20 Hz for 7 s; a frame every 4th message
        s = k / 20
        m.on_odometry(int(s * S), pose_at(s))
        if k % 4 == 2 and k > 4:
            fs = s - 0.175  # taken 175 ms ago (exposure, transport, inference), between two odometry stamps
            p = pose_at(fs)
            c, sn = math.cos(p.yaw), math.sin(p.yaw)
            odom_xy = np.stack([p.x + c * ground_xy[:, 0] - sn * ground_xy[:, 1],
                                p.y + sn * ground_xy[:, 0] + c * ground_xy[:, 1]], 1)
            near = np.zeros(len(odom_xy), bool)
            for i, o in enumerate(obstacles):
                with np.errstate(invalid="ignore"):
                    on = (np.hypot(*(odom_xy - o).T) <= 0.08) & (np.hypot(*ground_xy.T) <= grid.max_range)
                near |= on
                seen[i] += on.any()
            mask = np.where(near & down, rocks, land).astype(np.uint8).reshape(240, 320)
            cost, obstacle, count = proj.project_counted(mask, costs)
            assert m.integrate(GroundFrame(cost, obstacle, False, count), int(fs * S))
    assert (seen >= spec.mark_after).all(), seen
    cost, window, _ = m.snapshot()
    rows, cols = np.nonzero(cost == 254)
    centres = np.stack([window.origin[0] + (cols + 0.5) * 0.1, window.origin[1] + (rows + 0.5) * 0.1], 1)
    d = np.hypot(centres[:, None, 0] - obstacles[None, :, 0], centres[:, None, 1] - obstacles[None, :, 1])
    assert (d.min(1) <= 0.08 + 0.1 * math.sqrt(2)).all(), centres[d.min(1) > 0.22]  # nothing marked elsewhere
    assert (d.min(0) <= 0.1).all(), d.min(0)  # every obstacle's own cell (within one) is marked
    assert (cost == 0).sum() > 5000  # the ground the robot drove past, remembered
