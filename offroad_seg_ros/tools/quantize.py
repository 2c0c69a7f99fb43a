"""`offroad-seg quantize`: an int8 model for CPU robots, calibrated on frames
prepared exactly as the Segmenter prepares them (its Preprocess: scale,
normalise, pad), so the calibration sees the activations the robot will."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from offroad_seg_ros.core.artifact import read_artifact
from offroad_seg_ros.data.dataset import DatasetError, find_split, list_samples, read_image
from offroad_seg_ros.inference.openvino_backend import quantize


def _inputs(root: str | Path, split: str, n: int, pre: Any) -> list[np.ndarray]:
    folder = Path(root) if (Path(root) / "Color_Images").is_dir() else find_split(root, split)
    samples = list_samples(folder, require_masks=False)
    if not samples:
        raise DatasetError(f"no images in {folder}")
    step = max(1, len(samples) // n)  # spread over the split
    chosen = samples[::step][:n]
    return [pre(torch.from_numpy(read_image(s.image))[None]).contiguous().numpy() for s in chosen]


def quantize_artifact(artifact: str | Path, data: str | Path, split: str = "val", frames: int = 32,
                      check_split: str = "test", check_frames: int = 8) -> dict[str, Any]:
    pre = read_artifact(artifact).preprocess
    calib = _inputs(data, split, frames, pre)
    try:
        check = _inputs(data, check_split, check_frames, pre)
    except DatasetError:
        check = calib[:check_frames]
    return quantize(artifact, calib, len(calib), split, check)
