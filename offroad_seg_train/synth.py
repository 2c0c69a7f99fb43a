"""Procedural desert scenes in the Duality layout, for tests, demos and CI.

Each scene is drawn shape by shape into the RGB image and the uint16 raw-ID
mask at once, so the two are pixel-aligned by construction (no colour
thresholding). Objects are drawn far to near and shrink toward the horizon.
The `test` split uses a shifted biome, like the real test desert: darker,
many more rocks, no logs, flowers or ground clutter. Other deserts are named
biomes (offroad_seg_train/biomes.py). Objects from outside the generator
(`render_scene`'s `extras`) are drawn among its own, in the same depth order.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from offroad_seg_ros.core.classes import ClassTable
from offroad_seg_ros.data.dataset import IMAGE_DIR, MASK_DIR, NOVELTY_DIR
from offroad_seg_train.biomes import (
    CLUTTER,
    DRY_BUSH,
    FLOWERS,
    GRASS,
    LAND,
    LOGS,
    LUSH,
    ROCKS,
    SKY,
    SPLIT_BIOMES,
    TRAIN_BIOME,
    TREES,
    Biome,
)
from offroad_seg_train.biomes import TEST_BIOME as TEST_BIOME  # callers import the two biomes from here

WIDTH, HEIGHT = 960, 540
BIOMES = SPLIT_BIOMES  # its name before biomes.py owned it
# Texture strength per raw ID (relative luminance noise). Raw ID 0 ("unlabeled") is never drawn
# by the generator itself; objects drawn with it through `extras` get a faint texture.
_TEXTURE = {SKY: 0.02, LAND: 0.10, GRASS: 0.18, ROCKS: 0.14, DRY_BUSH: 0.2, LUSH: 0.2,
            TREES: 0.2, LOGS: 0.15, FLOWERS: 0.1, CLUTTER: 0.2, 0: 0.06}


def _jitter(rng: np.random.Generator, color: tuple[int, int, int], amount: float) -> tuple[int, ...]:
    scale = 1.0 + rng.uniform(-amount, amount)
    shift = rng.uniform(-12, 12, size=3).tolist()
    return tuple(min(255, max(0, int(c * scale + s))) for c, s in zip(color, shift, strict=False))


class Canvas:
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

    def inside(self, pts: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
        """The polygon's bounding box clipped to the frame, (x0, y0, x1, y1), and the polygon's
        pixels in it (uint8, 1 inside); None when it lies outside the frame."""
        pts = np.round(pts).astype(np.int32)
        h, w = self.mask.shape
        x0, y0 = (int(v) for v in np.clip(pts.min(0), 0, [w, h]))
        x1, y1 = (int(v) for v in np.clip(pts.max(0) + 1, 0, [w, h]))
        if x1 <= x0 or y1 <= y0:
            return None
        inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(inside, [pts - np.array([x0, y0], np.int32)], (1,))
        return (x0, y0, x1, y1), inside

    def shade_poly(self, pts: np.ndarray, factor: float) -> None:
        """Scale the image's colours inside a polygon, the mask untouched: a shadow or a wet
        patch darkens what lies there without changing its class."""
        region = self.inside(pts)
        if region is None:
            return
        (x0, y0, x1, y1), inside = region
        roi = self.image[y0:y1, x0:x1]
        roi[inside > 0] = np.clip(roi[inside > 0] * np.float32(factor), 0, 255).astype(np.uint8)

    def shadow(self, x: float, y: float, size: float, biome: Biome, strength: float) -> None:
        """A ground shadow at an object's foot (x, y), `size` pixels across, falling to the
        biome's sun side and stretched by its shadow length."""
        length = size * biome.shadow_length
        center = (int(x + biome.sun_side * 0.45 * length), int(y - 0.05 * size))
        axes = (max(1, int(0.5 * size + 0.45 * length)), max(1, int(0.14 * size)))
        self.shade_poly(np.asarray(cv2.ellipse2Poly(center, axes, 0, 0, 360, 10)), 1.0 - strength)


# An object drawn by someone else into a scene: called with the canvas, its foot (x, y), its
# scale for that distance and the biome.
Draw = Callable[[Canvas, float, float, float, Biome], None]
# Places such objects once the horizon is known: (horizon row, width, height) -> (y, x, what),
# `what` a raw class ID drawn by the generator or a Draw.
Extras = Callable[[float, int, int], Sequence[tuple[float, float, int | Draw]]]


