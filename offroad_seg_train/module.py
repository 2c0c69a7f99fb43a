"""The LightningModule: an smp network, its loss, and validation through the
robot's own inference path (`predict_labels`) and metrics module."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytorch_lightning as L
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable

from offroad_seg_ros.core.artifact import ModelSpec
from offroad_seg_ros.core.classes import ClassTable
from offroad_seg_ros.core.metrics import MetricAccumulator, scores
from offroad_seg_ros.core.model import build_model
from offroad_seg_ros.core.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, predict_labels

from .losses import build_loss

CHECKPOINT_KEY = "offroad_seg"


class CheckpointMismatch(ValueError):
    """A checkpoint does not fit the configured model (class table, architecture)."""


class SegModule(L.LightningModule):
    """Semantic segmentation with any smp architecture and encoder.

    Args:
        arch: smp architecture (FPN, Unet, DeepLabV3Plus, ...).
        encoder: smp encoder name (resnext101_32x4d, resnet18, mobilenet_v2, tu-<timm>).
        encoder_weights: pretrained encoder weights (swsl, imagenet, ...) or null.
        classes: class table YAML; default the installed config/classes.yaml.
        loss: dice | ce | focal | dice+ce | dice+focal (ignore index 255).
        class_weights: per-class weights for the CE part of the loss.
        inference_scale: frame scale the model is trained and run at (1.0 = native).
        mean, std: input normalisation (0..1 scale), stored in the artifact.
        model_kwargs: extra smp arguments (e.g. decoder_pyramid_channels).
        optimizer, scheduler: any torch optimiser / LR scheduler, from config (default Adam, lr 2e-4).
    """

    def __init__(
        self,
        arch: str = "FPN",
        encoder: str = "resnext101_32x4d",
        encoder_weights: str | None = "swsl",
        classes: str | None = None,
        loss: str = "dice",
        class_weights: list[float] | None = None,
        inference_scale: float = 1.0,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        model_kwargs: dict[str, Any] | None = None,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.table = ClassTable.from_yaml(classes)
        self.pre = Preprocess(mean=tuple(mean), std=tuple(std), scale=inference_scale)  # type: ignore[arg-type]
        self.spec = ModelSpec(arch, encoder, dict(model_kwargs or {}))
        self.model = build_model(arch, encoder, len(self.table), encoder_weights, **self.spec.kwargs)
        self.loss = build_loss(loss, class_weights, len(self.table))
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.val_metrics = MetricAccumulator(len(self.table), per_image=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def setup(self, stage: str) -> None:
        # The training frames' size, known to the data module once it is set up for fit, goes into the
        # preprocessing the checkpoint (and so the artifact) records: the robot resizes frames of any
        # other resolution to what a training frame gives (core/preprocess.py).
        size = getattr(getattr(self.trainer, "datamodule", None), "frame_size", None)  # an untyped Trainer attribute
        if size:
            self.pre = replace(self.pre, train_size=(int(size[0]), int(size[1])))

    # -- training ---------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        images, masks = batch
        # Crops are already at the inference scale: normalise + pad only, then
        # drop the /32 padding again.
        logits = self.model(self.pre.normalize(images))[..., : images.shape[1], : images.shape[2]]
        loss = self.loss(logits, masks.long())
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(images))
        return loss

    # -- validation / test: the robot's inference path -------------------------
    def _eval_step(self, batch, prefix: str):
        images, masks = batch
        labels, logits = predict_labels(self.model, self.pre, images)
        target = masks
        if logits.shape[-2:] != masks.shape[-2:]:
            target = torch.nn.functional.interpolate(
                masks[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0].to(masks.dtype)
        self.log(f"{prefix}/loss", self.loss(logits.float(), target.long()), batch_size=len(images),
                 sync_dist=True)
        self.val_metrics.update(labels, masks)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def _log_epoch(self, prefix: str) -> dict[str, Any]:
        cm = self.val_metrics.cm
        if cm is None:
            cm = torch.zeros(len(self.table), len(self.table) + 1, dtype=torch.long, device=self.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Every rank scored its own frames (no padding, see data.UnpaddedDistributedSampler):
            # the split's matrix is the exact integer sum (float32 would round large pixel counts).
            cm = cm.clone()
            torch.distributed.all_reduce(cm)
        s = scores(cm)
        self.log(f"{prefix}/mIoU", s["miou"], prog_bar=True, sync_dist=False)
        self.log(f"{prefix}/pixel_acc", s["pixel_accuracy"], sync_dist=False)
        for name, iou in zip(self.table.names, s["iou"]):
            if iou == iou:  # n/a classes are not logged
                self.log(f"{prefix}/iou/{name}", float(iou), sync_dist=False)
        self.val_metrics.reset()
        return s

    def on_validation_epoch_end(self):
        if not self.trainer.sanity_checking:
            self.last_val_scores = self._log_epoch("val")
        else:
            self.val_metrics.reset()

    def on_test_epoch_end(self):
        self.last_test_scores = self._log_epoch("test")

    # -- optimisation -------------------------------------------------------------
    def configure_optimizers(self):
        # A callable default would reach LightningCLI as its string form; None is Adam 2e-4.
        factory = self.optimizer_factory or (lambda params: torch.optim.Adam(params, lr=2e-4))
        optimizer = factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"}}

    # -- checkpoints carry what export needs (export.checkpoint_artifact) -------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "spec": {"arch": self.spec.arch, "encoder": self.spec.encoder, "kwargs": self.spec.kwargs},
            "classes": self.table.to_dict(),
            "preprocess": self.pre.to_dict(),
            "epoch": self.current_epoch,
            "global_step": self.global_step,
            "val": {k: float(v) for k, v in self.trainer.callback_metrics.items()
                    if k.startswith("val/") and v.numel() == 1},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(CHECKPOINT_KEY)
        if meta and ClassTable.from_dict(meta["classes"]) != self.table:
            theirs = len(meta["classes"]["classes"])
            raise CheckpointMismatch(
                f"checkpoint was trained with a different class table ({theirs} classes) than the "
                f"configured one ({len(self.table)} classes: {', '.join(self.table.names)}); "
                "resume with the checkpoint's class table or start a new run"
            )
        recorded = ((meta or {}).get("preprocess") or {}).get("train_size")
        if recorded and self.pre.train_size is None:  # validate / test set up no training data: keep the record
            self.pre = replace(self.pre, train_size=(int(recorded[0]), int(recorded[1])))
