"""A second rendering of each corruption in corruptions.py, held out from the camera checks' tuning.

The checks' thresholds were set on corruptions.py; scored on those images alone
their detection rates say how well the checks fit that one rendering. Each
kind here is written again from another physical model of the same failure,
with numpy and OpenCV only, so a run under this set says how the checks and
the confidence hold on a failure they were not tuned on:

- haze: Koschmieder's law, I = J t + A (1 - t) with t = exp(-beta d) in linear
  light, d from a flat ground plane below a horizon (the sky at the longest
  distance), patchy extinction and a coloured airlight (blue-grey to ochre);
- glare: light added in linear light: a veiling glare over the whole frame, a
  sun with a power-law (Moffat) halo, an anamorphic streak and coloured ghosts
  on the line through the sun and the image centre;
- motion_blur: camera shake, a wandering random-walk path at uneven speed
  (not a straight line), integrated in linear light;
- defocus: a polygonal iris (5-9 blades) with a spherical-aberration glow, in
  linear light (highlights bloom into the aperture's shape);
- noise: a sensor's photon shot noise (Poisson, signal dependent), read noise
  and row banding, for fewer and fewer electrons at white;
- dark: dusk: less light of a warm-to-blue colour, cos^4 vignetting and the
  shot / read noise of the few photons left;
- over_exposure: gain into a tone curve with a highlight shoulder, charge beyond
  full well blooming into the pixels around;
- jpeg: a radio link's own codec: downscaled, 4:2:0 chroma, 8x8 DCT with a flat
  quantiser (not JPEG's perceptual tables) on a shifted block grid, upscaled;
- lens_dirt: semi-transparent (alpha 0.3-0.7), dark, soft-edged ragged blobs of
  dust, the same on every frame, the scene showing through them;
- frozen: stalls of random length, the stale frame re-sent through compressed
  transport whose rate control varies the JPEG quality: repeats are near
  identical, mostly not bit for bit.

The random draws of a frame do not depend on the severity (only their scale
does), so severity s differs from s - 1 in strength alone. The registry and
`corrupt_stream` have corruptions.py's shape; `corruption_set` picks either.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import cv2
import numpy as np

from offroad_seg_ros.evaluation import corruptions as tuning
from offroad_seg_ros.evaluation.corruptions import MIDDLE, SEVERITIES, Corruption, check_corruption

__all__ = ["CORRUPTIONS", "DEFAULT_RENDERINGS", "MIDDLE", "RENDERINGS", "SEVERITIES", "corrupt_stream",
           "corruption_set"]

RENDERINGS = ("tuning", "held_out")  # corruptions.py, this module
DEFAULT_RENDERINGS = "tuning"
_SALT = 0x4E1D  # keeps this set's draws apart from corruptions.py's for the same seed

Apply = Callable[[np.ndarray, np.random.Generator], np.ndarray]
Stream = Callable[..., Iterator[tuple[Any, np.ndarray, bool]]]


def _srgb_decode(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


# The sRGB curve itself (the tuning set uses a 2.2 power); encoding goes through a 16-bit table.
_LIN = _srgb_decode(np.arange(256) / 255).astype(np.float32)
_ENC_X = np.arange(65536) / 65535
_ENC = (np.where(_ENC_X <= 0.0031308, 12.92 * _ENC_X, 1.055 * _ENC_X ** (1 / 2.4) - 0.055) * 255 + 0.5).astype(
    np.uint8)


def _linear(image: np.ndarray) -> np.ndarray:
    return _LIN[image]


def _srgb(linear: np.ndarray) -> np.ndarray:
    return _ENC[(np.clip(linear, 0, 1) * 65535 + 0.5).astype(np.uint16)]


def _colour(rgb: tuple[int, int, int]) -> np.ndarray:
    return _LIN[np.array(rgb)]


def _haze(severity: int) -> Apply:
    # Visibility in units of the sky's distance: transmission exp(-3.912 d / V) (Koschmieder).
    visibility = (4.0, 2.2, 1.3, 0.85, 0.6)[severity - 1]

    def apply(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        horizon, mix, level = rng.uniform(0.3, 0.5), rng.uniform(0, 1), rng.uniform(0.85, 1.05)
        plume = rng.uniform(0.6, 1.4, (3, 5)).astype(np.float32)  # dust is patchy, not a uniform medium
        rows = (np.arange(h, dtype=np.float32) + 0.5) / h - np.float32(horizon)
        # flat ground: distance ~ 1 / (angle below the horizon); the sky (and the far ground) at 1
        depth = np.minimum(np.float32(1), np.float32(0.04) / np.maximum(rows, np.float32(1e-4)))
        beta = np.maximum(cv2.resize(plume, (w, h), interpolation=cv2.INTER_CUBIC), np.float32(0.3))
        t = np.exp(beta * np.float32(-3.912 / visibility) * depth[:, None])[..., None]
        air = (level * ((1 - mix) * _colour((170, 185, 205)) + mix * _colour((200, 165, 120)))).astype(np.float32)
        return _srgb(_linear(image) * t + air * (1 - t))
    return apply


def _glare(severity: int) -> Apply:
    veil = (0.02, 0.05, 0.09, 0.14, 0.2)[severity - 1]  # share of white scattered over the whole frame
    peak = (3.0, 5.0, 8.0, 12.0, 16.0)[severity - 1]  # the halo's centre, in units of white
    core = (40, 50, 60, 75, 90)[severity - 1]  # the halo's core radius at 960 px wide
    streak = (120, 200, 300, 420, 560)[severity - 1]  # the streak's decay length at 960 px wide
    ghost = (0.03, 0.05, 0.08, 0.11, 0.15)[severity - 1]
    tints = np.array([[0.6, 1.0, 0.5], [1.0, 0.5, 0.9], [1.0, 0.8, 0.4], [0.5, 0.8, 1.0]], np.float32)

    def apply(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        s = w / 960
        sx, sy = rng.uniform(0.1, 0.9) * w, rng.uniform(-0.1, 0.4) * h  # the sun may sit just above the view
        angle = rng.normal(0, 0.15)  # the streak runs near horizontal (the sensor's readout direction)
        ks, radii, which = rng.uniform(-1.6, 0.6, 4), rng.uniform(10, 45, 4) * s, rng.integers(0, 4, 4)
        sun = np.array([1.0, 0.93, 0.8], np.float32)
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        dx, dy = xx - np.float32(sx), yy - np.float32(sy)
        halo = np.float32(peak) * (1 + (dx * dx + dy * dy) / np.float32((core * s) ** 2)) ** np.float32(-1.5)
        along = dx * np.float32(math.cos(angle)) + dy * np.float32(math.sin(angle))
        across = dy * np.float32(math.cos(angle)) - dx * np.float32(math.sin(angle))
        line = np.float32(0.6 * peak) * np.exp(-np.abs(along) / np.float32(streak * s)
                                               - (across / np.float32(2.5 * s)) ** 2)
        light = (np.float32(veil) + halo + line)[..., None] * sun
        ghosts = np.zeros((h, w, 3), np.float32)
        cx, cy = w / 2, h / 2
        for k, r, i in zip(ks, radii, which):  # lens ghosts on the line from the sun through the centre
            colour = tuple(float(c) * ghost for c in tints[i])
            cv2.circle(ghosts, (int(cx + k * (sx - cx)), int(cy + k * (sy - cy))), max(1, int(r)), colour, -1)
        soft = cv2.GaussianBlur(ghosts, (0, 0), 2 * s + 0.5)
        return _srgb(_linear(image) + light + soft)
    return apply


def _shake_kernel(length: float, rng: np.random.Generator) -> np.ndarray:
    """A camera-shake blur kernel: a random walk whose heading wanders and whose speed varies
    (the exposure lingers where the camera slows), scaled to `length` px across."""
    steps = 64
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.2, steps))
    speed = rng.uniform(0.3, 1.0, steps)
    path = np.cumsum(np.stack([speed * np.cos(heading), speed * np.sin(heading)], 1), 0)
    path -= (path.max(0) + path.min(0)) / 2
    path *= length / max(float(np.ptp(path, 0).max()), 1e-6)
    fine = np.linspace(0, steps - 1, 8 * steps)  # dense samples along the path, splatted bilinearly
    pts = np.stack([np.interp(fine, np.arange(steps), path[:, j]) for j in (0, 1)], 1)
    size = 2 * math.ceil(length / 2) + 3
    pts += size // 2
    x0, y0 = np.floor(pts[:, 0]).astype(int), np.floor(pts[:, 1]).astype(int)
    fx, fy = pts[:, 0] - x0, pts[:, 1] - y0
    kernel = np.zeros((size, size), np.float64)
    for ox, oy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(kernel, (y0 + oy, x0 + ox), wgt)
    return (kernel / kernel.sum()).astype(np.float32)


def _motion_blur(severity: int) -> Apply:
    length = (4, 8, 13, 19, 27)[severity - 1]  # the path's extent at 960 px wide

    def apply(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        kernel = _shake_kernel(length * image.shape[1] / 960, rng)
        return _srgb(cv2.filter2D(_linear(image), -1, kernel, borderType=cv2.BORDER_REFLECT))
    return apply


def _aperture_kernel(radius: float, blades: int, rotation: float, glow: float) -> np.ndarray:
    """The iris polygon (drawn 8x finer, then area-averaged: anti-aliased) plus a faint
    Gaussian glow twice as wide (spherical aberration), summing to 1."""
    size = 2 * math.ceil(2 * radius) + 1
    fine = 8
    big = np.zeros((size * fine, size * fine), np.float32)
    c = size * fine / 2
    a = rotation + 2 * np.pi * np.arange(blades) / blades
    pts = np.stack([c + radius * fine * np.cos(a), c + radius * fine * np.sin(a)], 1).round().astype(np.int32)
    cv2.fillPoly(big, [pts], (1.0,))
    iris = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
    if iris.sum() <= 0:
        iris[size // 2, size // 2] = 1
    r = np.arange(size, dtype=np.float32) - size // 2
    halo = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / np.float32(2 * radius * radius))
    return ((1 - glow) * iris / iris.sum() + glow * halo / halo.sum()).astype(np.float32)


def _defocus(severity: int) -> Apply:
    radius = (1.5, 3.0, 4.5, 6.5, 9.0)[severity - 1]  # the iris' circumradius at 960 px wide

    def apply(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        blades, rotation, jitter = int(rng.integers(5, 10)), rng.uniform(0, np.pi), rng.uniform(0.9, 1.1)
        kernel = _aperture_kernel(radius * jitter * image.shape[1] / 960, blades, rotation, 0.1)
        return _srgb(cv2.filter2D(_linear(image), -1, kernel, borderType=cv2.BORDER_REFLECT))
    return apply


def _sensor(linear: np.ndarray, electrons: float, read: float, rng: np.random.Generator) -> np.ndarray:
    """Linear light as `electrons` at white would read it: Poisson shot noise, Gaussian read
    noise and a per-row offset (banding), back in units of white."""
    h = linear.shape[0]
    e = rng.poisson(np.maximum(linear, 0) * electrons).astype(np.float32)
    e += rng.normal(0, read, linear.shape).astype(np.float32)
    e += rng.normal(0, 0.5 * read, (h, 1, 1)).astype(np.float32)
    return e / np.float32(electrons)


def _noise(severity: int) -> Apply:
    electrons = (200, 70, 38, 24, 16)[severity - 1]  # at white: fewer photons, relatively more shot noise

    def apply(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _srgb(_sensor(_linear(image), electrons, 2.5, rng))
    return apply


def _vignette(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    # cos^4 law of a wide lens, its centre a little off the image's
    cx, cy, f = rng.uniform(0.45, 0.55) * w, rng.uniform(0.45, 0.55) * h, rng.uniform(0.8, 1.2) * w
    yy, xx = np.ogrid[:h, :w]
    r2 = (((xx - cx) ** 2 + (yy - cy) ** 2) / f ** 2).astype(np.float32)
    return ((1 + r2) ** -2)[..., None]


def _dark(severity: int) -> Apply:
    exposure = (0.5, 0.3, 0.17, 0.09, 0.045)[severity - 1]  # of the clean frame's light

    def apply(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        mix = rng.uniform(0, 1)  # sunset (warm) to blue hour
        light = (1 - mix) * np.array([1.15, 0.95, 0.7]) + mix * np.array([0.8, 0.95, 1.3])
        light = (light / (light @ np.array([0.2126, 0.7152, 0.0722])) * exposure).astype(np.float32)
        linear = _linear(image) * light * _vignette(h, w, rng)
        return _srgb(_sensor(linear, 3000.0, 3.0, rng))
    return apply


def _over_exposure(severity: int) -> Apply:
    gain = (1.8, 2.6, 3.8, 5.5, 8.0)[severity - 1]
    white = np.float32(1.6 ** 2)  # the tone curve reaches white at 1.6x full scale

    def apply(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        w = image.shape[1]
        raw = _linear(image) * np.float32(gain * rng.uniform(0.92, 1.08))  # auto-exposure overshoot varies
        spill = np.maximum(raw - 1, 0).sum(axis=2)  # charge beyond full well spills into neighbours
        raw += (np.float32(0.25) * cv2.GaussianBlur(spill, (0, 0), 4 * w / 960 + 0.5))[..., None]
        # extended Reinhard: highlights roll off into white instead of clipping at once
        return _srgb(raw * (1 + raw / white) / (1 + raw))
    return apply


def _dct_matrix(n: int = 8) -> np.ndarray:
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    d = np.sqrt(2 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    d[0] /= np.sqrt(2)
    return d.astype(np.float32)


_DCT = _dct_matrix()
# BT.601 full range, as a link codec's colour transform
_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)
_RGB = np.linalg.inv(_YCC).astype(np.float32)


def _quantise(plane: np.ndarray, step: float, ox: int, oy: int) -> np.ndarray:
    """8x8 DCT blocks on a grid shifted by (ox, oy), every coefficient on one flat step."""
    h, w = plane.shape
    ph, pw = -(-(h + oy) // 8) * 8, -(-(w + ox) // 8) * 8
    padded = cv2.copyMakeBorder(plane, oy, ph - h - oy, ox, pw - w - ox, cv2.BORDER_REFLECT)
    blocks = padded.reshape(ph // 8, 8, pw // 8, 8).transpose(0, 2, 1, 3)
    coef = _DCT @ blocks @ _DCT.T
    coef = np.round(coef / np.float32(step)) * np.float32(step)
    back = (_DCT.T @ coef @ _DCT).transpose(0, 2, 1, 3).reshape(ph, pw)
    return back[oy:oy + h, ox:ox + w]


def _jpeg(severity: int) -> Apply:
    scale = (1.0, 0.9, 0.75, 0.6, 0.5)[severity - 1]  # the link's resolution under its bandwidth
    step = (16, 26, 40, 58, 85)[severity - 1]  # luma quantiser step (0-255 scale, orthonormal DCT)

    def apply(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        q = step * rng.uniform(0.85, 1.15)  # rate control moves the step frame to frame
        ox, oy = (int(v) for v in rng.integers(0, 8, 2))
        size = (max(8, round(w * scale)), max(8, round(h * scale)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1 else image
        ycc = small.astype(np.float32) @ _YCC.T
        y = _quantise(np.ascontiguousarray(ycc[..., 0]), q, ox, oy)
        half = ((size[0] + 1) // 2, (size[1] + 1) // 2)
        chroma = [cv2.resize(_quantise(cv2.resize(np.ascontiguousarray(ycc[..., c]), half,
                                                  interpolation=cv2.INTER_AREA), 1.6 * q, ox // 2, oy // 2),
                             size, interpolation=cv2.INTER_LINEAR) for c in (1, 2)]
        rgb = np.stack([y, *chroma], -1) @ _RGB.T
        if scale < 1:
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
        return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    return apply


DIRT_BLOBS = (2, 4, 6, 9, 13)


def _dirt_alpha(h: int, w: int, blobs: int, rng: np.random.Generator) -> np.ndarray:
    """The dirt's opacity, 0 .. 0.7: each blob a few overlapping ellipses (a ragged outline),
    blurred soft and scaled to its own peak opacity 0.3-0.7. All of the largest severity's
    blobs are drawn, the first `blobs` kept: a higher severity adds blobs to the same ones."""
    s = w / 960
    alpha = np.zeros((h, w), np.float32)
    for k in range(DIRT_BLOBS[-1]):
        x, y, r, peak = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(25, 70) * s, rng.uniform(0.3, 0.7)
        lobes = rng.uniform(-0.6, 0.6, (4, 2)) * r, rng.uniform(0.4, 0.9, (4, 2)) * r, rng.uniform(0, 180, 4)
        if k >= blobs:
            continue
        half = math.ceil(2.6 * r) + 2
        canvas = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
        for (ox, oy), (ax, ay), ang in zip(*lobes):
            cv2.ellipse(canvas, (half + int(ox), half + int(oy)), (max(1, int(ax)), max(1, int(ay))), float(ang),
                        0, 360, (1.0,), -1)
        blurred = cv2.GaussianBlur(canvas, (0, 0), 0.35 * r + 0.5)  # out of focus on the lens: soft edges
        soft = np.asarray(blurred, np.float32) * np.float32(peak / max(float(blurred.max()), 1e-6))
        x0, y0 = int(x) - half, int(y) - half
        cy0, cx0 = max(0, -y0), max(0, -x0)
        cy1, cx1 = min(soft.shape[0], h - y0), min(soft.shape[1], w - x0)
        if cy1 > cy0 and cx1 > cx0:
            window = alpha[y0 + cy0:y0 + cy1, x0 + cx0:x0 + cx1]
            np.maximum(window, soft[cy0:cy1, cx0:cx1], out=window)
    return alpha


def _lens_dirt(severity: int) -> Apply:
    blobs = DIRT_BLOBS[severity - 1]

    def apply(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        dust = _colour((58, 50, 42)) * np.float32(rng.uniform(0.7, 1.3))  # what little light the dirt scatters
        alpha = _dirt_alpha(h, w, blobs, rng)[..., None]
        return _srgb(_linear(image) * (1 - alpha) + dust.astype(np.float32) * alpha)
    return apply


FROZEN_HOLDS = ((2, 3), (2, 4), (3, 6), (4, 8), (6, 10))  # copies of a stalled frame, drawn per stall
FROZEN_QUALITY = (80, 95)  # the transport's JPEG quality, drawn per frame sent


def _jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise RuntimeError("OpenCV could not decode its own JPEG")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _frozen_stream(frames: Iterable[Any], severity: int, seed: int,
                   image: Callable[[Any], np.ndarray]) -> Iterator[tuple[Any, np.ndarray, bool]]:
    lo, hi = FROZEN_HOLDS[severity - 1]
    kind = list(CORRUPTIONS).index("frozen")
    held: np.ndarray | None = None
    left = 0
    for i, frame in enumerate(frames):
        rng = np.random.default_rng([seed, _SALT, kind, i])
        quality, hold = int(rng.integers(FROZEN_QUALITY[0], FROZEN_QUALITY[1] + 1)), rng.uniform()
        repeat = left > 0
        if not repeat:
            held, left = image(frame), lo + int(hold * (hi - lo + 1))
        left -= 1
        assert held is not None
        yield frame, _jpeg_roundtrip(np.ascontiguousarray(held), quality), repeat


CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in [
    Corruption("haze", "dust in the air, haze", "Koschmieder haze over a ground plane, visibility 4, 2.2, 1.3, "
               "0.85, 0.6 x the sky's distance, patchy, blue-grey to ochre airlight", _haze, "hazy"),
    Corruption("glare", "sun glare into a low sun", "veiling glare 2, 5, 9, 14, 20% of white, a Moffat halo "
               "(core 40-90 px) peaking at 3-16x white, a streak and 4 ghosts", _glare, "glare"),
    Corruption("motion_blur", "motion blur on rough ground", "camera shake, a random-walk path 4, 8, 13, 19, 27 px "
               "across, in linear light", _motion_blur, "blurred"),
    Corruption("defocus", "defocus, a soft lens", "a 5-9 blade iris, radius 1.5, 3, 4.5, 6.5, 9 px, 10% glow, "
               "in linear light", _defocus, "blurred"),
    Corruption("noise", "sensor noise (low light, heat)", "shot noise at 200, 70, 38, 24, 16 electrons at white, "
               "read noise 2.5 e-, row banding", _noise, None),
    Corruption("dark", "under-exposure, dusk", "light x0.5, 0.3, 0.17, 0.09, 0.045, warm to blue, cos^4 "
               "vignetting, low-light shot noise", _dark, "dark"),
    Corruption("over_exposure", "over-exposure", "gain x1.8, 2.6, 3.8, 5.5, 8 into a highlight shoulder, "
               "blooming", _over_exposure, "over_exposed"),
    Corruption("jpeg", "JPEG artifacts over a radio link", "a block-DCT codec at scale 1, 0.9, 0.75, 0.6, 0.5, "
               "flat step 16, 26, 40, 58, 85, chroma 4:2:0", _jpeg, None),
    Corruption("lens_dirt", "dirt or mud spots on the lens", "2, 4, 6, 9, 13 translucent soft dust blobs "
               "(opacity 0.3-0.7), the same on every frame", _lens_dirt, "occluded", static=True),
    Corruption("frozen", "a frozen driver repeating one frame", "stalls of 2-3, 2-4, 3-6, 4-8, 6-10 copies, "
               "re-sent as JPEG quality 80-95 (near, not bit, identical)", lambda s: None, "frozen"),
]}


def corrupt_stream(frames: Iterable[Any], name: str, severity: int, seed: int = 0,
                   image: Callable[[Any], np.ndarray] = lambda f: f.image) -> Iterator[tuple[Any, np.ndarray, bool]]:
    """As corruptions.corrupt_stream, with this module's renderings: (frame, its corrupted RGB
    image, whether that image repeats an earlier one) for each frame; the frame is untouched."""
    c = check_corruption(CORRUPTIONS, name, severity)
    if name == "frozen":
        yield from _frozen_stream(frames, severity, seed, image)
        return
    apply = c.make(severity)
    for i, frame in enumerate(frames):
        # no severity in the key: one frame's draws are the same at every severity
        key = [seed, _SALT, list(CORRUPTIONS).index(name)] + ([] if c.static else [i])
        yield frame, apply(np.ascontiguousarray(image(frame)), np.random.default_rng(key)), False


def corruption_set(renderings: str) -> tuple[dict[str, Corruption], Stream]:
    """The registry and stream of a set of renderings: "tuning" (corruptions.py, what the
    camera checks were tuned on) or "held_out" (this module)."""
    if renderings == "tuning":
        return tuning.CORRUPTIONS, tuning.corrupt_stream
    if renderings == "held_out":
        return CORRUPTIONS, corrupt_stream
    raise ValueError(f"renderings must be one of {', '.join(RENDERINGS)}, got {renderings!r}")
