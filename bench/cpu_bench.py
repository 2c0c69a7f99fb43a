"""CPU benchmarks: prints a table (and writes JSON with --json PATH).

python bench/cpu_bench.py [--quick] [--only SECTION ...] [--trained demo-out] [--json bench/cpu_results.json]

Every ratio is measured within one run (this machine is noisy).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results import RESULTS, ROWS, markdown, row, timeit  # noqa: E402
from startup import time_to_first_mask  # noqa: E402

from offroad_seg_ros.core.artifact import Artifact, ModelSpec, save_artifact  # noqa: E402
from offroad_seg_ros.core.classes import ClassTable  # noqa: E402
from offroad_seg_ros.core.model import build_model  # noqa: E402
from offroad_seg_ros.core.preprocess import Preprocess  # noqa: E402


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def bench_remap(table: ClassTable) -> None:
    rng = np.random.default_rng(0)
    mask = rng.choice(np.array(table.raw_ids, np.uint16), size=(3000, 4000))
    lut = timeit(lambda: table.remap(mask), 5)

    def naive():
        out = np.full(mask.shape, 255, np.uint8)
        for i, raw in enumerate(table.raw_ids):
            out[mask == raw] = i
        return out

    loop = timeit(naive, 3)
    row("class LUT remap, 4000x3000 uint16 mask", 1e3 * np.median(lut), "ms", "remap_ms")
    row("  per-ID loop (np.where per class), same mask", 1e3 * np.median(loop), "ms", "remap_loop_ms")


def bench_synth(tmp: Path) -> None:
    from offroad_seg_train.synth import generate, render_scene

    t = timeit(lambda: render_scene(np.random.default_rng(1)), 10)
    row("synth: render one 960x540 scene (1 core)", 1 / np.median(t), "scenes/s", "synth_render_per_s")
    for level in (1, 0):
        t0 = time.perf_counter()
        generate(tmp / f"synth{level}", {"train": 20}, workers=1, png_level=level, progress=None)
        row(f"synth: render + write PNG pair, level {level} (1 core)", 20 / (time.perf_counter() - t0),
            "pairs/s", f"synth_write_l{level}_per_s")


def make_artifact(tmp: Path, name: str, kwargs: dict, scale: float, onnx: bool = False,
                  encoder: str = "resnet18") -> Path:
    table = ClassTable.default()
    torch.manual_seed(0)
    model = build_model("FPN", encoder, len(table), **kwargs)
    art = Artifact(ModelSpec("FPN", encoder, kwargs), table, Preprocess(scale=scale), name=name)
    return save_artifact(tmp / name, art, model, onnx=onnx)


def light_artifact(tmp: Path) -> Path:
    """The light CPU profile's network (config/train_cpu_light.yaml), random weights."""
    if (tmp / "fpn_light" / "model.onnx").is_file():
        return tmp / "fpn_light"
    return make_artifact(tmp, "fpn_light", {"decoder_pyramid_channels": 64, "decoder_segmentation_channels": 32},
                         0.5, onnx=True, encoder="mobilenet_v2")


def bench_node_path(tmp: Path, n: int) -> None:
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
        for out in (mask, cost_lut[mask]):
            ts.serialize_cdr(Image(msg.header, 540, 960, "mono8", 0, 960, out.reshape(-1)), Image.__msgtype__)

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
        row(f"node path {name}: p50", 1e3 * np.percentile(t, 50), "ms", f"{key}_p50_ms")
        row("  p95", 1e3 * np.percentile(t, 95), "ms", f"{key}_p95_ms")
        row("  frames/s", 1 / np.median(t), "fps", f"{key}_fps")


