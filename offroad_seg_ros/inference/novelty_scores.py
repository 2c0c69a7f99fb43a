"""Candidate per-pixel novelty scores of a segmentation network in memory (torch, ROS-free).

A novelty score is higher where the pixel looks less like anything the model was trained on.
The candidates, compared by bench/novelty_study.py (results: bench/RESULTS.md, docs/trust.md):

- `max_softmax`: 1 - the max softmax (of the logits over a temperature): the confidence's complement;
- `max_logit`: minus the largest logit;
- `energy`: -T logsumexp(logits / T), the free energy of the logits;
- `FeatureDensity`: the decoder features that feed the segmentation head (read with a forward
  pre-hook, `HeadInput`; the network is not changed), one mean per class and one covariance
  shared by the classes (diagonal, optionally plus a low-rank part), fitted on ordinary labelled
  pixels; the score is the Mahalanobis distance to the nearest class mean;
- `sky_below_horizon`: a geometric cue to add to a score: Sky predicted well below the horizon.

The node uses `FeatureDensity` (inference/novelty_net.py puts it in the network's graph) and
`sky_below_horizon` (for an artifact without an outlier head); the rest are for comparison.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from offroad_seg_ros.core.classes import IGNORE_INDEX
from offroad_seg_ros.core.preprocess import Preprocess


def max_softmax(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(B, C, h, w) logits -> (B, h, w): 1 - max softmax(logits / temperature)."""
    return 1 - (logits.float() / temperature).softmax(1).amax(1)


def max_logit(logits: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) logits -> (B, h, w): minus the largest logit."""
    return -logits.float().amax(1)


def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(B, C, h, w) logits -> (B, h, w): -T logsumexp(logits / T)."""
    return -temperature * torch.logsumexp(logits.float() / temperature, 1)


