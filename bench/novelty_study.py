"""Novelty scores: which to use. Scores candidate per-pixel novelty scores of a model artifact on
small generated splits with novel objects and pasted patches, tuning and held-out apart.

python bench/novelty_study.py [--model demo-out/model] [--frames 12] [--fit-frames 36]
                              [--json bench/novelty_results.json]

The splits (960x540, written by offroad_seg_train.synth into a scratch folder, fixed seeds):
- fit: plain train-biome val frames; the feature density is fitted on them and every score's
  histogram range is read off them;
- tuning: train-biome val frames (other seeds) and the TUNING_BIOMES, with TUNING_KINDS novel
  objects; the threshold is fitted here: 5% false alarms on the train-biome frames' ordinary pixels;
- held out: the HELD_OUT_BIOMES and the default test biome, with HELD_OUT_KINDS: reported only.
Every split also holds pasted ordinary patches, the control (docs/generator.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from offroad_seg_ros.core.artifact import load_artifact  # noqa: E402
from offroad_seg_ros.core.preprocess import labels_from_logits  # noqa: E402
from offroad_seg_ros.data.dataset import (  # noqa: E402
    NOT_NOVEL,
    NOVEL,
    NOVELTY_DIR,
    PASTED,
    list_samples,
    read_image,
    read_novelty_mask,
    read_raw_mask,
)
from offroad_seg_ros.evaluation.novelty import NoveltyHistogram  # noqa: E402
from offroad_seg_ros.evaluation.report import jsonable  # noqa: E402
from offroad_seg_ros.inference.novelty_net import OutlierHead, outlier_head_of  # noqa: E402
from offroad_seg_ros.inference.novelty_scores import (  # noqa: E402
    FeatureDensity,
    FeatureDensityFit,
    NetworkOutputs,
    energy,
    labels_on_feature_grid,
    max_logit,
    max_softmax,
    run_network,
    sky_below_horizon,
    to_frame,
)
from offroad_seg_train.biomes import HELD_OUT_BIOMES, TEST_BIOME, TRAIN_BIOME, TUNING_BIOMES, Biome  # noqa: E402
from offroad_seg_train.novel_objects import HELD_OUT_KINDS, TUNING_KINDS, NovelScenes  # noqa: E402
from offroad_seg_train.synth import generate, plain_scene  # noqa: E402

FIT_SEED, EVAL_SEED = 71, 72
NOVEL_PER_SCENE, PASTED_PER_SCENE = 2, 2
FALSE_ALARM = 0.05  # the operating point: 5% of the train biome's ordinary pixels flagged
LOW_RANK = 8
# A class mean needs this many feature cells the class fills alone; 36 fit frames give Flowers
# 36 such cells and Ground Clutter 2 (too small for a cell at 1/8 of the frame: left out).
MIN_CELLS = 20
BINS = 8192
KIND_NAMES = {"ordinary": NOT_NOVEL, "novel": NOVEL, "pasted": PASTED}

Score = Callable[[NetworkOutputs], torch.Tensor]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def make_splits(root: Path, frames: int, fit_frames: int) -> list[dict]:
    """Generate every split; each entry: name, role (fit, tuning, held_out), biome, kinds, folder."""
    plan = [("fit", "fit", "val", TRAIN_BIOME, (), FIT_SEED),
            ("train", "tuning", "val", TRAIN_BIOME, TUNING_KINDS, EVAL_SEED)]
    plan += [(b.name, "tuning", "test", b, TUNING_KINDS, EVAL_SEED) for b in TUNING_BIOMES]
    plan += [(b.name, "held_out", "test", b, HELD_OUT_KINDS, EVAL_SEED) for b in (*HELD_OUT_BIOMES, TEST_BIOME)]
    splits = []
    for name, role, split, biome, kinds, seed in plan:
        scene = NovelScenes(kinds, NOVEL_PER_SCENE, PASTED_PER_SCENE) if kinds else plain_scene
        given: Biome | None = None if biome.name in ("train", "test") else biome  # the split's own
        n = fit_frames if role == "fit" else frames
        generate(root / name, {split: n}, seed=seed, workers=1, progress=None, biome=given, scene=scene)
        splits.append({"name": name, "role": role, "biome": biome.name, "kinds": list(kinds), "seed": seed,
                       "frames": n, "folder": root / name / split})
        print(f"generated {n} frames: {name} ({role})", flush=True)
    return splits


def frames_of(split: dict, with_novelty: bool = True):
    for s in list_samples(split["folder"]):
        novelty = read_novelty_mask(split["folder"] / NOVELTY_DIR / s.image.name) if with_novelty else None
        assert s.mask is not None
        yield torch.from_numpy(read_image(s.image))[None], read_raw_mask(s.mask), novelty


def fit_density(model, art, split: dict) -> FeatureDensityFit:
    fit = None
    for image, raw, _ in frames_of(split, with_novelty=False):
        out = run_network(model, art.preprocess, image)
        labels = torch.from_numpy(art.classes.remap(raw))[None]
        grid = labels_on_feature_grid(labels, out)
        fit = fit or FeatureDensityFit(len(art.classes), out.features.shape[1])
        fit.update(out.features, grid)
    assert fit is not None
    return fit


def sky_flags(o: NetworkOutputs, sky: int) -> torch.Tensor:
    """(B, H, W) bool: the sky cue at the frame's size."""
    # The node's argmax (channels-last: ~10x faster than over NCHW logits); the node has it already.
    flags = sky_below_horizon(labels_from_logits(o.logits)[0], sky)[:, None].float()
    return F.interpolate(flags, size=o.frame, mode="nearest")[:, 0] > 0


