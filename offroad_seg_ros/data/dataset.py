"""The Duality dataset layout: find splits, pair images with masks, read files.

Layout: `<root>/<split>/Color_Images/*.png` and `<root>/<split>/Segmentation/*.png`
(uint16, raw class IDs). The organisers' zips add a folder level
(`Offroad_Segmentation_Training_Dataset/train`, `.../val`) and ship the test
split in its own folder, sometimes without masks. Images and masks are paired
by file stem, never by sorted position.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from offroad_seg_ros.core.fsutil import write_atomic
from offroad_seg_ros.data.image_msgs import MAX_PIXELS, ImageConversionError, check_pixels, compressed_dimensions

IMAGE_DIR = "Color_Images"
MASK_DIR = "Segmentation"
# Generated evaluation splits with novel objects only (docs/generator.md): uint8 PNGs beside
# the masks, one of these values a pixel.
NOVELTY_DIR = "Novelty"
NOT_NOVEL, NOVEL, PASTED, NOVELTY_IGNORE = 0, 1, 2, 255
IMAGE_EXTS = (".png", ".jpg", ".jpeg")
MASK_EXTS = (".png", ".tif", ".tiff")
SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """A dataset folder does not have the expected layout or content."""


@dataclass(frozen=True)
class Sample:
    stem: str
    image: Path
    mask: Path | None


def find_split(root: str | Path, split: str) -> Path:
    """Directory holding `Color_Images` for `split` under `root`.

    `root` may also be the split directory itself.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder does not exist: {root}")
    if (root / IMAGE_DIR).is_dir() and (root.name == split or split == ""):
        return root
    candidates = [root / split, *sorted(root.glob(f"*/{split}"))]
    if split == "test":
        candidates += sorted(p for p in root.glob("*test*") if p.is_dir())
    for cand in candidates:
        if (cand / IMAGE_DIR).is_dir():
            return cand
    raise DatasetError(
        f"no '{split}' split under {root}: expected {root}/{split}/{IMAGE_DIR}/ "
        f"(or the organisers' zip layout, e.g. {root}/Offroad_Segmentation_Training_Dataset/{split}/)"
    )


def split_folder(data: str | Path, split: str) -> Path:
    """`data` itself when it is a split folder (holding `Color_Images`, whatever its name), else
    `split` under it: the tools that take "a dataset root or a split folder"."""
    data = Path(data)
    return data if (data / IMAGE_DIR).is_dir() else find_split(data, split)


def available_splits(root: str | Path) -> dict[str, Path]:
    found = {}
    for split in SPLITS:
        try:
            found[split] = find_split(root, split)
        except DatasetError:
            pass
    return found


