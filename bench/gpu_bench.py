"""GPU benchmarks (run through bench/gpu_check.sh): the reference FPN +
ResNeXt-101 32x4d on 960x540 frames, host uint8 in -> host uint8 mask out;
8-camera batches; training throughput from memory vs the real data pipeline;
a short reference-recipe training run. Prints a table, writes gpu_results.json.

`--smoke` runs every section on whatever device there is (the CPU too) with a
ResNet-18, a few repetitions and tiny training runs: a check that the script
works before a GPU machine's minutes are spent on it, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results import RESULTS, markdown, row, timeit  # noqa: E402
from startup import time_to_first_mask  # noqa: E402

from offroad_seg_ros.core.artifact import Artifact, ModelSpec, save_artifact  # noqa: E402
from offroad_seg_ros.core.classes import ClassTable  # noqa: E402
from offroad_seg_ros.core.model import build_model  # noqa: E402
from offroad_seg_ros.core.preprocess import Preprocess  # noqa: E402

DEVICE = "cuda"
ENCODER = "resnext101_32x4d"
SMOKE = False


def reps(n: int) -> int:
    return 2 if SMOKE else n


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def times(fn, n, warmup=5):
    return timeit(fn, reps(n), min(warmup, reps(warmup)), sync=sync)


def reference_artifact(tmp: Path) -> Path:
    table = ClassTable.default()
    model = build_model("FPN", ENCODER, len(table))
    art = Artifact(ModelSpec("FPN", ENCODER), table, Preprocess(scale=1.0), name=f"fpn_{ENCODER}_random")
    return save_artifact(tmp / "ref", art, model)


def bench_inference(art: Path, frames: list[np.ndarray]) -> None:
    from rosbags.typesys import Stores, get_typestore

    from offroad_seg_ros.inference.segmenter import Segmenter
    from offroad_seg_ros.node.pipeline import FramePipeline

    f = frames[0]
    half = "fp16" if DEVICE == "cuda" else "fp32"  # fp16 needs CUDA (and bf16 crawls on most CPUs)
    for precision in dict.fromkeys(("fp32", half, "bf16")):
        seg = Segmenter(art, device=DEVICE, precision=precision)
        t = times(lambda s=seg: s(f), 100)
        row(f"eager {precision}: 960x540 uint8 in -> mask out, p50", 1e3 * np.percentile(t, 50), "ms",
            f"eager_{precision}_p50_ms")
        row("  p95", 1e3 * np.percentile(t, 95), "ms", f"eager_{precision}_p95_ms")
    eager = Segmenter(art, device=DEVICE, precision=half)
    batch = frames[:8]
    t = times(lambda: eager.segment_batch(batch), 20, warmup=3)
    row(f"eager {half} batch of 8 cameras", 8 / np.median(t), "frames/s", f"eager_{half}_batch8_fps")

    t0 = time.perf_counter()
    comp = Segmenter(art, device=DEVICE, precision=half, compile=True)
    row(f"compile {half} (reduce-overhead): start-up incl. compile + warm-up", time.perf_counter() - t0, "s",
        "compile_startup_s")
    t = times(lambda: comp(f), 200, warmup=10)
    row(f"compiled {half}: 960x540 uint8 in -> mask out, p50", 1e3 * np.percentile(t, 50), "ms",
        f"compiled_{half}_p50_ms")
    row("  p95", 1e3 * np.percentile(t, 95), "ms", f"compiled_{half}_p95_ms")
    agree = np.mean([(comp(x).mask == eager(x).mask).mean() for x in frames[:4]])
    row(f"compiled vs eager {half} mask agreement", 100 * agree, "%", "compiled_agreement_pct")
    t0 = time.perf_counter()
    comp.segment_batch(batch)
    row("  compile for the batch-8 shape", time.perf_counter() - t0, "s", "compile_batch_s")
    t = times(lambda: comp.segment_batch(batch), 30, warmup=3)
    row(f"compiled {half} batch of 8 cameras", 8 / np.median(t), "frames/s", f"compiled_{half}_batch8_fps")

    ts = get_typestore(Stores.ROS2_HUMBLE)
    Image, Header, Time = (ts.types[x] for x in ("sensor_msgs/msg/Image", "std_msgs/msg/Header",
                                                 "builtin_interfaces/msg/Time"))
    raw = bytes(ts.serialize_cdr(Image(Header(Time(1, 0), "cam"), 540, 960, "rgb8", 0, 2880, f.reshape(-1)),
                                 Image.__msgtype__))
    pipe = FramePipeline(comp)
    t = times(lambda: pipe.process(raw, ["mask", "cost"]), 200, warmup=10)
    row("node path (CDR -> compiled Segmenter -> mask+cost fields), p50", 1e3 * np.percentile(t, 50), "ms",
        "node_path_p50_ms")
    row("  p95", 1e3 * np.percentile(t, 95), "ms", "node_path_p95_ms")


def bench_startup(art: Path, tmp: Path) -> None:
    """The node's start-up: process start -> first mask, eager and compiled."""
    half = "fp16" if DEVICE == "cuda" else "fp32"
    row(f"time to first mask, eager {half}", time_to_first_mask(art, tmp / "inductor", device=DEVICE, precision=half),
        "s", "first_mask_eager_s")
    for state in ("cold", "warm"):  # the same cache directory, empty the first time
        row(f"  compile=true, {state} compile cache",
            time_to_first_mask(art, tmp / "inductor", device=DEVICE, precision=half, compile=True), "s",
            f"first_mask_compile_{state}_s")


