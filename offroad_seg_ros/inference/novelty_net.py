"""The novelty scores inside the network's graph, so that every backend computes them alike.

Two maps, both read from the features that feed the segmentation head (why these: docs/trust.md):
- channel `SHIFT`: the class-conditional feature density of inference/novelty_scores.py, the
  Mahalanobis distance to the nearest class mean; a frame's mean of it is the shift score;
- channel `PIXEL`: the per-pixel novelty score: the outlier head's logit (`OutlierHead`, trained
  with outlier exposure by offroad_seg_train/outlier_head.py) where the artifact has one, else
  the density again.
`NoveltyNet` wraps an smp network so that its forward returns the logits and the (B, 2, H, W)
scores at the logits' resolution; the ONNX export of the wrapped network has the two outputs
`logits` and `novelty`, which onnxruntime, OpenVINO and the int8 model read as they are. The
statistics and the head's weights live in the artifact (core/artifact.py `save_novelty` /
`load_novelty`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from offroad_seg_ros.core.artifact import Artifact, ArtifactError, load_artifact, load_novelty
from offroad_seg_ros.inference.novelty_scores import FeatureDensity

PIXEL, SHIFT = 0, 1  # the channels of the novelty output
HEAD_PREFIX = "outlier_head."  # the head's weights in novelty.safetensors, beside the density's arrays


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


class OutlierHead(nn.Module):
    """Head input features (B, D, h, w) -> (B, 1, h, w): the logit that a pixel is an outlier, a
    thing none of the classes covers. Two 3x3 convolutions see a cell's neighbours (an outlier is
    a region, not a single cell); `width` channels are enough for D = 32..256 feature channels."""

    def __init__(self, in_channels: int, width: int = 32) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 1, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)  # in the network's dtype: the head moves with it (fp16, bf16)

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> OutlierHead:
        """The head a state dict describes (its shapes give the channels), weights loaded."""
        first = state["layers.0.weight"]
        head = cls(int(first.shape[1]), int(first.shape[0]))
        head.load_state_dict(state)
        return head.eval()


class _HeadAndScore(nn.Module):
    """The segmentation head's logits with the two scores of its input as two more channels,
    scaled as the head scales (FPN: x4), so that the network's single output carries all three."""

    def __init__(self, head: nn.Module, density: DensityScore, outlier: OutlierHead | None) -> None:
        super().__init__()
        self.head = head
        self.density = density
        self.outlier = outlier

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.head(features)
        density = self.density(features)
        # Without a head the density is both channels: scaled once, then repeated.
        score = density if self.outlier is None else torch.cat([self.outlier(features).float(), density], 1)
        if score.shape[-2:] != logits.shape[-2:]:
            score = F.interpolate(score, size=logits.shape[-2:], mode="bilinear", align_corners=False)
        if self.outlier is None:
            score = torch.cat([score, score], 1)
        return torch.cat([logits, score.to(logits.dtype)], 1)


class NoveltyNet(nn.Module):
    """An smp network whose forward returns (logits (B, C, H, W), scores (B, 2, H, W) float32:
    channel PIXEL the per-pixel novelty score, channel SHIFT the feature density)."""

    def __init__(self, net: nn.Module, density: FeatureDensity, outlier: OutlierHead | None = None) -> None:
        super().__init__()
        head = getattr(net, "segmentation_head", None)
        if head is None:
            raise ValueError(f"{type(net).__name__} has no segmentation_head to read the features from")
        net.segmentation_head = _HeadAndScore(head, DensityScore(density), outlier)
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x)
        return out[:, :-2], out[:, -2:].float()


def density_of(artifact: Artifact) -> FeatureDensity | None:
    """The artifact's stored feature density, or None when it stores none."""
    tensors = load_novelty(artifact)
    if tensors is None:
        return None
    try:
        return FeatureDensity.from_dict({k: v.numpy() for k, v in tensors.items() if not k.startswith(HEAD_PREFIX)})
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"{artifact.path}: novelty statistics incomplete: {exc}") from exc


def outlier_head_of(artifact: Artifact) -> OutlierHead | None:
    """The artifact's outlier head, or None when it has none (the density is the pixel score)."""
    tensors = load_novelty(artifact) or {}
    state = {k[len(HEAD_PREFIX):]: v for k, v in tensors.items() if k.startswith(HEAD_PREFIX)}
    if not state:
        return None
    try:
        return OutlierHead.from_state(state)
    except (KeyError, RuntimeError) as exc:
        raise ArtifactError(f"{artifact.path}: outlier head's weights do not fit its layers: {exc}") from exc


def head_tensors(head: OutlierHead) -> dict[str, torch.Tensor]:
    """The head's weights under the names novelty.safetensors stores them by."""
    return {HEAD_PREFIX + k: v.detach().float().cpu() for k, v in head.state_dict().items()}


def load_network(path: str | Path) -> tuple[Artifact, nn.Module]:
    """The artifact and its network in eval mode: a NoveltyNet when the artifact stores the
    novelty statistics, else the plain network (logits only)."""
    art, net = load_artifact(path)
    density = density_of(art)
    return art, net if density is None else NoveltyNet(net, density, outlier_head_of(art)).eval()


def threshold_at(quantiles: dict, level: float) -> float:
    """The score at quantile `level` of a record's {"levels": [...], "values": [...]}, interpolated."""
    levels = np.asarray(quantiles["levels"], float)
    if not levels[0] <= level <= levels[-1]:
        raise ValueError(f"level {level} is outside the recorded quantiles {levels[0]}..{levels[-1]}")
    return float(np.interp(level, levels, np.asarray(quantiles["values"], float)))
