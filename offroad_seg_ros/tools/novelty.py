"""`offroad-seg novelty` (and the demo's export): fit the novelty score's statistics and store
them in the artifact, with the thresholds the node's parameters name.

The scores (inference/novelty_net.py, chosen in docs/trust.md): the Mahalanobis distance of the
features feeding the segmentation head to the nearest class mean, under class means and one
shared covariance fitted on the labelled pixels of `fit_split`, and, per pixel, the outlier
head's logit where the artifact has one (trained by offroad_seg_train/outlier_head.py, which
hands it to `fit_novelty`; a refit keeps the stored head). The node's `novel_threshold` and
`shift_threshold` are quantile levels, so the thresholds are the scores' quantiles on another
split (`split`, ordinary in-distribution frames): per pixel for `novel_threshold` (its
false-alarm rate on such pixels is 1 - the level) and per frame (the frame's mean density, the
shift score) for `shift_threshold`. A model.onnx is re-exported with the score as its second
output, so that onnxruntime and OpenVINO compute it; an int8 model made before is then stale and
is re-quantized when the data has the frames (else removed from the record).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offroad_seg_ros.core.artifact import ONNX, Artifact, load_artifact, save_novelty
from offroad_seg_ros.core.preprocess import Preprocess
from offroad_seg_ros.data.dataset import list_samples, read_image, read_raw_mask, split_folder
from offroad_seg_ros.inference.novelty_net import PIXEL, SHIFT, NoveltyNet, OutlierHead, head_tensors, outlier_head_of
from offroad_seg_ros.inference.novelty_scores import (
    HORIZON_MARGIN,
    FeatureDensity,
    FeatureDensityFit,
    labels_on_feature_grid,
    run_network,
)

# Quantile levels recorded; a threshold parameter between two of them is interpolated.
LEVELS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999, 1.0)
MIN_CELLS = 20  # feature vectors a class needs to get a mean (as in bench/novelty_study.py)
PIXEL_STRIDE = 4  # every 4th pixel in each direction makes the pixel quantiles (neighbours are alike)


def _frames(data: str | Path, split: str, frames: int) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
    """Up to `frames` (image (1, H, W, 3) uint8, raw mask) of a split, spread over it."""
    samples = list_samples(split_folder(data, split))
    if not samples:
        raise ValueError(f"{split_folder(data, split)} has no frames to fit the novelty statistics on")
    for i in np.unique(np.linspace(0, len(samples) - 1, min(frames, len(samples))).round().astype(int)):
        s = samples[i]
        assert s.mask is not None  # list_samples pairs every image with its mask
        yield torch.from_numpy(read_image(s.image))[None], read_raw_mask(s.mask)


def fit_density(art: Artifact, net: torch.nn.Module, data: str | Path, split: str, frames: int,
                rank: int = 0, progress: Callable[[int, int], None] | None = None) -> tuple[FeatureDensity, int]:
    """The feature density of the labelled pixels of up to `frames` frames of `split`, and the frame count."""
    fit, n = None, 0
    for image, raw in _frames(data, split, frames):
        out = run_network(net, art.preprocess, image)
        grid = labels_on_feature_grid(torch.from_numpy(art.classes.remap(raw, ignore_unknown=True))[None], out)
        fit = fit or FeatureDensityFit(len(art.classes), out.features.shape[1])
        fit.update(out.features, grid)
        n += 1
        if progress:
            progress(n, frames)
    assert fit is not None
    return fit.finish(rank, MIN_CELLS), n


def frame_scores(net: NoveltyNet, pre: Preprocess, image: torch.Tensor) -> torch.Tensor:
    """(B, 2, h, w) novelty scores at model scale, padding cropped: what every backend computes."""
    with torch.no_grad():
        _, score = net(pre(image))
    return pre.crop(score, image.shape[1], image.shape[2])


def quantiles(values: np.ndarray) -> dict[str, list[float]]:
    return {"levels": list(LEVELS), "values": [float(v) for v in np.quantile(values, LEVELS)]}


def fit_novelty(artifact: str | Path, data: str | Path, fit_split: str = "train", split: str = "val",
                fit_frames: int = 64, frames: int = 32, rank: int = 0, onnx: bool | None = None,
                outlier_head: tuple[OutlierHead, dict[str, Any]] | None = None,
                stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit, record and store the novelty statistics of `artifact` (see the module's text);
    onnx: write model.onnx with the scores (None: where the artifact has one); outlier_head: a
    newly trained head and its record (None: keep the stored one, if any). Returns the record."""
    stage = stage or (lambda _: None)
    art, net = load_artifact(artifact)
    head, head_record = outlier_head or (outlier_head_of(art), (art.novelty or {}).get("outlier_head"))
    stage(f"fitting the feature density on up to {fit_frames} frames of {fit_split} in {data}")
    density, fitted = fit_density(art, net, data, fit_split, fit_frames, rank)
    scored = NoveltyNet(net, density, head).eval()
    stage(f"scoring up to {frames} frames of {split} for the thresholds")
    pixels, means = [], []
    for image, _ in _frames(data, split, frames):
        score = frame_scores(scored, art.preprocess, image)
        pixels.append(score[:, PIXEL, ::PIXEL_STRIDE, ::PIXEL_STRIDE].reshape(-1).numpy())
        means.append(float(score[:, SHIFT].mean()))
    record = {
        "method": "feature_density", "rank": density.rank, "dim": int(density.std.shape[0]),
        "pixel_score": "feature_density" if head is None else "outlier_head",
        "outlier_head": head_record if head is not None else None,
        "classes": [art.classes.names[int(c)] for c in density.classes],
        "fitted_on": {"data": str(data), "split": fit_split, "frames": fitted},
        "thresholds_from": {"data": str(data), "split": split, "frames": len(means)},
        "pixel_quantiles": quantiles(np.concatenate(pixels)),
        "frame_quantiles": quantiles(np.asarray(means)),
        "sky_cue_margin": HORIZON_MARGIN,
    }
    tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in density.to_dict().items()}
    tensors.update(head_tensors(head) if head is not None else {})
    save_novelty(artifact, tensors, record)
    if onnx if onnx is not None else art.onnx_path is not None:
        _export(Path(artifact), scored, art, data, split, stage)
    return record


def _export(path: Path, scored: NoveltyNet, art: Artifact, data: str | Path, split: str,
            stage: Callable[[str], None]) -> None:
    """model.onnx with the score (through a temporary name); an older int8 model re-quantized."""
    from offroad_seg_ros.core.artifact import INT8_XML, update_artifact
    from offroad_seg_ros.core.onnx_export import export_onnx

    stage(f"writing {path / ONNX} with the novelty score, checked against PyTorch")
    tmp = path / f".{ONNX}.tmp"
    try:
        export_onnx(scored, art.preprocess, tmp)
        tmp.replace(path / ONNX)
    finally:
        tmp.unlink(missing_ok=True)
    update_artifact(path, files={"onnx": ONNX})
    if (path / INT8_XML).is_file():
        from offroad_seg_ros.tools.quantize import quantize_artifact

        stage(f"re-quantizing {INT8_XML}: the network it was made from has a new output")
        quantize_artifact(path, data, split=split, stage=stage)