class _Throughput:
    """Lightning callback: images/s over the steps after a warm-up."""

    def __init__(self, batch, warmup=10):
        import pytorch_lightning as L

        class CB(L.Callback):
            def __init__(cb):
                cb.t0, cb.n = None, 0

            def on_train_batch_end(cb, trainer, *a):
                if trainer.global_step == warmup:
                    sync()
                    cb.t0 = time.perf_counter()
                elif trainer.global_step > warmup:
                    cb.n += batch

            def on_train_end(cb, trainer, *a):
                sync()
                cb.rate = cb.n / (time.perf_counter() - cb.t0) if cb.t0 else float("nan")

        self.cb = CB()


def bench_training(data_root: Path, tmp: Path, steps: int) -> None:
    import pytorch_lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from offroad_seg_train.data import DualityDataModule
    from offroad_seg_train.module import SegModule

    batch = 4 if SMOKE else 32
    precisions = ("bf16-mixed", "32-true") if DEVICE == "cuda" else ("32-true",)
    for precision in precisions:
        L.seed_everything(0)
        crops = torch.randint(0, 255, (batch * 4, 320, 320, 3), dtype=torch.uint8)
        masks = torch.randint(0, 10, (batch * 4, 320, 320), dtype=torch.uint8)
        mem = DataLoader(TensorDataset(crops, masks), batch_size=batch, shuffle=True, drop_last=True,
                         pin_memory=DEVICE == "cuda")
        thr = _Throughput(batch, warmup=1 if SMOKE else 10)
        model = SegModule(encoder=ENCODER, encoder_weights=None)
        L.Trainer(max_steps=steps, precision=precision, logger=False, enable_checkpointing=False,
                  callbacks=[thr.cb], limit_val_batches=0, enable_progress_bar=False,
                  enable_model_summary=False).fit(model, mem)
        row(f"train step {precision}, 320x320 batch {batch}, fed from memory", thr.cb.rate, "img/s",
            f"train_mem_{precision}")
        if precision != precisions[0]:
            continue
        workers = min(15, (os.cpu_count() or 2) - 1)
        data = DualityDataModule(root=str(data_root), batch_size=batch, num_workers=workers,
                                 cache_dir=str(tmp / "cache"))
        data.setup("fit")
        thr2 = _Throughput(batch, warmup=1 if SMOKE else 10)
        model = SegModule(encoder=ENCODER, encoder_weights=None)
        L.Trainer(max_steps=steps, precision=precision, logger=False, enable_checkpointing=False,
                  callbacks=[thr2.cb], limit_val_batches=0, enable_progress_bar=False,
                  enable_model_summary=False).fit(model, data)
        row(f"train step {precision}, real pipeline (cache + reference augment, {workers} workers)",
            thr2.cb.rate, "img/s", f"train_real_{precision}")
        row("  ratio real pipeline / from memory", thr2.cb.rate / thr.cb.rate, "", f"train_ratio_{precision}")


