"""ONNX export of the network: its logits, and its novelty score when the network returns one
(inference/novelty_net.py); preprocessing stays in `Preprocess`."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from offroad_seg_ros.core.preprocess import Preprocess


def export_onnx(model: torch.nn.Module, pre: Preprocess, path: str | Path, atol: float = 1e-4) -> Path:
    """Export with a dynamic batch and /32 height and width, then check the
    file against PyTorch on random input (max abs logit difference <= atol; for the
    novelty score, relative to its largest value)."""
    import onnxruntime as ort

    model = model.eval().cpu()
    m = pre.pad_multiple
    example = torch.randn(1, 3, 2 * m, 3 * m)
    batch = torch.export.Dim("batch", min=1, max=64)
    h = torch.export.Dim("h32", min=1, max=128)
    w = torch.export.Dim("w32", min=1, max=128)
    arg = next(iter(__import__("inspect").signature(model.forward).parameters))
    with torch.no_grad():
        names = ["logits", "novelty"] if isinstance(model(example), tuple) else ["logits"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, (example,), dynamo=True, verbose=False,
            input_names=["input"], output_names=names,
            dynamic_shapes={arg: {0: batch, 2: m * h, 3: m * w}},
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    path = Path(path)
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    check = torch.randn(2, 3, 3 * m, 5 * m)
    with torch.no_grad():
        ref = model(check)
    refs = [r.numpy() for r in (ref if isinstance(ref, tuple) else (ref,))]
    got = session.run(None, {"input": check.numpy()})
    # The logits absolutely; the novelty score (a distance in the tens) relative to its largest value.
    err = max(float(np.abs(r - g).max()) / (max(1.0, float(np.abs(r).max())) if i else 1.0)
              for i, (r, g) in enumerate(zip(refs, got)))
    if err > atol:
        path.unlink(missing_ok=True)
        raise RuntimeError(f"ONNX export check failed: max |onnx - torch| = {err:.2e} > {atol:.0e}")
    return path
