"""ONNX export of the network (logits only; preprocessing stays in `Preprocess`)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from offroad_seg_ros.core.preprocess import Preprocess


def export_onnx(model: torch.nn.Module, pre: Preprocess, path: str | Path, atol: float = 1e-4) -> Path:
    """Export with a dynamic batch and /32 height and width, then check the
    file against PyTorch on random input (max abs logit difference <= atol)."""
    import onnxruntime as ort

    model = model.eval().cpu()
    m = pre.pad_multiple
    example = torch.randn(1, 3, 2 * m, 3 * m)
    batch = torch.export.Dim("batch", min=1, max=64)
    h = torch.export.Dim("h32", min=1, max=128)
    w = torch.export.Dim("w32", min=1, max=128)
    arg = next(iter(__import__("inspect").signature(model.forward).parameters))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, (example,), dynamo=True, verbose=False,
            input_names=["input"], output_names=["logits"],
            dynamic_shapes={arg: {0: batch, 2: m * h, 3: m * w}},
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    path = Path(path)
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    check = torch.randn(2, 3, 3 * m, 5 * m)
    with torch.no_grad():
        ref = model(check).numpy()
    got = session.run(None, {"input": check.numpy()})[0]
    err = float(np.abs(ref - got).max())
    if err > atol:
        path.unlink(missing_ok=True)
        raise RuntimeError(f"ONNX export check failed: max |onnx - torch| = {err:.2e} > {atol:.0e}")
    return path
