"""Inference sections: the node's per-frame path, start-up, and every CPU backend and precision."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import numpy as np
import torch
from results import Table
from startup import time_to_first_mask

from offroad_seg_ros.core.classes import ClassTable
from offroad_seg_ros.core.model import build_model

from .models import light_artifact, make_artifact, ort_int8_artifact, trained_models


def bench_node_path(out: Table, tmp: Path, n: int) -> None:
    from rosbags.typesys import Stores, get_typestore

    from offroad_seg_ros.inference.segmenter import Segmenter
    from offroad_seg_ros.node.pipeline import FramePipeline
    from offroad_seg_train.synth import render_scene

    ts = get_typestore(Stores.ROS2_HUMBLE)
    Image, Header, Time = (ts.types[t] for t in ("sensor_msgs/msg/Image", "std_msgs/msg/Header",
                                                 "builtin_interfaces/msg/Time"))
    rgb, _ = render_scene(np.random.default_rng(3))
    raw = bytes(ts.serialize_cdr(Image(Header(Time(1, 0), "cam"), 540, 960, "rgb8", 0, 2880, rgb.reshape(-1)),
                                 Image.__msgtype__))
    table = ClassTable.default()
    full = make_artifact(tmp, "fpn_r18_native", {}, 1.0)
    light = light_artifact(tmp)

    # Naive: message object, numpy normalisation on the CPU, eager fp32, message object out.
    art_model = build_model("FPN", "resnet18", len(table)).eval()
    art_model.load_state_dict(Segmenter(full, device="cpu", warmup_size=None).runtime.net.state_dict())
    mean, std = np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255
    cost_lut = table.cost_lut()

    def naive():
        msg = ts.deserialize_cdr(raw, Image.__msgtype__)
        img = np.array(msg.data).reshape(msg.height, msg.width, 3)
        x = (img - mean) / std
        x = np.pad(x, ((0, 4), (0, 0), (0, 0)))
        with torch.no_grad():
            logits = art_model(torch.from_numpy(x.transpose(2, 0, 1)[None]).float())
        mask = logits[0, :, :540].argmax(0).numpy().astype(np.uint8)
        for image in (mask, cost_lut[mask]):
            ts.serialize_cdr(Image(msg.header, 540, 960, "mono8", 0, 960, image.reshape(-1)), Image.__msgtype__)

    def pipeline_fn(seg):
        pipe = FramePipeline(seg)
        return lambda: pipe.process(raw, ["mask", "cost"])

    cases = [
        ("naive: eager fp32, numpy normalisation, msg objects (native)", naive, "naive"),
        ("Segmenter path, torch fp32 (native 960x544)",
         pipeline_fn(Segmenter(full, device="cpu")), "seg_native"),
        ("light profile: slim FPN-MobileNetV2 @0.5 scale, torch fp32",
         pipeline_fn(Segmenter(light, device="cpu")), "light_torch"),
        ("light profile: slim FPN-MobileNetV2 @0.5 scale, onnxruntime",
         pipeline_fn(Segmenter(light, backend="onnxruntime")), "light_ort"),
    ]
    # Round-robin, so drift of this noisy machine hits every case alike.
    samples: dict[str, list[float]] = {key: [] for _, _, key in cases}
    for _, fn, _ in cases:
        fn()
        fn()
    for _ in range(n):
        for _, fn, key in cases:
            t0 = time.perf_counter()
            fn()
            samples[key].append(time.perf_counter() - t0)
    for name, _, key in cases:
        t = np.array(samples[key])
        out.row(f"node path {name}: p50", 1e3 * np.percentile(t, 50), "ms", f"{key}_p50_ms")
        out.row("  p95", 1e3 * np.percentile(t, 95), "ms", f"{key}_p95_ms")
        out.row("  frames/s", 1 / np.median(t), "fps", f"{key}_fps")


def bench_startup(out: Table, tmp: Path) -> None:
    """Process start -> first mask for the light profile (the node's start-up)."""
    light = light_artifact(tmp)
    cases = [("onnxruntime", {"backend": "onnxruntime"}, "ort"), ("torch", {"device": "cpu"}, "torch")]
    for label, kwargs, key in cases:
        out.row(f"time to first mask, light profile, {label}", time_to_first_mask(light, tmp / "inductor", **kwargs),
            "s", f"first_mask_{key}_s")
    for state in ("cold", "warm"):  # the same cache directory, empty the first time
        seconds = time_to_first_mask(light, tmp / "inductor", device="cpu", compile=True)
        out.row(f"  torch compile=true, {state} compile cache", seconds, "s", f"first_mask_compile_{state}_s")


BEFORE = "onnxruntime fp32, torch work on every core (before)"
BACKENDS = {
    "torch fp32": dict(device="cpu"),
    BEFORE: dict(backend="onnxruntime"),
    "onnxruntime fp32": dict(backend="onnxruntime"),
    "onnxruntime int8 (QDQ)": dict(backend="onnxruntime"),
    "openvino fp32": dict(backend="openvino", precision="fp32"),
    "openvino bf16": dict(backend="openvino", precision="bf16"),
    "openvino int8 (NNCF)": dict(backend="openvino", precision="int8"),
}


def bench_backends(out: Table, tmp: Path, n: int, trained: Path | None = None) -> None:
    """Every CPU backend and precision, round-robin over the same frames in one run: the
    whole path (960x540 uint8 frame in -> mask + cost out), p50 / p95 / frames/s; pixel
    agreement with torch fp32 and (with --trained, on the demo's shifted-biome test split)
    mIoU. Without --trained: the light profile with random weights (many near-ties: its
    agreement is a floor)."""
    from offroad_seg_ros.core.metrics import MetricAccumulator
    from offroad_seg_ros.data.dataset import list_samples, read_image, read_raw_mask
    from offroad_seg_ros.inference.segmenter import Segmenter
    from offroad_seg_ros.tools.quantize import quantize
    from offroad_seg_train.synth import generate

    if trained is None:
        models = {"light profile, random weights": light_artifact(tmp)}
        data = tmp / "calib"
        if not (data / "test").is_dir():
            generate(data, {"val": 16, "test": 4}, seed=3, workers=2, progress=None)
    else:
        models, data = trained_models(trained), trained / "data"
    calib_samples = list_samples(data / "val")[:16]
    test = list_samples(data / "test")
    test_images = [read_image(s.image) for s in test]
    test_gt = [read_raw_mask(s.mask) for s in test]
    timing_frames = test_images[:4]  # the test split is the shifted biome
    for model_name, art in models.items():
        pre = Segmenter(art, backend="onnxruntime", warmup_size=None).pre
        calib = [pre(torch.from_numpy(read_image(s.image))[None]).contiguous().numpy() for s in calib_samples]
        if not (art / "model_int8.xml").is_file():
            quantize(art, calib, len(calib), "val", calib[:4])
        qdq = ort_int8_artifact(art, calib, tmp / f"{art.name}_ort_int8")
        segs = {}
        for k, kw in BACKENDS.items():
            segs[k] = Segmenter(qdq if "QDQ" in k else art, **kw)
        # The onnxruntime path as it was: torch's OpenMP workers beside onnxruntime's spinning ones.
        segs[BEFORE].runtime.host_threads = 0
        times: dict[str, list[float]] = {k: [] for k in segs}
        for _ in range(max(3, n)):
            for k, seg in segs.items():  # round-robin: every backend sees the same load
                # A pause, as between camera frames: the previous runtime's spinning
                # workers settle instead of landing on the next backend's first frame.
                time.sleep(0.05)
                for f in timing_frames:
                    t = time.perf_counter()
                    seg(f, ("mask", "cost"))
                    times[k].append(time.perf_counter() - t)
        ref = [segs["torch fp32"](f).mask for f in test_images]
        table = segs["torch fp32"].classes
        fps = {}
        for k, seg in segs.items():
            t = np.array(times[k][len(timing_frames):])  # the first round is warm-up
            masks = [seg(f).mask for f in test_images]
            key = f"{model_name}_{k}".replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
            label = f"{model_name}, {k}"
            fps[k] = 1 / np.mean(t)
            out.row(f"{label}: p50", np.percentile(t, 50) * 1e3, "ms", f"backend_{key}_p50_ms")
            out.row(f"{label}: p95", np.percentile(t, 95) * 1e3, "ms", f"backend_{key}_p95_ms")
            out.row(f"{label}: frames/s", fps[k], "frames/s", f"backend_{key}_fps")
            agree = np.mean([(m == r).mean() for m, r in zip(masks, ref)])
            out.row(f"{label}: pixel agreement with torch fp32", 100 * agree, "%", f"backend_{key}_agree_pct")
            if trained is not None:
                acc = MetricAccumulator(len(table))
                for m, gt in zip(masks, test_gt):
                    acc.update(torch.from_numpy(m), torch.from_numpy(table.remap(gt)))
                out.row(f"{label}: test mIoU", acc.compute()["miou"], "", f"backend_{key}_miou", digits=4)
        best = max((k for k in fps if "before" not in k), key=fps.get)
        out.row(f"{model_name}: fastest ({best}) / onnxruntime before, frames/s", fps[best] / fps[BEFORE], "x",
            f"backend_{model_name.replace(' ', '_').replace(',', '')}_speedup")
        # Release the runtimes (and their thread pools) now, not at some later garbage
        # collection in the middle of another section: a Segmenter sits in a reference cycle.
        segs.clear()
        gc.collect()


