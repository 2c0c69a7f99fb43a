"""The networks the CPU sections time: made here with random weights, or trained once from a demo folder."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from offroad_seg_ros.core.artifact import Artifact, ModelSpec, save_artifact
from offroad_seg_ros.core.classes import ClassTable
from offroad_seg_ros.core.model import build_model
from offroad_seg_ros.core.preprocess import Preprocess


def make_artifact(tmp: Path, name: str, kwargs: dict, scale: float, onnx: bool = False,
                  encoder: str = "resnet18") -> Path:
    table = ClassTable.default()
    torch.manual_seed(0)
    model = build_model("FPN", encoder, len(table), **kwargs)
    art = Artifact(ModelSpec("FPN", encoder, kwargs), table, Preprocess(scale=scale), name=name)
    return save_artifact(tmp / name, art, model, onnx=onnx)


def light_artifact(tmp: Path) -> Path:
    """The light CPU profile's network (config/train_cpu_light.yaml), random weights."""
    if (tmp / "fpn_light" / "model.onnx").is_file():
        return tmp / "fpn_light"
    return make_artifact(tmp, "fpn_light", {"decoder_pyramid_channels": 64, "decoder_segmentation_channels": 32},
                         0.5, onnx=True, encoder="mobilenet_v2")


def ort_int8_artifact(artifact: Path, calib: list[np.ndarray], out: Path) -> Path:
    """A copy of `artifact` whose model.onnx is onnxruntime's static int8 (QDQ, per-channel
    weights), calibrated on `calib`: the other int8 candidate, measured beside NNCF's."""
    import shutil

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x}

    if (out / "model.onnx").is_file():
        return out
    shutil.copytree(artifact, out, ignore=shutil.ignore_patterns("model_int8.*"))
    pre = out / "pre.onnx"
    # The exported dims are symbolic expressions (32 * h32) that the symbolic shape inference rejects.
    quant_pre_process(str(artifact / "model.onnx"), str(pre), skip_symbolic_shape=True)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # one warning per 1-D weight: per-channel axis 1 does not apply to biases
    try:
        quantize_static(str(pre), str(out / "model.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    pre.unlink()
    return out


def trained_models(demo: Path) -> dict[str, Path]:
    """The demo's trained FPN-ResNet-18 and the light profile trained on the demo's data
    (trained here once, kept in the demo folder), both exported with model.onnx."""
    from offroad_seg_ros.core.resources import config_path
    from offroad_seg_train.cli import main as train_main
    from offroad_seg_train.demo import _best_checkpoint
    from offroad_seg_train.export import export_checkpoint

    if not (demo / "train" / "DONE").is_file():
        raise SystemExit(f"--trained {demo}: no finished demo there (run `make demo` first)")
    light_run = demo / "bench_light"
    if not (light_run / "DONE").is_file():
        print(f"[bench] training the light profile on {demo / 'data'} (once) ...", flush=True)
        code = train_main(["fit", "--config", str(config_path("train_cpu_light.yaml")),
                           "--data.root", str(demo / "data"), "--data.cache_dir", str(demo / "cache"),
                           "--trainer.default_root_dir", str(light_run), "--trainer.enable_progress_bar", "false"])
        if code:
            raise SystemExit(code)
        (light_run / "DONE").write_text("trained\n")
    out = {}
    for name, run in (("light profile", light_run), ("demo ResNet-18", demo / "train")):
        art = demo / "bench_models" / name.replace(" ", "_")
        if not (art / "model.onnx").is_file():
            export_checkpoint(_best_checkpoint(run / "checkpoints"), art, onnx=True, force=True, name=name)
        out[name] = art
    return out