def bench_startup(tmp: Path) -> None:
    """Process start -> first mask for the light profile (the node's start-up)."""
    light = light_artifact(tmp)
    cases = [("onnxruntime", {"backend": "onnxruntime"}, "ort"), ("torch", {"device": "cpu"}, "torch")]
    for label, kwargs, key in cases:
        row(f"time to first mask, light profile, {label}", time_to_first_mask(light, tmp / "inductor", **kwargs),
            "s", f"first_mask_{key}_s")
    for state in ("cold", "warm"):  # the same cache directory, empty the first time
        seconds = time_to_first_mask(light, tmp / "inductor", device="cpu", compile=True)
        row(f"  torch compile=true, {state} compile cache", seconds, "s", f"first_mask_compile_{state}_s")


def bench_loader(tmp: Path) -> None:
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
    row("train sample: PNG decode + remap + reference augment (1 core)", len(samples) / np.median(t),
        "samples/s", "loader_naive_per_s")
    t = timeit(lambda: [ds[i] for i in range(len(ds))], 2)
    row("train sample: memory-mapped cache + reference augment (1 core)", len(ds) / np.median(t),
        "samples/s", "loader_cache_per_s")
    t = timeit(lambda: [cv2.imread(str(s.image)) for s in samples], 2)
    row("  of which PNG decode of the image alone (level-1 PNG)", 1e3 * np.median(t) / len(samples),
        "ms/sample", "png_decode_ms")


def bench_training(tmp: Path, steps: int = 3, batch: int = 8) -> None:
    """Reference model (FPN + ResNeXt-101, random init) training steps at 320x320:
    fed from tensors in memory vs the real loader (cache + reference augment)."""
    from torch.utils.data import DataLoader, TensorDataset

    from offroad_seg_train.data import DualityDataModule
    from offroad_seg_train.module import SegModule

    torch.manual_seed(0)
    data = DualityDataModule(root=str(tmp / "synth1"), val_split="train", batch_size=batch, num_workers=2,
                             persistent_workers=True, cache_dir=str(tmp / "cache"))
    data.setup("fit")
    mem = DataLoader(TensorDataset(torch.randint(0, 255, (batch * 2, 320, 320, 3), dtype=torch.uint8),
                                   torch.randint(0, 10, (batch * 2, 320, 320), dtype=torch.uint8)),
                     batch_size=batch, drop_last=True)
    model = SegModule(encoder_weights=None)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)

    def rate(loader) -> float:
        it = iter(loader)

        def step():
            nonlocal it
            try:
                images, masks = next(it)
            except StopIteration:
                it = iter(loader)
                images, masks = next(it)
            opt.zero_grad()
            logits = model.model(model.pre.normalize(images))[..., :320, :320]
            model.loss(logits, masks.long()).backward()
            opt.step()

        return batch / float(np.median(timeit(step, steps, warmup=1)))

    real, memory = rate(data.train_dataloader()), rate(mem)
    row(f"train step FPN-RX101 320x320 batch {batch} fp32, fed from memory", memory, "img/s", "train_mem_per_s")
    row("  same, real pipeline (cache + reference augment, 2 workers)", real, "img/s", "train_real_per_s")
    row("  ratio real / memory", real / memory, "", "train_ratio")


