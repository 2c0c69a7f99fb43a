"""`offroad-seg calibrate` (and `export --calibrate`): the confidence's
temperature, fitted on a validation split.

One scalar T divides the logits before the softmax (Guo et al. 2017: the
simplest calibration that works for modern networks; the class map is
unchanged). T minimises the negative log-likelihood of the ground truth over
validation pixels, taken at the network's scale exactly as the Segmenter
sees them (its Preprocess), every `stride`-th pixel in each direction. It is
recorded in the artifact (model.json's `calibration` section), where every
backend reads it, with the NLL and ECE before and after on the same pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from offroad_seg_ros.core.artifact import Artifact, load_artifact, update_artifact
from offroad_seg_ros.core.calibration import CalibrationAccumulator
from offroad_seg_ros.core.classes import IGNORE_INDEX
from offroad_seg_ros.core.preprocess import predict_labels
from offroad_seg_ros.data.dataset import DatasetError, list_samples, read_image, read_raw_mask, split_folder

T_RANGE = (0.05, 20.0)  # beyond: a network no better than chance (T -> inf), or a broken fit


def fit_temperature(logits: torch.Tensor, target: torch.Tensor) -> float:
    """The T in T_RANGE minimising cross_entropy(logits / T, target); logits (N, C),
    target (N,). The NLL is convex in 1 / T, so where the optimum lies outside
    the range the nearer bound is the best T within it."""
    log_t = torch.zeros((), requires_grad=True)  # optimise log T: T stays positive
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), target)
        loss.backward()
        return loss

    opt.step(closure)
    return float(min(max(float(log_t.detach().exp()), T_RANGE[0]), T_RANGE[1]))


def validation_logits(artifact: Artifact, model: torch.nn.Module, data: str | Path, split: str = "val",
                      frames: int = 32, stride: int = 2,
                      progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(logits (N, C), target (N,), frames used) of validation pixels, ignore pixels left out;
    `model` is the artifact's network, in eval mode."""
    folder = split_folder(data, split)
    samples = list_samples(folder)
    if not samples:
        raise DatasetError(f"no image / mask pairs in {folder}")
    samples = samples[::max(1, len(samples) // frames)][:frames]  # spread over the split
    all_logits, all_target = [], []
    with torch.inference_mode():
        for done, s in enumerate(samples, 1):
            assert s.mask is not None  # list_samples pairs every image with its mask
            image = torch.from_numpy(read_image(s.image))[None]
            _, logits = predict_labels(model, artifact.preprocess, image)
            h, w = logits.shape[-2:]
            gt = artifact.classes.remap(read_raw_mask(s.mask), source=str(s.mask))
            gt = cv2.resize(gt, (w, h), interpolation=cv2.INTER_NEAREST)[::stride, ::stride]
            flat = logits[0, :, ::stride, ::stride].float().reshape(logits.shape[1], -1).T
            keep = torch.from_numpy(gt.reshape(-1) != IGNORE_INDEX)
            all_logits.append(flat[keep])
            all_target.append(torch.from_numpy(gt.reshape(-1).astype(np.int64))[keep])
            if progress:
                progress(done, len(samples))
    return torch.cat(all_logits), torch.cat(all_target), len(samples)


def _scores(logits: torch.Tensor, target: torch.Tensor, temperature: float) -> dict[str, float]:
    scaled = logits / temperature
    prob = scaled.softmax(1)
    conf, pred = prob.max(1)
    acc = CalibrationAccumulator()
    level = (conf * 255).round().to(torch.uint8).numpy()
    acc.update(level, pred.numpy(), target.numpy())
    return {"nll": float(F.cross_entropy(scaled, target)), "ece": acc.ece()}


def fit_model_temperature(artifact: Artifact, model: torch.nn.Module, data: str | Path, split: str = "val",
                          frames: int = 32, stride: int = 2, stage: Callable[[str], None] | None = None,
                          progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Fit T for `model` (in memory, eval mode) on `split` of `data`: the record for the
    artifact's `calibration` section (T and how it was fitted). `stage(what)` is told each step
    as it begins, `progress(done, total)` each frame the network has run on."""
    stage = stage or (lambda _: None)
    stage(f"running the network on up to {frames} {split} frames of {data}")
    logits, target, used = validation_logits(artifact, model, data, split, frames, stride, progress)
    if not len(target):
        raise DatasetError(f"{data}: the {split} frames hold no labelled pixel to calibrate on")
    stage(f"fitting the temperature on {len(target):,} pixels of {used} frames")
    temperature = fit_temperature(logits, target)
    before, after = _scores(logits, target, 1.0), _scores(logits, target, temperature)
    return {"temperature": temperature, "method": "temperature scaling, NLL (LBFGS)", "split": split,
            "frames": used, "pixels": int(len(target)), "pixel_stride": stride,
            "nll_before": before["nll"], "nll_after": after["nll"],
            "ece_before": before["ece"], "ece_after": after["ece"]}


def fit_artifact_temperature(artifact: str | Path, data: str | Path, split: str = "val", frames: int = 32,
                             stride: int = 2, stage: Callable[[str], None] | None = None,
                             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Fit T for an existing artifact on `split` of `data` and record it in the artifact."""
    stage = stage or (lambda _: None)
    stage(f"loading the model {artifact}")
    art, model = load_artifact(artifact)
    record = fit_model_temperature(art, model, data, split, frames, stride, stage, progress)
    update_artifact(artifact, calibration=record)
    return record