@contextmanager
def head_input(model: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, each forward of `model` appends the input of its `segmentation_head`
    (smp's decoder output: (B, D, Hp / s, Wp / s), s the head's upsampling, 4 for FPN) to the
    yielded list."""
    head = getattr(model, "segmentation_head", None)
    if head is None:
        raise ValueError(f"{type(model).__name__} has no segmentation_head to read the features from")
    seen: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    try:
        yield seen
    finally:
        handle.remove()


@dataclass
class NetworkOutputs:
    logits: torch.Tensor  # (B, C, h, w) at model scale, padding cropped
    features: torch.Tensor  # (B, D, Hp / s, Wp / s): the head's input over the padded network input
    frame: tuple[int, int]  # (H, W) of the frames
    scaled: tuple[int, int]  # (h, w): the network input before padding
    padded: tuple[int, int]  # (Hp, Wp)


def run_network(model: torch.nn.Module, pre: Preprocess, images: torch.Tensor) -> NetworkOutputs:
    """uint8 (B, H, W, 3) RGB frames through the artifact's preprocessing and the network, without
    gradients, keeping the head's input."""
    height, width = images.shape[1:3]
    with torch.no_grad(), head_input(model) as seen:
        x = pre(images)
        logits = model(x)
    # Contiguous after the crop: reducing over the classes of the cropped (strided) view is
    # several times slower on the CPU.
    return NetworkOutputs(pre.crop(logits, height, width).contiguous(), seen[-1], (height, width),
                          pre.scaled_size(height, width), (x.shape[2], x.shape[3]))


def to_frame(score: torch.Tensor, out: NetworkOutputs) -> torch.Tensor:
    """A (B, h, w) score at model scale, or (B, h', w') on the feature grid of the padded input,
    -> (B, H, W) at the frames' size, bilinear."""
    s = score[:, None].float()
    if s.shape[-2:] != out.scaled:  # the feature grid: up to the padded input, then crop the padding
        s = F.interpolate(s, size=out.padded, mode="bilinear", align_corners=False)
        s = s[..., :out.scaled[0], :out.scaled[1]]
    if s.shape[-2:] != out.frame:
        s = F.interpolate(s, size=out.frame, mode="bilinear", align_corners=False)
    return s[:, 0]


def labels_on_feature_grid(labels: torch.Tensor, out: NetworkOutputs) -> torch.Tensor:
    """(B, H, W) uint8 class indices of the frames -> (B, h', w') on the feature grid: a cell's
    class where every pixel it covers has that class, IGNORE_INDEX where they differ (class
    boundaries mix features), lie in the padding or are ignored."""
    height, width = out.frame
    h, w = out.scaled
    lab = labels[:, None].float()
    if (h, w) != (height, width):
        lab = F.interpolate(lab, size=(h, w), mode="nearest")
    lab = F.pad(lab, (0, out.padded[1] - w, 0, out.padded[0] - h), value=IGNORE_INDEX)
    stride = out.padded[0] // out.features.shape[2]
    high = F.max_pool2d(lab, stride)
    low = -F.max_pool2d(-lab, stride)
    return torch.where(high == low, high, torch.full_like(high, IGNORE_INDEX))[:, 0].to(torch.uint8)


@dataclass
class FeatureDensity:
    """Class-conditional Gaussians over the head's input features with one shared covariance:
    per-feature standard deviations (`std`), and in the standardised features `rank` principal
    directions (`components`, their variances `component_var`) with one variance for the rest
    (`residual_var`; rank 0: the diagonal covariance alone). Classes with too few feature vectors
    are left out (`classes` lists the ones kept, `counts` their vectors)."""

    classes: np.ndarray  # (K,) class indices
    counts: np.ndarray  # (K,) feature vectors (grid cells) each was fitted on
    means: np.ndarray  # (K, D)
    std: np.ndarray  # (D,)
    components: np.ndarray  # (r, D), orthonormal rows, standardised units
    component_var: np.ndarray  # (r,)
    residual_var: float

    def to_dict(self) -> dict[str, np.ndarray]:
        """Arrays only (the residual variance as a 0-d array), as a tensor file stores them."""
        return {"classes": self.classes, "counts": self.counts, "means": self.means, "std": self.std,
                "components": self.components, "component_var": self.component_var,
                "residual_var": np.asarray(self.residual_var, np.float32)}

    @classmethod
    def from_dict(cls, d: dict[str, np.ndarray]) -> FeatureDensity:
        means = np.asarray(d["means"], np.float32)
        components = np.asarray(d["components"], np.float32).reshape(-1, means.shape[1])
        return cls(np.asarray(d["classes"], np.int64), np.asarray(d["counts"], np.int64), means,
                   np.asarray(d["std"], np.float32), components, np.asarray(d["component_var"], np.float32),
                   float(np.asarray(d["residual_var"])))

    @property
    def rank(self) -> int:
        return int(self.components.shape[0])

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) features -> (B, h, w): the Mahalanobis distance to the nearest class mean."""
        b, d, h, w = features.shape
        std = torch.from_numpy(self.std)
        # Centred on the means' mean first, so that the expansion below adds small numbers.
        centre = torch.from_numpy(self.means).mean(0)
        x = (features.float().permute(0, 2, 3, 1).reshape(-1, d) - centre) / std
        m = (torch.from_numpy(self.means) - centre) / std
        # |x - m|^2 expanded: one (N, D) x (D, K) product instead of an (N, K, D) difference.
        sq = ((x * x).sum(1, keepdim=True) - 2 * x @ m.T + (m * m).sum(1)).clamp_min(0) / self.residual_var
        if self.rank:
            u = torch.from_numpy(self.components)
            p = (x @ u.T)[:, None, :] - (m @ u.T)[None]  # (N, K, r): the offsets along the components
            weight = 1 / torch.from_numpy(self.component_var) - 1 / self.residual_var
            sq = (sq + (p * p * weight).sum(-1)).clamp_min(0)
        return sq.amin(1).sqrt().reshape(b, h, w)


class FeatureDensityFit:
    """Accumulates per-class sums and outer products of features over frames; `finish` makes
    the FeatureDensity. Memory: K x D x D numbers, whatever the frame count."""

    def __init__(self, num_classes: int, dim: int) -> None:
        self.count = np.zeros(num_classes, np.int64)
        self.sum = np.zeros((num_classes, dim))
        self.outer = np.zeros((num_classes, dim, dim))

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """(B, D, h, w) features and (B, h, w) class indices on the same grid (IGNORE_INDEX skipped)."""
        d = features.shape[1]
        x = features.detach().permute(0, 2, 3, 1).reshape(-1, d).double().numpy()
        lab = labels.reshape(-1).numpy()
        for c in np.unique(lab):
            if c == IGNORE_INDEX or c >= len(self.count):
                continue
            sel = x[lab == c]
            self.count[c] += len(sel)
            self.sum[c] += sel.sum(0)
            self.outer[c] += sel.T @ sel

    def finish(self, rank: int = 0, min_count: int = 100) -> FeatureDensity:
        """The density of the classes with at least `min_count` feature vectors, with `rank` components."""
        keep = np.flatnonzero(self.count >= min_count)
        dim = self.sum.shape[1]
        if not keep.size:
            raise ValueError(f"no class has {min_count} labelled feature vectors to fit on")
        if not 0 <= rank < dim:
            raise ValueError(f"rank must be in 0..{dim - 1}, got {rank}")
        n = self.count[keep]
        means = self.sum[keep] / n[:, None]
        scatter = (self.outer[keep] - n[:, None, None] * means[:, :, None] * means[:, None, :]).sum(0)
        cov = scatter / max(int(n.sum()) - len(keep), 1)  # pooled within-class covariance
        std = np.sqrt(np.diag(cov) + 1e-6)
        corr = cov / np.outer(std, std)
        var, vec = np.linalg.eigh(corr)  # ascending
        top = slice(dim - rank, dim)
        residual = (np.trace(corr) - var[top].sum()) / (dim - rank)
        return FeatureDensity(keep.astype(np.int64), n.astype(np.int64), means.astype(np.float32),
                              std.astype(np.float32), vec[:, top].T[::-1].astype(np.float32).copy(),
                              np.maximum(var[top][::-1], 1e-6).astype(np.float32), float(residual))


# A row within this share of the frame's height below the horizon row may still be sky: the
# skyline is not level (the generator's dunes lift and drop it by up to 30 px of 540,
# offroad_seg_train/synth.py render_scene; a camera's roll tilts it).
HORIZON_MARGIN = 0.06


def sky_below_horizon(labels: torch.Tensor, sky: int, margin: float = HORIZON_MARGIN) -> torch.Tensor:
    """(B, h, w) predicted classes -> (B, h, w) bool: pixels predicted `sky` more than `margin` x h
    rows below the horizon. The horizon row is the lowest row where Sky is most of the width; a
    frame without such a row (no sky in view) flags nothing. Sky cannot lie below the horizon,
    so something there that looks like sky (water mirroring it) is not what it seems."""
    is_sky = labels == sky
    rows = torch.arange(labels.shape[1], device=labels.device)
    majority = is_sky.float().mean(2) > 0.5  # (B, h)
    horizon = torch.where(majority, rows, torch.full_like(rows, -1)).amax(1)  # -1: none
    below = rows[None, :] > (horizon + margin * labels.shape[1])[:, None]
    below &= (horizon >= 0)[:, None]
    return is_sky & below[:, :, None]
