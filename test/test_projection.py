"""Ground projection against scenes with known answers: markers at known
ground coordinates rendered through the camera model (OpenCV's projectPoints
as the independent forward model) must land within one cell of the truth."""

from __future__ import annotations

import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from offroad_seg_ros.ground.projection import (
    UNKNOWN,
    CameraModel,
    CameraPose,
    ClassCosts,
    GridSpec,
    GroundProjector,
    ProjectionError,
    obstacle_points,
    occupancy_values,
)

K = (400.0, 0.0, 320.0, 0.0, 400.0, 240.0, 0.0, 0.0, 1.0)
PLUMB_BOB = (-0.25, 0.07, 0.001, -0.002, -0.01)
EQUIDISTANT = (0.05, -0.01, 0.002, -0.0005)


@pytest.fixture(scope="module")
def costs(table):
    return ClassCosts(table, table.cost_lut())


def _idx(table, name):
    return next(i for i, c in enumerate(table.classes) if c.name == name)


def _to_pixels(points: np.ndarray, camera: CameraModel, pose: CameraPose) -> np.ndarray:
    """Base-frame 3D points -> pixels, through OpenCV's forward camera models."""
    r = pose.optical_to_base()
    p_opt = (points - pose.position) @ r  # base -> optical: R^T (p - c)
    zero = np.zeros(3)
    if camera.distortion_model == "equidistant":
        uv, _ = cv2.fisheye.projectPoints(p_opt.reshape(-1, 1, 3), zero, zero, camera.matrix, np.array(camera.d))
    else:
        uv, _ = cv2.projectPoints(p_opt, zero, zero, camera.matrix, np.array(camera.d))
    return uv.reshape(-1, 2)


@pytest.mark.parametrize("model, d", [("plumb_bob", ()), ("plumb_bob", PLUMB_BOB), ("equidistant", EQUIDISTANT)])
def test_markers_land_within_one_cell(table, costs, model, d):
    camera = CameraModel(640, 480, K, d, model)
    pose = CameraPose(x=0.2, y=0.1, z=1.5, pitch=0.35, yaw=0.1)
    grid = GridSpec(resolution=0.1, size_x=20, size_y=20, max_range=9.0)
    proj = GroundProjector(camera, pose, grid)
    markers = np.array([[3.0, 0.0, 0.0], [4.0, 1.0, 0.0], [5.0, -1.5, 0.0], [6.5, 0.5, 0.0]])
    uv = np.round(_to_pixels(markers, camera, pose)).astype(int)
    mask = np.full((480, 640), _idx(table, "Landscape"), np.uint8)
    mask[uv[:, 1], uv[:, 0]] = _idx(table, "Rocks")
    cost, obstacle = proj.project(mask, costs)
    got = np.argwhere(obstacle)  # (row, col)
    assert len(got) == len(markers)
    truth = np.floor((markers[:, [1, 0]] - np.array(grid.origin)[[1, 0]]) / grid.resolution)
    for t in truth:
        assert np.abs(got - t).max(1).min() <= 1, f"no obstacle cell within one cell of {t}"
    assert set(np.unique(cost[~obstacle])) <= {0, UNKNOWN} and cost[obstacle].tolist() == [254] * 4


@pytest.mark.parametrize("model, d", [("plumb_bob", PLUMB_BOB), ("rational_polynomial", PLUMB_BOB + (0.01, 0, 0)),
                                      ("equidistant", EQUIDISTANT)])
