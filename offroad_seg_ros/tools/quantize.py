"""`offroad-seg quantize`: the one place of int8 quantization. Post-training
int8 with NNCF, for CPU robots, on int8 calibration frames prepared exactly as
the Segmenter prepares them (its Preprocess: scale, normalise, pad), so NNCF
sees the activations the robot will. Writes model_int8.xml (+ .bin) beside
model.onnx, which the OpenVINO backend runs at `precision: int8`, and records
how it was made in the artifact (its `int8` section)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offroad_seg_ros.core.artifact import INT8_XML, ArtifactError, read_artifact, update_artifact
from offroad_seg_ros.core.preprocess import Preprocess
from offroad_seg_ros.data.dataset import DatasetError, list_samples, read_image, split_folder
from offroad_seg_ros.inference.backend import onnx_file
from offroad_seg_ros.inference.openvino_backend import import_openvino, shared_core, with_argmax


def _network_inputs(root: str | Path, split: str, n: int, pre: Preprocess,
                    progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """Up to `n` frames of `split`, spread over it, as network inputs."""
    folder = split_folder(root, split)
    samples = list_samples(folder, require_masks=False)
    if not samples:
        raise DatasetError(f"no images in {folder}")
    step = max(1, len(samples) // n)  # spread over the split
    chosen = samples[::step][:n]
    inputs = []
    for s in chosen:
        inputs.append(pre(torch.from_numpy(read_image(s.image))[None]).contiguous().numpy())
        if progress:
            progress(len(inputs), len(chosen))
    return inputs


def quantize_artifact(artifact: str | Path, data: str | Path, split: str = "val", frames: int = 32,
                      check_split: str = "test", check_frames: int = 8, stage: Callable[[str], None] | None = None,
                      progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Quantize on `frames` frames of `split` of `data`; the agreement with fp32 is
    measured on `check_split` (the int8 calibration frames where it is missing).
    `stage(what)` is told each step as it begins, `progress(done, total)` each frame read."""
    stage = stage or (lambda _: None)
    pre = read_artifact(artifact).preprocess
    stage(f"reading up to {frames} int8 calibration frames of {split} in {data}")
    int8_calibration = _network_inputs(data, split, frames, pre, progress)
    stage(f"reading up to {check_frames} {check_split} frames to check the int8 model on")
    try:
        check = _network_inputs(data, check_split, check_frames, pre, progress)
    except DatasetError:
        check = int8_calibration[:check_frames]
    return quantize(artifact, int8_calibration, len(int8_calibration), split, check, stage)


def quantize(artifact_dir: str | Path, inputs: Iterable[np.ndarray], n_frames: int, split: str,
             check_frames: list[np.ndarray] | None = None,
             stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Post-training int8 quantization with NNCF, calibrated on `inputs`
    (network inputs exactly as the Segmenter makes them). Writes model_int8.xml
    (+ .bin, fp32 weights kept: `compress_to_fp16=False`) beside model.onnx and
    records the int8 calibration and the measured pixel agreement with fp32 in
    the artifact's `int8` section. `stage(what)` is told each step as it begins."""
    stage = stage or (lambda _: None)
    ov = import_openvino()
    try:
        import nncf
    except ImportError as exc:
        raise ArtifactError("int8 quantization needs `pip install nncf` (the package's [openvino] extra)") from exc
    onnx = onnx_file(read_artifact(artifact_dir), "openvino")
    int8_calibration = list(inputs)
    if not int8_calibration:
        raise ValueError("no calibration frames")
    shape = int8_calibration[0].shape
    model = shared_core().read_model(str(onnx))
    model.reshape({0: list(shape)})
    stage(f"quantizing {onnx} with NNCF on {len(int8_calibration)} frames")
    quantized = nncf.quantize(model, nncf.Dataset(int8_calibration), subset_size=len(int8_calibration),
                              preset=nncf.QuantizationPreset.MIXED)
    measured = f" and measuring its agreement with fp32 on {len(check_frames)} frames" if check_frames else ""
    stage(f"writing {INT8_XML}{measured}")
    agreement = _save_int8(quantized, model, Path(artifact_dir) / INT8_XML, check_frames)
    summary = {"file": INT8_XML, "tool": f"nncf {nncf.__version__}, openvino {ov.__version__}",
               "calibration": {"split": split, "frames": n_frames, "input_shape": list(shape),
                               "preset": "mixed (symmetric weights, asymmetric activations)"},
               "pixel_agreement_with_fp32": agreement, "agreement_frames": len(check_frames or [])}
    update_artifact(artifact_dir, int8=summary, files={"int8": INT8_XML})
    return summary


def _save_int8(quantized: Any, fp32_model: Any, out: Path, check_frames: list[np.ndarray] | None) -> float | None:
    """Write `quantized` to `out` (+ .bin) through temporary names; returns the share of
    `check_frames`' pixels whose class it keeps from `fp32_model` (None without frames)."""
    ov = import_openvino()
    core = shared_core()
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.xml")
    agreement = None
    try:
        ov.save_model(quantized, str(tmp), compress_to_fp16=False)
        if check_frames:
            config = {"INFERENCE_PRECISION_HINT": "f32"}
            fp32 = core.compile_model(with_argmax(fp32_model), "CPU", config)
            q = core.compile_model(with_argmax(core.read_model(str(tmp))), "CPU", config)
            same = [float((fp32(x)[fp32.output(0)] == q(x)[q.output(0)]).mean()) for x in check_frames]
            agreement = float(np.mean(same))
        os.replace(tmp.with_suffix(".bin"), out.with_suffix(".bin"))
        os.replace(tmp, out)
    finally:  # a failed run leaves no half-written model behind
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".bin").unlink(missing_ok=True)
    return agreement
