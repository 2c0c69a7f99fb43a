"""Two models scored on the same frames, side by side: `offroad-seg eval --model A --compare B`.

The metrics are `evaluate`'s (core/metrics.py owns them); this module only lines them up: the
headline figures and per-class IoU of both with the difference B - A, and a paired per-frame
comparison over the frames both scored (by name): the mean per-frame mIoU difference with a
paired bootstrap 95% interval, and on how many frames B is better, worse or level. The report
(`compare.md`, `compare.json`, a grouped per-class IoU figure, and each model's ordinary report
in `a/` and `b/`) is written completely or not at all.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from offroad_seg_ros.core.classes import ClassTable
from offroad_seg_ros.core.fsutil import atomic_directory
from offroad_seg_ros.evaluation.evaluate import Gallery
from offroad_seg_ros.evaluation.report import jsonable, write_report

FIGURE = "per_class_iou_compare.png"
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
# Per-frame mIoU differences within this are a tie (the same masks give the same number exactly).
TIE_TOLERANCE = 1e-9
# The headline figures compared: the metrics key (a "calibration.ece" path for nested ones) and its label.
HEADLINE = [
    ("miou", "mIoU (classes present in ground truth)"),
    ("miou_all", "mIoU (all classes not n/a)"),
    ("pixel_accuracy", "pixel accuracy"),
    ("fwiou", "frequency-weighted IoU"),
    ("mdice", "mean Dice (present classes)"),
    ("calibration.ece", "ECE of the confidence"),
    ("per_image.mean", "per-image mIoU, mean"),
]


def _number(v: Any) -> float | None:
    """A metric as a float, None for n/a (NaN or missing)."""
    if v is None:
        return None
    f = float(v)
    return None if np.isnan(f) else f


def _lookup(m: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(m, dict) or part not in m:
            return None
        m = m[part]
    return m


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _scoring_table(m: dict[str, Any], name: str) -> tuple[Any, ...]:
    """What of the class table decides the scores: each class's raw ID and name in order, and the ignores."""
    if "classes" not in m:
        raise ValueError(f"the metrics of {name} carry no class table ('classes')")
    t = ClassTable.from_dict(m["classes"])
    return tuple((c.raw_id, c.name) for c in t.classes), tuple(t.ignore_raw_ids), t.ignore_index


def _frames(m: dict[str, Any]) -> dict[tuple[str, int], float | None]:
    """Per-frame mIoU by (name, occurrence): a name seen twice (a bag may repeat one) pairs in order."""
    pi = m.get("per_image") or {}
    seen: Counter[str] = Counter()
    out: dict[tuple[str, int], float | None] = {}
    for name, v in zip(map(str, pi.get("names", [])), pi.get("miou", [])):
        out[(name, seen[name])] = _number(v)
        seen[name] += 1
    return out