def short_run(data_root: Path, tmp: Path) -> None:
    from offroad_seg_train.cli import main as train_main

    t0 = time.perf_counter()
    smoke = ["--model.encoder", ENCODER, "--data.batch_size", "4", "--trainer.limit_train_batches", "2",
             "--trainer.limit_val_batches", "1"] if SMOKE else []
    # The recipe's checkpoint directory is relative: run it inside tmp.
    config, cwd = Path("config/train.yaml").resolve(), Path.cwd()
    precision = "bf16-mixed" if DEVICE == "cuda" else "32-true"
    os.chdir(tmp)
    try:
        code = train_main(["fit", "--config", str(config), "--data.root", str(data_root),
                           "--model.encoder_weights", "null", "--trainer.max_epochs", "2", *smoke,
                           "--trainer.precision", precision, "--trainer.default_root_dir", str(tmp / "run"),
                           "--data.cache_dir", str(tmp / "cache"), "--trainer.enable_progress_bar", "false",
                           "--data.num_workers", str(min(15, (os.cpu_count() or 2) - 1))])
    finally:
        os.chdir(cwd)
    row(f"reference recipe, 2 epochs on generated data (exit {code})", time.perf_counter() - t0, "s",
        "short_run_s")


def bench_cameras(art: Path, frames: list[np.ndarray]) -> None:
    """Several cameras in one node (the worker's batched path: process_batch over
    one pipeline per camera, one model) vs one node per camera (a model each,
    frames one by one): frames/s, p95 of a round, model memory. Target: 8
    cameras >= 600 frames/s on an H100-class GPU for the reference model."""
    from rosbags.typesys import Stores, get_typestore

    from offroad_seg_ros.inference.segmenter import Segmenter
    from offroad_seg_ros.node.pipeline import FramePipeline, process_batch

    half = "fp16" if DEVICE == "cuda" else "fp32"
    ts = get_typestore(Stores.ROS2_HUMBLE)
    Image, Header, Time = (ts.types[x] for x in ("sensor_msgs/msg/Image", "std_msgs/msg/Header",
                                                 "builtin_interfaces/msg/Time"))
    raws = [bytes(ts.serialize_cdr(Image(Header(Time(1, 0), f"cam{i}"), 540, 960, "rgb8", 0, 2880, f.reshape(-1)),
                                   Image.__msgtype__)) for i, f in enumerate(frames)]
    def peak_mib() -> float:
        return torch.cuda.max_memory_allocated() / 2**20 if DEVICE == "cuda" else float("nan")

    def reset() -> None:
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def one_node(n: int) -> tuple[np.ndarray, float]:
        reset()
        seg = Segmenter(art, device=DEVICE, precision=half)
        pipes = [FramePipeline(seg) for _ in range(n)]
        t = times(lambda: process_batch(seg, [(p, r, ["mask", "cost"]) for p, r in zip(pipes, raws)]), 30, warmup=3)
        return t, peak_mib()

    def node_per_camera(n: int) -> tuple[np.ndarray, float]:
        reset()
        pipes = [FramePipeline(Segmenter(art, device=DEVICE, precision=half)) for _ in range(n)]
        t = times(lambda: [p.process(r, ["mask", "cost"]) for p, r in zip(pipes, raws)], 30, warmup=3)
        return t, peak_mib()  # separate processes add a CUDA context each on top (several hundred MiB)

    for n in (1, 2, 4, 8) if not SMOKE else (1, 2):
        t, mib = one_node(n)
        row(f"{n} camera(s), one node, batched {half}: frames/s", n / np.median(t), "frames/s", f"cams{n}_batched_fps")
        row(f"  p95 of a round of {n} frames", 1e3 * np.percentile(t, 95), "ms", f"cams{n}_batched_p95_ms")
        row("  peak GPU memory (one model)", mib, "MiB", f"cams{n}_batched_vram_mib")
        if n > 1:
            t, mib = node_per_camera(n)
            row(f"{n} cameras, a model per camera, one by one: frames/s", n / np.median(t), "frames/s",
                f"cams{n}_separate_fps")
            row(f"  peak GPU memory ({n} models, contexts not counted)", mib, "MiB", f"cams{n}_separate_vram_mib")


