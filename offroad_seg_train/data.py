"""Datasets and the Lightning DataModule for Duality-layout data.

Training samples come from a decode-once cache: every frame of a split is
decoded (and scaled to the model's inference scale) once into memory-mapped
uint8 arrays, so a worker reads a frame in well under a millisecond instead of
spending ~14 ms decoding two PNGs. Building the cache also validates every
mask against the class table, so bad data fails before the first step.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytorch_lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, get_worker_info

from offroad_seg_ros.core.classes import ClassTable
from offroad_seg_ros.data.dataset import DatasetError, Sample, find_split, list_samples, read_image, read_raw_mask

from .augment import build_pipeline, reference_pipeline


def load_pair(sample: Sample, table: ClassTable, scale: float = 1.0,
              ignore_unknown: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 frame and uint8 class-index mask, optionally rescaled."""
    image = read_image(sample.image)
    assert sample.mask is not None
    raw = read_raw_mask(sample.mask)
    if raw.shape != image.shape[:2]:
        raise DatasetError(
            f"{sample.mask.name}: mask is {raw.shape[1]}x{raw.shape[0]}, image is "
            f"{image.shape[1]}x{image.shape[0]}"
        )
    mask = table.remap(raw, ignore_unknown=ignore_unknown, source=str(sample.mask))
    if scale != 1.0:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    return image, mask


class FrameCache:
    """Memory-mapped uint8 arrays of a split's frames and masks.

    Keyed by the file list, sizes, mtimes, scale and class table; rebuilt when
    any of them changes. Safe to share between processes (every rank of a
    multi-GPU job, and every node on a shared filesystem): one process builds
    it under an exclusive file lock, into names unique to that process, and
    publishes it by renaming; the metadata file, written last, records the
    arrays' sizes, so a half-written or stale cache is detected and rebuilt,
    never used. The others wait on the lock and open the finished cache.
    """

    def __init__(self, samples: list[Sample], table: ClassTable, scale: float, cache_dir: Path,
                 ignore_unknown: bool = False, workers: int = 4):
        self.samples, self.table, self.scale = samples, table, scale
        key = hashlib.sha256(json.dumps([
            [str(s.image), os.path.getsize(s.image), os.path.getmtime(s.image),
             str(s.mask), os.path.getmtime(s.mask) if s.mask else 0] for s in samples
        ] + [scale, table.to_dict(), ignore_unknown]).encode()).hexdigest()[:16]
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.images_path = cache_dir / f"{key}.images.u8"
        self.masks_path = cache_dir / f"{key}.masks.u8"
        self.meta_path = cache_dir / f"{key}.json"
        if not self._complete():
            with open(cache_dir / f"{key}.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it: wait for it
                try:
                    if not self._complete():
                        self._build(ignore_unknown, workers)
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        self.shape = tuple(json.loads(self.meta_path.read_text())["shape"])
        self._images: np.memmap | None = None
        self._masks: np.memmap | None = None

    def _complete(self) -> bool:
        """The metadata is written last and names the arrays' byte sizes."""
        try:
            meta = json.loads(self.meta_path.read_text())
            return (os.path.getsize(self.images_path) == meta["images_bytes"]
                    and os.path.getsize(self.masks_path) == meta["masks_bytes"])
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def _build(self, ignore_unknown: bool, workers: int) -> None:
        self.meta_path.unlink(missing_ok=True)  # a stale or half-written cache is never used
        first = load_pair(self.samples[0], self.table, self.scale, ignore_unknown)
        n, (h, w) = len(self.samples), first[0].shape[:2]
        unique = f".{os.getpid()}.{socket.gethostname()}.tmp"  # never shared, even across nodes
        tmp_i, tmp_m = self.images_path.with_suffix(unique), self.masks_path.with_suffix(unique)
        images = np.lib.format.open_memmap(tmp_i, mode="w+", dtype=np.uint8, shape=(n, h, w, 3))
        masks = np.lib.format.open_memmap(tmp_m, mode="w+", dtype=np.uint8, shape=(n, h, w))

        def fill(i: int) -> None:
            image, mask = first if i == 0 else load_pair(self.samples[i], self.table, self.scale, ignore_unknown)
            if image.shape[:2] != (h, w):
                raise DatasetError(
                    f"{self.samples[i].image}: {image.shape[1]}x{image.shape[0]} differs from the "
                    f"split's {w}x{h}; frames of one split must share a resolution"
                )
            images[i], masks[i] = image, mask

        try:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(fill, range(n)))
            images.flush()
            masks.flush()
            os.replace(tmp_i, self.images_path)
            os.replace(tmp_m, self.masks_path)
        finally:
            tmp_i.unlink(missing_ok=True)
            tmp_m.unlink(missing_ok=True)
        meta = {"shape": [n, h, w], "images_bytes": os.path.getsize(self.images_path),
                "masks_bytes": os.path.getsize(self.masks_path)}
        tmp_meta = self.meta_path.with_suffix(unique)
        tmp_meta.write_text(json.dumps(meta))
        os.replace(tmp_meta, self.meta_path)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if self._images is None:  # opened lazily, once per worker process
            self._images = np.load(self.images_path, mmap_mode="r")
            self._masks = np.load(self.masks_path, mmap_mode="r")
        assert self._masks is not None
        return np.asarray(self._images[i]), np.asarray(self._masks[i])


class UnpaddedDistributedSampler(DistributedSampler):
    """Validation and test frames split over ranks without padding: rank r
    takes frames r, r + world, ... so every frame is scored exactly once and the
    summed confusion matrix equals a single process's. (torch's
    DistributedSampler pads the split to a multiple of the world size by
    repeating frames, which counts them twice.) Ranks may get a frame more or
    less; evaluation has no per-step collectives, so that is fine."""

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.num_replicas))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))  # type: ignore[arg-type]


