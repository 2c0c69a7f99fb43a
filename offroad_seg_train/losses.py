"""Loss registry: a name in the config picks one; no if-chains."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from segmentation_models_pytorch import losses as smp_losses
from torch import nn

from offroad_seg_ros.core.classes import IGNORE_INDEX
from offroad_seg_ros.core.model import ModelConfigError


class SumLoss(nn.Module):
    def __init__(self, *parts: nn.Module):
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(p(logits, target) for p in self.parts)  # type: ignore[return-value]


def _ce(weights: torch.Tensor | None) -> nn.Module:
    return nn.CrossEntropyLoss(weight=weights, ignore_index=IGNORE_INDEX)


def _dice(weights: torch.Tensor | None) -> nn.Module:
    return smp_losses.DiceLoss("multiclass", from_logits=True, ignore_index=IGNORE_INDEX)


def _focal(weights: torch.Tensor | None) -> nn.Module:
    return smp_losses.FocalLoss("multiclass", ignore_index=IGNORE_INDEX)


LOSSES: dict[str, Callable[[torch.Tensor | None], nn.Module]] = {
    "dice": _dice,
    "ce": _ce,
    "focal": _focal,
    "dice+ce": lambda w: SumLoss(_dice(w), _ce(w)),
    "dice+focal": lambda w: SumLoss(_dice(w), _focal(w)),
}


def build_loss(name: str, class_weights: Sequence[float] | None = None, num_classes: int = 0) -> nn.Module:
    """Multiclass loss from logits; ignore index 255. Class weights apply to CE."""
    if name not in LOSSES:
        raise ModelConfigError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
    weights = None
    if class_weights is not None:
        if len(class_weights) != num_classes:
            raise ModelConfigError(f"class_weights has {len(class_weights)} values for {num_classes} classes")
        if "ce" not in name:
            raise ModelConfigError(f"class_weights apply to the CE part of a loss; {name!r} has none")
        weights = torch.tensor(class_weights, dtype=torch.float32)
    return LOSSES[name](weights)
