"""The torch backend: the artifact's network as a torch module, on the CPU or a CUDA device."""

from __future__ import annotations

from pathlib import Path

import torch

from offroad_seg_ros.core.preprocess import labels_from_logits
from offroad_seg_ros.inference.backend import Outputs
from offroad_seg_ros.inference.novelty_net import load_network

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available (use auto or cpu)")
    return dev


class TorchBackend:
    """device: auto | cpu | cuda | cuda:N; precision: fp32 | fp16 (CUDA) | bf16.
    threads: torch's intra-op threads on the CPU (0 = as they are)."""

    def __init__(self, model: str | Path, device: str = "auto", precision: str = "fp32", threads: int = 0,
                 compile: bool = False) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        self.device = resolve_device(device)
        if self.device.type == "cpu" and precision == "fp16":
            raise ValueError("precision fp16 needs a CUDA device; on CPU use fp32 or bf16")
        self.dtype = PRECISIONS[precision]
        self.precision = precision
        self.host_threads = threads if self.device.type == "cpu" else 0
        self.artifact, net = load_network(model)
        self.net = net.to(self.device, dtype=self.dtype).to(memory_format=torch.channels_last)

    def run(self, x: torch.Tensor, want_conf: bool) -> Outputs:
        out = self.net(x)
        logits, novelty = out if isinstance(out, tuple) else (out, None)
        return (*labels_from_logits(logits, want_conf, self.artifact.temperature), novelty)
