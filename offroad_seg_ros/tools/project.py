"""`offroad-seg project`: what the planner will see. Each frame of a bag or a
dataset folder is segmented (or its ground truth taken), projected with a
camera model and pose, and drawn beside its grid: image | classes | grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import yaml

from offroad_seg_ros.core.classes import ClassTable
from offroad_seg_ros.core.fsutil import atomic_directory
from offroad_seg_ros.data.bag import GT_TOPIC, IMAGE_TOPIC, NAME_TOPIC, PairingStats, is_bag, read_frames
from offroad_seg_ros.data.dataset import list_samples, read_image, read_raw_mask
from offroad_seg_ros.ground.projection import (
    UNKNOWN,
    CameraModel,
    CameraPose,
    ClassCosts,
    GridSpec,
    GroundProjector,
    ProjectionError,
)


def camera_from_yaml(path: str | Path) -> CameraModel:
    """A camera calibration YAML as ROS's camera_calibration / camera_info_manager write it."""
    try:
        c = yaml.safe_load(Path(path).read_text())
        model = CameraModel(int(c["image_width"]), int(c["image_height"]),
                            tuple(float(v) for v in c["camera_matrix"]["data"]),
                            tuple(float(v) for v in c.get("distortion_coefficients", {}).get("data", [])),
                            str(c.get("distortion_model", "plumb_bob")))
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise ProjectionError(
            f"camera file {path}: {type(exc).__name__}: {exc} (expected image_width, image_height, "
            "camera_matrix.data, distortion_model, distortion_coefficients.data)") from None
    model.check()
    return model


def pinhole(width: int, height: int, hfov_deg: float) -> CameraModel:
    """An ideal pinhole of the given horizontal field of view, centred."""
    if not 0 < hfov_deg < 180:
        raise ProjectionError(f"--hfov must be within 0..180 degrees, got {hfov_deg}")
    f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
    return CameraModel(width, height, (f, 0.0, (width - 1) / 2, 0.0, f, (height - 1) / 2, 0.0, 0.0, 1.0), (), "")


def _frames(source: str | Path, model: str | None, limit: int | None, image_topic: str,
            gt_topic: str) -> Iterator[tuple[str, np.ndarray, np.ndarray | None]]:
    """(name, RGB, raw ground-truth IDs or None) per frame."""
    if is_bag(source):
        topics = {"image": image_topic, "name": NAME_TOPIC}
        if model is None:
            topics["gt"] = gt_topic
        for f in read_frames(source, topics, PairingStats(), limit=limit):
            assert f.image is not None
            yield f.name, f.image, f.gt_raw
        return
    samples = list_samples(source, require_masks=model is None)
    for s in samples[:limit] if limit else samples:
        yield s.image.stem, read_image(s.image), read_raw_mask(s.mask) if s.mask else None


def render(rgb: np.ndarray, mask: np.ndarray, cost: np.ndarray, obstacle: np.ndarray, grid: GridSpec,
           table: ClassTable, title: str) -> np.ndarray:
    """RGB uint8 picture: the image, its classes, and its grid in the base frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = table.color_lut()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), gridspec_kw={"width_ratios": [1.5, 1.5, 1]})
    axes[0].imshow(rgb)
    axes[0].set_title(title)
    axes[1].imshow(colours[mask])
    axes[1].set_title("classes")
    shown = np.ma.masked_equal(cost.astype(float), UNKNOWN)
    ox, oy = grid.origin
    extent = (ox, ox + grid.cols * grid.resolution, oy, oy + grid.rows * grid.resolution)
    ax = axes[2]
    ax.set_facecolor("#c8c8c8")  # unknown
    im = ax.imshow(shown, origin="lower", extent=extent, cmap="viridis", vmin=0, vmax=254, interpolation="nearest")
    ys, xs = np.nonzero(obstacle)
    ax.scatter(ox + (xs + 0.5) * grid.resolution, oy + (ys + 0.5) * grid.resolution, s=2, c="red", marker="s",
               linewidths=0, label="obstacle cells")
    ax.plot([0], [0], marker=">", color="black", markersize=10, label="base_frame")
    ax.set_xlabel("x forward (m)")
    ax.set_ylabel("y left (m)")
    ax.set_title("grid: Nav2 cost (grey = unknown)")
    ax.legend(loc="upper left", fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    for a in axes[:2]:
        a.axis("off")
    fig.tight_layout()
    fig.canvas.draw()
    picture = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]  # Agg canvas
    plt.close(fig)
    return picture


def project_source(source: str | Path, out: str | Path, camera: CameraModel | None, pose: CameraPose,
                   grid: GridSpec, model: str | None = None, hfov: float = 90.0, limit: int | None = 8,
                   device: str = "auto", image_topic: str = IMAGE_TOPIC, gt_topic: str = GT_TOPIC,
                   force: bool = False, stage: Callable[[str], None] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Write `<out>/<frame>.png` (image | classes | grid) for up to `limit` frames. `stage(what)` is
    told each step as it begins, `progress(done, total)` each frame drawn (total: `limit`, or
    the frames drawn so far without one)."""
    import cv2

    stage = stage or (lambda _: None)
    segmenter = None
    table = ClassTable.default()
    if model is not None:
        from offroad_seg_ros.inference.segmenter import Segmenter

        stage(f"loading the model {model}")
        segmenter = Segmenter(model, device=device, warmup_size=None)
        table = segmenter.classes
    costs = ClassCosts(table, table.cost_lut())
    projector: GroundProjector | None = None
    written = []
    with atomic_directory(out, force) as tmp:
        tmp.mkdir()
        stage(f"drawing {f'up to {limit}' if limit else 'every'} frame(s) of {source}")
        for name, rgb, gt in _frames(source, model, limit, image_topic, gt_topic):
            h, w = rgb.shape[:2]
            cam = camera or pinhole(w, h, hfov)
            if (cam.width, cam.height) != (w, h):
                raise ProjectionError(f"{name}: the image is {w}x{h}, the camera model is {cam.width}x{cam.height}")
            if projector is None or projector.camera != cam:
                projector = GroundProjector(cam, pose, grid)
                if not projector.sees_ground:
                    raise ProjectionError(f"with this camera and pose no pixel sees the ground within "
                                          f"{grid.max_range} m")
            if segmenter is not None:
                mask = segmenter(rgb).mask
                assert mask is not None
                label = f"{name} (model {segmenter.name})"
            else:
                assert gt is not None
                mask = table.remap(gt, ignore_unknown=True)
                label = f"{name} (ground truth)"
            cost, obstacle = projector.project(mask, costs)
            picture = render(rgb, mask, cost, obstacle, grid, table, label)
            path = tmp / f"{Path(name).stem}.png"
            cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
            written.append(Path(out) / path.name)
            if progress:
                progress(len(written), max(limit or 0, len(written)))
    return written