def bench_eval(tmp: Path, table: ClassTable) -> None:
    from offroad_seg_ros.core.metrics import MetricAccumulator
    from offroad_seg_ros.data.bag import GT_TOPIC, IMAGE_TOPIC, NAME_TOPIC, PairingStats, read_frames, write_bag
    from offroad_seg_ros.evaluation.evaluate import evaluate
    from offroad_seg_train.synth import generate

    n = 40  # enough frames that gallery thumbnails (made for the first few) do not dominate
    generate(tmp / "evald", {"test": n}, progress=None)
    t0 = time.perf_counter()
    bag = write_bag(tmp / "evald" / "test", tmp / "bag")
    row("bag: write 960x540 rgb8 + mono16 frames (mcap)", n / (time.perf_counter() - t0), "frames/s",
        "bag_write_fps")
    roles = {"image": IMAGE_TOPIC, "gt": GT_TOPIC, "name": NAME_TOPIC}
    t0 = time.perf_counter()
    frames = list(read_frames(bag, roles, PairingStats()))
    row("bag: read + decode + pair frames", len(frames) / (time.perf_counter() - t0), "frames/s",
        "bag_read_fps")
    acc = MetricAccumulator(len(table))
    gts = [torch.from_numpy(table.remap(f.gt_raw)) for f in frames]
    t0 = time.perf_counter()
    for g in gts:
        acc.update(g.roll(3, 1), g)
    row("metrics: accumulate one 960x540 frame (incl. per-image scores)", 1e3 * (time.perf_counter() - t0) / len(gts),
        "ms", "metric_ms")
    light = light_artifact(tmp)
    for backend in ("torch", "onnxruntime"):
        out, _ = evaluate(bag, model=light, device="cpu", backend=backend, progress=False)
        key = "" if backend == "torch" else "_ort"
        row(f"eval: whole bag eval, light profile ({backend})", out["run"]["fps"], "frames/s", f"eval{key}_fps")
        row("  evaluator overhead (all but the forward pass)", out["run"]["overhead_ms_per_frame"], "ms/frame",
            f"eval{key}_overhead_ms")


def bench_projection(table: ClassTable, n: int) -> None:
    """Ground projection of one 960x540 mask onto 200x200 cells of 0.05 m."""
    from offroad_seg_ros.ground.projection import CameraModel, CameraPose, ClassCosts, GridSpec, GroundProjector

    camera = CameraModel(960, 540, (500.0, 0, 479.5, 0, 500.0, 269.5, 0, 0, 1), (-0.1, 0.02, 0, 0, 0), "plumb_bob")
    pose, grid = CameraPose(x=0.3, z=1.2, pitch=0.25), GridSpec(0.05, 10.0, 10.0, max_range=8.0)
    t0 = time.perf_counter()
    proj = GroundProjector(camera, pose, grid)
    row("projection: lookup-table build (960x540, distorted, 200x200 cells)", (time.perf_counter() - t0) * 1e3,
        "ms", "projection_build_ms")
    costs = ClassCosts(table, table.cost_lut())
    mask = np.random.default_rng(0).integers(0, len(table), (540, 960), dtype=np.uint8)
    t = timeit(lambda: proj.project(mask, costs), n * 3)
    row(f"projection: flat ground, one frame ({proj.pixels.size} pixels land), p50", np.median(t) * 1e3, "ms",
        "projection_flat_ms")
    depth = np.random.default_rng(1).uniform(0.5, 12, (540, 960)).astype(np.float32)
    t = timeit(lambda: proj.project(mask, costs, depth), n)
    row("projection: with a 960x540 depth image, one frame, p50", np.median(t) * 1e3, "ms", "projection_depth_ms")