def candidates(temperature: float, densities: dict[str, FeatureDensity], sky: int,
               sky_high: dict[str, float], head: OutlierHead | None = None) -> dict[str, Score]:
    """name -> score of the network's outputs at the frame's size. `sky_high` is filled in once the
    ranges are known: the score a pixel flagged by the sky cue gets at least (its range's top).
    `head`: the artifact's outlier head (offroad-seg outlier-head), a candidate of its own."""
    scores: dict[str, Score] = {
        "max_softmax": lambda o: to_frame(max_softmax(o.logits, temperature), o),
        "max_logit": lambda o: to_frame(max_logit(o.logits), o),
        "energy": lambda o: to_frame(energy(o.logits), o),
    }
    if head is not None:
        def head_score(o: NetworkOutputs) -> torch.Tensor:
            with torch.no_grad():
                return to_frame(head(o.features.float())[:, 0], o)
        scores["outlier_head"] = head_score
    def density_score(d: FeatureDensity) -> Score:
        return lambda o: to_frame(d.score(o.features), o)

    for name, density in densities.items():
        scores[name] = density_score(density)

    def with_sky(base: str) -> Score:
        def score(o: NetworkOutputs) -> torch.Tensor:
            flags = sky_flags(o, sky)
            s = scores[base](o)
            return torch.where(flags, s.clamp_min(sky_high[base]), s)
        return score

    for name in densities:
        scores[f"{name}+sky"] = with_sky(name)
    return scores


def score_ranges(model, art, split: dict, scores: dict[str, Score]) -> dict[str, tuple[float, float]]:
    """Each score's histogram range from the fit frames: their span, widened half a span below
    and three above (shifted biomes score higher; what is above the range ties in the top bin)."""
    lo = dict.fromkeys(scores, np.inf)
    hi = dict.fromkeys(scores, -np.inf)
    for image, _, _ in frames_of(split, with_novelty=False):
        out = run_network(model, art.preprocess, image)
        for name, fn in scores.items():
            s = fn(out)
            lo[name], hi[name] = min(lo[name], float(s.min())), max(hi[name], float(s.max()))
    return {n: (lo[n] - 0.5 * (hi[n] - lo[n]), hi[n] + 3 * (hi[n] - lo[n])) for n in scores}


def score_splits(model, art, splits: list[dict], scores: dict[str, Score],
                 ranges: dict[str, tuple[float, float]], sky: int) -> tuple[dict, dict, dict]:
    """Histograms per score and split, the CPU times (s) per frame (the network, each score), and
    per split the share of each kind of pixel the sky cue alone flags."""
    hists = {n: {s["name"]: NoveltyHistogram(*ranges[n], BINS) for s in splits} for n in scores}
    times: dict[str, list[float]] = {"network": [], **{n: [] for n in scores}}
    cue = {}
    for split in splits:
        flagged, total = np.zeros(256, np.int64), np.zeros(256, np.int64)
        for image, _, novelty in frames_of(split):
            t = time.perf_counter()
            out = run_network(model, art.preprocess, image)
            times["network"].append(time.perf_counter() - t)
            for name, fn in scores.items():
                t = time.perf_counter()
                s = fn(out)
                times[name].append(time.perf_counter() - t)
                hists[name][split["name"]].update(s[0].numpy(), novelty)
            flagged += np.bincount(novelty[sky_flags(out, sky)[0].numpy()], minlength=256)
            total += np.bincount(novelty.ravel(), minlength=256)
        cue[split["name"]] = {k: flagged[v] / max(total[v], 1) for k, v in KIND_NAMES.items()}
    return hists, times, cue


def merged(hists: dict[str, NoveltyHistogram], names: list[str]) -> NoveltyHistogram:
    first = hists[names[0]]
    out = NoveltyHistogram(first.low, first.high, first.bins)
    for n in names:
        out.merge(hists[n])
    return out


def results(hists: dict, splits: list[dict]) -> dict:
    groups = {role: [s["name"] for s in splits if s["role"] == role] for role in ("tuning", "held_out")}
    out = {}
    for score, by_split in hists.items():
        threshold = by_split["train"].threshold_at_false_alarm(FALSE_ALARM)
        out[score] = {"threshold": threshold,
                      "splits": {n: h.summary(threshold) for n, h in by_split.items()},
                      "groups": {g: merged(by_split, names).summary(threshold) for g, names in groups.items()}}
    return out


