"""Adaptation to held-out biomes: the demo model before and after `offroad-seg adapt`, against an
oracle (the same recipe with the biome's true labels), scored through the deployed path
(`evaluate` on the written artifacts) on labelled frames never used for anything else.

    offroad-seg synth --biome held_out --train 100 --test 40 --out BIOMES --seed 11
    offroad-seg synth --out SOURCE --train 0 --val 50 --test 0      # the gate's source val split
    python bench/adapt_study.py --model demo-out/model --biomes BIOMES --source demo-out/data \
        --source-val SOURCE/val --names dusk_flats white_gypsum --out bench/adapt_results.json

Each biome's `train` split is the unlabelled recording (its labels are read only by the oracle);
its `test` split is for scoring only. The settings are `AdaptSettings()`'s defaults, chosen on the
tuning biomes (docs/adaptation.md); the held-out biomes are reported, never tuned on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from offroad_seg_ros.evaluation.evaluate import evaluate
from offroad_seg_train.adapt import AdaptSettings, adapt, oracle


def scores(model: Path, split: Path) -> dict[str, float]:
    metrics, _ = evaluate(split, model=model, device="cpu", progress=False)
    return {"miou": float(metrics["miou"]), "pixel_accuracy": float(metrics["pixel_accuracy"]),
            "ece": float(metrics["calibration"]["ece"])}


def study(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="adapt-study-"))
    source_val_before = scores(args.model, args.source_val)
    out: dict = {"model": str(args.model), "threads": torch.get_num_threads(),
                 "settings": dataclasses.asdict(AdaptSettings()), "source_val_before": source_val_before,
                 "biomes": {}}
    for name in args.names:
        biome = args.biomes / name
        row: dict = {"before": scores(args.model, biome / "test")}
        t0 = time.perf_counter()
        result = adapt(args.model, biome / "train", work / name, args.source, AdaptSettings(), quiet=True,
                       enforce_gate=False)  # the measurement records the gate's verdict, it does not stop at it
        row["adapt_seconds"] = time.perf_counter() - t0
        row["after"] = scores(work / name, biome / "test")
        row["source_val_after"] = scores(work / name, args.source_val)
        row["gate"] = result.gate.to_dict()
        t0 = time.perf_counter()
        oracle(args.model, biome / "train", work / f"{name}-oracle", args.source, AdaptSettings())
        row["oracle_seconds"] = time.perf_counter() - t0
        row["oracle"] = scores(work / f"{name}-oracle", biome / "test")
        gap = row["oracle"]["miou"] - row["before"]["miou"]
        row["gap_closed"] = (row["after"]["miou"] - row["before"]["miou"]) / gap if gap > 0 else float("nan")
        out["biomes"][name] = row
        print(name, json.dumps(row, indent=1), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--biomes", type=Path, required=True, help="folder of <biome>/{train,test}")
    p.add_argument("--source", type=Path, required=True, help="the model's dataset (train replayed, val gates)")
    p.add_argument("--source-val", type=Path, required=True, help="labelled source frames scored before / after")
    p.add_argument("--names", nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    result = study(args)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
