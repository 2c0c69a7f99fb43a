"""`offroad-seg demo`: the whole product on generated data, stage by stage.

synth -> train -> export -> bag -> eval. Each stage writes its output
atomically and is skipped when that output exists (`--force` redoes all), so
an interrupted demo picks up where it stopped; an interrupted training run
resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from offroad_seg_ros.core.resources import config_path
from offroad_seg_ros.data.dataset import IMAGE_DIR

if TYPE_CHECKING:
    from .outlier_head import HeadSettings

SMALL = {"train": 60, "val": 10, "test": 10}
FULL = {"train": 320, "val": 40, "test": 40}


def _stage(name: str, done: Callable[[], bool], run: Callable[[], object], force: bool) -> None:
    if done() and not force:
        print(f"[demo] {name}: done already, skipping (--force redoes it)", flush=True)
        return
    print(f"[demo] {name} ...", flush=True)
    t0 = time.perf_counter()
    run()
    print(f"[demo] {name}: finished in {time.perf_counter() - t0:.1f} s", flush=True)


def _train_config(out: Path, data: Path, full: bool, device: str) -> Path:
    cfg = yaml.safe_load(config_path("train.yaml" if full else "train_cpu.yaml").read_text())
    run_dir = out / "train"
    cfg["data"]["root"] = str(data)
    cfg["data"]["cache_dir"] = str(out / "cache")
    cfg["trainer"]["default_root_dir"] = str(run_dir)
    if device != "auto":
        cfg["trainer"]["accelerator"] = "cpu" if device == "cpu" else "gpu"
    for cb in cfg["trainer"].get("callbacks", []):
        if cb["class_path"].endswith("ModelCheckpoint"):
            cb["init_args"]["dirpath"] = str(run_dir / "checkpoints")
    path = out / "train_config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _best_checkpoint(ckpt_dir: Path) -> Path:
    best = [p for p in ckpt_dir.glob("*.ckpt") if p.name != "last.ckpt"]
    if not best:
        raise FileNotFoundError(f"no checkpoint in {ckpt_dir}")
    return max(best, key=lambda p: p.stat().st_mtime)


def write_preview(model: Path, image_path: Path, out: Path, device: str = "auto") -> Path:
    """One strip for the README: input | class colours | cost image | overlay."""
    import cv2
    import numpy as np

    from offroad_seg_ros.data.dataset import read_image, write_png_atomic
    from offroad_seg_ros.inference.segmenter import Segmenter

    seg = Segmenter(model, device=device, warmup_size=None)
    image = read_image(image_path)
    res = seg(image, ("color", "cost", "overlay"))
    assert res.cost is not None and res.color is not None and res.overlay is not None
    cost = cv2.cvtColor(cv2.applyColorMap(res.cost, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    strip = np.concatenate([image, res.color, cost, res.overlay], axis=1)
    strip = cv2.resize(strip, (strip.shape[1] // 2, strip.shape[0] // 2), interpolation=cv2.INTER_AREA)
    write_png_atomic(out, strip)
    return out


def run_demo(out: str | Path = "demo-out", device: str = "auto", full: bool = False, force: bool = False,
             seed: int = 0, counts: dict[str, int] | None = None, train_args: list[str] | None = None,
             outlier_head: HeadSettings | None = None) -> dict:
    """Run the five stages; `counts`, `train_args` (extra LightningCLI arguments) and
    `outlier_head` shrink the run, e.g. for the end-to-end test."""
    from offroad_seg_ros.core.classes import ClassTable
    from offroad_seg_ros.data.bag import write_bag
    from offroad_seg_ros.evaluation.evaluate import evaluate
    from offroad_seg_ros.evaluation.report import headline, summary_table, write_report

    from .cli import main as train_main
    from .export import export_checkpoint
    from .synth import generate

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data, run_dir, model, bag, report = (out / n for n in ("data", "train", "model", "test_bag", "report"))
    counts = counts or (FULL if full else SMALL)
    t_all = time.perf_counter()
    if force:
        for p in (run_dir, model, bag, report):
            shutil.rmtree(p, ignore_errors=True)

    _stage("1/5 synth: generate the desert dataset",
           lambda: all((data / s / IMAGE_DIR).is_dir() for s in counts),
           lambda: generate(data, counts, seed=seed, force=force), force)

    def train() -> None:
        cfg = _train_config(out, data, full, device)
        last = run_dir / "checkpoints" / "last.ckpt"
        args = ["fit", "--config", str(cfg), *(train_args or [])]
        args += ["--ckpt_path", str(last)] if last.is_file() else []
        if last.is_file():
            print(f"[demo] resuming training from {last}", flush=True)
        code = train_main(args)
        if code:
            raise SystemExit(code)
        (run_dir / "DONE").write_text("training finished\n")

    _stage("2/5 train: " + ("reference recipe (config/train.yaml)" if full else "CPU recipe (config/train_cpu.yaml)"),
           lambda: (run_dir / "DONE").is_file(), train, False)
    _stage("3/5 export: best checkpoint -> model artifact, confidence calibrated on val",
           lambda: _exported(model),
           lambda: export_checkpoint(_best_checkpoint(run_dir / "checkpoints"), model, name="demo", force=True,
                                     temperature_data=data, outlier_head=outlier_head), False)
    _stage("4/5 bag: test split -> rosbag2 (mcap)", lambda: (bag / "metadata.yaml").is_file(),
           lambda: write_bag(data / "test", bag, force=True), False)

    def score() -> None:
        metrics, gallery = evaluate(bag, model=model, device=device)
        write_report(report, metrics, gallery, force=True)
        write_preview(model, sorted((data / "test" / IMAGE_DIR).glob("*.png"))[0], out / "preview.png", device)

    _stage("5/5 eval: score the bag, write the report", lambda: (report / "metrics.json").is_file(), score, False)

    metrics = json.loads((report / "metrics.json").read_text())
    table = ClassTable.from_dict(metrics["classes"])
    print()
    print(summary_table(metrics, table))
    print(f"\n[demo] done in {time.perf_counter() - t_all:.0f} s. Report: {report / 'report.md'}")
    print(f"[demo] model artifact: {model}; run the node with: "
          f"ros2 launch offroad_seg_ros segment.launch.py model:={model.resolve()} image:=/camera/image_raw")
    return dict(headline(metrics))


def _exported(model: Path) -> bool:
    """Whether `model` is an artifact with a fitted temperature and an outlier head (the export
    stage's output; a demo exported before the head existed is exported again)."""
    from offroad_seg_ros.core.artifact import ArtifactError, read_artifact

    try:
        art = read_artifact(model)
    except ArtifactError:  # not exported yet (or broken): the stage redoes it
        return False
    return "temperature" in art.calibration and bool((art.novelty or {}).get("outlier_head"))
