"""The frames `offroad-seg adapt` learns from: the new place's unlabelled frames (a folder of
images or a bag's image topic), the labelled source frames replayed beside them, and the crops
the self-training step sees (one geometry, a weak view for the teacher and a strong one for the
student)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from offroad_seg_ros.core.classes import IGNORE_INDEX, ClassTable
from offroad_seg_ros.core.preprocess import Preprocess
from offroad_seg_ros.data.bag import PairingStats, is_bag, read_frames
from offroad_seg_ros.data.dataset import IMAGE_DIR, DatasetError, list_samples, read_image

from .augment import build_pipeline
from .data import load_pair

IMAGE_EXTS = (".png", ".jpg", ".jpeg")

# Photometric only, so the teacher's labels of the weak view stay aligned with the student's
# strong view: colour, contrast, blur and noise of the strength self-training methods use
# (DACS / DAFormer: colour jitter, blur), written as the project's albumentations config.
STRONG: list[dict[str, Any]] = [
    {"ColorJitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1, "p": 0.8}},
    {"ToGray": {"p": 0.1}},
    {"GaussianBlur": {"blur_limit": [3, 7], "sigma_limit": [0.1, 2.0], "p": 0.5}},
    {"GaussNoise": {"std_range": [0.01, 0.04], "p": 0.3}},
]


@dataclass
class TargetFrames:
    """The new place's frames at the model's input scale (uint8 RGB), their names (file names
    or header stamps) and stamps (ns; None for a folder), and a content hash of the frames as read."""

    images: list[np.ndarray]
    names: list[str]
    stamps: list[int] | None
    digest: str
    source: str
    full_size: tuple[int, int]  # (height, width) as recorded, before scaling


def _scaled(image: np.ndarray, pre: Preprocess) -> np.ndarray:
    h, w = pre.scaled_size(*image.shape[:2])
    if (h, w) == image.shape[:2]:
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def _folder_images(folder: Path) -> list[Path]:
    """A folder of images, or a dataset split (its Color_Images); labels, if any, are not read."""
    inner = folder / IMAGE_DIR
    root = inner if inner.is_dir() else folder
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise DatasetError(f"{folder}: no images ({', '.join(IMAGE_EXTS)}) to adapt on")
    return files


def read_target(source: str | Path, pre: Preprocess, image_topic: str | None = None,
                limit: int | None = None) -> TargetFrames:
    """Unlabelled frames of the new place, spread evenly over the recording when it holds more
    than `limit`; a bag needs `image_topic`."""
    source = Path(source)
    digest = hashlib.sha256()
    images: list[np.ndarray] = []
    names: list[str] = []
    stamps: list[int] | None = None
    full: tuple[int, int] | None = None
    if is_bag(source):
        if not image_topic:
            raise ValueError(f"{source} is a bag: name its camera topic with --image-topic")
        frames = list(read_frames(source, {"image": image_topic}, PairingStats()))
        if not frames:
            raise DatasetError(f"bag {source} holds no readable frame on {image_topic}")
        frames = _spread(frames, limit)
        stamps = [f.stamp for f in frames]
        for f in frames:
            assert f.image is not None
            full = full or (f.image.shape[0], f.image.shape[1])
            digest.update(np.ascontiguousarray(f.image).tobytes())
            images.append(_scaled(f.image, pre))
            names.append(str(f.stamp))
    elif source.is_dir():
        for path in _spread(_folder_images(source), limit):
            image = read_image(path)
            full = full or (image.shape[0], image.shape[1])
            digest.update(image.tobytes())
            images.append(_scaled(image, pre))
            names.append(path.name)
    else:
        raise DatasetError(f"{source} is neither a bag nor a folder of images")
    assert full is not None
    return TargetFrames(images, names, stamps, digest.hexdigest(), str(source.resolve()), (full[0], full[1]))


def _spread(items: list, limit: int | None) -> list:
    if not limit or len(items) <= limit:
        return items
    idx = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in idx]


def read_source(split: str | Path, table: ClassTable, pre: Preprocess,
                limit: int | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Labelled frames (image, class-index mask) at the model's input scale, for replay."""
    samples = _spread(list_samples(split), limit)
    pairs = [load_pair(s, table) for s in samples]
    images = [_scaled(img, pre) for img, _ in pairs]
    masks = [cv2.resize(m, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
             for (_, m), img in zip(pairs, images)]
    return images, masks


class AdaptCrops(Dataset):
    """Endless random crops: (weak target, strong target, target footprint or label, source
    image, source mask), uint8 tensors. The weak view is a crop and flip; the strong view adds
    `STRONG` to the same crop. `aux` holds per target frame either a footprint mask (bool: ground
    driven over later) or, for the oracle recipe, the frame's labels; None: no aux."""

    def __init__(self, target: Sequence[np.ndarray], source: tuple[list[np.ndarray], list[np.ndarray]],
                 crop: int, steps: int, batch: int, aux: Sequence[np.ndarray] | None = None, seed: int = 0):
        if not target:
            raise ValueError("no target frames to adapt on")
        self.target, self.aux = list(target), aux
        self.source_images, self.source_masks = source
        self.crop, self.length, self.seed = crop, steps * batch, seed
        self.strong = build_pipeline(STRONG)

    def __len__(self) -> int:
        return self.length

    def _crop(self, rng: np.random.Generator, *arrays: np.ndarray, fill: Sequence[int]) -> list[np.ndarray]:
        h, w = arrays[0].shape[:2]
        c = self.crop
        pad_h, pad_w = max(0, c - h), max(0, c - w)
        if pad_h or pad_w:
            arrays = tuple(cv2.copyMakeBorder(a, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(f, f, f))
                           for a, f in zip(arrays, fill))
            h, w = arrays[0].shape[:2]
        y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        flip = rng.random() < 0.5
        out = [a[y:y + c, x:x + c] for a in arrays]
        return [np.ascontiguousarray(a[:, ::-1] if flip else a) for a in out]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        # One generator per item from (seed, index): the same crops in any worker layout.
        rng = np.random.default_rng([self.seed, i])
        self.strong.set_random_seed(int(rng.integers(2**31)))
        t = int(rng.integers(len(self.target)))
        aux = self.aux[t] if self.aux is not None else np.full(self.target[t].shape[:2], IGNORE_INDEX, np.uint8)
        weak, aux_crop = self._crop(rng, self.target[t], aux.astype(np.uint8), fill=(0, IGNORE_INDEX))
        strong = self.strong(image=weak)["image"]
        if self.source_images:
            s = int(rng.integers(len(self.source_images)))
            src, src_mask = self._crop(rng, self.source_images[s], self.source_masks[s], fill=(0, IGNORE_INDEX))
        else:
            src = np.zeros_like(weak)
            src_mask = np.full(weak.shape[:2], IGNORE_INDEX, np.uint8)
        return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in (weak, strong, aux_crop, src, src_mask))