def _list(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    if not folder.is_dir():
        return files
    dupes = []
    for entry in os.scandir(folder):
        path = Path(entry.path)
        if entry.is_file() and path.suffix.lower() in exts:
            if path.stem in files:
                dupes.append(path.stem)
            files[path.stem] = path
    if dupes:
        raise DatasetError(f"{folder}: several files share the stem(s) {_names(dupes)}")
    return files


def _names(stems: list[str], first: int = 5) -> str:
    stems = sorted(stems)
    shown = ", ".join(stems[:first])
    return f"{shown} (+{len(stems) - first} more, {len(stems)} in all)" if len(stems) > first else shown


def pairing_problems(split_dir: Path) -> tuple[list[Sample], list[str]]:
    """Pair images with masks by stem; returns the samples and any problems.

    A split without a Segmentation folder is an image-only split (samples have
    `mask=None`, no problem reported).
    """
    images = _list(split_dir / IMAGE_DIR, IMAGE_EXTS)
    problems = []
    if not images:
        problems.append(f"{split_dir / IMAGE_DIR}: no images ({'/'.join(IMAGE_EXTS)})")
    if not (split_dir / MASK_DIR).is_dir():
        return [Sample(s, images[s], None) for s in sorted(images)], problems
    masks = _list(split_dir / MASK_DIR, MASK_EXTS)
    no_mask = sorted(set(images) - set(masks))
    no_image = sorted(set(masks) - set(images))
    if no_mask:
        problems.append(f"{split_dir}: {len(no_mask)} image(s) without a mask: {_names(no_mask)}")
    if no_image:
        problems.append(f"{split_dir}: {len(no_image)} mask(s) without an image: {_names(no_image)}")
    samples = [Sample(s, images[s], masks[s]) for s in sorted(set(images) & set(masks))]
    return samples, problems


def list_samples(split_dir: str | Path, require_masks: bool = True) -> list[Sample]:
    """Paired samples of a split directory; raises DatasetError on any problem."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():  # named as such, not as an empty Color_Images/ inside it
        raise DatasetError(f"split folder {split_dir} {'is not a folder' if split_dir.exists() else 'does not exist'}")
    samples, problems = pairing_problems(split_dir)
    if require_masks and samples and samples[0].mask is None:
        problems.append(f"{split_dir}: no {MASK_DIR}/ folder, but masks are required here")
    if problems:
        raise DatasetError("; ".join(problems))
    return samples


def _read_file(path: str | Path, flags: int, what: str) -> np.ndarray:
    """Decode an image file whose header has been checked first: a file that
    claims more than MAX_PIXELS (a decompression bomb), is corrupt or is not
    JPEG / PNG is a DatasetError naming it, before anything large is allocated."""
    try:
        buf = np.fromfile(str(path), np.uint8)
    except OSError as exc:
        raise DatasetError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        kind, width, height = compressed_dimensions(buf)
        check_pixels(width, height, MAX_PIXELS, f"{kind} header")
        img = cv2.imdecode(buf, flags)
    except (ImageConversionError, cv2.error) as exc:
        raise DatasetError(f"cannot read {what} {path}: {exc}") from None
    if img is None:
        raise DatasetError(f"cannot read {what} {path} (truncated or not an image)")
    return img


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 (H, W, 3)."""
    return cv2.cvtColor(_read_file(path, cv2.IMREAD_COLOR, "image"), cv2.COLOR_BGR2RGB)


def read_raw_mask(path: str | Path) -> np.ndarray:
    """uint16 (H, W) raw class IDs, read unchanged. 8-bit or colour masks are errors."""
    mask = _read_file(path, cv2.IMREAD_UNCHANGED, "mask")
    if mask.ndim != 2:
        raise DatasetError(
            f"mask {path} has {mask.shape[2]} channels; expected a single-channel uint16 "
            "mask of raw class IDs (is this a colourised preview?)"
        )
    if mask.dtype != np.uint16:
        raise DatasetError(
            f"mask {path} is {mask.dtype}; expected uint16 raw class IDs (100, 200, ... 10000). "
            "An 8-bit mask cannot hold the Duality IDs."
        )
    return mask


def read_novelty_mask(path: str | Path) -> np.ndarray:
    """uint8 (H, W) novelty mask: NOVEL (1) a pixel of an object no class covers, NOT_NOVEL (0),
    PASTED (2) an ordinary pixel pasted from another frame (not novel: a control), NOVELTY_IGNORE
    (255) not scored (the edge band of a novel object)."""
    mask = _read_file(path, cv2.IMREAD_UNCHANGED, "novelty mask")
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise DatasetError(f"novelty mask {path} is {mask.dtype}, shape {mask.shape}; expected single-channel uint8")
    bad = np.setdiff1d(np.unique(mask), [NOT_NOVEL, NOVEL, PASTED, NOVELTY_IGNORE])
    if bad.size:
        raise DatasetError(f"novelty mask {path} holds value(s) {bad.tolist()}; expected 0, 1, 2 or 255")
    return mask


def write_png_atomic(path: str | Path, array: np.ndarray, rgb: bool = True) -> None:
    """Write a PNG via a temporary name so a crash never leaves a partial file."""
    path = Path(path)
    data = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if rgb and array.ndim == 3 else array
    ok, buf = cv2.imencode(".png", data)
    if not ok:
        raise OSError(f"cannot encode PNG for {path}")
    write_atomic(path, buf.tobytes())
