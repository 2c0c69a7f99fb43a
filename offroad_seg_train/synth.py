"""Procedural desert scenes in the Duality layout, for tests, demos and CI.

Each scene is drawn shape by shape into the RGB image and the uint16 raw-ID
mask at once, so the two are pixel-aligned by construction (no colour
thresholding). Objects are drawn far to near and shrink toward the horizon.
The `test` split uses a shifted biome, like the real test desert: darker,
many more rocks, no logs, flowers or ground clutter.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from offroad_seg_ros.core.classes import ClassTable
from offroad_seg_ros.data.dataset import IMAGE_DIR, MASK_DIR

WIDTH, HEIGHT = 960, 540
TREES, LUSH, GRASS, DRY_BUSH, CLUTTER, FLOWERS, LOGS, ROCKS, LAND, SKY = (
    100, 200, 300, 500, 550, 600, 700, 800, 7100, 10000,
)


@dataclass(frozen=True)
class Biome:
    name: str
    brightness: float
    sky_top: tuple[int, int, int]
    sky_horizon: tuple[int, int, int]
    sand: tuple[int, int, int]
    # objects per scene: raw ID -> (min, max)
    counts: dict[int, tuple[int, int]] = field(default_factory=dict)
    rock_scale: float = 1.0


TRAIN_BIOME = Biome(
    name="train",
    brightness=1.0,
    sky_top=(95, 150, 215),
    sky_horizon=(200, 215, 230),
    sand=(196, 160, 118),
    counts={GRASS: (8, 16), ROCKS: (3, 8), DRY_BUSH: (4, 10), LUSH: (2, 5), TREES: (1, 3),
            LOGS: (1, 3), FLOWERS: (2, 4), CLUTTER: (3, 6)},
)
TEST_BIOME = Biome(
    name="test",
    brightness=0.78,
    sky_top=(80, 115, 170),
    sky_horizon=(170, 170, 175),
    sand=(170, 130, 105),
    counts={GRASS: (4, 10), ROCKS: (16, 30), DRY_BUSH: (3, 8), LUSH: (0, 3), TREES: (0, 2)},
    rock_scale=1.4,
)
BIOMES = {"train": TRAIN_BIOME, "val": TRAIN_BIOME, "test": TEST_BIOME}
# Texture strength per raw ID (relative luminance noise).
_TEXTURE = {SKY: 0.02, LAND: 0.10, GRASS: 0.18, ROCKS: 0.14, DRY_BUSH: 0.2, LUSH: 0.2,
            TREES: 0.2, LOGS: 0.15, FLOWERS: 0.1, CLUTTER: 0.2}


def _jitter(rng: np.random.Generator, color: tuple[int, int, int], amount: float) -> tuple[int, ...]:
    scale = 1.0 + rng.uniform(-amount, amount)
    shift = rng.uniform(-12, 12, size=3).tolist()
    return tuple(min(255, max(0, int(c * scale + s))) for c, s in zip(color, shift, strict=False))


class _Canvas:
    """Draws each shape into the image and the mask with the same geometry."""

    def __init__(self, image: np.ndarray, mask: np.ndarray):
        self.image, self.mask = image, mask

    def poly(self, pts: np.ndarray, color: tuple[int, ...], raw: int) -> None:
        polys = [np.round(pts).astype(np.int32)]
        cv2.fillPoly(self.image, polys, color)
        cv2.fillPoly(self.mask, polys, (raw,))

    def circle(self, c: tuple[float, float], r: float, color: tuple[int, ...], raw: int) -> None:
        center, radius = (int(c[0]), int(c[1])), max(1, int(r))
        cv2.circle(self.image, center, radius, color, -1)
        cv2.circle(self.mask, center, radius, (raw,), -1)

    def ellipse(self, c, axes, angle, color, raw) -> None:
        center, ax = (int(c[0]), int(c[1])), (max(1, int(axes[0])), max(1, int(axes[1])))
        cv2.ellipse(self.image, center, ax, angle, 0, 360, color, -1)
        cv2.ellipse(self.mask, center, ax, angle, 0, 360, raw, -1)

    def line(self, p, q, color, raw, thickness: int) -> None:
        p, q, t = (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), max(1, thickness)
        cv2.line(self.image, p, q, color, t)
        cv2.line(self.mask, p, q, raw, t)


def _blob(rng, cx, cy, r, n=9, roughness=0.35) -> np.ndarray:
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = r * (1 - roughness * rng.random(n))
    return np.stack([cx + radii * np.cos(angles), cy + 0.8 * radii * np.sin(angles)], axis=1)


def _rock(cv: _Canvas, rng, x, y, s, biome: Biome):
    r = max(3.0, rng.uniform(8, 55) * s * biome.rock_scale)
    base = _jitter(rng, (120, 112, 104), 0.25)
    cv.poly(_blob(rng, x, y - 0.5 * r, r, n=int(rng.integers(6, 11))), base, ROCKS)
    light = tuple(min(255, int(c * 1.25)) for c in base)
    # Lit top face: same class, so only the image changes.
    cv2.fillPoly(cv.image, [np.round(_blob(rng, x - 0.2 * r, y - 0.8 * r, 0.5 * r)).astype(np.int32)], light)


def _bush(cv, rng, x, y, s, raw, color):
    r = max(2.0, rng.uniform(12, 40) * s)
    for _ in range(int(rng.integers(5, 12))):
        cx, cy = x + rng.normal(0, r * 0.6), y - r * 0.6 + rng.normal(0, r * 0.35)
        cv.circle((cx, cy), rng.uniform(0.3, 0.6) * r, _jitter(rng, color, 0.15), raw)


def _tree(cv, rng, x, y, s):
    h = max(8.0, rng.uniform(70, 180) * s)
    w = max(2.0, rng.uniform(5, 14) * s)
    trunk = _jitter(rng, (90, 65, 40), 0.15)
    cv.poly(np.array([[x - w / 2, y], [x + w / 2, y], [x + w / 3, y - h], [x - w / 3, y - h]]), trunk, TREES)
    canopy = (45, 85, 40)
    cr = max(4.0, h * rng.uniform(0.3, 0.45))
    for _ in range(int(rng.integers(6, 12))):
        cx, cy = x + rng.normal(0, cr * 0.5), y - h + rng.normal(0, cr * 0.35)
        cv.circle((cx, cy), rng.uniform(0.35, 0.7) * cr, _jitter(rng, canopy, 0.2), TREES)


def _log(cv, rng, x, y, s):
    length, thick = max(6.0, rng.uniform(50, 170) * s), max(3.0, rng.uniform(8, 22) * s)
    a = np.deg2rad(rng.uniform(-25, 25))
    d, n = np.array([np.cos(a), np.sin(a)]) * length / 2, np.array([-np.sin(a), np.cos(a)]) * thick / 2
    c = np.array([x, y - thick / 2])
    color = _jitter(rng, (105, 70, 45), 0.15)
    cv.poly(np.array([c - d - n, c + d - n, c + d + n, c - d + n]), color, LOGS)
    cv.ellipse(c + d, (thick / 2, thick / 2), 0, _jitter(rng, (170, 135, 95), 0.1), LOGS)


def _grass(cv, rng, x, y, s):
    w = max(6.0, rng.uniform(60, 260) * s)
    color = _jitter(rng, (200, 180, 95), 0.12)
    cv.ellipse((x, y), (w / 2, w * rng.uniform(0.12, 0.25)), rng.uniform(-8, 8), color, GRASS)
    for _ in range(int(rng.integers(6, 20))):
        bx = x + rng.uniform(-0.45, 0.45) * w
        cv.line((bx, y), (bx + rng.normal(0, 3 * s + 1), y - rng.uniform(4, 25) * s - 2),
                color, GRASS, int(max(1, 2 * s)))


def _flowers(cv, rng, x, y, s):
    r = max(5.0, rng.uniform(18, 50) * s)
    palette = [(235, 80, 170), (245, 220, 60), (170, 90, 220), (250, 250, 245)]
    for _ in range(int(rng.integers(12, 40))):
        color = palette[int(rng.integers(len(palette)))]
        cv.circle((x + rng.normal(0, r / 2), y - rng.uniform(0, r / 2)), max(1.5, rng.uniform(1.5, 4.5) * s),
                  _jitter(rng, color, 0.1), FLOWERS)


def _clutter(cv, rng, x, y, s):
    r = max(6.0, rng.uniform(25, 70) * s)
    for _ in range(int(rng.integers(8, 25))):
        px, py = x + rng.normal(0, r / 2), y + rng.normal(0, r / 6)
        color = _jitter(rng, (115, 100, 80), 0.25)
        if rng.random() < 0.5:
            ln = rng.uniform(4, 16) * s + 2
            a = rng.uniform(0, np.pi)
            end = (px + ln * np.cos(a), py - ln * np.sin(a) * 0.4)
            cv.line((px, py), end, color, CLUTTER, int(max(1, 2 * s)))
        else:
            cv.circle((px, py), max(1.5, rng.uniform(1.5, 4) * s), color, CLUTTER)


_DRAW: dict[int, Callable] = {
    ROCKS: _rock,
    DRY_BUSH: lambda cv, rng, x, y, s, b: _bush(cv, rng, x, y, s, DRY_BUSH, (140, 110, 60)),
    LUSH: lambda cv, rng, x, y, s, b: _bush(cv, rng, x, y, s, LUSH, (60, 150, 55)),
    TREES: lambda cv, rng, x, y, s, b: _tree(cv, rng, x, y, s),
    LOGS: lambda cv, rng, x, y, s, b: _log(cv, rng, x, y, s),
    GRASS: lambda cv, rng, x, y, s, b: _grass(cv, rng, x, y, s),
    FLOWERS: lambda cv, rng, x, y, s, b: _flowers(cv, rng, x, y, s),
    CLUTTER: lambda cv, rng, x, y, s, b: _clutter(cv, rng, x, y, s),
}


def _noise(rng: np.random.Generator, cells: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Smooth noise in [-1, 1]: random cells upsampled bicubically."""
    small = rng.uniform(-1, 1, size=cells).astype(np.float32)
    return cv2.resize(small, size, interpolation=cv2.INTER_CUBIC)