def describe(target: TargetFrames) -> dict[str, Any]:
    """The provenance record of the data adapted on."""
    return {"source": target.source, "frames": len(target.images), "sha256": target.digest,
            "size": [target.full_size[1], target.full_size[0]]}


def pixel_statistics(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (0..255) over every pixel of `images`."""
    total = np.zeros(3)
    square = np.zeros(3)
    count = 0
    for image in images:
        px = image.reshape(-1, 3).astype(np.float64)
        total += px.sum(0)
        square += (px ** 2).sum(0)
        count += len(px)
    mean = total / max(count, 1)
    return mean, np.sqrt(np.maximum(square / max(count, 1) - mean ** 2, 1e-6))


def matched_preprocess(pre: Preprocess, source: tuple[np.ndarray, np.ndarray],
                       target: tuple[np.ndarray, np.ndarray]) -> Preprocess:
    """The input normalisation that gives the target's pixels the source's per-channel mean and
    spread: the network then sees the new place's colours where it learnt the old place's. Folded
    into the artifact's own mean / std, so every backend applies it with no new operation:
    ((x - mu_t) * sd_s / sd_t + mu_s) / 255 normalised by (m, s) equals (x / 255 - m') / s'."""
    (mu_s, sd_s), (mu_t, sd_t) = source, target
    m, s = np.asarray(pre.mean), np.asarray(pre.std)
    ratio = sd_t / sd_s
    mean = mu_t / 255 - (mu_s / 255 - m) * ratio
    return replace(pre, mean=tuple(float(v) for v in mean),  # type: ignore[arg-type]
                   std=tuple(float(v) for v in s * ratio))  # type: ignore[arg-type]