def _blob(rng, cx, cy, r, n=9, roughness=0.35) -> np.ndarray:
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = r * (1 - roughness * rng.random(n))
    return np.stack([cx + radii * np.cos(angles), cy + 0.8 * radii * np.sin(angles)], axis=1)


def _rock(cv: Canvas, rng, x, y, s, biome: Biome):
    r = max(3.0, rng.uniform(8, 55) * s * biome.rock_scale)
    base = _jitter(rng, biome.rock_color, 0.25)
    cv.poly(_blob(rng, x, y - 0.5 * r, r, n=int(rng.integers(6, 11))), base, ROCKS)
    light = tuple(min(255, int(c * 1.25)) for c in base)
    # Lit top face: same class, so only the image changes.
    cv2.fillPoly(cv.image, [np.round(_blob(rng, x - 0.2 * r, y - 0.8 * r, 0.5 * r)).astype(np.int32)], light)


def _bush(cv, rng, x, y, s, raw, color):
    r = max(2.0, rng.uniform(12, 40) * s)
    for _ in range(int(rng.integers(5, 12))):
        cx, cy = x + rng.normal(0, r * 0.6), y - r * 0.6 + rng.normal(0, r * 0.35)
        cv.circle((cx, cy), rng.uniform(0.3, 0.6) * r, _jitter(rng, color, 0.15), raw)


def _tree(cv, rng, x, y, s, canopy=(45, 85, 40)):
    h = max(8.0, rng.uniform(70, 180) * s)
    w = max(2.0, rng.uniform(5, 14) * s)
    trunk = _jitter(rng, (90, 65, 40), 0.15)
    cv.poly(np.array([[x - w / 2, y], [x + w / 2, y], [x + w / 3, y - h], [x - w / 3, y - h]]), trunk, TREES)
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


def _grass(cv, rng, x, y, s, base=(200, 180, 95)):
    w = max(6.0, rng.uniform(60, 260) * s)
    color = _jitter(rng, base, 0.12)
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
    DRY_BUSH: lambda cv, rng, x, y, s, b: _bush(cv, rng, x, y, s, DRY_BUSH, b.dry_bush),
    LUSH: lambda cv, rng, x, y, s, b: _bush(cv, rng, x, y, s, LUSH, b.lush),
    TREES: lambda cv, rng, x, y, s, b: _tree(cv, rng, x, y, s, b.canopy),
    LOGS: lambda cv, rng, x, y, s, b: _log(cv, rng, x, y, s),
    GRASS: lambda cv, rng, x, y, s, b: _grass(cv, rng, x, y, s, b.grass),
    FLOWERS: lambda cv, rng, x, y, s, b: _flowers(cv, rng, x, y, s),
    CLUTTER: lambda cv, rng, x, y, s, b: _clutter(cv, rng, x, y, s),
}


