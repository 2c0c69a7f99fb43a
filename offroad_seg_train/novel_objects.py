"""Novel objects, for EVALUATION ONLY: things no class covers, drawn into generated scenes.

A desert robot meets vehicles, people in hi-vis vests, fences, fuel drums, blue tarps and
puddles that mirror the sky; no class of config/classes.yaml covers them. They are drawn into
the scene while it is rendered (`render_scene`'s `extras`), not pasted afterwards: each stands
on the ground at a distance and is scaled for it like the generator's own objects, hides and is
hidden in depth order, casts a contact shadow and is lit, textured and blurred with the rest
of the frame, so no paste edge gives it away.

Labels: a novel pixel's raw ID is 0 ("unlabeled", the ignore index in config/classes.yaml), so
segmentation metrics skip it; the novelty mask (offroad_seg_ros/data/dataset.py:
read_novelty_mask) marks it NOVEL, its edge band NOVELTY_IGNORE, and pasted control patches
(offroad_seg_train/pasted_patches.py) PASTED.

The training generator never imports this module (test/test_novel_objects.py), and objects
for training (outlier exposure) come from offroad_seg_train/outliers.py, which imitates none
of these kinds. Kinds are split into committed groups like the biomes: `TUNING_KINDS` may be
used to fit thresholds and choose methods, `HELD_OUT_KINDS` are for reporting only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from offroad_seg_ros.data.dataset import NOT_NOVEL, NOVEL, NOVELTY_IGNORE
from offroad_seg_train.pasted_patches import paste_patches
from offroad_seg_train.synth import Biome, Canvas, Draw, Extras, render_scene

NOVEL_RAW = 0  # "unlabeled": the class table maps it to the ignore index
Paint = Callable[[Canvas, np.random.Generator, float, float, float, Biome], None]
_NOVEL_STREAM, _PASTE_STREAM = 0x4E6F76, 0x50617374  # extra seed words: streams apart from the scene's


def _pick(rng: np.random.Generator, colors: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    return colors[int(rng.integers(len(colors)))]


def _scaled(color: tuple[int, ...], k: float) -> tuple[int, ...]:
    return tuple(min(255, int(c * k)) for c in color)


def _contact_shadow(cv: Canvas, x: float, y: float, size: float, biome: Biome) -> None:
    cv.shadow(x, y, size, biome, max(0.3, biome.shadow))


def _vehicle(cv: Canvas, rng: np.random.Generator, x: float, y: float, s: float, biome: Biome) -> None:
    """A car or pickup seen from the side: body, cabin with windows, wheels with hubs."""
    length = rng.uniform(110, 160) * s
    d = 1.0 if rng.random() < 0.5 else -1.0  # which way it faces
    truck = rng.random() < 0.5
    paint = _pick(rng, [(235, 235, 230), (180, 30, 30), (30, 50, 120), (170, 172, 175), (25, 25, 28)])
    rw = 0.12 * length

    def pts(*xy: tuple[float, float]) -> np.ndarray:  # (x in lengths, y in pixels) -> image points
        return np.array([(x + d * u * length, v) for u, v in xy])

    _contact_shadow(cv, x, y, 1.1 * length, biome)
    under, top = y - 0.55 * rw, y - 0.55 * rw - 0.22 * length
    cv.poly(pts((-0.5, under), (0.5, under), (0.5, under - 0.16 * length), (0.44, top), (-0.48, top),
                (-0.5, under - 0.17 * length)), paint, NOVEL_RAW)
    roof, glass = top - 0.19 * length, (55, 70, 85)
    if truck:
        cv.poly(pts((0.04, top), (0.4, top), (0.33, roof), (0.08, roof)), paint, NOVEL_RAW)
        cv.poly(pts((0.12, top - 0.03 * length), (0.33, top - 0.03 * length), (0.29, roof + 0.03 * length),
                    (0.13, roof + 0.03 * length)), glass, NOVEL_RAW)
        cv.line(pts((-0.5, top))[0], pts((0.03, top))[0], _scaled(paint, 0.6), NOVEL_RAW, int(0.02 * length))
    else:
        cv.poly(pts((-0.32, top), (0.3, top), (0.17, roof), (-0.22, roof)), paint, NOVEL_RAW)
        for a, b in ((-0.27, -0.04), (0.0, 0.24)):
            cv.poly(pts((a, top - 0.03 * length), (b, top - 0.03 * length), (b - 0.04, roof + 0.03 * length),
                        (a + 0.04, roof + 0.03 * length)), glass, NOVEL_RAW)
    for u in (-0.32, 0.32):
        cv.circle(pts((u, y - rw))[0], rw, (25, 25, 25), NOVEL_RAW)
        cv.circle(pts((u, y - rw))[0], 0.45 * rw, (150, 150, 150), NOVEL_RAW)


def _person(cv: Canvas, rng: np.random.Generator, x: float, y: float, s: float, biome: Biome) -> None:
    """A standing worker: trousers, hi-vis vest with reflective bands, arms, head and hard hat."""
    p = rng.uniform(55, 70) * s
    vest = _pick(rng, [(200, 240, 40), (250, 120, 20)])
    trousers = _pick(rng, [(40, 50, 80), (60, 60, 60), (90, 80, 60)])
    skin = _pick(rng, [(225, 185, 150), (180, 130, 95), (120, 85, 60)])
    _contact_shadow(cv, x, y, 0.45 * p, biome)
    hip, shoulder = y - 0.48 * p, y - 0.8 * p
    for side in (-1, 1):
        cv.poly(np.array([[x + side * 0.11 * p, y], [x + side * 0.02 * p, y], [x + side * 0.01 * p, hip],
                          [x + side * 0.11 * p, hip]]), trousers, NOVEL_RAW)
        cv.poly(np.array([[x + side * 0.13 * p, shoulder], [x + side * 0.18 * p, shoulder + 0.02 * p],
                          [x + side * 0.19 * p, y - 0.5 * p], [x + side * 0.14 * p, y - 0.5 * p]]),
                (70, 90, 130), NOVEL_RAW)
        cv.circle((x + side * 0.165 * p, y - 0.48 * p), 0.03 * p, skin, NOVEL_RAW)
    cv.poly(np.array([[x - 0.12 * p, hip + 0.02 * p], [x + 0.12 * p, hip + 0.02 * p], [x + 0.13 * p, shoulder],
                      [x - 0.13 * p, shoulder]]), vest, NOVEL_RAW)
    for band in (0.56, 0.67):
        cv.poly(np.array([[x - 0.125 * p, y - band * p], [x + 0.125 * p, y - band * p],
                          [x + 0.125 * p, y - (band + 0.03) * p], [x - 0.125 * p, y - (band + 0.03) * p]]),
                (215, 215, 205), NOVEL_RAW)
    cv.circle((x, y - 0.88 * p), 0.065 * p, skin, NOVEL_RAW)
    cv.ellipse((x, y - 0.92 * p), (0.078 * p, 0.04 * p), 0, _pick(rng, [(240, 240, 235), (245, 200, 30)]),
               NOVEL_RAW)


def _fence(cv: Canvas, rng: np.random.Generator, x: float, y: float, s: float, biome: Biome) -> None:
    """A stretch of fence across the view: posts and wire strands, or wooden posts and rails."""
    length, height = rng.uniform(200, 320) * s, rng.uniform(36, 46) * s
    wooden = rng.random() < 0.5
    post_color, line_color = ((115, 80, 50), (125, 90, 58)) if wooden else ((95, 95, 90), (165, 165, 160))
    levels = (0.35, 0.8) if wooden else (0.25, 0.5, 0.75, 0.95)
    line_width = max(1, round((2.0 if wooden else 0.8) * s))
    posts = np.linspace(x - length / 2, x + length / 2, int(rng.integers(4, 8)))
    half = max(0.6, 1.3 * s)
    for px in posts:
        _contact_shadow(cv, px, y, 6 * s, biome)
        cv.poly(np.array([[px - half, y], [px + half, y], [px + half, y - height], [px - half, y - height]]),
                post_color, NOVEL_RAW)
    for k in levels:
        cv.line((posts[0], y - k * height), (posts[-1], y - k * height), line_color, NOVEL_RAW, line_width)


def _drum(cv: Canvas, rng: np.random.Generator, x: float, y: float, s: float, biome: Biome) -> None:
    """A standing fuel drum: a painted cylinder with a lid and rolling hoops."""
    height = rng.uniform(30, 38) * s
    width, paint = 0.68 * height, _pick(rng, [(30, 75, 175), (180, 35, 30)])
    e = 0.12 * width  # the ellipses' half height: the drum is seen a little from above
    _contact_shadow(cv, x, y, 1.3 * width, biome)
    cv.ellipse((x, y - e), (width / 2, e), 0, paint, NOVEL_RAW)
    cv.poly(np.array([[x - width / 2, y - e], [x + width / 2, y - e], [x + width / 2, y - height],
                      [x - width / 2, y - height]]), paint, NOVEL_RAW)
    cv.ellipse((x, y - height), (width / 2, e), 0, _scaled(paint, 1.3), NOVEL_RAW)
    cv.ellipse((x, y - height), (0.4 * width, 0.7 * e), 0, _scaled(paint, 0.9), NOVEL_RAW)
    for k in (1 / 3, 2 / 3):
        cv.line((x - width / 2, y - k * height), (x + width / 2, y - k * height), _scaled(paint, 0.6), NOVEL_RAW,
                max(1, round(0.04 * height)))
    # The lit side, image only: the class is the same drum.
    cv.shade_poly(np.array([[x - 0.3 * width, y - e], [x - 0.15 * width, y - e], [x - 0.15 * width, y - height],
                            [x - 0.3 * width, y - height]]), 1.25)


def _tarp(cv: Canvas, rng: np.random.Generator, x: float, y: float, s: float, biome: Biome) -> None:
    """A blue tarp draped over something: an irregular sagging sheet with folds."""
    width = rng.uniform(70, 120) * s
    height = width * rng.uniform(0.3, 0.5)
    paint = _pick(rng, [(35, 85, 190), (30, 110, 200), (45, 70, 160)])

    def j() -> float:
        return float(rng.uniform(-0.06, 0.06) * width)

    _contact_shadow(cv, x, y, 1.1 * width, biome)
    sheet = np.array([[x - width / 2 + j(), y], [x + width / 2 + j(), y - abs(j())],
                      [x + 0.47 * width, y - 0.5 * height], [x + 0.3 * width + j(), y - height],
                      [x + j(), y - 0.8 * height], [x - 0.35 * width + j(), y - height],
                      [x - 0.5 * width, y - 0.45 * height]])
    cv.poly(sheet, paint, NOVEL_RAW)
    for _ in range(int(rng.integers(3, 6))):
        top = (x + rng.uniform(-0.3, 0.3) * width, y - 0.75 * height)
        bottom = (x + rng.uniform(-0.4, 0.4) * width, y - 0.05 * height)
        cv.line(top, bottom, _scaled(paint, float(rng.choice([0.7, 1.25]))), NOVEL_RAW, max(1, round(0.02 * width)))


def _puddle(cv: Canvas, rng: np.random.Generator, x: float, y: float, s: float, biome: Biome) -> None:
    """Standing water on the ground mirroring the sky: sky colours below the horizon, the far
    edge showing the sky near the horizon, the near edge higher sky, in a wet dark rim."""
    width = rng.uniform(90, 160) * s
    depth = width * rng.uniform(0.12, 0.2)  # flat: seen at a grazing angle
    angles = np.sort(rng.uniform(0, 2 * np.pi, 12))
    radii = 1 - 0.25 * rng.random(12)
    center = np.array([x, y - depth / 2])
    outline = center + np.stack([width / 2 * radii * np.cos(angles), depth / 2 * radii * np.sin(angles)], 1)
    cv.shade_poly(center + (outline - center) * 1.15, 0.75)  # wet sand: still ground
    region = cv.inside(outline)
    if region is None:
        return
    (x0, y0, x1, y1), inside = region
    pts = np.round(outline).astype(np.int32)
    t = (np.arange(y0, y1, dtype=np.float32) - pts[:, 1].min()) / max(1, np.ptp(pts[:, 1]))
    t = 0.15 + 0.7 * np.clip(t, 0, 1) + 0.04 * np.sin(np.arange(y1 - y0) * 1.7 + rng.uniform(0, 6))
    top, hor = np.array(biome.sky_top, np.float32), np.array(biome.sky_horizon, np.float32)
    rows = 0.9 * (hor + (top - hor) * t[:, None])  # water reflects a little less than all
    colors = np.broadcast_to(rows[:, None, :], (y1 - y0, x1 - x0, 3)).astype(np.uint8)
    sel = inside > 0
    cv.image[y0:y1, x0:x1][sel] = colors[sel]
    cv.mask[y0:y1, x0:x1][sel] = NOVEL_RAW


KINDS: dict[str, Paint] = {"vehicle": _vehicle, "person": _person, "fence": _fence, "drum": _drum,
                           "tarp": _tarp, "puddle": _puddle}
# Committed before any method was tuned: thresholds may be fitted on TUNING_KINDS only.
TUNING_KINDS = ("drum", "tarp")
HELD_OUT_KINDS = ("vehicle", "person", "fence", "puddle")
GROUPS = {"tuning": TUNING_KINDS, "held_out": HELD_OUT_KINDS, "all": tuple(KINDS)}


def resolve_kinds(words: Iterable[str]) -> tuple[str, ...]:
    """Kinds named on a command line (names, comma lists or a group: tuning, held_out, all), each
    once; an unknown one is a ValueError naming it and listing the known ones."""
    out: dict[str, None] = {}
    for word in words:
        for name in filter(None, (n.strip() for n in word.split(","))):
            if name not in KINDS and name not in GROUPS:
                raise ValueError(f"unknown novel object {name!r}; known: {', '.join(KINDS)} "
                                 f"(or a group: {', '.join(GROUPS)})")
            out.update(dict.fromkeys(GROUPS.get(name, (name,))))
    return tuple(out)


def draw_at(kind: str, rng: np.random.Generator) -> Draw:
    """One object of `kind` as `render_scene` draws extras, painting with `rng`."""
    paint = KINDS[kind]
    return lambda cv, x, y, s, biome: paint(cv, rng, x, y, s, biome)


def placer(rng: np.random.Generator, kinds: tuple[str, ...], n: int) -> Extras:
    """`n` objects of `kinds` (taken in turn from a random start, so a split holds them in equal
    numbers) on the ground: between a fifth of the way from the horizon and the bottom, clear of
    the dunes' crests, and inside the frame's middle 80 % across."""
    def place(horizon: float, w: int, h: int) -> list[tuple[float, float, int | Draw]]:
        start = int(rng.integers(len(kinds)))
        lo = min(horizon + max(0.2 * (h - horizon), 32.0), 0.95 * h)
        return [(float(rng.uniform(lo, 0.95 * h)), float(rng.uniform(0.1, 0.9) * w),
                 draw_at(kinds[(start + i) % len(kinds)], rng)) for i in range(n)]

    return place


def novelty_from_mask(mask: np.ndarray) -> np.ndarray:
    """uint8 novelty mask of a rendered scene: NOVEL where a novel object shows (raw ID 0), its
    3x3 edge band NOVELTY_IGNORE (those pixels are blurred with their neighbours), else 0."""
    novel = (mask == NOVEL_RAW).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    out = np.where(novel > 0, NOVEL, NOT_NOVEL).astype(np.uint8)
    out[cv2.dilate(novel, kernel) != cv2.erode(novel, kernel)] = NOVELTY_IGNORE
    return out


@dataclass(frozen=True)
class NovelScenes:
    """A `synth.Scene` for evaluation splits: `per_scene` novel objects of `kinds` drawn into
    each scene, and `pasted` ordinary patches pasted in from another scene as a control. The
    scene around them is the scene of the same seed without them."""

    kinds: tuple[str, ...] = ()
    per_scene: int = 2
    pasted: int = 0

    def __call__(self, key: list[int], biome: Biome) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        extras = placer(np.random.default_rng([*key, _NOVEL_STREAM]), self.kinds, self.per_scene) \
            if self.kinds and self.per_scene > 0 else None
        image, mask = render_scene(np.random.default_rng(key), biome, extras=extras)
        novelty = novelty_from_mask(mask)
        if self.pasted > 0:
            paste_rng = np.random.default_rng([*key, _PASTE_STREAM])
            source = render_scene(paste_rng, biome, size=(mask.shape[1], mask.shape[0]))
            paste_patches(image, mask, novelty, source, paste_rng, self.pasted)
        return image, mask, novelty
