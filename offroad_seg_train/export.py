"""Lightning checkpoint -> model artifact (model.json + weights.safetensors [+ model.onnx])."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import torch

from offroad_seg_ros.core.artifact import Artifact, ModelSpec, save_artifact
from offroad_seg_ros.core.classes import ClassTable
from offroad_seg_ros.core.preprocess import Preprocess
from offroad_seg_ros.data.dataset import DatasetError, find_split, list_samples, read_image

from .module import CHECKPOINT_KEY, CheckpointMismatch
from .outlier_head import HeadSettings, fit_with_outlier_head


def read_checkpoint(path: str | Path) -> dict:
    """Load a Lightning checkpoint with `weights_only=True` (tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointMismatch(
            f"{path} holds objects other than tensors and plain data; refusing to unpickle it "
            f"({str(exc).splitlines()[0]})"
        ) from exc
    except (RuntimeError, EOFError) as exc:
        raise CheckpointMismatch(f"{path} is not a readable checkpoint: {exc}") from exc


def export_checkpoint(ckpt: str | Path, out: str | Path, onnx: bool = False, force: bool = False,
                      name: str | None = None, temperature_data: str | Path | None = None,
                      stage: Callable[[str], None] | None = None,
                      progress: Callable[[int, int], None] | None = None,
                      outlier_head: HeadSettings | None = None) -> Path:
    """Write the artifact, once and atomically; with `temperature_data` (a dataset
    root or split folder), the confidence's temperature is first fitted on its val
    split, on the network in memory, and recorded with it, and the novelty scores (the
    outlier head, offroad_seg_train/outlier_head.py, and the feature density) are then fitted
    on its train split (tools/novelty.py; model.onnx,
    if asked for, is written with the score). `stage(what)` is told each
    step as it begins, `progress(done, total)` each frame the temperature is fitted on."""
    stage = stage or (lambda _: None)
    stage(f"reading the checkpoint {ckpt}")
    art, model = checkpoint_artifact(ckpt, name or Path(out).name)
    if temperature_data is not None:
        from offroad_seg_ros.tools.temperature import fit_model_temperature

        art.calibration = fit_model_temperature(art, model, temperature_data, stage=stage, progress=progress)
    stage(f"writing {out}" + (" with model.onnx, checked against PyTorch" if onnx else ""))
    path = save_artifact(out, art, model, onnx=onnx and temperature_data is None, force=force)
    if temperature_data is not None:
        fit_with_outlier_head(path, temperature_data, outlier_head or HeadSettings(), onnx=onnx, stage=stage)
    return path


def checkpoint_artifact(ckpt: str | Path, name: str) -> tuple[Artifact, torch.nn.Module]:
    """The artifact a training checkpoint describes and its network (built by the
    artifact, weights loaded, eval mode); nothing written."""
    data = read_checkpoint(ckpt)
    meta = data.get(CHECKPOINT_KEY)
    if not meta or "state_dict" not in data:
        raise CheckpointMismatch(f"{ckpt} is not an offroad-seg training checkpoint")
    training = {
        "checkpoint": str(Path(ckpt).resolve()),
        "epoch": meta.get("epoch"),
        "global_step": meta.get("global_step"),
        "val": meta.get("val", {}),
        "hyper_parameters": _plain(data.get("hyper_parameters", {})),
        "data": _plain(data.get("datamodule_hyper_parameters", {})),
    }
    preprocess = dict(meta["preprocess"])
    if preprocess.get("train_size") is None:
        preprocess["train_size"] = _training_frame_size(training["data"])
    art = Artifact(ModelSpec(**meta["spec"]), ClassTable.from_dict(meta["classes"]),
                   Preprocess.from_dict(preprocess), name=name, training=training)
    model = art.build()
    state = {k.removeprefix("model."): v for k, v in data["state_dict"].items() if k.startswith("model.")}
    head = [k for k in state if k.startswith("segmentation_head") and k.endswith("weight")]
    if head and state[head[-1]].shape[0] != len(art.classes):
        raise CheckpointMismatch(
            f"{ckpt}: network predicts {state[head[-1]].shape[0]} classes but its class table "
            f"has {len(art.classes)}"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointMismatch(
            f"{ckpt}: weights do not fit {art.spec.arch} + {art.spec.encoder}: {str(exc).splitlines()[0]}"
        ) from exc
    return art, model.eval()


def _training_frame_size(data: dict) -> list[int] | None:
    """[width, height] of the training frames, for a checkpoint written before the module recorded
    them: its data config's train split, when still there; None otherwise (the artifact then keeps
    the scale relative to each incoming frame, as such artifacts always did)."""
    try:
        samples = list_samples(find_split(data["root"], data.get("train_split", "train")))
        height, width = read_image(samples[0].image).shape[:2]
    except (KeyError, IndexError, TypeError, DatasetError, OSError):
        return None
    return [width, height]


def _plain(obj):
    """JSON-safe copy of checkpoint hyper-parameters."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
