"""Data sections: class remap, the synthetic generator, the training loader, bags and the evaluator."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from results import Table, timeit

from offroad_seg_ros.core.classes import ClassTable

from .models import light_artifact


def bench_remap(out: Table, table: ClassTable) -> None:
    rng = np.random.default_rng(0)
    mask = rng.choice(np.array(table.raw_ids, np.uint16), size=(3000, 4000))
    lut = timeit(lambda: table.remap(mask), 5)

    def naive():
        labels = np.full(mask.shape, 255, np.uint8)
        for i, raw in enumerate(table.raw_ids):
            labels[mask == raw] = i
        return labels

    loop = timeit(naive, 3)
    out.row("class LUT remap, 4000x3000 uint16 mask", 1e3 * np.median(lut), "ms", "remap_ms")
    out.row("  per-ID loop (np.where per class), same mask", 1e3 * np.median(loop), "ms", "remap_loop_ms")


def bench_synth(out: Table, tmp: Path) -> None:
    from offroad_seg_train.synth import generate, render_scene

    t = timeit(lambda: render_scene(np.random.default_rng(1)), 10)
    out.row("synth: render one 960x540 scene (1 core)", 1 / np.median(t), "scenes/s", "synth_render_per_s")
    for level in (1, 0):
        t0 = time.perf_counter()
        generate(tmp / f"synth{level}", {"train": 20}, workers=1, png_level=level, progress=None)
        out.row(f"synth: render + write PNG pair, level {level} (1 core)", 20 / (time.perf_counter() - t0),
            "pairs/s", f"synth_write_l{level}_per_s")


def bench_loader(out: Table, tmp: Path) -> None:
    import cv2

    from offroad_seg_ros.data.dataset import list_samples, read_image, read_raw_mask
    from offroad_seg_train.augment import build_pipeline, reference_pipeline
    from offroad_seg_train.data import FrameCache, TrainDataset

    table = ClassTable.default()
    samples = list_samples(tmp / "synth1" / "train")
    cache = FrameCache(samples, table, 1.0, tmp / "cache")
    ds = TrainDataset(cache, reference_pipeline(320))
    pipe = build_pipeline(reference_pipeline(320))

    def straightforward(i):
        s = samples[i % len(samples)]
        image = read_image(s.image)
        mask = table.remap(read_raw_mask(s.mask))
        return pipe(image=image, mask=mask)

    t = timeit(lambda: [straightforward(i) for i in range(len(samples))], 2)
    out.row("train sample: PNG decode + remap + reference augment (1 core)", len(samples) / np.median(t),
        "samples/s", "loader_naive_per_s")
    t = timeit(lambda: [ds[i] for i in range(len(ds))], 2)
    out.row("train sample: memory-mapped cache + reference augment (1 core)", len(ds) / np.median(t),
        "samples/s", "loader_cache_per_s")
    t = timeit(lambda: [cv2.imread(str(s.image)) for s in samples], 2)
    out.row("  of which PNG decode of the image alone (level-1 PNG)", 1e3 * np.median(t) / len(samples),
        "ms/sample", "png_decode_ms")


def bench_eval(out: Table, tmp: Path, table: ClassTable) -> None:
    from offroad_seg_ros.core.metrics import MetricAccumulator
    from offroad_seg_ros.data.bag import GT_TOPIC, IMAGE_TOPIC, NAME_TOPIC, PairingStats, read_frames, write_bag
    from offroad_seg_ros.evaluation.evaluate import evaluate
    from offroad_seg_train.synth import generate

    n = 40  # enough frames that gallery thumbnails (made for the first few) do not dominate
    generate(tmp / "evald", {"test": n}, progress=None)
    t0 = time.perf_counter()
    bag = write_bag(tmp / "evald" / "test", tmp / "bag")
    out.row("bag: write 960x540 rgb8 + mono16 frames (mcap)", n / (time.perf_counter() - t0), "frames/s",
        "bag_write_fps")
    roles = {"image": IMAGE_TOPIC, "gt": GT_TOPIC, "name": NAME_TOPIC}
    t0 = time.perf_counter()
    frames = list(read_frames(bag, roles, PairingStats()))
    out.row("bag: read + decode + pair frames", len(frames) / (time.perf_counter() - t0), "frames/s",
        "bag_read_fps")
    acc = MetricAccumulator(len(table))
    gts = [torch.from_numpy(table.remap(f.gt_raw)) for f in frames]
    t0 = time.perf_counter()
    for g in gts:
        acc.update(g.roll(3, 1), g)
    out.row("metrics: accumulate one 960x540 frame (incl. per-image scores)",
            1e3 * (time.perf_counter() - t0) / len(gts), "ms", "metric_ms")
    light = light_artifact(tmp)
    for backend in ("torch", "onnxruntime"):
        scored, _ = evaluate(bag, model=light, device="cpu", backend=backend, progress=False)
        key = "" if backend == "torch" else "_ort"
        out.row(f"eval: whole bag eval, light profile ({backend})", scored["run"]["fps"], "frames/s", f"eval{key}_fps")
        out.row("  evaluator overhead (all but the forward pass)", scored["run"]["overhead_ms_per_frame"], "ms/frame",
            f"eval{key}_overhead_ms")
