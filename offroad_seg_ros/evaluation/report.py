"""The evaluation report: metrics.json, report.md and PNG figures, written atomically."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from offroad_seg_ros import __version__
from offroad_seg_ros.core.classes import ClassTable
from offroad_seg_ros.core.fsutil import atomic_directory
from offroad_seg_ros.evaluation.evaluate import Gallery, Thumb

FIGURES = {
    "per_class_iou": "per_class_iou.png",
    "per_class_metrics": "per_class_metrics.png",
    "confusion": "confusion_matrix.png",
    "per_image": "per_image_miou.png",
    "distribution": "class_distribution.png",
    "gallery": "gallery.png",
    "best_worst": "best_worst.png",
}
CALIBRATION_FIGURE = "calibration.png"  # reliability diagram and risk-coverage curve, when a model ran


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "offroad_seg": __version__}
    for pkg in ("torch", "segmentation-models-pytorch", "numpy", "opencv-python-headless", "rosbags", "onnxruntime"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return None if np.isnan(obj) else float(obj)
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    return obj


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or np.isnan(v) else f"{v:.4f}"


def headline(m: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("mIoU (classes present in ground truth)", _fmt(m["miou"])),
        ("mIoU (all classes not n/a)", _fmt(m["miou_all"])),
        ("pixel accuracy", _fmt(m["pixel_accuracy"])),
        ("frequency-weighted IoU", _fmt(m["fwiou"])),
        ("mean Dice (present classes)", _fmt(m["mdice"])),
        *([("ECE of the confidence", _fmt(m["calibration"]["ece"]))] if "calibration" in m else []),
        ('smp "micro" ("dataset IoU" in the reference report)', _fmt(m["smp_micro_iou"])),
        ('smp "micro-imagewise" ("per-image IoU" in the reference report)', _fmt(m.get("smp_micro_imagewise_iou"))),
    ]


def _markdown(m: dict[str, Any], table: ClassTable) -> str:
    run = m["run"]
    lines = ["# offroad-seg evaluation", ""]
    lines += [f"- source: `{run['source']}` ({run['mode']})"]
    lines += [f"- model: `{run['model']}`" if run["model"] else f"- predictions topic: `{run['predictions_topic']}`"]
    lines += [f"- frames scored: {run['frames_scored']} (unmatched: {run['unmatched'] or 0}, "
              f"skipped: {run['skipped']})", ""]
    lines += ["| metric | value |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in headline(m)]
    lines += ["", "smp's `micro` equals accuracy / (2 - accuracy) for multiclass; it is shown for comparison "
              "with the reference report only.", ""]
    lines += ["## Per class", "", "| class | IoU | Dice | precision | recall | GT px | predicted px |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for i, name in enumerate(table.names):
        lines.append(f"| {name} | {_fmt(m['iou'][i])} | {_fmt(m['dice'][i])} | {_fmt(m['precision'][i])} | "
                     f"{_fmt(m['recall'][i])} | {m['gt_pixels'][i]} | {m['pred_pixels'][i]} |")
    pi = m.get("per_image")
    if pi:
        lines += ["", "## Per image", "",
                  f"mIoU mean {pi['mean']:.4f}, std {pi['std']:.4f}, min {pi['min']:.4f}, max {pi['max']:.4f} "
                  f"over {pi['count']} images.", "",
                  "Best: " + ", ".join(f"{n} ({v:.3f})" for n, v in pi["best"]),
                  "", "Worst: " + ", ".join(f"{n} ({v:.3f})" for n, v in pi["worst"])]
    c = m.get("calibration")
    if c:
        fit = c.get("temperature_fit") or {}
        lines += ["", "## Confidence", "",
                  f"ECE {c['ece']:.4f} ({c['ece_bins']} equal-width bins of the max-softmax confidence), mean "
                  f"confidence {c['mean_confidence']:.4f}, pixel accuracy {c['accuracy']:.4f}."]
        if fit:
            lines += ["", f"Temperature {fit['temperature']:.3f}, fitted on {fit['frames']} {fit['split']} frames: "
                      f"there ECE {fit['ece_before']:.4f} -> {fit['ece_after']:.4f}, NLL {fit['nll_before']:.4f} "
                      f"-> {fit['nll_after']:.4f}."]
        if c.get("min_confidence") is not None:
            lines += ["", f"min_confidence {c['min_confidence']:g}: {100 * c['coverage']:.1f}% of the pixels known, "
                      f"{100 * c['known_accuracy']:.2f}% of those right."]
        lines += ["", f"![calibration]({CALIBRATION_FIGURE})"]
    lines += ["", "## Figures", ""] + [f"![{k}]({v})" for k, v in FIGURES.items()]
    timing = f"{run['fps']:.1f} frames/s, evaluator overhead {run['overhead_ms_per_frame']:.1f} ms/frame"
    lines += ["", f"Run: {timing}; n/a = class absent from ground truth and prediction.", ""]
    return "\n".join(lines)


def _figures(out: Path, m: dict[str, Any], table: ClassTable, gallery: Gallery) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = table.names
    colors = table.color_lut()[: len(names)] / 255
    x = np.arange(len(names))
    iou = np.array(m["iou"], dtype=float)

    def na_labels(ax, values, y=0.02):
        for i, v in enumerate(values):
            if np.isnan(v):
                ax.text(i, y, "n/a", ha="center", va="bottom", fontsize=8, color="0.4")

    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.bar(x, np.nan_to_num(iou), color=colors, edgecolor="0.2")
    ax.axhline(m["miou"], color="k", ls="--", label=f"mIoU {m['miou']:.3f} (present classes)")
    for i, v in enumerate(iou):
        if not np.isnan(v):
            ax.text(i, v + 0.01, f"{v:.2f}", ha="center", fontsize=8)
    na_labels(ax, iou)
    ax.set(xticks=x, ylim=(0, 1.18), ylabel="IoU", title="Per-class IoU")
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.legend(loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(out / FIGURES["per_class_iou"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(11, 4.5))
    for k, (key, label) in enumerate([("iou", "IoU"), ("dice", "Dice"), ("precision", "precision"),
                                      ("recall", "recall")]):
        ax.bar(x + (k - 1.5) * 0.2, np.nan_to_num(np.array(m[key], dtype=float)), 0.2, label=label)
    na_labels(ax, iou)
    ax.set(xticks=x, ylim=(0, 1.18), title="Per-class IoU, Dice, precision, recall")
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.legend(ncol=4, loc="upper right")
    fig.tight_layout()
    fig.savefig(out / FIGURES["per_class_metrics"], dpi=110)
    plt.close(fig)

    cm = np.array(m["confusion_matrix"], dtype=float)
    cols = names + ["none"] if cm[:, -1].any() else names
    cm = cm[:, : len(cols)]
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.5))
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = cm / cm.sum(1, keepdims=True)
    for ax, data, title, fmt in [(axes[0], cm, "Confusion matrix (pixels)", "{:.0f}"),
                                 (axes[1], norm, "Row-normalised (recall per class)", "{:.2f}")]:
        shown = np.log10(data + 1) if ax is axes[0] else np.nan_to_num(data)
        ax.imshow(shown, cmap="Blues")
        ax.set(xticks=range(len(cols)), yticks=range(len(names)), xlabel="predicted", ylabel="ground truth",
               title=title)
        ax.set_xticklabels(cols, rotation=45, ha="right", fontsize=8)
        ax.set_yticklabels(names, fontsize=8)
        for (i, j), v in np.ndenumerate(data):
            if not np.isnan(v) and v > 0:
                txt = fmt.format(v) if ax is axes[1] else (f"{v:.0f}" if v < 1e4 else f"{v:.0e}")
                ax.text(j, i, txt, ha="center", va="center", fontsize=6,
                        color="white" if shown[i, j] > 0.6 * np.nanmax(shown) else "black")
    fig.tight_layout()
    fig.savefig(out / FIGURES["confusion"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    vals = [v for v in m.get("per_image", {}).get("miou", []) if v is not None]
    ax.hist(vals, bins=min(30, max(5, len(vals) // 2)), range=(0, 1), color="tab:blue", edgecolor="white")
    if vals:
        ax.axvline(np.mean(vals), color="k", ls="--", label=f"mean {np.mean(vals):.3f}")
        ax.legend()
    ax.set(xlabel="per-image mIoU", ylabel="images", title="Per-image mIoU distribution")
    fig.tight_layout()
    fig.savefig(out / FIGURES["per_image"], dpi=110)
    plt.close(fig)

    gt = np.array(m["gt_pixels"], dtype=float)
    pr = np.array(m["pred_pixels"], dtype=float)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.bar(x - 0.2, 100 * gt / max(gt.sum(), 1), 0.4, label="ground truth", color=colors, edgecolor="0.2")
    ax.bar(x + 0.2, 100 * pr / max(pr.sum(), 1), 0.4, label="prediction", color=colors, edgecolor="0.2",
           hatch="//", alpha=0.6)
    ax.set(xticks=x, ylabel="% of scored pixels", yscale="symlog", title="Class pixel distribution")
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / FIGURES["distribution"], dpi=110)
    plt.close(fig)

    if "calibration" in m:
        plot_calibration(out / CALIBRATION_FIGURE, m["calibration"])
    best, worst = gallery.ranked()
    lut = table.color_lut()
    _grid(out / FIGURES["gallery"], gallery.sample, "Representative frames", lut)
    _grid(out / FIGURES["best_worst"], best + worst, "Best (top) and worst (bottom) frames", lut)


def plot_calibration(path: Path, c: dict[str, Any], title: str = "") -> None:
    """Reliability diagram (accuracy against confidence per bin, with the pixels per
    bin) beside the risk-coverage curve (accuracy of the pixels kept as the least
    confident are dropped), the min_confidence in use marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, rc = c["reliability"], c["risk_coverage"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5))
    edges = np.array(r["edges"])
    width = edges[1] - edges[0]
    acc = np.array(r["accuracy"], dtype=float)
    ax.bar(edges[:-1], np.nan_to_num(acc), width, align="edge", edgecolor="0.2", color="tab:blue",
           label="accuracy per bin")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    counts = np.array(r["count"], dtype=float)
    share = ax.twinx()
    share.plot(edges[:-1] + width / 2, counts / max(counts.sum(), 1), "o-", color="tab:orange", ms=3)
    share.set(ylabel="share of pixels", yscale="log")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy",
           title=f"Reliability: ECE {c['ece']:.4f} ({c['ece_bins']} bins)")
    ax.legend(loc="upper left")
    cov, kept_acc = np.array(rc["coverage"], dtype=float), np.array(rc["accuracy"], dtype=float)
    bx.plot(cov, kept_acc, color="tab:green")
    if c.get("min_confidence") is not None:
        bx.plot([c["coverage"]], [c["known_accuracy"]], "ko")
        bx.annotate(f"min_confidence {c['min_confidence']:g}: {100 * c['coverage']:.1f}% known, "
                    f"{100 * c['known_accuracy']:.1f}% right", (c["coverage"], c["known_accuracy"]),
                    textcoords="offset points", xytext=(-10, -18), ha="right", fontsize=8)
    bx.set(xlim=(0, 1.02), xlabel="coverage (share of pixels kept)", ylabel="accuracy of the kept pixels",
           title="Risk-coverage: dropping the least confident pixels")
    bx.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def overlay(image: np.ndarray | None, color: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    if image is None:
        return color
    return (image * (1 - alpha) + color * alpha).astype(np.uint8)


def _grid(path: Path, thumbs: list[Thumb], title: str, lut: np.ndarray) -> None:
    import matplotlib.pyplot as plt

    rows = max(1, len(thumbs))
    fig, axes = plt.subplots(rows, 4, figsize=(12, 2.0 * rows + 0.6), squeeze=False)
    for r in range(rows):
        for c in range(4):
            axes[r, c].axis("off")
        if r >= len(thumbs):
            continue
        t = thumbs[r]
        gt, pred = lut[t.gt], lut[t.pred]
        panels = [(t.image, "image"), (gt, "ground truth"), (pred, f"prediction (mIoU {t.miou:.3f})"),
                  (overlay(t.image, pred), "overlay")]
        for c, (img, label) in enumerate(panels):
            if img is not None:
                axes[r, c].imshow(img)
            axes[r, c].set_title(f"{t.name}: {label}" if c == 0 else label, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (2.0 * rows + 0.6)))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out: str | Path, metrics: dict[str, Any], gallery: Gallery, force: bool = False) -> Path:
    """Write the report folder via a temporary sibling, renamed when complete."""
    out = Path(out)
    table = ClassTable.from_dict(metrics["classes"])
    with atomic_directory(out, force) as tmp:
        tmp.mkdir()
        doc = dict(metrics)
        doc["class_names"] = table.names
        doc["versions"] = _versions()
        doc.pop("present", None)
        (tmp / "metrics.json").write_text(json.dumps(jsonable(doc), indent=1) + "\n")
        _figures(tmp, metrics, table, gallery)
        (tmp / "report.md").write_text(_markdown(metrics, table))
    return out


def summary_table(m: dict[str, Any], table: ClassTable) -> str:
    lines = [f"{'class':<16}{'IoU':>8}{'Dice':>8}{'prec':>8}{'recall':>8}"]
    for i, name in enumerate(table.names):
        lines.append(f"{name:<16}" + "".join(f"{_fmt(m[k][i]):>8}" for k in ("iou", "dice", "precision", "recall")))
    lines.append("")
    lines += [f"{k}: {v}" for k, v in headline(m)]
    return "\n".join(lines)
