"""The desert's usual camera failures, as seeded image corruptions at severities 1-5.

Each corruption is a fixed transform per severity (no random range: severity
s always means the same strength), drawn from a seed, the corruption, the
severity and the frame's index, so a run is the same for a seed whatever
order frames come in. Where albumentations has the transform it is used;
two are written here because albumentations' take a different physical
model (see their comments). `lens_dirt` keeps the same spots on every frame
(dirt stays on the lens), and `frozen` corrupts the stream, not the image:
the driver repeats a frame instead of delivering the next ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

SEVERITIES = (1, 2, 3, 4, 5)
MIDDLE = 3


@dataclass(frozen=True)
class Corruption:
    name: str
    what: str  # the failure it stands for
    scale: str  # what the severity changes, at 1 .. 5
    make: Callable[[int], Any]  # severity -> a transform of an RGB uint8 image (seeded per call)
    check: str | None  # the camera check meant to catch it (checks.py), if any
    static: bool = False  # the same draw on every frame (lens dirt)


def _albu() -> Any:
    try:
        import albumentations as A
    except ImportError as exc:
        raise ImportError("the corruption set needs albumentations (the package's [train] extra)") from exc
    return A


def _blend(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """image x (1 - alpha) + colour x alpha, back to uint8 (alpha broadcasts over the channels)."""
    return (image * (1 - alpha) + colour * alpha).round().clip(0, 255).astype(np.uint8)


def _haze(severity: int) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    # Written here: albumentations' RandomFog draws white fog patches; airborne dust is a
    # veil of its own colour that thickens with distance (towards the horizon, higher up).
    density = (0.3, 0.45, 0.6, 0.72, 0.82)[severity - 1]

    def apply(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h = image.shape[0]
        dust = np.array([205, 185, 150], np.float32) * np.float32(rng.uniform(0.95, 1.05))
        a = density * np.linspace(1.0, 0.75, h, dtype=np.float32)[:, None, None]
        return _blend(image, dust, a)
    return apply


def _glare(severity: int) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    # Written here: albumentations' physics-based RandomSunFlare looks like this but takes
    # ~4 s a frame at 960x540; its overlay method draws only small flare circles.
    radius = (150, 250, 350, 450, 550)[severity - 1]

    def apply(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        r = radius * w / 960
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.05, 0.45) * h
        yy, xx = np.ogrid[:h, :w]
        d2 = ((xx - cx) ** 2 + (yy - cy) ** 2).astype(np.float32) / np.float32(r * r)
        a = np.clip(np.exp(-d2) * np.float32(0.95) + np.float32(0.15), 0, 1)[..., None]
        return _blend(image, np.array([255, 250, 235], np.float32), a)
    return apply


def _lens_dirt(severity: int) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    # Written here: albumentations' Spatter (mud) blends translucent splashes (70% of the
    # scene still shows through); mud on a lens is out of focus and nearly opaque.
    spots = (3, 5, 8, 12, 16)[severity - 1]

    def apply(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        alpha = np.zeros((h, w), np.float32)
        for _ in range(spots):
            x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(25, 70) * w / 960
            cv2.circle(alpha, (int(x), int(y)), int(r), (1.0,), -1)
        alpha = cv2.GaussianBlur(alpha, (0, 0), 6 * w / 960) * np.float32(0.95)
        mud = np.array([72, 58, 44], np.float32) * rng.uniform(0.8, 1.2, (h, w, 1)).astype(np.float32)
        return _blend(image, mud, alpha[..., None])
    return apply


def _exposure(gain: tuple[float, ...]) -> Callable[[int], Callable[[np.ndarray, np.random.Generator], np.ndarray]]:
    # Written here: exposure is a gain on the sensor's linear light, clipped at white;
    # albumentations' brightness shift is additive and its gamma changes the tone curve.
    def make(severity: int) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
        g = gain[severity - 1]

        def apply(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            linear = (image.astype(np.float32) / 255) ** 2.2 * g
            return (np.clip(linear, 0, 1) ** (1 / 2.2) * 255).round().astype(np.uint8)
        return apply
    return make


def _albu_transform(factory: Callable[[Any, int], Any]) -> Callable[[int], Any]:
    def make(severity: int) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
        A = _albu()
        transform = factory(A, severity)

        def apply(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            compose = A.Compose([transform], seed=int(rng.integers(0, 2**31 - 1)))
            return compose(image=image)["image"]
        return apply
    return make


CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in [
    Corruption("haze", "dust in the air, haze", "veil density 0.30, 0.45, 0.60, 0.72, 0.82 (x1 at the top, "
               "x0.75 at the bottom)", _haze, "hazy"),
    Corruption("glare", "sun glare into a low sun", "a sun in the upper half veiling the image around it, "
               "radius 150, 250, 350, 450, 550 px, 15% veil over the whole frame", _glare, "glare"),
    Corruption("motion_blur", "motion blur on rough ground", "albumentations MotionBlur, kernel 5, 9, 15, 21, 29 px",
               _albu_transform(lambda A, s: A.MotionBlur(blur_limit=((5, 9, 15, 21, 29)[s - 1],) * 2, p=1.0)),
               "blurred"),
    Corruption("defocus", "defocus, a soft lens", "albumentations Defocus, radius 2, 4, 6, 8, 10 px",
               _albu_transform(lambda A, s: A.Defocus(radius=((2, 4, 6, 8, 10)[s - 1],) * 2,
                                                      alias_blur=(0.1, 0.1), p=1.0)), "blurred"),
    Corruption("noise", "sensor noise (low light, heat)", "albumentations GaussNoise, std 0.04, 0.08, 0.12, "
               "0.18, 0.25 of full scale",
               _albu_transform(lambda A, s: A.GaussNoise(std_range=((0.04, 0.08, 0.12, 0.18, 0.25)[s - 1],) * 2,
                                                         p=1.0)), None),
    Corruption("dark", "under-exposure, dusk", "exposure x0.5, x0.3, x0.18, x0.1, x0.05 (linear light)",
               _exposure((0.5, 0.3, 0.18, 0.1, 0.05)), "dark"),
    Corruption("over_exposure", "over-exposure", "exposure x2, x3, x4.5, x6.5, x9 (linear light, clipped)",
               _exposure((2.0, 3.0, 4.5, 6.5, 9.0)), "over_exposed"),
    Corruption("jpeg", "JPEG artifacts over a radio link", "JPEG quality 30, 20, 12, 8, 5",
               _albu_transform(lambda A, s: A.ImageCompression(quality_range=((30, 20, 12, 8, 5)[s - 1],) * 2,
                                                               p=1.0)), None),
    Corruption("lens_dirt", "dirt or mud spots on the lens", "3, 5, 8, 12, 16 out-of-focus mud spots "
               "(radius 25-70 px), the same spots on every frame", _lens_dirt, "occluded", static=True),
    Corruption("frozen", "a frozen driver repeating one frame", "each frame repeated 2, 3, 4, 6, 8 times "
               "in place of the ones that follow", lambda s: None, "frozen"),
]}
FROZEN_REPEATS = (2, 3, 4, 6, 8)


def check_corruption(registry: Mapping[str, Any], name: str, severity: int) -> Any:
    """`registry[name]`, or a ValueError naming the unknown corruption or severity."""
    if name not in registry:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(registry)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    return registry[name]


def corrupt_stream(frames: Iterable[Any], name: str, severity: int, seed: int = 0,
                   image: Callable[[Any], np.ndarray] = lambda f: f.image) -> Iterator[tuple[Any, np.ndarray, bool]]:
    """(frame, its corrupted RGB image, whether that image repeats an earlier one) for
    each frame. The frame itself is untouched (its ground truth stays the truth)."""
    c = check_corruption(CORRUPTIONS, name, severity)
    if name == "frozen":
        repeats, held = FROZEN_REPEATS[severity - 1], None
        for i, frame in enumerate(frames):
            if i % repeats == 0:
                held = image(frame)
            assert held is not None
            yield frame, held, i % repeats != 0
        return
    apply = c.make(severity)
    for i, frame in enumerate(frames):
        key = [seed, list(CORRUPTIONS).index(name), severity] + ([] if c.static else [i])
        yield frame, apply(np.ascontiguousarray(image(frame)), np.random.default_rng(key)), False
