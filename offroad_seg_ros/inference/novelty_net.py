"""The novelty score inside the network's graph, so that every backend computes it alike.

The score is the class-conditional feature density of inference/novelty_scores.py (why this one:
docs/trust.md): the Mahalanobis distance of the features that feed the segmentation head to the
nearest class mean. `NoveltyNet` wraps an smp network so that its forward returns the logits and
the score, both at the logits' resolution; the ONNX export of the wrapped network has the two
outputs `logits` and `novelty`, which onnxruntime, OpenVINO and the int8 model read as they are.
The statistics live in the artifact (core/artifact.py `save_novelty` / `load_novelty`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from offroad_seg_ros.core.artifact import Artifact, ArtifactError, load_artifact, load_novelty
from offroad_seg_ros.inference.novelty_scores import FeatureDensity


class DensityScore(nn.Module):
    """FeatureDensity.score with its statistics as buffers and its products as 1x1 convolutions:
    (B, D, h, w) features -> (B, 1, h, w) score, in float32 whatever the network's dtype."""

    centre: torch.Tensor
    inv_std: torch.Tensor
    means: torch.Tensor
    means_sq: torch.Tensor
    inv_residual: torch.Tensor
    components: torch.Tensor
    means_on_components: torch.Tensor
    weight: torch.Tensor

    def __init__(self, density: FeatureDensity) -> None:
        super().__init__()
        means = torch.from_numpy(density.means).float()
        centre = means.mean(0)
        std = torch.from_numpy(density.std).float()
        m = (means - centre) / std  # the class means, standardised
        u = torch.from_numpy(density.components).float()
        self.rank = density.rank
        self.register_buffer("centre", centre[:, None, None])
        self.register_buffer("inv_std", (1 / std)[:, None, None])
        self.register_buffer("means", m[:, :, None, None])  # (K, D, 1, 1): a 1x1 convolution
        self.register_buffer("means_sq", (m * m).sum(1)[None, :, None, None])
        self.register_buffer("inv_residual", torch.tensor(1 / density.residual_var))
        self.register_buffer("components", u[:, :, None, None])  # (r, D, 1, 1)
        # Buffers of at most 4 dimensions: a module moved to channels_last refuses 5-D ones.
        self.register_buffer("means_on_components", m @ u.T)  # (K, r)
        weight = 1 / torch.from_numpy(density.component_var).float() - 1 / density.residual_var
        self.register_buffer("weight", weight)  # (r,)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = (features.float() - self.centre.float()) * self.inv_std.float()
        # |x - m|^2 expanded: one product with the K means instead of K differences.
        sq = (x * x).sum(1, keepdim=True) - 2 * F.conv2d(x, self.means.float()) + self.means_sq.float()
        sq = sq.clamp_min(0) * self.inv_residual.float()
        if self.rank:
            p = F.conv2d(x, self.components.float())[:, None] - self.means_on_components.float()[None, :, :, None, None]
            sq = (sq + (p * p * self.weight.float()[None, None, :, None, None]).sum(2)).clamp_min(0)
        return sq.amin(1, keepdim=True).sqrt()


class _HeadAndScore(nn.Module):
    """The segmentation head's logits with the score of its input as one more channel, scaled
    as the head scales (FPN: x4), so that the network's single output carries both."""

    def __init__(self, head: nn.Module, density: DensityScore) -> None:
        super().__init__()
        self.head = head
        self.density = density

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.head(features)
        score = self.density(features)
        if score.shape[-2:] != logits.shape[-2:]:
            score = F.interpolate(score, size=logits.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([logits, score.to(logits.dtype)], 1)


class NoveltyNet(nn.Module):
    """An smp network whose forward returns (logits (B, C, H, W), novelty score (B, H, W))."""

    def __init__(self, net: nn.Module, density: FeatureDensity) -> None:
        super().__init__()
        head = getattr(net, "segmentation_head", None)
        if head is None:
            raise ValueError(f"{type(net).__name__} has no segmentation_head to read the features from")
        net.segmentation_head = _HeadAndScore(head, DensityScore(density))
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x)
        return out[:, :-1], out[:, -1].float()


def density_of(artifact: Artifact) -> FeatureDensity | None:
    """The artifact's stored feature density, or None when it stores none."""
    tensors = load_novelty(artifact)
    if tensors is None:
        return None
    try:
        return FeatureDensity.from_dict({k: v.numpy() for k, v in tensors.items()})
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"{artifact.path}: novelty statistics incomplete: {exc}") from exc


def load_network(path: str | Path) -> tuple[Artifact, nn.Module]:
    """The artifact and its network in eval mode: a NoveltyNet when the artifact stores the
    novelty statistics, else the plain network (logits only)."""
    art, net = load_artifact(path)
    density = density_of(art)
    return art, net if density is None else NoveltyNet(net, density).eval()


def threshold_at(quantiles: dict, level: float) -> float:
    """The score at quantile `level` of a record's {"levels": [...], "values": [...]}, interpolated."""
    levels = np.asarray(quantiles["levels"], float)
    if not levels[0] <= level <= levels[-1]:
        raise ValueError(f"level {level} is outside the recorded quantiles {levels[0]}..{levels[-1]}")
    return float(np.interp(level, levels, np.asarray(quantiles["values"], float)))
