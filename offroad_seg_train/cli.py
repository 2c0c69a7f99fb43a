"""`offroad-seg train {fit,validate,test}`: LightningCLI over SegModule + DualityDataModule."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence

import torch
from pytorch_lightning.cli import LightningCLI

from offroad_seg_ros.core.classes import UnknownRawIdError
from offroad_seg_ros.core.model import ModelConfigError, PretrainedWeightsUnavailable
from offroad_seg_ros.data.dataset import DatasetError

from .data import DualityDataModule
from .module import CheckpointMismatch, SegModule

# A deprecation inside pytorch_lightning itself, printed at every fit; nothing to act on here.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")



class SyncBatchNormOnCpu(ValueError):
    """--trainer.sync_batchnorm on a machine without CUDA."""


TRAIN_ERRORS = (SyncBatchNormOnCpu, DatasetError, UnknownRawIdError, ModelConfigError, PretrainedWeightsUnavailable,
                CheckpointMismatch, FileNotFoundError)


class SegCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # One source for values both sides need.
        parser.link_arguments("model.inference_scale", "data.scale")
        parser.link_arguments("model.classes", "data.classes")

    def before_instantiate_classes(self) -> None:
        """Runs live in one place: a ModelCheckpoint without a dirpath writes to
        <default_root_dir>/checkpoints, beside the logs (<default_root_dir>/lightning_logs),
        so `--trainer.default_root_dir` moves both and `--ckpt_path last` finds the last one.
        SyncBatchNorm needs CUDA: asked for on the CPU it is refused with the reason."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        root = trainer.default_root_dir or os.getcwd()
        for cb in trainer.callbacks or []:
            if str(getattr(cb, "class_path", "")).endswith("ModelCheckpoint") and not cb.init_args.get("dirpath"):
                cb.init_args["dirpath"] = os.path.join(root, "checkpoints")
        if trainer.sync_batchnorm and (trainer.accelerator == "cpu" or
                                       (trainer.accelerator == "auto" and not torch.cuda.is_available())):
            raise SyncBatchNormOnCpu(
                "--trainer.sync_batchnorm true needs CUDA devices (torch's SyncBatchNorm runs on GPUs only); "
                "on the CPU leave it false: each process keeps its own batch-norm statistics")

    # Validate the data before the trainer creates run folders or starts workers.
    def before_fit(self) -> None:
        self.datamodule.check("fit")

    def before_validate(self) -> None:
        self.datamodule.check("validate")

    def before_test(self) -> None:
        self.datamodule.check("test")

    def after_validate(self) -> None:
        self._print_scores("val", getattr(self.model, "last_val_scores", None))

    def after_test(self) -> None:
        self._print_scores("test", getattr(self.model, "last_test_scores", None))

    def _print_scores(self, prefix: str, scores) -> None:
        if scores and self.trainer.is_global_zero:
            print(f"{prefix}/mIoU {scores['miou']:.10f}, pixel accuracy {scores['pixel_accuracy']:.10f}")

    def after_fit(self) -> None:
        ckpt = self.trainer.checkpoint_callback
        best = getattr(ckpt, "best_model_score", None)
        if self.trainer.is_global_zero:
            if best is not None:
                print(f"best val/mIoU {float(best):.4f}: {getattr(ckpt, 'best_model_path', '')}")
            scores = getattr(self.model, "last_val_scores", None)
            if scores:
                print(f"last val/mIoU {scores['miou']:.10f}, pixel accuracy {scores['pixel_accuracy']:.10f}")


def main(argv: Sequence[str] | None = None) -> int:
    saved = sys.argv
    if argv is not None:
        # LightningCLI reads sys.argv; show `offroad-seg train` as the program.
        sys.argv = [f"{sys.argv[0]} train", *argv]
    try:
        SegCLI(SegModule, DualityDataModule, save_config_kwargs={"overwrite": True},
               auto_configure_optimizers=False)
    except TRAIN_ERRORS as exc:
        print(f"offroad-seg train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("offroad-seg train: interrupted; resume with --ckpt_path last", file=sys.stderr)
        return 130
    finally:
        sys.argv = saved
    return 0