def render_scene(rng: np.random.Generator, biome: Biome = TRAIN_BIOME,
                 size: tuple[int, int] = (WIDTH, HEIGHT)) -> tuple[np.ndarray, np.ndarray]:
    """One scene: RGB uint8 (H, W, 3) and uint16 raw-ID mask (H, W)."""
    w, h = size
    image = np.empty((h, w, 3), dtype=np.uint8)
    mask = np.full((h, w), SKY, dtype=np.uint16)

    # Sky: vertical gradient, brightened by soft clouds. Only the rows that can
    # show sky are computed (the ground polygon covers the rest).
    horizon = rng.uniform(0.3, 0.5) * h
    sky_rows = min(h, int(horizon) + 32)
    t = np.clip(np.arange(sky_rows, dtype=np.float32) / max(horizon, 1), 0, 1)[:, None, None]
    top = np.array(_jitter(rng, biome.sky_top, 0.1), np.float32)
    hor = np.array(_jitter(rng, biome.sky_horizon, 0.05), np.float32)
    sky = (1 - t) * top + t * hor
    clouds = _noise(rng, (4, 8), (w, h))[:sky_rows] * np.float32(1.6) - np.float32(rng.uniform(0.2, 0.9))
    clouds = np.clip(clouds, 0, 1)[..., None]
    sky = sky + clouds * (np.float32(245) - sky)
    image[:sky_rows] = cv2.convertScaleAbs(sky.astype(np.float32))

    # Ground below a wavy horizon (dunes).
    cv = _Canvas(image, mask)
    xs = np.linspace(-8, w + 8, 64)
    phase = rng.uniform(0, 2 * np.pi, 2)
    ys = (horizon + rng.uniform(4, 22) * np.sin(xs / w * rng.uniform(2, 6) + phase[0])
          + rng.uniform(2, 8) * np.sin(xs / w * rng.uniform(10, 20) + phase[1]))
    ground = np.concatenate([np.stack([xs, ys], 1), [[w + 8, h + 8], [-8, h + 8]]])
    cv.poly(ground, _jitter(rng, biome.sand, 0.08), LAND)

    # Objects, far to near; guarantee each of the biome's classes at least once.
    objects = []
    for raw, (lo, hi) in biome.counts.items():
        n = int(rng.integers(lo, hi + 1))
        if lo == 0 and biome is TRAIN_BIOME:
            n = max(n, 1)
        objects += [(raw, rng.uniform(horizon + 4, h + 30), rng.uniform(-20, w + 20)) for _ in range(n)]
    objects.sort(key=lambda o: o[1])
    for raw, y, x in objects:
        s = 1.6 * float(np.clip((y - horizon) / (h - horizon), 0.05, 1.2))
        _DRAW[raw](cv, rng, x, y, s, biome)

    # Texture and light: one noise field, its strength chosen per class.
    amp = np.zeros(65536, np.float32)
    for raw, a in _TEXTURE.items():
        amp[raw] = a
    fine = cv2.resize(rng.standard_normal((h // 2, w // 2), dtype=np.float32), (w, h),
                      interpolation=cv2.INTER_NEAREST)
    fine = fine + np.float32(1.5) * _noise(rng, (6, 10), (w, h))
    shade = amp[mask] * fine + np.float32(1)
    shade *= np.float32(biome.brightness * rng.uniform(0.9, 1.1))
    out = cv2.convertScaleAbs(image.astype(np.float32) * shade[..., None])
    return cv2.GaussianBlur(out, (3, 3), 0), mask


def _scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, sum(map(ord, split)), index])


