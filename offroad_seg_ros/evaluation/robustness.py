"""`offroad-seg robustness`: a model under the corruption set, and what the node would publish.

For the clean frames and every corruption x severity (corruptions.py) the same
frames go through the node's own Segmenter and camera checks, one run each:
- mIoU (classes present in the ground truth) and pixel accuracy, as `eval`
  computes them: the clean row is a plain `eval` of the same frames;
- the calibration of the confidence (ECE, mean confidence);
- the camera checks: the share of frames that raised the corruption's own
  check (detection; for `frozen`, of the repeated frames) and any alarm at
  all (on clean frames: the false-alarm rate);
- what the node publishes as known with `min_confidence` and
  `degraded_policy`: the share of labelled pixels left known (coverage) and
  how often those are right (known accuracy). A frame with an alarm counts
  as all unknown unless the policy is `publish`;
- as `~/cost` publishes them: the share of labelled pixels with a cost other
  than unknown (255: unsure, predicted Sky) and how often those are right, Sky
  included (a sky published as ground is a wrong pixel); and the frames' shift
  scores (median) and the share flagged by `shift_threshold` (the node's
  default; with `shift_policy` publish, as the node ships).
`biomes` adds the clean frames of other deserts (ROOT/<biome>/<split>, e.g.
`offroad-seg synth --biome held_out --out ROOT`): the same figures per biome.
`renderings` picks the corruption set: "tuning" (corruptions.py, what the
checks were tuned on) or "held_out" (corruptions_held_out.py: the same kinds
from other physical models, which the checks never saw).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offroad_seg_ros.core.calibration import CalibrationAccumulator, confidence_level
from offroad_seg_ros.core.classes import IGNORE_INDEX, UNKNOWN_COST
from offroad_seg_ros.core.metrics import MetricAccumulator
from offroad_seg_ros.data.bag import PairingStats
from offroad_seg_ros.data.camera_checks import (
    DEFAULT_DEGRADED_POLICY,
    CameraChecks,
    CheckThresholds,
    check_degraded_policy,
)
from offroad_seg_ros.data.dataset import IMAGE_DIR, DatasetError
from offroad_seg_ros.evaluation.corruptions import MIDDLE, SEVERITIES
from offroad_seg_ros.evaluation.corruptions_held_out import DEFAULT_RENDERINGS, corruption_set
from offroad_seg_ros.evaluation.evaluate import calibration_figures, open_frames


def _score(segmenter: Any, stream: Any, level: int, policy: str, checks: CameraChecks,
           own_check: str | None) -> tuple[dict[str, Any], CalibrationAccumulator]:
    table = segmenter.classes
    acc, calib = MetricAccumulator(len(table)), CalibrationAccumulator()
    frames = flagged = detected = repeated = 0
    known = known_right = labelled = published = published_right = 0
    shifts, shifted = [], 0
    for frame, image, repeat in stream:
        assert frame.gt_raw is not None
        gt = table.remap(frame.gt_raw, source=frame.name)
        alarms = {c.name for c in checks(image)}
        seg = segmenter(image, ("mask", "confidence", "cost"))
        if seg.shift is not None:
            shifts.append(seg.shift)
            shifted += bool(seg.shifted)
        acc.update(torch.from_numpy(seg.mask), torch.from_numpy(gt), names=[frame.name])
        calib.update(seg.confidence, seg.mask, gt)
        frames += 1
        flagged += bool(alarms)
        counts = own_check is not None and (repeat or own_check != "frozen")
        repeated += counts
        detected += counts and own_check in alarms
        labelled_px = gt != IGNORE_INDEX
        labelled += int(labelled_px.sum())
        if alarms and policy != "publish":
            continue  # the whole frame unknown (or not published)
        sure = labelled_px & (seg.confidence >= level)
        known += int(sure.sum())
        known_right += int((sure & (seg.mask == gt)).sum())
        costed = labelled_px & (seg.cost != UNKNOWN_COST)
        published += int(costed.sum())
        published_right += int((costed & (seg.mask == gt)).sum())
    if not frames:
        raise DatasetError("no frame to score")
    m = acc.compute()
    return {"miou": m["miou"], "pixel_accuracy": m["pixel_accuracy"], "ece": calib.ece(),
            "mean_confidence": calib.mean_confidence(), "frames": frames,
            "alarm_rate": flagged / frames, "detection": detected / repeated if repeated else None,
            "coverage": known / labelled if labelled else float("nan"),
            "known_accuracy": known_right / known if known else float("nan"),
            "cost_known": published / labelled if labelled else float("nan"),
            "cost_known_accuracy": published_right / published if published else float("nan"),
            "shift_median": float(np.median(shifts)) if shifts else None,
            "shifted": shifted / frames if shifts else None}, calib


def _clean(frames: Any) -> Any:
    """The frames as they are, in the (frame, image, repeated) stream `_score` reads."""
    return ((f, f.image, False) for f in frames)


def biome_folders(root: str | Path) -> list[tuple[str, Path]]:
    """(name, split folder) of each split under ROOT/<biome>/<split> (as `offroad-seg synth
    --biome NAME --out ROOT` writes them), sorted; the name is "<biome>/<split>"."""
    root = Path(root)
    found = sorted(p.parent for p in root.glob(f"*/*/{IMAGE_DIR}") if p.is_dir())
    if not found:
        raise DatasetError(f"{root} has no <biome>/<split>/{IMAGE_DIR}/ folders: generate other deserts with "
                           f"`offroad-seg synth --biome held_out --out {root}`")
    return [(f"{p.parent.name}/{p.name}", p) for p in found]


def evaluate_robustness(source: str | Path, model: str | Path, corruptions: Sequence[str] | None = None,
                        severities: Sequence[int] = SEVERITIES, seed: int = 0, min_confidence: float = 0.0,
                        degraded_policy: str = DEFAULT_DEGRADED_POLICY, checks: CheckThresholds | None = None,
                        limit: int | None = None, device: str = "auto", precision: str = "fp32",
                        backend: str = "torch", threads: int = 0, progress: bool = True,
                        renderings: str = DEFAULT_RENDERINGS, biomes: str | Path | None = None) -> dict[str, Any]:
    from offroad_seg_ros.inference.segmenter import Segmenter

    registry, corrupt_stream = corruption_set(renderings)
    names = list(corruptions or registry)
    bad = [n for n in names if n not in registry]
    if bad:
        raise ValueError(f"unknown corruption(s) {bad}; choose from {', '.join(registry)}")
    bad_sev = [s for s in severities if s not in SEVERITIES]
    if bad_sev:
        raise ValueError(f"severities must be within {SEVERITIES}, got {bad_sev}")
    check_degraded_policy(degraded_policy)
    level = confidence_level(min_confidence)
    thresholds = checks or CheckThresholds()
    segmenter = Segmenter(model, device=device, precision=precision, backend=backend, warmup_size=None,
                          threads=threads, min_confidence=min_confidence)
    biome_splits = biome_folders(biomes) if biomes is not None else []
    runs = [("clean", 0)] + [(n, s) for n in names for s in severities]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(runs) + len(biome_splits), unit="run", desc="robustness", dynamic_ncols=True)
    rows, t0, clean_calib = [], time.perf_counter(), None
    for name, severity in runs:
        stats = PairingStats()
        frames = open_frames(source, stats, limit)
        if name == "clean":
            stream: Any = _clean(frames)
            own = None
        else:
            stream = corrupt_stream(frames, name, severity, seed)
            own = registry[name].check
        row, calib = _score(segmenter, stream, level, degraded_policy, CameraChecks(thresholds), own)
        row.update(corruption=name, severity=severity, check=own)
        rows.append(row)
        if name == "clean":
            clean_calib = calib
        if bar is not None:
            bar.update(1)
    biome_rows = []
    for name, folder in biome_splits:
        frames = open_frames(folder, PairingStats(), limit)
        row, _ = _score(segmenter, _clean(frames), level, degraded_policy, CameraChecks(thresholds), None)
        biome_rows.append({"biome": name, **row})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    assert clean_calib is not None
    return {
        "rows": rows,
        "biomes": biome_rows,
        "corruptions": {n: {"what": registry[n].what, "scale": registry[n].scale,
                            "check": registry[n].check} for n in names},
        "settings": {"min_confidence": min_confidence, "confidence_level": level,
                     "degraded_policy": degraded_policy, "checks": vars(thresholds), "seed": seed,
                     "severities": list(severities), "middle_severity": MIDDLE, "renderings": renderings},
        "clean_calibration": calibration_figures(clean_calib, min_confidence, segmenter.artifact.calibration),
        "run": {"source": str(source), "model": str(model), "model_name": segmenter.name,
                "backend": backend, "device": str(segmenter.device), "precision": segmenter.precision,
                "frames": rows[0]["frames"], "seconds": time.perf_counter() - t0},
    }


def trust_figures(result: dict[str, Any]) -> dict[str, Any]:
    """The figures the node is held to: on clean frames the share of pixels left known and
    of frames without an alarm; at the middle severity, the worst known accuracy."""
    rows = result["rows"]
    clean = rows[0]
    middle = [r for r in rows if r["severity"] == result["settings"]["middle_severity"]]
    worst = min(middle, key=lambda r: np.nan_to_num(r["known_accuracy"], nan=1.0)) if middle else None
    return {"clean_coverage": clean["coverage"], "clean_known_accuracy": clean["known_accuracy"],
            "clean_quiet_frames": 1 - clean["alarm_rate"],
            "worst_middle": None if worst is None else
            {"corruption": worst["corruption"], "known_accuracy": worst["known_accuracy"],
             "coverage": worst["coverage"]}}


def _pct(v: float | None) -> str:
    return "n/a" if v is None or np.isnan(v) else f"{100 * v:.1f}%"


def _num(v: float | None) -> str:
    return "n/a" if v is None or np.isnan(v) else f"{v:.3f}"


def robustness_markdown(result: dict[str, Any]) -> str:
    rows, s, run = result["rows"], result["settings"], result["run"]
    sev = s["severities"]
    lines = ["# offroad-seg robustness", "",
             f"- model `{run['model_name']}` ({run['backend']}, {run['precision']}), {run['frames']} frames of "
             f"`{run['source']}`, seed {s['seed']}"
             + ("" if s.get("renderings", DEFAULT_RENDERINGS) == DEFAULT_RENDERINGS
                else f", {s['renderings']} renderings of the corruptions"),
             f"- node settings: min_confidence {s['min_confidence']:g} (confidence level {s['confidence_level']}), "
             f"degraded_policy {s['degraded_policy']}", "",
             "## mIoU (present classes) by severity", "",
             "| corruption | " + " | ".join(f"s{v}" for v in sev) + " |", "| --- |" + " ---: |" * len(sev),
             f"| clean | {_num(rows[0]['miou'])}" + " |" * len(sev)]
    by = {(r["corruption"], r["severity"]): r for r in rows}
    for name in result["corruptions"]:
        lines.append(f"| {name} | " + " | ".join(_num(by[(name, v)]["miou"]) for v in sev) + " |")
    mid = s["middle_severity"] if s["middle_severity"] in sev else sev[len(sev) // 2]
    lines += ["", f"## At severity {mid}: accuracy, calibration, checks, what the node publishes", "",
              "| corruption | mIoU | pixel acc. | ECE | mean conf. | check | detection | any alarm | known | "
              "known right |", "| --- |" + " ---: |" * 2 + " ---: |" * 2 + " --- |" + " ---: |" * 4]
    for r in [rows[0]] + [by[(n, mid)] for n in result["corruptions"]]:
        lines.append(f"| {r['corruption']} | {_num(r['miou'])} | {_pct(r['pixel_accuracy'])} | {_num(r['ece'])} | "
                     f"{_num(r['mean_confidence'])} | {r['check'] or '-'} | {_pct(r['detection'])} | "
                     f"{_pct(r['alarm_rate'])} | {_pct(r['coverage'])} | {_pct(r['known_accuracy'])} |")
    t = trust_figures(result)
    lines += ["", f"Clean frames: {_pct(t['clean_coverage'])} of the pixels known, "
              f"{_pct(t['clean_quiet_frames'])} of the frames without an alarm."]
    if t["worst_middle"]:
        w = t["worst_middle"]
        lines += [f"Every corruption at severity {mid} withheld entirely (no pixel known)." if not w["coverage"]
                  else f"Worst corruption at severity {mid}: {w['corruption']}, known pixels "
                  f"{_pct(w['known_accuracy'])} right ({_pct(w['coverage'])} known)."]
    lines += _biome_lines(result)
    lines += ["", "## The corruptions", "", "| corruption | stands for | severity 1 .. 5 | check |",
              "| --- | --- | --- | --- |"]
    lines += [f"| {n} | {c['what']} | {c['scale']} | {c['check'] or '-'} |" for n, c in result["corruptions"].items()]
    lines += ["", "![mIoU by severity](robustness.png)", "", "![calibration on clean frames](calibration.png)", ""]
    return "\n".join(lines)


def _biome_lines(result: dict[str, Any]) -> list[str]:
    """The clean row and each other desert: accuracy, the shift score, what `~/cost` publishes."""
    biomes = result.get("biomes") or []
    if not biomes:
        return []
    lines = ["", "## Other deserts (clean frames)", "",
             "| desert | frames | mIoU | pixel acc. | ECE | shift score (median) | flagged shifted | "
             "~/cost known | of those right |", "| --- |" + " ---: |" * 8]
    for name, r in [("this source (clean)", result["rows"][0])] + [(b["biome"], b) for b in biomes]:
        lines.append(f"| {name} | {r['frames']} | {_num(r['miou'])} | {_pct(r['pixel_accuracy'])} | {_num(r['ece'])} | "
                     f"{_num(r['shift_median'])} | {_pct(r['shifted'])} | {_pct(r['cost_known'])} | "
                     f"{_pct(r['cost_known_accuracy'])} |")
    return lines + ["", "~/cost known: labelled pixels with a cost other than unknown (255: below min_confidence, "
                    "predicted Sky or a degraded frame); right: the class equals the ground truth, Sky included."]


def write_robustness_report(out: str | Path, result: dict[str, Any], force: bool = False) -> Path:
    """robustness.json, robustness.md, robustness.png and calibration.png, atomically."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from offroad_seg_ros.core.fsutil import atomic_directory
    from offroad_seg_ros.evaluation.report import CALIBRATION_FIGURE, jsonable, plot_calibration

    out = Path(out)
    with atomic_directory(out, force) as tmp:
        tmp.mkdir()
        (tmp / "robustness.json").write_text(json.dumps(jsonable(result), indent=1) + "\n")
        (tmp / "robustness.md").write_text(robustness_markdown(result))
        rows, sev = result["rows"], result["settings"]["severities"]
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
        for key, ax, label in [("miou", axes[0], "mIoU (present classes)"),
                               ("known_accuracy", axes[1], "accuracy of the pixels published as known")]:
            for name in result["corruptions"]:
                vals = [next(r[key] for r in rows if r["corruption"] == name and r["severity"] == v) for v in sev]
                ax.plot(sev, vals, "o-", label=name)
            ax.axhline(rows[0][key], color="k", ls="--", label="clean")
            ax.set(xticks=sev, xlabel="severity", ylabel=label, ylim=(0, 1.02))
            ax.grid(alpha=0.3)
        axes[0].legend(ncol=2, fontsize=8)
        axes[1].axhline(0.9, color="r", lw=0.8)
        fig.suptitle(f"{result['run']['model_name']} under the corruption set")
        fig.tight_layout()
        fig.savefig(tmp / "robustness.png", dpi=110)
        plt.close(fig)
        plot_calibration(tmp / CALIBRATION_FIGURE, result["clean_calibration"], "clean frames")
    return out