def bench_ddp(tmp: Path, table: ClassTable) -> None:
    """Training samples/s with 1 and 2 CPU processes (torchrun, gloo) on the same generated data:
    one epoch of the small recipe at half scale, its wall time from Lightning's fit start to end."""
    import re
    import socket

    from offroad_seg_train.synth import generate

    root = tmp / "ddp_data"
    generate(root, {"train": 32, "val": 2}, seed=0, workers=2, progress=None)
    cfg = Path(__file__).resolve().parents[1] / "config" / "train_cpu.yaml"
    exe = Path(sys.executable).parent
    for procs in (1, 2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cli = [str(exe / "offroad-seg"), "train", "fit", "--config", str(cfg), "--data.root", str(root),
               "--data.cache_dir", str(tmp / "ddp_cache"), "--trainer.default_root_dir", str(tmp / f"ddp{procs}"),
               "--trainer.max_epochs", "2", "--data.batch_size", "4", "--data.num_workers", "0",
               "--data.persistent_workers", "false", "--trainer.enable_progress_bar", "false",
               "--trainer.accelerator", "cpu", "--trainer.devices", str(procs)]
        if procs > 1:
            cli = [str(exe / "torchrun"), "--nproc-per-node", str(procs), "--master-port", str(port), *cli,
                   "--trainer.strategy", "ddp"]
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // procs))}
        t0 = time.perf_counter()
        out = subprocess.run(cli, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - t0
        if out.returncode != 0:
            raise RuntimeError(out.stdout[-2000:] + out.stderr[-2000:])
        assert re.search(r"best val/mIoU", out.stdout + out.stderr)
        row(f"ddp: 2 epochs x 32 scenes (half scale, batch 4/process), {procs} process(es), wall incl. start-up",
            seconds, "s", f"ddp_{procs}proc_s")
        row(f"ddp: {procs} process(es), training samples/s (incl. start-up and validation)", 64 / seconds,
            "samples/s", f"ddp_{procs}proc_samples_per_s")


def bench_hostile(n: int) -> None:
    """How long a ~1 kB JPEG / PNG that claims 8000x8000 pixels takes to be refused
    (the header is read, nothing decoded)."""
    import struct
    import zlib

    import cv2

    from offroad_seg_ros.data.image_msgs import ImageConversionError, compressed_to_rgb

    ok, jpg = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))
    jpeg = bytearray(jpg.tobytes())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 8000, 8000)
    ok, pn = cv2.imencode(".png", np.full((16, 16, 3), 90, np.uint8))
    png = bytearray(pn.tobytes())
    png[16:24] = struct.pack(">II", 8000, 8000)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    for fmt, data in (("jpeg", bytes(jpeg)), ("png", bytes(png))):
        def refuse(data=data, fmt=fmt):
            try:
                compressed_to_rgb(fmt, data)
            except ImageConversionError:
                return
            raise AssertionError("not refused")
        t = timeit(refuse, n * 30)
        row(f"hostile input: {len(data)}-byte {fmt} claiming 8000x8000, refused in (p50 / max)",
            np.median(t) * 1e6, f"us (max {t.max() * 1e6:.0f} us)", f"bomb_{fmt}_refuse_us")
    bench_jpeg_decode(n)


def bench_jpeg_decode(n: int) -> None:
    """A whole 960x540 camera JPEG to RGB: the strict decoder (which refuses a
    frame cut short) against OpenCV's, which the node used before (and which
    fills a cut frame with grey), in one run, interleaved."""
    import cv2

    from offroad_seg_ros.data.image_msgs import compressed_to_rgb
    from offroad_seg_train.synth import render_scene

    rgb, _ = render_scene(np.random.default_rng(5))
    for quality in (80, 95):
        data = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
        buf = np.frombuffer(data, np.uint8)
        cases = {"strict (simplejpeg)": lambda data=data: compressed_to_rgb("jpeg", data),
                 "OpenCV imdecode + BGR->RGB, before": lambda buf=buf: cv2.cvtColor(
                     cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)}
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(n * 3):  # round-robin, so both see the same machine
            for name, fn in cases.items():
                times[name].extend(timeit(fn, 1, warmup=0))
        for name, t in times.items():
            key = "strict" if "strict" in name else "opencv"
            row(f"JPEG q{quality} 960x540 ({len(data) // 1024} KiB) -> RGB, {name}", np.median(t) * 1e3, "ms",
                f"jpeg_q{quality}_decode_{key}_ms", 3)