def bench_projection() -> None:
    """Ground projection of a 960x540 mask onto 200x200 cells of 0.05 m: torch on the device
    the model runs on (the mask never leaves it) vs numpy on the CPU."""
    from offroad_seg_ros.core.classes import ClassTable
    from offroad_seg_ros.ground.projection import (
        CameraModel,
        CameraPose,
        ClassCosts,
        GridSpec,
        GroundProjector,
        TorchGroundProjector,
    )

    table = ClassTable.default()
    camera = CameraModel(960, 540, (500.0, 0, 479.5, 0, 500.0, 269.5, 0, 0, 1), (-0.1, 0.02, 0, 0, 0), "plumb_bob")
    t0 = time.perf_counter()
    proj = GroundProjector(camera, CameraPose(x=0.3, z=1.2, pitch=0.25), GridSpec(0.05, 10.0, 10.0, max_range=8.0))
    row("projection: lookup-table build", (time.perf_counter() - t0) * 1e3, "ms", "projection_build_ms")
    costs = ClassCosts(table, table.cost_lut())
    mask = np.random.default_rng(0).integers(0, len(table), (540, 960), dtype=np.uint8)
    t = times(lambda: proj.project(mask, costs), 50)
    row("projection: numpy on the CPU, p50", 1e3 * np.median(t), "ms", "projection_numpy_ms")
    on_device = TorchGroundProjector(proj, costs, DEVICE)
    mask_t = torch.from_numpy(mask).to(DEVICE)
    t = times(lambda: on_device.project(mask_t), 100)
    row(f"projection: torch on {DEVICE} (mask already there), p50", 1e3 * np.median(t), "ms", "projection_torch_ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--smoke", action="store_true", help="check the script on any device (see above)")
    args = parser.parse_args()
    global DEVICE, ENCODER, SMOKE
    if args.smoke:
        SMOKE, ENCODER, args.steps = True, "resnet18", 4
        DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "CPU (smoke)"
    print(f"GPU: {name}; torch {torch.__version__}; CPU cores {os.cpu_count()}", flush=True)
    torch.backends.cudnn.benchmark = True
    from offroad_seg_train.synth import TEST_BIOME, generate, render_scene

    frames = [render_scene(np.random.default_rng(i), TEST_BIOME)[0] for i in range(8)]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        art = reference_artifact(tmp)
        sections = [("inference", lambda: bench_inference(art, frames)),
                    ("cameras", lambda: bench_cameras(art, frames)),
                    ("projection", bench_projection)]
        data_root = tmp / "data"
        # 16 batches of 32 an epoch: at least one per loader worker (96 scenes, 3 batches an epoch, left
        # 12 of 15 workers idle and measured epoch turnarounds: RESULTS.md, GPU).
        scenes = {"train": 12, "val": 2} if SMOKE else {"train": 512, "val": 8}
        sections += [("data", lambda: generate(data_root, scenes, png_level=1, progress=None)),
                     ("training", lambda: bench_training(data_root, tmp, args.steps)),
                     ("short run", lambda: short_run(data_root, tmp)),
                     ("startup", lambda: bench_startup(art, tmp))]  # last: the least needed if time runs out
        for label, fn in sections:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - keep measuring the other sections
                print(f"{label} failed: {type(exc).__name__}: {exc}", flush=True)
                RESULTS[f"{label}_error"] = float("nan")
            # After every section, so that a run cut off by its time limit keeps what it measured.
            (out / "gpu_results.json").write_text(json.dumps({"gpu": name, "torch": torch.__version__,
                                                              "results": RESULTS}, indent=1))
    print("\n" + markdown(f"benchmark ({name})"))


if __name__ == "__main__":
    main()
