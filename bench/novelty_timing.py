"""What the novelty score costs per frame on the CPU: the same artifact with and without its
novelty statistics, on each CPU runtime, the node's outputs (mask, cost, known_mask) at 960x540,
interleaved so that both see the same machine load; and how far each runtime's novel mask agrees
with torch fp32's on the same frames. Writes JSON (--out); figures: bench/RESULTS.md.

    python bench/novelty_timing.py --model demo-out/model --data demo-out/data --out bench/novelty_timing.json

The artifact without the statistics is written afresh from the same weights: its model.onnx (and
int8 model, quantized on the same split) is the network alone, so the CPU runtimes' figures
include the score's share of the graph.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from offroad_seg_ros.core.artifact import INT8_XML, NOVELTY, load_artifact, save_artifact
from offroad_seg_ros.inference.segmenter import Segmenter
from offroad_seg_train.synth import TEST_BIOME, render_scene

OUTPUTS = ("mask", "cost", "known_mask")
RUNTIMES = (("torch", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "int8"))


def _time(seg: Segmenter, frames: list[np.ndarray]) -> float:
    start = time.perf_counter()
    seg(frames[0], OUTPUTS)
    return time.perf_counter() - start


def _novel_masks(seg: Segmenter, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Each frame's novel pixels, as the node's known_mask marks them."""
    return [seg(f, ("known_mask",)).known_mask == seg.classes.novel_index for f in frames]


def _plain_copy(model: Path, out: Path, data: str) -> Path:
    """The same weights without the statistics: the network alone, in every runtime the artifact has."""
    art, net = load_artifact(model)
    art.extra = {k: v for k, v in art.extra.items() if k not in ("novelty", "int8")}
    save_artifact(out, art, net, onnx=art.has_onnx)
    if (model / INT8_XML).is_file():
        from offroad_seg_ros.tools.quantize import quantize_artifact

        quantize_artifact(out, data)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="artifact with novelty statistics (offroad-seg novelty)")
    p.add_argument("--data", required=True, help="its dataset: the int8 model of the plain copy is calibrated on val")
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--out", type=Path, default=Path("bench/novelty_timing.json"))
    args = p.parse_args(argv)
    model = Path(args.model)
    if not (model / NOVELTY).is_file():
        raise SystemExit(f"{model} has no {NOVELTY}: run `offroad-seg novelty {model} DATA` first")
    frames = [render_scene(np.random.default_rng(i), TEST_BIOME)[0] for i in range(4)]
    results: dict[str, dict] = {}
    novel_masks: dict[str, list[np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        plain = _plain_copy(model, Path(tmp) / "plain", args.data)
        for backend, precision in RUNTIMES:
            try:
                segs = {name: Segmenter(path, backend=backend, precision=precision, device="cpu")
                        for name, path in (("without", plain), ("with", model))}
            except Exception as exc:  # noqa: BLE001 - a runtime this artifact lacks (no ONNX, no int8): skipped
                results[f"{backend} {precision}"] = {"skipped": str(exc)}
                continue
            times: dict[str, list[float]] = {"without": [], "with": []}
            for i in range(args.frames):
                for name in (("without", "with") if i % 2 else ("with", "without")):
                    times[name].append(_time(segs[name], frames[i % len(frames):]))
            p50 = {k: 1000 * float(np.median(v)) for k, v in times.items()}
            novel_masks[f"{backend} {precision}"] = masks = _novel_masks(segs["with"], frames)
            reference = novel_masks["torch fp32"]
            agree = float(np.mean([(a == b).mean() for a, b in zip(masks, reference)]))
            results[f"{backend} {precision}"] = {"p50_ms_without": p50["without"], "p50_ms_with": p50["with"],
                                                 "ratio": p50["with"] / p50["without"],
                                                 "novel_mask_agreement_with_torch_fp32": agree}
            print(backend, precision, {k: round(v, 3) for k, v in results[f"{backend} {precision}"].items()})
    args.out.write_text(json.dumps({"model": str(model), "frames": args.frames, "outputs": OUTPUTS,
                                    "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
