"""Fusing several cameras' grids: the cell rule on hand-made grids, the age limit, and two real
projections whose wedges overlap."""

from __future__ import annotations

import numpy as np
import pytest

from offroad_seg_ros.ground.fusion import GridFusion, fuse_frames
from offroad_seg_ros.ground.mapper import GroundFrame
from offroad_seg_ros.ground.projection import UNKNOWN, CameraModel, CameraPose, ClassCosts, GridSpec, GroundProjector


def _frame(cost, obstacle, count):
    return GroundFrame(np.array(cost, np.uint8), np.array(obstacle, bool), False, np.array(count, np.int32))


def test_obstacle_from_any_camera_else_ground_from_the_most_pixels_else_unknown():
    # cells: [a obstacle | b ground, more pixels in b | more pixels in a | only b | neither]
    a = _frame([[254, 0, 60, UNKNOWN, UNKNOWN]], [[True, False, False, False, False]], [[3, 2, 9, 0, 0]])
    b = _frame([[0, 60, 0, 30, UNKNOWN]], [[False, False, False, False, False]], [[50, 7, 4, 1, 0]])
    fused = fuse_frames([a, b])
    assert fused.cost.tolist() == [[254, 60, 60, 30, UNKNOWN]]
    assert fused.obstacle.tolist() == [[True, False, False, False, False]]
    assert fused.count.tolist() == [[53, 9, 13, 1, 0]]
    # the highest obstacle cost of all the cameras that see one
    c = _frame([[253, 0, 0, 0, 0]], [[True, False, False, False, False]], [[1, 1, 1, 1, 0]])
    assert fuse_frames([c, a]).cost[0, 0] == 254 and fuse_frames([b, c]).cost[0, 0] == 253


def test_a_camera_whose_cells_are_unknown_does_not_hide_another():
    # pixels that all fell on unknown (unsure, sky) classes count for nothing
    a = _frame([[UNKNOWN]], [[False]], [[0]])
    b = _frame([[60]], [[False]], [[2]])
    assert fuse_frames([a, b]).cost.tolist() == [[60]]
    with pytest.raises(ValueError, match="pixel counts"):
        fuse_frames([GroundFrame(a.cost, a.obstacle, False)])


def test_stale_cameras_are_left_out():
    fusion = GridFusion(max_age_s=0.5)
    assert fusion.fused() is None
    fusion.update("left", _frame([[60]], [[False]], [[5]]), stamp_ns=1_000_000_000)
    fusion.update("front", _frame([[0]], [[False]], [[1]]), stamp_ns=1_400_000_000)
    grid, stamp, used = fusion.fused()
    assert (grid.cost.tolist(), stamp, used) == ([[60]], 1_400_000_000, ["front", "left"])
    fusion.update("front", _frame([[0]], [[False]], [[1]]), stamp_ns=1_600_000_000)  # left is 0.6 s old now
    grid, stamp, used = fusion.fused()
    assert (grid.cost.tolist(), stamp, used) == ([[0]], 1_600_000_000, ["front"])
    with pytest.raises(ValueError, match="max age"):
        GridFusion(0)


def test_two_cameras_cover_both_wedges(table):
    costs = ClassCosts(table, table.cost_lut())
    land = next(i for i, c in enumerate(table.classes) if c.name == "Landscape")
    rocks = next(i for i, c in enumerate(table.classes) if c.name == "Rocks")
    camera = CameraModel(160, 120, (100.0, 0, 79.5, 0, 100.0, 59.5, 0, 0, 1))
    grid = GridSpec(0.1, 12.0, 12.0, max_range=5.0)
    front = GroundProjector(camera, CameraPose(z=1.2, pitch=0.4), grid)
    left = GroundProjector(camera, CameraPose(z=1.2, pitch=0.4, yaw=np.pi / 2), grid)
    ground = np.full((120, 160), land, np.uint8)
    stones = ground.copy()
    stones[90:, :] = rocks  # the near rows: rocks in front of the left camera
    cost, obstacle, count = front.project_counted(ground, costs)
    a = GroundFrame(cost, obstacle, False, count)
    cost, obstacle, count = left.project_counted(stones, costs)
    b = GroundFrame(cost, obstacle, False, count)
    fused = fuse_frames([a, b])
    known = lambda f: f.cost != UNKNOWN  # noqa: E731
    assert (known(fused) == (known(a) | known(b))).all()
    np.testing.assert_array_equal(fused.obstacle, b.obstacle)  # the only obstacles, where the left camera saw them
    ys, xs = np.nonzero(fused.obstacle)
    centres = grid.centres(ys * grid.cols + xs)
    assert (centres[:, 1] > 0.5).all() and (np.abs(centres[:, 0]) < 3).all()  # to the left, in its wedge
