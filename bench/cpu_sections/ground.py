"""Ground section: projecting a mask onto the grid."""

from __future__ import annotations

import time

import numpy as np
from results import Table, timeit

from offroad_seg_ros.core.classes import ClassTable


def bench_projection(out: Table, table: ClassTable, n: int) -> None:
    """Ground projection of one 960x540 mask onto 200x200 cells of 0.05 m."""
    from offroad_seg_ros.ground.projection import CameraModel, CameraPose, ClassCosts, GridSpec, GroundProjector

    camera = CameraModel(960, 540, (500.0, 0, 479.5, 0, 500.0, 269.5, 0, 0, 1), (-0.1, 0.02, 0, 0, 0), "plumb_bob")
    pose, grid = CameraPose(x=0.3, z=1.2, pitch=0.25), GridSpec(0.05, 10.0, 10.0, max_range=8.0)
    t0 = time.perf_counter()
    proj = GroundProjector(camera, pose, grid)
    out.row("projection: lookup-table build (960x540, distorted, 200x200 cells)", (time.perf_counter() - t0) * 1e3,
        "ms", "projection_build_ms")
    costs = ClassCosts(table, table.cost_lut())
    mask = np.random.default_rng(0).integers(0, len(table), (540, 960), dtype=np.uint8)
    t = timeit(lambda: proj.project(mask, costs), n * 3)
    out.row(f"projection: flat ground, one frame ({proj.pixels.size} pixels land), p50", np.median(t) * 1e3, "ms",
        "projection_flat_ms")
    depth = np.random.default_rng(1).uniform(0.5, 12, (540, 960)).astype(np.float32)
    t = timeit(lambda: proj.project(mask, costs, depth), n)
    out.row("projection: with a 960x540 depth image, one frame, p50", np.median(t) * 1e3, "ms", "projection_depth_ms")
    # Out to 10 m: far pixel rows span several 5 cm cells; the cells between them are filled from
    # the pixel their centre falls in (no holes), so more cells carry a value than pixels reach.
    far = GroundProjector(camera, pose, GridSpec(0.05, 20.0, 20.0, max_range=10.0))
    t = timeit(lambda: far.project(mask, costs), n * 3)
    out.row(f"projection: 400x400 cells out to 10 m, one frame ({far.view_cells.size} cells in view), p50",
            np.median(t) * 1e3,
            "ms", "projection_10m_ms")
    bench_fusion(out, far, mask, costs, n)
    bench_local_map(out, far, mask, costs, n)


def bench_fusion(out: Table, proj, mask: np.ndarray, costs, n: int) -> None:
    """Several cameras' 400x400 grids fused into one (ground/fusion.py), per fused grid."""
    from offroad_seg_ros.ground.fusion import fuse_frames
    from offroad_seg_ros.ground.mapper import GroundFrame

    cost, obstacle, count = proj.project_counted(mask, costs)
    for cams in (2, 4):
        frames = [GroundFrame(np.rot90(cost, k).copy(), np.rot90(obstacle, k).copy(), False,
                              np.rot90(count, k).copy()) for k in range(cams)]
        t = timeit(lambda f=frames: fuse_frames(f), n * 3)
        out.row(f"fusing {cams} cameras' 400x400 grids, p50", np.median(t) * 1e3, "ms", f"fusion_{cams}_ms")


def bench_local_map(out: Table, proj, mask: np.ndarray, costs, n: int) -> None:
    """One camera's 400x400 grid placed into a 30 m window of 0.1 m cells (ground/local_map.py), and a
    snapshot for ~/map: the cost per frame and camera, and per published map."""
    from offroad_seg_ros.ground.local_map import LocalMap, MapSpec, Pose2D
    from offroad_seg_ros.ground.mapper import GroundFrame

    cost, obstacle, count = proj.project_counted(mask, costs)
    frame = GroundFrame(cost, obstacle, False, count)
    m = LocalMap(MapSpec(resolution=0.1, size=30.0), proj.grid)
    step = [0]

    def drive() -> None:  # 5 cm and 0.01 rad a frame: scrolling included
        k = step[0] = step[0] + 1
        m.on_odometry(k * 10**8, Pose2D(0.05 * k, 0.0, 0.01 * k))
        m.integrate(frame, k * 10**8)

    t = timeit(drive, n * 3)
    out.row(f"local map: one camera's grid placed ({int(obstacle.sum())} obstacle cells), p50", np.median(t) * 1e3,
            "ms", "map_update_ms")
    t = timeit(m.snapshot, n * 3)
    out.row("local map: snapshot of 300x300 cells for ~/map, p50", np.median(t) * 1e3, "ms", "map_snapshot_ms")
