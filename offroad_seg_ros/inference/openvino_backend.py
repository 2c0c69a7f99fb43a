"""The OpenVINO CPU backend of the Segmenter (ROS-free).

The artifact's ONNX network is read by OpenVINO and extended in-graph with the
argmax (uint8 class map) and the confidence (max softmax x 255), so only
uint8 maps leave the runtime and no torch kernel runs between the forward
pass and the lookups. One compiled model per input shape (compiled on first
use; the warm-up compiles the usual one). Precision: fp32, bf16 (OpenVINO's
default on CPUs with bf16 units, so fp32 is asked for explicitly), auto
(bf16 where the CPU has it, else fp32), int8 (the model written by
`offroad-seg quantize`, tools/quantize.py: model_int8.xml beside model.onnx).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offroad_seg_ros.core.artifact import INT8_XML, ArtifactError, read_artifact
from offroad_seg_ros.inference.backend import Outputs, cpu_only, onnx_file

OV_PRECISIONS = ("fp32", "bf16", "auto", "int8")


def import_openvino() -> Any:
    """The openvino module, or an ArtifactError that names the extra to install."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise ArtifactError("backend openvino needs `pip install openvino` (the [openvino] extra)") from exc
    return ov


@functools.cache
def shared_core() -> Any:
    """One OpenVINO Core for the process, as OpenVINO advises. Its CPU plugin also swaps the
    calling thread's signal stack when it starts and back when it ends: with several Cores
    ending out of order a thread was left on a freed signal stack, and the next signal
    (a DataLoader worker's SIGCHLD) crashed the process."""
    return import_openvino().Core()


def cpu_has_bf16() -> bool:
    return "BF16" in shared_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def resolve_precision(precision: str) -> str:
    """fp32 | bf16 | int8; `auto` is bf16 where the CPU has bf16 units, else fp32."""
    if precision not in OV_PRECISIONS:
        raise ValueError(f"backend openvino precision must be one of {OV_PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    return precision


class OpenVinoBackend:
    """precision: fp32 | bf16 | auto | int8; threads: OpenVINO's inference threads
    (0 = its default). As with onnxruntime, the torch work around the network
    runs on the calling thread alone."""

    device = torch.device("cpu")
    dtype = torch.float32
    host_threads = 1

    def __init__(self, model: str | Path, device: str = "auto", precision: str = "auto", threads: int = 0,
                 compile: bool = False) -> None:
        cpu_only("openvino", device, compile, precision, OV_PRECISIONS)
        import_openvino()  # its clear error first
        self.artifact = read_artifact(model)
        self.precision = resolve_precision(precision)
        source = onnx_file(self.artifact, "openvino")
        if self.precision == "int8":
            source = source.parent / INT8_XML
            if not source.is_file():
                raise ArtifactError(f"precision int8 needs {source}; make it with "
                                    f"`offroad-seg quantize {self.artifact.path} DATA_ROOT`")
        self.core = shared_core()
        self.model = with_argmax(self.core.read_model(str(source)), self.artifact.temperature)
        hint = "bf16" if self.precision == "bf16" else "f32"  # int8 layers run int8 whatever the hint
        self.config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        if threads > 0:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        self._compiled: dict[tuple[int, ...], Any] = {}
        self.source = source

    def run(self, x: torch.Tensor, want_conf: bool) -> Outputs:
        """Argmax and confidence are computed inside the OpenVINO graph (and the novelty score,
        when the ONNX network has that output)."""
        shape = tuple(x.shape)
        compiled = self._compiled.get(shape)
        if compiled is None:
            model = self.model.clone()
            model.reshape({0: list(shape)})
            compiled = self._compiled[shape] = self.core.compile_model(model, "CPU", self.config)
        out = compiled(x.float().contiguous().numpy())
        labels = torch.from_numpy(out[compiled.output(0)])
        novelty = torch.from_numpy(out[compiled.output(2)]) if len(compiled.outputs) > 2 else None
        return labels, torch.from_numpy(out[compiled.output(1)]) if want_conf else None, novelty


def with_argmax(model: Any, temperature: float = 1.0) -> Any:
    """The network with its logits replaced by uint8 argmax and confidence outputs
    (labels_from_logits's ops, temperature included); a second network output (the
    novelty score) is kept, third."""
    import openvino as ov
    import openvino.opset13 as ops

    logits = model.output(0).get_node().input_value(0)  # what feeds the Result, not the Result itself
    top = ops.topk(logits, ops.constant(np.int64(1)), axis=1, mode="max", sort="none", index_element_type="i32")
    labels = ops.convert(ops.squeeze(top.output(1), ops.constant(np.int64(1))), "u8")
    scaled = logits if temperature == 1.0 else ops.divide(logits, ops.constant(np.float32(temperature)))
    prob = ops.reduce_max(ops.softmax(scaled, 1), ops.constant(np.int64(1)), keep_dims=False)
    conf = ops.convert(ops.round(ops.multiply(prob, ops.constant(np.float32(255.0))), "half_to_even"), "u8")
    outputs = [labels.output(0), conf.output(0)]
    if len(model.outputs) > 1:
        outputs.append(model.output(1).get_node().input_value(0))
    return ov.Model(outputs, model.get_parameters(), "segmentation_with_argmax")