def ort_int8_artifact(artifact: Path, calib: list[np.ndarray], out: Path) -> Path:
    """A copy of `artifact` whose model.onnx is onnxruntime's static int8 (QDQ, per-channel
    weights), calibrated on `calib`: the other int8 candidate, measured beside NNCF's."""
    import shutil

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x}

    if (out / "model.onnx").is_file():
        return out
    shutil.copytree(artifact, out, ignore=shutil.ignore_patterns("model_int8.*"))
    pre = out / "pre.onnx"
    # The exported dims are symbolic expressions (32 * h32) that the symbolic shape inference rejects.
    quant_pre_process(str(artifact / "model.onnx"), str(pre), skip_symbolic_shape=True)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # one warning per 1-D weight: per-channel axis 1 does not apply to biases
    try:
        quantize_static(str(pre), str(out / "model.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    pre.unlink()
    return out


def trained_models(demo: Path) -> dict[str, Path]:
    """The demo's trained FPN-ResNet-18 and the light profile trained on the demo's data
    (trained here once, kept in the demo folder), both exported with model.onnx."""
    from offroad_seg_ros.core.resources import config_path
    from offroad_seg_train.cli import main as train_main
    from offroad_seg_train.demo import _best_checkpoint
    from offroad_seg_train.export import export_checkpoint

    if not (demo / "train" / "DONE").is_file():
        raise SystemExit(f"--trained {demo}: no finished demo there (run `make demo` first)")
    light_run = demo / "bench_light"
    if not (light_run / "DONE").is_file():
        print(f"[bench] training the light profile on {demo / 'data'} (once) ...", flush=True)
        code = train_main(["fit", "--config", str(config_path("train_cpu_light.yaml")),
                           "--data.root", str(demo / "data"), "--data.cache_dir", str(demo / "cache"),
                           "--trainer.default_root_dir", str(light_run), "--trainer.enable_progress_bar", "false"])
        if code:
            raise SystemExit(code)
        (light_run / "DONE").write_text("trained\n")
    out = {}
    for name, run in (("light profile", light_run), ("demo ResNet-18", demo / "train")):
        art = demo / "bench_models" / name.replace(" ", "_")
        if not (art / "model.onnx").is_file():
            export_checkpoint(_best_checkpoint(run / "checkpoints"), art, onnx=True, force=True, name=name)
        out[name] = art
    return out


BACKENDS = {
    "torch fp32": dict(device="cpu"),
    "onnxruntime fp32, torch work on every core (before)": dict(backend="onnxruntime"),
    "onnxruntime fp32": dict(backend="onnxruntime"),
    "onnxruntime int8 (QDQ)": dict(backend="onnxruntime"),
    "openvino fp32": dict(backend="openvino", precision="fp32"),
    "openvino bf16": dict(backend="openvino", precision="bf16"),
    "openvino int8 (NNCF)": dict(backend="openvino", precision="int8"),
}


def bench_backends(tmp: Path, n: int, trained: Path | None = None) -> None:
    """Every CPU backend and precision, round-robin over the same frames in one run: the
    whole path (960x540 uint8 frame in -> mask + cost out), p50 / p95 / frames/s; pixel
    agreement with torch fp32 and (with --trained, on the demo's shifted-biome test split)
    mIoU. Without --trained: the light profile with random weights (many near-ties: its
    agreement is a floor)."""
    from offroad_seg_ros.core.metrics import MetricAccumulator
    from offroad_seg_ros.data.dataset import list_samples, read_image, read_raw_mask
    from offroad_seg_ros.inference.openvino_backend import quantize
    from offroad_seg_ros.inference.segmenter import Segmenter
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
        segs["onnxruntime fp32, torch work on every core (before)"]._host_threads = 0
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
            row(f"{label}: p50", np.percentile(t, 50) * 1e3, "ms", f"backend_{key}_p50_ms")
            row(f"{label}: p95", np.percentile(t, 95) * 1e3, "ms", f"backend_{key}_p95_ms")
            row(f"{label}: frames/s", fps[k], "frames/s", f"backend_{key}_fps")
            agree = np.mean([(m == r).mean() for m, r in zip(masks, ref)])
            row(f"{label}: pixel agreement with torch fp32", 100 * agree, "%", f"backend_{key}_agree_pct")
            if trained is not None:
                acc = MetricAccumulator(len(table))
                for m, gt in zip(masks, test_gt):
                    acc.update(torch.from_numpy(m), torch.from_numpy(table.remap(gt)))
                row(f"{label}: test mIoU", acc.compute()["miou"], "", f"backend_{key}_miou", digits=4)
        best = max((k for k in fps if "before" not in k), key=fps.get)
        row(f"{model_name}: fastest ({best}) / onnxruntime before, frames/s", fps[best] / fps[BEFORE], "x",
            f"backend_{model_name.replace(' ', '_').replace(',', '')}_speedup")
        # Release the runtimes (and their thread pools) now, not at some later garbage
        # collection in the middle of another section: a Segmenter sits in a reference cycle.
        segs.clear()
        gc.collect()


BEFORE = "onnxruntime fp32, torch work on every core (before)"


SECTION_FNS = {
    "backends": lambda tmp, table, n, args: bench_backends(tmp, n, args.trained),
    "hostile": lambda tmp, table, n, args: bench_hostile(n),
    "ddp": lambda tmp, table, n, args: bench_ddp(tmp, table),
    "projection": lambda tmp, table, n, args: bench_projection(table, n),
    "remap": lambda tmp, table, n, args: bench_remap(table),
    "synth": lambda tmp, table, n, args: bench_synth(tmp),
    "node": lambda tmp, table, n, args: bench_node_path(tmp, n),
    "startup": lambda tmp, table, n, args: bench_startup(tmp),
    "loader": lambda tmp, table, n, args: bench_loader(tmp),
    "training": lambda tmp, table, n, args: bench_training(tmp),
    "eval": lambda tmp, table, n, args: bench_eval(tmp, table),
}
SECTIONS = tuple(SECTION_FNS)


def run_section(name: str, tmp: Path, args: argparse.Namespace) -> bool:
    """One section in a process of its own, as on a robot that runs one thing per process: the
    runtimes, thread pools and signal state of one section cannot disturb the next. (All in one
    process crashed: OpenVINO's CPU plugin swaps the calling thread's signal stack per compiled
    model and restores them out of order as models are freed, so a later signal, e.g. the
    SIGCHLD of a DataLoader worker, was delivered onto freed memory.) Rows come back as JSON."""
    out = tmp / f"{name}.rows.json"
    cmd = [sys.executable, __file__, "--section", name, "--tmp", str(tmp), "--rows-out", str(out)]
    cmd += ["--quick"] if args.quick else []
    cmd += ["--trained", str(args.trained)] if args.trained else []
    code = subprocess.run(cmd).returncode
    if code != 0 or not out.is_file():
        print(f"[bench] section {name} failed (exit {code})", flush=True)
        return False
    got = json.loads(out.read_text())
    ROWS.extend(tuple(r) for r in got["rows"])
    RESULTS.update(got["results"])
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--json", help="write results as JSON to this path")
    parser.add_argument("--skip-training", action="store_true", help="skip the (slow) training-step section")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--trained", type=Path, help="a finished `offroad-seg demo` folder: the backends section "
                        "times and scores its trained models (and a light profile trained on its data)")
    parser.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)  # a child: run one section
    parser.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rows-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    n = 10 if args.quick else 30
    if args.section:
        SECTION_FNS[args.section](args.tmp, ClassTable.default(), n, args)
        args.rows_out.write_text(json.dumps({"rows": ROWS, "results": RESULTS}))
        return
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}, {torch.get_num_threads()} threads")
    failed = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        wanted = set(args.only or SECTIONS) - ({"training"} if args.skip_training else set())
        # synth writes the frames that the loader and training sections read.
        if wanted & {"loader", "training"}:
            wanted.add("synth")
        failed = [name for name in SECTIONS if name in wanted and not run_section(name, tmp, args)]
    if args.json:
        path = Path(args.json)
        # A partial run updates its sections' rows and keeps the others.
        kept = json.loads(path.read_text())["results"] if (args.only or failed) and path.is_file() else {}
        results = {**kept, **RESULTS}
        path.write_text(json.dumps({"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
                                    "results": results}, indent=1))
    print("\n" + markdown("benchmark"))
    if failed:
        raise SystemExit(f"failed sections: {', '.join(failed)}")


if __name__ == "__main__":
    main()