def test_distortion_round_trip(model, d):
    camera = CameraModel(640, 480, K, d, model)
    pose = CameraPose(z=1.2, pitch=0.5)
    proj = GroundProjector(camera, pose, GridSpec(resolution=0.05, size_x=40, size_y=40, max_range=19))
    sample = proj.pixels[:: max(1, proj.pixels.size // 500)]
    rays = proj.rays[sample]
    ground = pose.position + rays * (-pose.z / rays[:, 2])[:, None]
    uv = _to_pixels(ground, camera, pose)
    want = np.stack([sample % 640, sample // 640], 1)
    np.testing.assert_allclose(uv, want, atol=0.05)


def test_nothing_at_or_above_the_horizon_projects(table, costs):
    camera = CameraModel(640, 480, K)
    pose = CameraPose(z=1.0, pitch=0.1)
    proj = GroundProjector(camera, pose, GridSpec(resolution=2.0, size_x=400, size_y=400, max_range=1000))
    horizon_row = 240 - 400 * math.tan(0.1)  # 199.9
    rows = proj.pixels // 640
    assert rows.min() > horizon_row and (rows == 240).sum() == 640
    assert (proj.rays[proj.pixels, 2] < 0).all()
    # Sky pixels below the horizon never project either.
    mask = np.full((480, 640), _idx(table, "Sky"), np.uint8)
    cost, obstacle = proj.project(mask, costs)
    assert (cost == UNKNOWN).all() and not obstacle.any()


def _slope_depth(camera: CameraModel, pose: CameraPose, x0: float, slope: float) -> np.ndarray:
    """Depth along the optical axis of ground that is flat to x0, then rises at `slope`."""
    v, u = np.mgrid[0:camera.height, 0:camera.width]
    xy = camera.normalized(np.stack([u.ravel(), v.ravel()], 1).astype(float))
    rays = np.concatenate([xy, np.ones((xy.shape[0], 1))], 1) @ pose.optical_to_base().T
    c = pose.position
    with np.errstate(divide="ignore", invalid="ignore"):
        t_flat = -c[2] / rays[:, 2]
        t_slope = (slope * (c[0] - x0) - c[2]) / (rays[:, 2] - slope * rays[:, 0])
    x_flat = c[0] + rays[:, 0] * t_flat
    t = np.where((t_flat > 0) & (x_flat < x0), t_flat, t_slope)
    t = np.where(t > 0, t, np.nan)
    return t.reshape(camera.height, camera.width)  # rays have optical z = 1, so t is the depth


def test_depth_puts_an_obstacle_on_a_slope_where_the_geometry_says(table, costs):
    camera = CameraModel(640, 480, K)
    pose = CameraPose(z=1.2, pitch=0.3)
    grid = GridSpec(resolution=0.1, size_x=20, size_y=20, max_range=9.0)
    proj = GroundProjector(camera, pose, grid)
    x0, slope = 3.0, 0.3
    marker = np.array([[6.0, 0.5, slope * (6.0 - x0)]])
    u, v = np.round(_to_pixels(marker, camera, pose)[0]).astype(int)
    mask = np.full((480, 640), _idx(table, "Dry Grass"), np.uint8)
    mask[v, u] = _idx(table, "Rocks")
    depth = _slope_depth(camera, pose, x0, slope)
    truth = np.floor((np.array([0.5, 6.0]) - np.array(grid.origin)[[1, 0]]) / grid.resolution)

    _, with_depth = proj.project(mask, costs, depth=depth)
    assert np.abs(np.argwhere(with_depth) - truth).max(1).min() <= 1
    _, flat = proj.project(mask, costs)  # flat ground puts the same pixel far beyond (or out of) range
    assert not flat.any() or np.abs(np.argwhere(flat) - truth).max(1).min() > 10
    # Invalid depth (0, NaN, inf) never projects; 16UC1-style millimetres converted by the caller.
    bad = np.where(np.arange(depth.size).reshape(depth.shape) % 3 == 0, 0.0, np.where(depth > 5, np.inf, depth))
    proj.project(mask, costs, depth=bad)


def test_cell_rule_obstacle_max_else_majority_ground(table, costs):
    # Looking straight down from 1 m, a 20x20 image covers a small patch: every pixel lands in a cell.
    camera = CameraModel(20, 20, (1000.0, 0, 9.5, 0, 1000.0, 9.5, 0, 0, 1))
    pose = CameraPose(x=0.5, y=0.5, z=1.0, pitch=math.pi / 2)  # the 2 cm patch seen sits inside one cell
    proj = GroundProjector(camera, pose, GridSpec(resolution=1.0, size_x=2, size_y=2))
    assert proj.pixels.size == 400
    mask = np.full((20, 20), _idx(table, "Landscape"), np.uint8)
    mask[:, :12] = _idx(table, "Dry Grass")  # majority: cost 20
    cost, obstacle = proj.project(mask, costs)
    assert set(np.unique(cost)) - {UNKNOWN} == {20} and not obstacle.any()
    mask[0, 0] = _idx(table, "Lush Bushes")  # 200
    mask[0, 1] = _idx(table, "Trees")  # 254: the highest obstacle cost wins
    cost, obstacle = proj.project(mask, costs)
    assert cost[obstacle].tolist() == [254]
    points = obstacle_points(cost, obstacle, proj.grid, height=0.3)
    assert points.shape == (1, 4) and points[0, 2] == np.float32(0.3) and points[0, 3] == 254
    occ = occupancy_values(cost)
    assert occ.dtype == np.int8 and set(np.unique(occ)) <= {-1, 8, 100}


def _one_cell_view() -> GroundProjector:
    """Looking straight down from 1 m: all 400 pixels of a 20x20 image land in one cell."""
    camera = CameraModel(20, 20, (1000.0, 0, 9.5, 0, 1000.0, 9.5, 0, 0, 1))
    return GroundProjector(camera, CameraPose(x=0.5, y=0.5, z=1.0, pitch=math.pi / 2),
                           GridSpec(resolution=1.0, size_x=2, size_y=2))


def test_novel_pixels_are_obstacles_of_novel_cost_in_a_bucket_of_their_own(table):
    proj = _one_cell_view()
    novel = table.novel_index
    costs = ClassCosts(table, table.cost_lut(), novel_cost=254)
    assert costs.bucket[novel] == novel != costs.bucket[_idx(table, "Sky")] == costs.bucket[255]
    mask = np.full((20, 20), _idx(table, "Landscape"), np.uint8)  # free, cost 0
    mask[3, 4] = novel
    cost, obstacle, count = proj.project_counted(mask, costs)
    assert cost[obstacle].tolist() == [254] and obstacle.sum() == 1 and count.max() == 400  # counted too
    # The highest obstacle cost in a cell wins, novel or not.
    mask[5, 5] = _idx(table, "Lush Bushes")  # 200
    for novel_cost, want in ((100, 200), (230, 230)):
        cost, obstacle = proj.project(mask, ClassCosts(table, table.cost_lut(), novel_cost=novel_cost))
        assert cost[obstacle].tolist() == [want]
    # Without novel pixels the cell rule is as it was: the ground majority.
    plain = np.full((20, 20), _idx(table, "Landscape"), np.uint8)
    cost, obstacle = proj.project(plain, costs)
    assert set(np.unique(cost)) - {UNKNOWN} == {0} and not obstacle.any()


def test_a_novel_cost_of_255_leaves_novel_pixels_unknown(table):
    proj = _one_cell_view()
    costs = ClassCosts(table, table.cost_lut(), novel_cost=255)
    all_novel = np.full((20, 20), table.novel_index, np.uint8)
    cost, obstacle, count = proj.project_counted(all_novel, costs)
    assert (cost == UNKNOWN).all() and not obstacle.any() and count.max() == 0  # neither marks nor clears
    mask = np.full((20, 20), _idx(table, "Dry Grass"), np.uint8)
    mask[:, :15] = table.novel_index  # a minority of ground still decides the cell
    cost, obstacle = proj.project(mask, costs)
    assert set(np.unique(cost)) - {UNKNOWN} == {20} and not obstacle.any()
    with pytest.raises(ValueError, match="novel_cost must be within 0..255, got 300"):
        ClassCosts(table, table.cost_lut(), novel_cost=300)


@pytest.mark.parametrize("make, match", [
    (lambda: CameraModel(640, 480, (0.0, 0, 320, 0, 400, 240, 0, 0, 1)).check(), "zero or invalid focal length"),
    (lambda: CameraModel(0, 0, K).check(), "no image size"),
    (lambda: CameraModel(640, 480, K, (), "kannala").check(), "distortion_model 'kannala'"),
    (lambda: CameraPose(z=-0.2).check(), "at z=-0.2 m, on or below the ground"),
    (lambda: CameraPose(z=1.0, pitch=-1.5).check(), "looks up and sees no ground"),
    (lambda: CameraPose.from_list([1.0, 2.0]), "6 values"),
])
def test_bad_camera_and_pose_are_named(make, match):
    with pytest.raises(ProjectionError, match=match):
        make()


def test_camera_info_fields_and_size_mismatch(costs):
    info = SimpleNamespace(width=640, height=480, k=K, d=PLUMB_BOB, distortion_model="plumb_bob",
                           p=(380.0, 0, 310, 0, 0, 380.0, 235, 0, 0, 0, 1, 0))
    assert CameraModel.from_camera_info(info).d == PLUMB_BOB
    rect = CameraModel.from_camera_info(info, rectified=True)
    assert rect.k[0] == 380.0 and rect.k[5] == 235 and rect.d == ()
    proj = GroundProjector(rect, CameraPose(z=1.0, pitch=0.4), GridSpec())
    with pytest.raises(ProjectionError, match="mask is 320x240, camera_info says 640x480"):
        proj.project(np.zeros((240, 320), np.uint8), costs)


def test_project_command_draws_frames_beside_their_grids(synth_root, tmp_path, tiny_artifact):
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(sys.executable).with_name("offroad-seg")
    calib = tmp_path / "camera.yaml"
    calib.write_text("image_width: 960\nimage_height: 540\ncamera_matrix: {rows: 3, cols: 3, data: [480, 0, 479.5, "
                     "0, 480, 269.5, 0, 0, 1]}\ndistortion_model: plumb_bob\n"
                     "distortion_coefficients: {rows: 1, cols: 5, data: [0, 0, 0, 0, 0]}\n")
    out = tmp_path / "view"
    res = subprocess.run([str(cli), "project", str(synth_root / "test"), "--out", str(out), "--limit", "2",
                          "--camera", str(calib), "--model", str(tiny_artifact), "--device", "cpu"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    pictures = sorted(out.glob("*.png"))
    assert len(pictures) == 2 and cv2.imread(str(pictures[0])).shape[1] > 1000
    res = subprocess.run([str(cli), "project", str(synth_root / "test"), "--out", str(tmp_path / "up"),
                          "--pose", "0", "0", "1", "0", "-1.5", "0"], capture_output=True, text=True)
    assert res.returncode == 2 and "sees no ground" in res.stderr and not (tmp_path / "up").exists()


def test_torch_projection_equals_numpy(table, costs):
    import torch

    from offroad_seg_ros.ground.projection import TorchGroundProjector

    camera = CameraModel(640, 480, K, PLUMB_BOB, "plumb_bob")
    proj = GroundProjector(camera, CameraPose(z=1.5, pitch=0.35), GridSpec(resolution=0.1, size_x=20, size_y=20))
    mask = np.random.default_rng(0).integers(0, table.novel_index + 1, (480, 640), dtype=np.uint8)  # novel too
    mask[:40] = 255  # unpredicted pixels are skipped as sky is
    want_cost, want_obstacle = proj.project(mask, costs)
    cost, obstacle = TorchGroundProjector(proj, costs).project(torch.from_numpy(mask))
    np.testing.assert_array_equal(cost.numpy(), want_cost)
    np.testing.assert_array_equal(obstacle.numpy(), want_obstacle)


def test_a_refused_camera_info_stays_named_while_frames_wait(table):
    """Frames that arrive after a refused camera_info (on a busy computer,
    copies of earlier frames do) keep the refusal in the reason, not "none
    received": one was received, and why it is unusable is what to fix."""
    from offroad_seg_ros.ground.mapper import GroundMapper

    mapper = GroundMapper(CameraPose.from_list([0.0, 0.0, 1.5, 0.0, 0.3, 0.0]), GridSpec(0.1, 10.0, 10.0),
                          ClassCosts(table, table.cost_lut()), info_topic="/cam/camera_info")
    mask = np.zeros((60, 80), np.uint8)
    assert mapper.project(mask, 1) is None and "no camera_info received on /cam/camera_info" in mapper.last_problem
    mapper.on_camera_info(b"\x00\x01\x00\x00 not a camera_info")
    assert mapper.bad_camera_info == 1
    assert mapper.project(mask, 2) is None  # a frame after the refusal
    assert "the last one was refused (camera_info on /cam/camera_info refused:" in mapper.last_problem
    assert "refused" in (mapper.condition() or "")


WIDE = (960, 540, (480.0, 0, 479.5, 0, 480.0, 269.5, 0, 0, 1))  # 90 degrees across


# The distortion cases use the 640x480 K these coefficients belong to: on a 90-degree image,
# PLUMB_BOB's polynomial folds back before the corners (the lens model itself is invalid there).
@pytest.mark.parametrize("shape, model, d", [(WIDE, "plumb_bob", ()), ((640, 480, K), "plumb_bob", PLUMB_BOB),
                                             ((640, 480, K), "equidistant", EQUIDISTANT)])
def test_no_unknown_cell_inside_the_view_out_to_10_m(table, costs, shape, model, d):
    # 5 cm cells out to 10 m: far pixel rows span several cells, and every cell the camera
    # sees must still get a value (uniform ground: all of them free).
    camera = CameraModel(*shape, d, model)
    w, h = shape[:2]
    pose = CameraPose(x=0.3, z=1.5, pitch=0.25)
    grid = GridSpec(resolution=0.05, size_x=20, size_y=20, max_range=10.0)
    proj = GroundProjector(camera, pose, grid)
    cost, obstacle = proj.project(np.full((h, w), _idx(table, "Landscape"), np.uint8), costs)
    centres = grid.centres(np.arange(grid.rows * grid.cols))
    ground = np.concatenate([centres, np.zeros((len(centres), 1))], 1)
    opt = (ground - pose.position) @ pose.optical_to_base()
    ahead = opt[:, 2] > 0
    # Inside the lens's field of view: beyond the corners' radius a distortion polynomial folds
    # back and maps far-off points into the image.
    corners = camera.normalized(np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], float))
    with np.errstate(invalid="ignore", divide="ignore"):
        ahead &= np.hypot(opt[:, 0], opt[:, 1]) / opt[:, 2] <= np.hypot(*corners.T).max()
    uv = np.full((len(centres), 2), np.nan)
    uv[ahead] = _to_pixels(ground[ahead], camera, pose)
    with np.errstate(invalid="ignore"):
        seen = ahead & (np.hypot(centres[:, 0], centres[:, 1]) <= 10.0) & (uv[:, 0] >= 0) & (uv[:, 0] <= w - 1) \
            & (uv[:, 1] >= 0) & (uv[:, 1] <= h - 1)
    far = seen & (np.hypot(centres[:, 0], centres[:, 1]) > 6.0)
    assert far.sum() > 3000  # the far field is in view, where the stripes were
    assert (cost.reshape(-1)[seen] == 0).all() and not obstacle.any()


def test_filled_cells_take_no_pixel_from_cells_pixels_land_in(table):
    # The cell rule is unchanged where pixels land: the hole filling adds pixels only to cells
    # that no pixel centre lands in.
    camera = CameraModel(640, 480, K, PLUMB_BOB)
    pose = CameraPose(z=1.2, pitch=0.3)
    grid = GridSpec(resolution=0.05, size_x=20, size_y=20, max_range=10.0)
    proj = GroundProjector(camera, pose, grid)
    down = proj.rays[:, 2] < 0
    t = np.where(down, -pose.z / np.where(down, proj.rays[:, 2], -1), np.nan)
    landed = grid.cells(pose.position[:2] + proj.rays[:, :2] * t[:, None])
    own = landed[proj.pixels] == proj.pixel_cells
    assert own.sum() == (landed >= 0).sum()  # every landed pixel is in the table, in its own cell
    filled = proj.pixel_cells[~own]
    assert filled.size > 1000 and not np.isin(filled, landed[landed >= 0]).any()
    assert np.unique(filled).size == filled.size  # one pixel a filled cell