class TrainDataset(Dataset):
    """Augmented crops: uint8 (H, W, 3) image and uint8 (H, W) mask tensors."""

    def __init__(self, frames: FrameCache, pipeline: list[dict[str, Any]]):
        self.frames = frames
        self.transform = build_pipeline(pipeline)
        self._seed: int | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def _reseed(self) -> None:
        """albumentations keeps its own random state, drawn from OS entropy
        unless seeded, so seed_everything alone left every run's augmentations
        different. Seed it from torch: a worker's seed (torch derives it from
        the seeded main process, per epoch and worker), or the main process's."""
        info = get_worker_info()
        seed = info.seed if info is not None else torch.initial_seed()
        if seed != self._seed:
            self.transform.set_random_seed(seed % 2**32)
            self._seed = seed

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        self._reseed()
        image, mask = self.frames[i]
        out = self.transform(image=image, mask=mask)
        return torch.from_numpy(np.ascontiguousarray(out["image"])), torch.from_numpy(
            np.ascontiguousarray(out["mask"])
        )


class EvalDataset(Dataset):
    """Full-resolution frames and masks, untouched: the model's `Preprocess`
    handles them exactly as the node does."""

    def __init__(self, samples: list[Sample], table: ClassTable, ignore_unknown: bool = False):
        self.samples, self.table, self.ignore_unknown = samples, table, ignore_unknown

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = load_pair(self.samples[i], self.table, 1.0, self.ignore_unknown)
        return torch.from_numpy(image), torch.from_numpy(mask)


class DualityDataModule(L.LightningDataModule):
    """Duality desert data (or the synthetic generator's output).

    Args:
        root: dataset folder holding the splits (see `offroad-seg check`).
        batch_size: training batch size (per device).
        val_batch_size: batch size for full-resolution validation / test frames.
        crop_size: training crop side in pixels (at the model's inference scale).
        augment: albumentations pipeline as config data; default: the reference recipe.
        scale: inference scale of the model (linked from `model.inference_scale`).
        classes: class table YAML (linked from `model.classes`).
        cache_dir: where decoded frames are memory-mapped (default ~/.cache/offroad_seg).
        ignore_unknown: map raw mask IDs missing from the class table to ignore
            instead of stopping with an error.
    """

    def __init__(
        self,
        root: str = "data",
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test",
        batch_size: int = 32,
        val_batch_size: int = 4,
        crop_size: int = 320,
        augment: list[dict[str, Any]] | None = None,
        num_workers: int = 8,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        drop_last: bool = True,
        scale: float = 1.0,
        classes: str | None = None,
        cache_dir: str | None = None,
        ignore_unknown: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.augment = augment if augment is not None else reference_pipeline(crop_size)
        self.table = ClassTable.from_yaml(classes)
        self.cache_dir = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "offroad_seg"
        self._train: TrainDataset | None = None
        self._eval: dict[str, Dataset] = {}
        # (width, height) of the train split's frames as stored, before `scale`: known once set up for
        # fit; the model records it, so the robot resizes other resolutions to it (core/preprocess.py).
        self.frame_size: tuple[int, int] | None = None

    @property
    def hp(self) -> Any:
        """The saved init arguments by name (Lightning's AttributeDict, which it
        types as a plain mapping)."""
        return self.hparams

    def _samples(self, split: str) -> list[Sample]:
        samples = list_samples(find_split(self.hp.root, split))
        if not samples:
            raise DatasetError(f"split '{split}' under {self.hp.root} is empty")
        return samples

    def check(self, stage: str) -> None:
        """Validate the splits a stage needs (called before the trainer starts)."""
        if stage == "fit":
            self.setup("fit")
        else:
            self._eval_set(self.hp.test_split if stage == "test" else self.hp.val_split)

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None) and self._train is None:
            samples = self._samples(self.hp.train_split)
            cache = FrameCache(samples, self.table, self.hp.scale, self.cache_dir, self.hp.ignore_unknown)
            # The cache holds scaled frames and checked that they share one size: the first frame's is the split's.
            height, width = read_image(samples[0].image).shape[:2]
            self.frame_size = (width, height)
            self._train = TrainDataset(cache, self.augment)
            self._eval_set(self.hp.val_split)

    def _eval_set(self, split: str) -> Dataset:
        if split not in self._eval:
            samples = self._samples(split)
            # Surface unknown IDs / size mismatches now, not mid-epoch.
            ds = EvalDataset(samples, self.table, self.hp.ignore_unknown)
            for i in range(len(ds)):
                ds[i]
            self._eval[split] = ds
        return self._eval[split]

    def _loader(self, ds: Dataset, batch: int, train: bool) -> DataLoader:
        workers = self.hp.num_workers
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        # Lightning leaves a DistributedSampler subclass in place (and would pad a plain one).
        sampler = UnpaddedDistributedSampler(ds) if distributed and not train else None
        return DataLoader(
            ds, batch_size=batch, shuffle=train and sampler is None, sampler=sampler,
            drop_last=train and self.hp.drop_last,
            num_workers=workers, pin_memory=self.hp.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.hp.persistent_workers and workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        assert self._train is not None
        if self.hp.drop_last and len(self._train) < self.hp.batch_size:
            raise DatasetError(
                f"train split has {len(self._train)} frames, fewer than batch_size "
                f"{self.hp.batch_size} with drop_last: no batch would be trained"
            )
        return self._loader(self._train, self.hp.batch_size, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._eval_set(self.hp.val_split), self.hp.val_batch_size, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._eval_set(self.hp.test_split), self.hp.val_batch_size, False)