def _p(v: float) -> str:
    return f"{100 * v:.1f}%"


def markdown(res: dict, times: dict, cue: dict, splits: list[dict]) -> str:
    ms = {n: 1000 * statistics.median(t) for n, t in times.items()}
    lines = ["| score | AUROC tuning | FPR@95 tuning | AP tuning | AUROC held-out | FPR@95 held-out | AP held-out "
             "| novel flagged tuning / held-out | pasted flagged tuning / held-out | ms / frame (+ network) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in res.items():
        t, h = r["groups"]["tuning"], r["groups"]["held_out"]
        lines.append(f"| {name} | {t['auroc']:.3f} | {_p(t['fpr_at_95_tpr'])} | {t['average_precision']:.3f} "
                     f"| {h['auroc']:.3f} | {_p(h['fpr_at_95_tpr'])} | {h['average_precision']:.3f} "
                     f"| {_p(t['novel_flagged'])} / {_p(h['novel_flagged'])} "
                     f"| {_p(t['pasted_flagged'])} / {_p(h['pasted_flagged'])} "
                     f"| {ms[name]:.1f} (+{ms['network']:.0f}) |")
    names = [s["name"] for s in splits if s["role"] != "fit"]
    tag = {s["name"]: "T" if s["role"] == "tuning" else "H" for s in splits}
    head = " | ".join(f"{n} ({tag[n]})" for n in names)
    for title, key in (("false alarms on ordinary pixels at the threshold", "false_alarm_rate"),
                       ("AUROC", "auroc"), ("novel pixels flagged at the threshold", "novel_flagged")):
        lines += ["", f"{title}, per biome (T tuning, H held out):", "",
                  f"| score | {head} |", "| --- |" + " ---: |" * len(names)]
        for name, r in res.items():
            cells = [r["splits"][n][key] for n in names]
            lines.append(f"| {name} | " + " | ".join(f"{c:.3f}" if key == "auroc" else _p(c) for c in cells) + " |")
    lines += ["", "the sky cue alone (Sky predicted below the horizon), share of each kind flagged:", "",
              f"| pixels | {head} |", "| --- |" + " ---: |" * len(names)]
    for kind in KIND_NAMES:
        lines.append(f"| {kind} | " + " | ".join(f"{100 * cue[n][kind]:.2f}%" for n in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo-out/model")
    p.add_argument("--frames", type=int, default=12, help="frames per scored split (12)")
    p.add_argument("--fit-frames", type=int, default=36, help="plain train-biome frames the density is fitted on (36)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    p.add_argument("--json", default="bench/novelty_results.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    art, model = load_artifact(args.model)
    with tempfile.TemporaryDirectory(prefix="novelty-study-") as tmp:
        splits = make_splits(Path(tmp), args.frames, args.fit_frames)
        fit = fit_density(model, art, splits[0])
        densities = {"density": fit.finish(0, MIN_CELLS)}
        densities[f"density_rank{LOW_RANK}"] = fit.finish(min(LOW_RANK, fit.sum.shape[1] - 1), MIN_CELLS)
        sky_high: dict[str, float] = {}
        sky = art.classes.index_of("Sky")
        head = outlier_head_of(art)
        scores = candidates(art.temperature, densities, sky, sky_high, head)
        base = {n: f for n, f in scores.items() if not n.endswith("+sky")}
        ranges = score_ranges(model, art, splits[0], base)
        ranges.update({f"{n}+sky": ranges[n] for n in densities})
        sky_high.update({n: ranges[n][1] for n in densities})
        hists, times, cue = score_splits(model, art, splits[1:], scores, ranges, sky)
    res = results(hists, splits[1:])
    table = markdown(res, times, cue, splits[1:])
    print(table)
    record = {
        "date": datetime.date.today().isoformat(), "machine": cpu_name(), "torch": torch.__version__,
        "threads": args.threads, "model": {"path": args.model, "name": art.name, "weights": art.weights_digest(),
                                           "temperature": art.temperature},
        "frames_per_split": args.frames, "fit_frames": args.fit_frames, "frame_size": [960, 540],
        "novel_per_scene": NOVEL_PER_SCENE, "pasted_per_scene": PASTED_PER_SCENE, "false_alarm_target": FALSE_ALARM,
        "bins": BINS, "min_cells": MIN_CELLS,
        "splits": [{k: v for k, v in s.items() if k != "folder"} for s in splits],
        "density": {n: {"rank": d.rank, "dim": int(d.std.shape[0]), "classes": d.classes, "cells": d.counts,
                        "residual_var": d.residual_var} for n, d in densities.items()},
        "ranges": ranges, "ms_per_frame_median": {n: 1000 * statistics.median(t) for n, t in times.items()},
        "results": res, "sky_cue_alone": cue, "seconds": time.perf_counter() - t0,
    }
    Path(args.json).write_text(json.dumps(jsonable(record), indent=1) + "\n")
    print(f"wrote {args.json} ({record['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