def paired_bootstrap(diffs: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile 95% interval of the mean of paired differences: frames resampled with
    replacement, `resamples` times, from a fixed seed (the same input gives the same interval)."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.size == 0:
        raise ValueError("no paired differences to resample")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // d.size)  # bounded memory for long bags
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        means[start:start + n] = d[rng.integers(0, d.size, (n, d.size))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def compare(metrics_a: dict[str, Any], metrics_b: dict[str, Any], name_a: str, name_b: str) -> dict[str, Any]:
    """The comparison of two `evaluate` results on the same frames, JSON-able (n/a is None).
    Raises ValueError when they were scored with different class tables or share no frames."""
    if _scoring_table(metrics_a, name_a) != _scoring_table(metrics_b, name_b):
        raise ValueError(f"{name_a} and {name_b} were scored with different class tables "
                         f"(A: {ClassTable.from_dict(metrics_a['classes']).names}, "
                         f"B: {ClassTable.from_dict(metrics_b['classes']).names}); their scores do not compare")
    names = ClassTable.from_dict(metrics_a["classes"]).names
    frames_a, frames_b = _frames(metrics_a), _frames(metrics_b)
    shared = [k for k in frames_a if k in frames_b]
    if not shared:
        raise ValueError(f"{name_a} and {name_b} share no scored frame (A scored {len(frames_a)}, "
                         f"B {len(frames_b)}, by name): score both on the same source")

    headline = []
    for key, label in HEADLINE:
        raw_a, raw_b = _lookup(metrics_a, key), _lookup(metrics_b, key)
        if raw_a is None and raw_b is None:
            continue  # neither has it (e.g. no calibration when scoring recorded masks)
        a, b = _number(raw_a), _number(raw_b)
        headline.append({"key": key, "label": label, "a": a, "b": b, "diff": _diff(a, b)})

    per_class = []
    for i, name in enumerate(names):
        a, b = _number(metrics_a["iou"][i]), _number(metrics_b["iou"][i])
        per_class.append({"class": name, "a": a, "b": b, "diff": _diff(a, b)})

    # Frames with an n/a mIoU (no ground-truth class in them) have nothing to pair.
    pairs = [(frames_a[k], frames_b[k]) for k in shared if frames_a[k] is not None and frames_b[k] is not None]
    pa = np.array([p[0] for p in pairs], dtype=np.float64)
    pb = np.array([p[1] for p in pairs], dtype=np.float64)
    d = pb - pa
    paired: dict[str, Any] = {
        "frames": len(pairs), "shared": len(shared), "not_applicable": len(shared) - len(pairs),
        "only_a": len(frames_a) - len(shared), "only_b": len(frames_b) - len(shared),
        "wins": int((d > TIE_TOLERANCE).sum()), "losses": int((d < -TIE_TOLERANCE).sum()),
        "ties": int((np.abs(d) <= TIE_TOLERANCE).sum()), "tie_tolerance": TIE_TOLERANCE,
        "mean_a": float(pa.mean()) if pairs else None, "mean_b": float(pb.mean()) if pairs else None,
        "mean_diff": float(d.mean()) if pairs else None,
        "ci95": list(paired_bootstrap(d)) if pairs else None,
        "resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED,
    }

    def side(m: dict[str, Any], name: str) -> dict[str, Any]:
        run = m.get("run") or {}
        return {"name": name, "model": run.get("model"), "model_name": run.get("model_name"),
                "source": run.get("source"), "frames_scored": run.get("frames_scored", len(_frames(m)))}

    return jsonable({"a": side(metrics_a, name_a), "b": side(metrics_b, name_b), "classes": names,
                     "headline": headline, "per_class": per_class, "paired": paired})


def _fmt(v: float | None, signed: bool = False) -> str:
    return "n/a" if v is None else (f"{v:+.4f}" if signed else f"{v:.4f}")


def compare_markdown(cmp: dict[str, Any]) -> str:
    a, p = cmp["a"], cmp["paired"]
    lines = ["# offroad-seg comparison", ""]
    if a.get("source"):
        lines += [f"- source: `{a['source']}`"]
    for key in "ab":
        side = cmp[key]
        where = f"`{side['model']}`, " if side.get("model") and side["model"] != side["name"] else ""
        lines += [f"- {key.upper()}: `{side['name']}` ({where}{side['frames_scored']} frames scored)"]
    lines += ["", "| metric | A | B | B - A |", "| --- | --- | --- | --- |"]
    lines += [f"| {h['label']} | {_fmt(h['a'])} | {_fmt(h['b'])} | {_fmt(h['diff'], True)} |"
              for h in cmp["headline"]]
    lines += ["", "B - A above 0 is B better, except for ECE (lower is better)."]
    lines += ["", "## Per frame", ""]
    if p["frames"]:
        lo, hi = p["ci95"]
        lines += [f"Paired over the {p['frames']} frames both scored: per-frame mIoU B - A "
                  f"{p['mean_diff']:+.4f} on average, 95% bootstrap interval [{lo:+.4f}, {hi:+.4f}] "
                  f"({p['resamples']} resamples, seed {p['seed']}); B better on {p['wins']}, worse on "
                  f"{p['losses']}, level on {p['ties']}."]
    else:
        lines += ["No frame both scored has a per-frame mIoU (no ground-truth class in them)."]
    extra = [f"{p[k]} {what}" for k, what in (("not_applicable", "with no ground-truth class"),
                                              ("only_a", "scored by A only"), ("only_b", "scored by B only"))
             if p[k]]
    if extra:
        lines += ["", "Left out of the pairing: " + ", ".join(extra) + "."]
    lines += ["", "## Per class", "", "| class | IoU A | IoU B | B - A |", "| --- | --- | --- | --- |"]
    lines += [f"| {c['class']} | {_fmt(c['a'])} | {_fmt(c['b'])} | {_fmt(c['diff'], True)} |"
              for c in cmp["per_class"]]
    lines += ["", f"![per-class IoU, A and B]({FIGURE})", "",
              "## The two reports", "", "- A: [a/report.md](a/report.md)", "- B: [b/report.md](b/report.md)", "",
              "n/a = class absent from ground truth and prediction (or a figure the run has not).", ""]
    return "\n".join(lines)


def _figure(path: Path, cmp: dict[str, Any], table: ClassTable) -> None:
    """Grouped bars per class, A plain and B hatched in the class colours (as report.py's
    class distribution), each model's mIoU as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    names = table.names
    colors = table.color_lut()[: len(names)] / 255
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    handles: list[Any] = []
    miou = {h["key"]: h for h in cmp["headline"]}.get("miou", {})
    for k, (side, hatch, alpha) in enumerate([("a", None, 1.0), ("b", "//", 0.6)]):
        vals = np.array([np.nan if c[side] is None else c[side] for c in cmp["per_class"]], dtype=float)
        offset = (k - 0.5) * 0.4
        ax.bar(x + offset, np.nan_to_num(vals), 0.4, color=colors, edgecolor="0.2", hatch=hatch, alpha=alpha)
        # The legend's swatch in grey: the bars' colours are the classes'.
        handles.append(Patch(facecolor="0.75", edgecolor="0.2", hatch=hatch, alpha=alpha,
                             label=f"{side.upper()}: {cmp[side]['name']}"))
        for i, v in enumerate(vals):
            ax.text(i + offset, (0 if np.isnan(v) else v) + 0.01, "n/a" if np.isnan(v) else f"{v:.2f}",
                    ha="center", va="bottom", fontsize=6, color="0.4" if np.isnan(v) else "k")
        if miou.get(side) is not None:
            line = ax.axhline(miou[side], color="k", ls="--" if side == "a" else ":", lw=1,
                              label=f"mIoU {side.upper()} {miou[side]:.3f}")
            handles.append(line)
    ax.set(xticks=x, ylim=(0, 1.18), ylabel="IoU", title="Per-class IoU: A (plain) and B (hatched)")
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.legend(handles=handles, loc="upper left", ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_comparison(out: str | Path, cmp: dict[str, Any], metrics_a: dict[str, Any], metrics_b: dict[str, Any],
                     gallery_a: Gallery, gallery_b: Gallery, force: bool = False) -> Path:
    """`out/compare.md`, `compare.json`, the per-class figure and each model's full report in
    `out/a/` and `out/b/`, via a temporary sibling renamed when complete. An existing `out` is
    an error unless `force`."""
    out = Path(out)
    table = ClassTable.from_dict(metrics_a["classes"])
    with atomic_directory(out, force) as tmp:
        tmp.mkdir()
        write_report(tmp / "a", metrics_a, gallery_a)
        write_report(tmp / "b", metrics_b, gallery_b)
        (tmp / "compare.json").write_text(json.dumps(cmp, indent=1) + "\n")
        _figure(tmp / FIGURE, cmp, table)
        (tmp / "compare.md").write_text(compare_markdown(cmp))
    return out