def _noise(rng: np.random.Generator, cells: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Smooth noise in [-1, 1]: random cells upsampled bicubically."""
    small = rng.uniform(-1, 1, size=cells).astype(np.float32)
    return cv2.resize(small, size, interpolation=cv2.INTER_CUBIC)


def _sky(rng: np.random.Generator, image: np.ndarray, horizon: float, biome: Biome) -> None:
    """Vertical gradient, brightened by soft clouds. Only the rows that can show sky are
    computed (the ground polygon covers the rest)."""
    h, w = image.shape[:2]
    sky_rows = min(h, int(horizon) + 32)
    t = np.clip(np.arange(sky_rows, dtype=np.float32) / max(horizon, 1), 0, 1)[:, None, None]
    top = np.array(_jitter(rng, biome.sky_top, 0.1), np.float32)
    hor = np.array(_jitter(rng, biome.sky_horizon, 0.05), np.float32)
    sky = (1 - t) * top + t * hor
    clouds = (_noise(rng, (4, 8), (w, h))[:sky_rows] * np.float32(1.6)
              - np.float32(rng.uniform(0.2, 0.9) - biome.cloud_bias))
    clouds = np.clip(clouds, 0, 1)[..., None]
    sky = sky + clouds * (np.float32(biome.cloud_color) - sky)
    image[:sky_rows] = cv2.convertScaleAbs(sky.astype(np.float32))


# Cast-shadow width per generator class, pixels at scale 1 (biomes with `shadow` > 0 only).
_SHADOW_SIZE = {ROCKS: 45.0, DRY_BUSH: 40.0, LUSH: 40.0, TREES: 55.0, LOGS: 60.0}


def _objects(rng: np.random.Generator, cv: Canvas, horizon: float, biome: Biome, extras: Extras | None) -> None:
    """The biome's objects and any `extras`, far to near; each of the biome's classes at least once."""
    h, w = cv.mask.shape
    objects: list[tuple[float, float, int | Draw]] = []
    for raw, (lo, hi) in biome.counts.items():
        n = int(rng.integers(lo, hi + 1))
        if lo == 0 and biome is TRAIN_BIOME:
            n = max(n, 1)
        objects += [(rng.uniform(horizon + 4, h + 30), rng.uniform(-20, w + 20), raw) for _ in range(n)]
    if extras is not None:
        objects += extras(horizon, w, h)
    objects.sort(key=lambda o: o[0])  # stable: extras take nothing from the generator's order
    for y, x, what in objects:
        s = 1.6 * float(np.clip((y - horizon) / (h - horizon), 0.05, 1.2))
        if not isinstance(what, int):
            what(cv, x, y, s, biome)
            continue
        if biome.shadow > 0 and what in _SHADOW_SIZE:
            size = _SHADOW_SIZE[what] * s * (biome.rock_scale if what == ROCKS else 1.0)
            cv.shadow(x, y, size, biome, biome.shadow)
        _DRAW[what](cv, rng, x, y, s, biome)


def _grade(out: np.ndarray, horizon: float, biome: Biome) -> np.ndarray:
    """The biome's colour cast, contrast and haze, applied to the lit frame."""
    img = out.astype(np.float32) * np.array(biome.cast, np.float32)
    if biome.contrast != 1.0:
        mean = img.reshape(-1, 3).mean(0)
        img = mean + (img - mean) * np.float32(biome.contrast)
    if biome.haze > 0:
        # Haze thickens toward the horizon: distant ground fades into the horizon's colour.
        rows = np.arange(out.shape[0], dtype=np.float32)
        fog = biome.haze * np.exp(-np.abs(rows - horizon) / (0.22 * out.shape[0]))[:, None, None]
        color = np.array(biome.sky_horizon, np.float32) * np.float32(biome.brightness)
        img = img * (1 - fog) + color * fog
    return cv2.convertScaleAbs(img)


def render_scene(rng: np.random.Generator, biome: Biome = TRAIN_BIOME,
                 size: tuple[int, int] = (WIDTH, HEIGHT),
                 extras: Extras | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One scene: RGB uint8 (H, W, 3) and uint16 raw-ID mask (H, W).

    `extras` adds objects of the caller's (offroad_seg_train/novel_objects.py) at ground
    positions it picks once the horizon is known, drawn in depth order among the biome's and lit
    with them. They must draw with their own random generator: then the scene around them is
    the scene without them, pixel for pixel, wherever they do not cover or shade it.
    """
    w, h = size
    image = np.empty((h, w, 3), dtype=np.uint8)
    mask = np.full((h, w), SKY, dtype=np.uint16)
    horizon = rng.uniform(0.3, 0.5) * h
    _sky(rng, image, horizon, biome)

    # Ground below a wavy horizon (dunes).
    cv = Canvas(image, mask)
    xs = np.linspace(-8, w + 8, 64)
    phase = rng.uniform(0, 2 * np.pi, 2)
    ys = (horizon + rng.uniform(4, 22) * np.sin(xs / w * rng.uniform(2, 6) + phase[0])
          + rng.uniform(2, 8) * np.sin(xs / w * rng.uniform(10, 20) + phase[1]))
    ground = np.concatenate([np.stack([xs, ys], 1), [[w + 8, h + 8], [-8, h + 8]]])
    cv.poly(ground, _jitter(rng, biome.sand, 0.08), LAND)
    _objects(rng, cv, horizon, biome, extras)

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
    if biome.graded:
        out = _grade(out, horizon, biome)
    return cv2.GaussianBlur(out, (3, 3), 0), mask


def scene_key(seed: int, split: str, index: int, biome: Biome | None = None) -> list[int]:
    """The random seed of one scene. A biome other than the split's own adds its name, so scenes
    of different biomes share no random draws (a tuning biome's layouts tell nothing about a
    held-out one's); the split's own biome keeps the generator's original seeds."""
    key = [seed, sum(map(ord, split)), index]
    if biome is not None and biome.name != SPLIT_BIOMES[split].name:
        key.append(zlib.crc32(biome.name.encode()))
    return key


def _scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(scene_key(seed, split, index))


# Renders one frame from its seed and biome: image, raw mask and a novelty mask (or None).
Scene = Callable[[list[int], Biome], tuple[np.ndarray, np.ndarray, np.ndarray | None]]


def plain_scene(key: list[int], biome: Biome) -> tuple[np.ndarray, np.ndarray, None]:
    """The generator's own scene, nothing added (the default `Scene`)."""
    image, mask = render_scene(np.random.default_rng(key), biome)
    return image, mask, None


def _png(array: np.ndarray, params: list[int], where: str) -> bytes:
    ok, buf = cv2.imencode(".png", array, params)
    if not ok:
        raise OSError(f"PNG encoding failed for {where}")
    return buf.tobytes()


def _write_one(args: tuple[str, str, int, int, int, Biome, Scene]) -> None:
    out_dir, split, seed, index, png_level, biome, scene = args
    params = [cv2.IMWRITE_PNG_COMPRESSION, png_level]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.11; older ones (ROS's) keep their default
        png_filter = "IMWRITE_PNG_FILTER_UP" if png_level else "IMWRITE_PNG_FILTER_NONE"
        params += [cv2.IMWRITE_PNG_FILTER, getattr(cv2, png_filter)]
    image, mask, novelty = scene(scene_key(seed, split, index, biome), biome)
    name = f"{index:06d}.png"
    img_buf = _png(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params, f"{split}/{name}")
    mask_buf = _png(mask, params, f"{split}/{name}")
    (Path(out_dir) / IMAGE_DIR / name).write_bytes(img_buf)
    (Path(out_dir) / MASK_DIR / name).write_bytes(mask_buf)
    if novelty is not None:  # only scenes with novel objects or pasted patches have the folder
        (Path(out_dir) / NOVELTY_DIR).mkdir(exist_ok=True)
        (Path(out_dir) / NOVELTY_DIR / name).write_bytes(_png(novelty, params, f"{split}/{NOVELTY_DIR}/{name}"))


def generate(out: str | Path, counts: dict[str, int], seed: int = 0, workers: int | None = None,
             force: bool = False, png_level: int = 0, progress: Callable[[str], None] | None = print,
             biome: Biome | None = None, scene: Scene = plain_scene) -> Path:
    """Write `counts[split]` scenes per split under `out` in the Duality layout.

    Each split is drawn in its own biome (train and val: train, test: test) unless `biome` names
    one for all. `scene` renders each frame; one that returns a novelty mask also writes
    `<split>/Novelty/` (offroad_seg_train/novel_objects.py).

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
        if split not in SPLIT_BIOMES:
            raise ValueError(f"unknown split {split!r}; use one of {list(SPLIT_BIOMES)}")
        split_biome = biome or SPLIT_BIOMES[split]
        final = out / split
        if final.exists():
            if not force:
                raise FileExistsError(f"{final} exists; pass --force to overwrite it")
            shutil.rmtree(final)
        tmp = out / f".{split}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / IMAGE_DIR).mkdir(parents=True)
        (tmp / MASK_DIR).mkdir()
        jobs = [(str(tmp), split, seed, i, png_level, split_biome, scene) for i in range(n)]
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
            progress(f"synth: wrote {n} {split} scenes ({split_biome.name} biome) to {final}")
    return out


def preview(path: str | Path, seed: int = 0, n: int | None = None, table: ClassTable | None = None,
            biomes: Sequence[Biome] = (), scene: Scene = plain_scene) -> Path:
    """A grid of scenes with their colourised masks (PNG): `n` (3) train and test scenes, or `n`
    (1) test scenes of each of `biomes` drawn by `scene`."""
    from offroad_seg_ros.data.dataset import write_png_atomic

    table = table or ClassTable.default()
    colors = table.color_lut()
    n = n or (1 if biomes else 3)
    if biomes:
        frames = [scene(scene_key(seed, "test", i, b), b)[:2] for b in biomes for i in range(n)]
    else:
        frames = [render_scene(_scene_rng(seed, split, i), BIOMES[split]) for split in ("train", "test")
                  for i in range(n)]
    rows = []
    for image, mask in frames:
        color = colors[table.remap(mask)]
        row = np.concatenate([image, color], axis=1)
        rows.append(cv2.resize(row, (row.shape[1] // 3, row.shape[0] // 3), interpolation=cv2.INTER_AREA))
    if len(rows) % 2:
        rows.append(np.zeros_like(rows[0]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = np.concatenate([np.concatenate(rows[i:i + 2], axis=1) for i in range(0, len(rows), 2)], axis=0)
    write_png_atomic(path, grid)
    return path