def _write_one(args: tuple[str, str, int, int, int]) -> None:
    out_dir, split, seed, index, png_level = args
    params = [cv2.IMWRITE_PNG_COMPRESSION, png_level]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.11; older ones (ROS's) keep their default
        png_filter = "IMWRITE_PNG_FILTER_UP" if png_level else "IMWRITE_PNG_FILTER_NONE"
        params += [cv2.IMWRITE_PNG_FILTER, getattr(cv2, png_filter)]
    image, mask = render_scene(_scene_rng(seed, split, index), BIOMES[split])
    name = f"{index:06d}.png"
    ok1, img_buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    ok2, mask_buf = cv2.imencode(".png", mask, params)
    if not (ok1 and ok2):
        raise OSError(f"PNG encoding failed for {split}/{name}")
    (Path(out_dir) / IMAGE_DIR / name).write_bytes(img_buf.tobytes())
    (Path(out_dir) / MASK_DIR / name).write_bytes(mask_buf.tobytes())


def generate(out: str | Path, counts: dict[str, int], seed: int = 0, workers: int | None = None,
             force: bool = False, png_level: int = 0, progress: Callable[[str], None] | None = print) -> Path:
    """Write `counts[split]` scenes per split under `out` in the Duality layout.

    PNGs are stored uncompressed by default (`png_level` 0: ~2.6 MB a pair,
    the fastest to write and ~7x faster to decode); levels 1-9 use zlib with
    the 'up' filter (~2x faster than OpenCV's default at about the same size).

    Each split is written into a temporary folder and renamed when complete,
    so an interrupted run leaves no half-written split.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or min(os.cpu_count() or 1, 8)
    for split, n in counts.items():
        if n <= 0:
            continue
        if split not in BIOMES:
            raise ValueError(f"unknown split {split!r}; use one of {list(BIOMES)}")
        final = out / split
        if final.exists():
            if not force:
                raise FileExistsError(f"{final} exists; pass --force to overwrite it")
            shutil.rmtree(final)
        tmp = out / f".{split}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / IMAGE_DIR).mkdir(parents=True)
        (tmp / MASK_DIR).mkdir()
        jobs = [(str(tmp), split, seed, i, png_level) for i in range(n)]
        if workers > 1 and n > 1:
            # Spawned, not forked: a process that holds runtime thread pools (onnxruntime,
            # OpenVINO, OpenMP) cannot be forked safely; a forked worker hung collecting an
            # inherited onnxruntime session after a benchmark.
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                list(pool.map(_write_one, jobs, chunksize=4))
        else:
            for job in jobs:
                _write_one(job)
        os.replace(tmp, final)
        if progress:
            progress(f"synth: wrote {n} {split} scenes ({BIOMES[split].name} biome) to {final}")
    return out


def preview(path: str | Path, seed: int = 0, n: int = 3, table: ClassTable | None = None) -> Path:
    """A grid of train and test scenes with their colourised masks (PNG)."""
    from offroad_seg_ros.data.dataset import write_png_atomic

    table = table or ClassTable.default()
    colors = table.color_lut()
    rows = []
    for split in ("train", "test"):
        for i in range(n):
            image, mask = render_scene(_scene_rng(seed, split, i), BIOMES[split])
            color = colors[table.remap(mask)]
            row = np.concatenate([image, color], axis=1)
            rows.append(cv2.resize(row, (row.shape[1] // 3, row.shape[0] // 3), interpolation=cv2.INTER_AREA))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = np.concatenate([np.concatenate(rows[i:i + 2], axis=1) for i in range(0, len(rows), 2)], axis=0)
    write_png_atomic(path, grid)
    return path
