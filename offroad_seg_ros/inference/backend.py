"""What a runtime must do for the Segmenter, and the registry of runtimes by name.

A backend loads the artifact's network for one runtime and turns a batch of
network inputs (the Preprocess's output) into a class map and, if asked, a
confidence map, both uint8 at the network's (padded) resolution, and the
novelty score (float) where the artifact stores its statistics
(inference/novelty_net.py: computed in the network's graph). Everything
around that (preprocessing, cropping, output lookups, threads for the host
side) is the Segmenter's policy and the same for every runtime. A new runtime
is one module with a class that satisfies `Backend`, added to `BACKENDS`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

import torch

from offroad_seg_ros.core.artifact import Artifact, ArtifactError

# name -> "module:Class", imported when chosen: a robot without OpenVINO never imports its module.
BACKENDS = {
    "torch": "offroad_seg_ros.inference.torch_backend:TorchBackend",
    "onnxruntime": "offroad_seg_ros.inference.onnxruntime_backend:OnnxRuntimeBackend",
    "openvino": "offroad_seg_ros.inference.openvino_backend:OpenVinoBackend",
}


# (uint8 class map (B, Hp, Wp), uint8 confidence or None, float novelty score or None)
Outputs = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]


class Backend(Protocol):
    artifact: Artifact
    device: torch.device  # where the Segmenter prepares the input and runs the lookups
    dtype: torch.dtype  # the network input's dtype
    precision: str  # what the runtime runs in (what `auto` chose)
    host_threads: int  # torch intra-op threads for the Segmenter's own work (0 = as they are)

    def __init__(self, model: str | Path, device: str, precision: str, threads: int, compile: bool) -> None:
        """Load `model` (an artifact folder); refuse, with a ValueError naming it,
        any option the runtime can't honour."""

    def run(self, x: torch.Tensor, want_conf: bool) -> Outputs:
        """Network input (B, 3, Hp, Wp) -> uint8 class map (B, Hp, Wp), confidence or None,
        novelty score or None (an artifact without novelty statistics)."""
        ...


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {tuple(BACKENDS)}, got {name!r}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def cpu_only(name: str, device: str, compile: bool, precision: str, precisions: tuple[str, ...]) -> None:
    """The check shared by the CPU runtimes: no CUDA device, no torch.compile, a precision they run."""
    if device not in ("auto", "cpu") or compile or precision not in precisions:
        raise ValueError(
            f"backend {name} runs on the CPU without compile, precision one of {precisions}; "
            f"got device {device!r}, precision {precision!r}, compile {compile}"
        )


def onnx_file(artifact: Artifact, name: str) -> Path:
    """The artifact's model.onnx, which the CPU runtimes read."""
    if artifact.onnx_path is None:
        raise ArtifactError(f"backend {name} needs {artifact.path}/model.onnx; "
                            "export with `offroad-seg export CKPT OUT --onnx`")
    return artifact.onnx_path
