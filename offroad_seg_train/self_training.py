"""Self-training on the new place's frames: a student learns from an EMA teacher's confident
pixels, with the labelled source frames replayed beside them.

Why each part (docs/adaptation.md has the measurements):
- the teacher is an exponential moving average of the student, so a mistake the student makes on
  one step does not become next step's label (confirmation bias, self-training's known failure);
- per-class thresholds (a quantile of the teacher's confidence among the pixels it calls that
  class, computed once on the target frames) keep rare classes in the labels: one global threshold
  keeps mostly the sky and the sand;
- the student sees a strongly augmented view of the teacher's crop (colour, blur, noise), so it
  must learn the class, not copy the teacher's view of it;
- source frames with their true labels in the same batch anchor the classes (and the gate's
  source accuracy); batch norm sees both, so its statistics move toward the target;
- footprints (ground the robot later drove over) push probability away from lethal classes only.
"""

from __future__ import annotations

import copy
from typing import Any

import pytorch_lightning as L
import torch
import torch.nn.functional as F

from offroad_seg_ros.core.classes import IGNORE_INDEX
from offroad_seg_ros.core.preprocess import Preprocess

# What the target's third tensor (AdaptCrops' aux) holds.
AUX_NONE, AUX_FOOTPRINT, AUX_LABELS = "none", "footprint", "labels"


@torch.no_grad()
def class_thresholds(model: torch.nn.Module, pre: Preprocess, frames: list, num_classes: int,
                     quantile: float, ceiling: float, temperature: float = 1.0) -> torch.Tensor:
    """Per class: the `quantile` of the model's confidence over the pixels it predicts as that
    class on `frames` (uint8 HxWx3 at the input scale), capped at `ceiling`; classes never
    predicted get the ceiling. Class-balanced self-training (Zou et al., CBST) in its simplest form."""
    confs: list[list[torch.Tensor]] = [[] for _ in range(num_classes)]
    model.eval()
    for image in frames:
        x = pre.normalize(torch.from_numpy(image)[None])
        logits = model(x)[..., : image.shape[0], : image.shape[1]] / temperature
        conf, pred = logits.softmax(1).max(1)
        conf, pred = conf[0, ::2, ::2].reshape(-1), pred[0, ::2, ::2].reshape(-1)
        for c in range(num_classes):
            confs[c].append(conf[pred == c])
    out = torch.full((num_classes,), ceiling)
    for c, parts in enumerate(confs):
        values = torch.cat(parts)
        if values.numel():
            out[c] = min(ceiling, float(torch.quantile(values[:1_000_000].float(), quantile)))
    return out


class SelfTraining(L.LightningModule):
    """Student + EMA teacher over `AdaptCrops` batches. With `aux="labels"` the target's true
    labels replace the teacher's (the oracle of docs/adaptation.md: the same recipe, supervised)."""

    def __init__(self, model: torch.nn.Module, pre: Preprocess, thresholds: torch.Tensor,
                 lethal: list[int], lr: float = 2e-4, ema: float = 0.99, source_weight: float = 1.0,
                 footprint_weight: float = 1.0, aux: str = AUX_NONE, steps: int = 300):
        super().__init__()
        self.student = model
        self.teacher = copy.deepcopy(model).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.pre = pre
        self.thresholds: torch.Tensor
        self.register_buffer("thresholds", thresholds.clone().float())
        self.lethal = list(lethal)
        self.lr, self.ema, self.steps = lr, ema, steps
        self.source_weight, self.footprint_weight, self.aux = source_weight, footprint_weight, aux
        self.agreement: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher(x)

    def _logits(self, net: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        return net(self.pre.normalize(images))[..., : images.shape[1], : images.shape[2]]

    @torch.no_grad()
    def pseudo_labels(self, weak: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels with IGNORE where the teacher is below its class threshold, teacher argmax)."""
        self.teacher.eval()
        prob = self._logits(self.teacher, weak).softmax(1)
        conf, pred = prob.max(1)
        labels = torch.where(conf >= self.thresholds[pred], pred, torch.full_like(pred, IGNORE_INDEX))
        return labels, pred

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        weak, strong, aux, src, src_mask = batch
        if self.aux == AUX_LABELS:
            labels, teacher_pred = aux.long(), None
        else:
            labels, teacher_pred = self.pseudo_labels(weak)
        has_source = bool((src_mask != IGNORE_INDEX).any())
        images = torch.cat([strong, src]) if has_source else strong
        logits = self._logits(self.student, images)
        n = len(strong)
        target_logits = logits[:n]
        loss_target = F.cross_entropy(target_logits, labels, ignore_index=IGNORE_INDEX)
        loss = loss_target
        if has_source:
            loss = loss + self.source_weight * F.cross_entropy(logits[n:], src_mask.long(), ignore_index=IGNORE_INDEX)
        if self.aux == AUX_FOOTPRINT and self.lethal:
            loss = loss + self.footprint_weight * footprint_loss(target_logits, aux == 1, self.lethal)
        self.log("adapt/loss", loss, prog_bar=True, batch_size=n)
        self.log("adapt/kept", (labels != IGNORE_INDEX).float().mean(), prog_bar=True, batch_size=n)
        if teacher_pred is not None:
            agree = (target_logits.detach().argmax(1) == teacher_pred).float().mean()
            self.log("adapt/agree", agree, prog_bar=True, batch_size=n)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._update_teacher()

    @torch.no_grad()
    def _update_teacher(self) -> None:
        for t, s in zip(self.teacher.parameters(), self.student.parameters()):
            t.mul_(self.ema).add_(s.detach(), alpha=1 - self.ema)
        # Batch-norm statistics are the student's (they move toward the target as it trains).
        for tb, sb in zip(self.teacher.buffers(), self.student.buffers()):
            tb.copy_(sb)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.student.parameters(), lr=self.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.steps), eta_min=self.lr * 0.05)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def footprint_loss(logits: torch.Tensor, driven: torch.Tensor, lethal: list[int]) -> torch.Tensor:
    """-log(1 - P(lethal)) over driven-over pixels: a negative label on the lethal classes only
    (the ground driven over may be grass, sand or clutter; it is not a rock or a tree)."""
    if not bool(driven.any()):
        return logits.sum() * 0.0
    p_lethal = logits.softmax(1)[:, lethal].sum(1)[driven]
    return -torch.log1p(-p_lethal.clamp(max=1 - 1e-6)).mean()
