"""`offroad-seg eval SPLIT --model MODEL --novelty`: what the node publishes where something new is in view.

Frames go through the `Segmenter` as on the robot (`min_confidence`, `novel_threshold`), asking
for the class mask, the cost image and the novelty image (uint8, 128 = the novel threshold, or
the ordinary pixels' 0.99 quantile with the threshold off). The generator's novelty masks
(`read_novelty_mask`, docs/generator.md) say which pixels are novel, ordinary, pasted ordinary
patches (a control) or not scored. Reported per split folder (one per novel kind or biome, as
`offroad-seg synth` wrote them) and overall:

- the novelty image's separation of novel from ordinary pixels (AUROC, FPR at 95% TPR, average
  precision: `NoveltyHistogram`, one bin per image value, so exact for the published image);
- novel pixels: the share flagged (image > 128) and published passable (cost < 254), lethal
  (254) or unknown (255);
- ordinary pixels: false alarms (flagged), the share known (cost != 255), the share of those
  whose class is right (Sky included), and the share of crossable ground (classes of cost < 254)
  published lethal;
- pasted pixels: the share flagged (a score that flags them detects pastes, not novelty);
- by ground-truth class, over all frames: ordinary and pasted pixels and the share flagged of
  each, so that a failed pasted control says whether the score flags paste edges (pasted rocks
  flagged, the frame's own rocks not) or a class (both flagged alike).

The report folder holds novelty.json, novelty.md and novelty.png (ROC curves and score
histograms), written through a temporary folder renamed when complete, like `eval`'s report.
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from offroad_seg_ros import __version__
from offroad_seg_ros.core.artifact import read_artifact
from offroad_seg_ros.core.calibration import DEFAULT_MIN_CONFIDENCE
from offroad_seg_ros.core.classes import IGNORE_INDEX, UNKNOWN_COST
from offroad_seg_ros.core.fsutil import atomic_directory
from offroad_seg_ros.data.dataset import (
    NOT_NOVEL,
    NOVEL,
    NOVELTY_DIR,
    PASTED,
    DatasetError,
    list_samples,
    read_image,
    read_novelty_mask,
    read_raw_mask,
)
from offroad_seg_ros.evaluation.novelty import KINDS, NoveltyHistogram
from offroad_seg_ros.evaluation.report import jsonable
from offroad_seg_ros.inference.segmenter import Segmenter

LETHAL = 254  # Nav2's lethal cost: at or above it (and not unknown) a pixel is an obstacle
FLAG_LEVEL = 128  # the novelty image at the threshold; a pixel above it is flagged novel
OUTPUTS = ("mask", "cost", "novelty")
REPORT_JSON, REPORT_MD, FIGURE = "novelty.json", "novelty.md", "novelty.png"
OVERALL = "overall"


def node_novel_threshold() -> float:
    """The node's default novel_threshold: the Segmenter's, as node/params.py takes it (and
    config/segment.yaml lists it)."""
    return float(inspect.signature(Segmenter).parameters["novel_threshold"].default)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else float("nan")


def _histogram() -> NoveltyHistogram:
    # One bin per uint8 value of the novelty image: every figure is exact for what is published.
    return NoveltyHistogram(0.0, 256.0, 256)


@dataclass
class NoveltyTally:
    """Counts over frames of one split folder (or several, merged)."""

    hist: NoveltyHistogram = field(default_factory=_histogram)
    frames: int = 0
    # novel pixels published passable, lethal, unknown
    novel_cost: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))
    # ordinary pixels: all, known, known with a labelled class, of those right, crossable ground,
    # crossable ground published lethal; then the same first four with Sky (ground truth) left out
    ordinary: np.ndarray = field(default_factory=lambda: np.zeros(10, np.int64))
    # per ground-truth class: ordinary pixels, of those flagged, pasted pixels, of those flagged
    by_class: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))

    def update(self, novelty: np.ndarray, image: np.ndarray, cost: np.ndarray, mask: np.ndarray,
               gt: np.ndarray, cost_lut: np.ndarray, sky: int | None = None) -> None:
        """One frame: its novelty mask, the Segmenter's novelty image, cost and class mask, the
        ground truth as class indices (255 = ignore), the class table's costs and its Sky class."""
        shapes = {a.shape for a in (novelty, image, cost, mask, gt)}
        if len(shapes) != 1:
            raise ValueError(f"a frame's novelty mask, outputs and ground truth differ in size: {sorted(shapes)}")
        self.hist.update(image.astype(np.float64), novelty)
        self.frames += 1
        novel_cost = cost[novelty == NOVEL]
        unknown = novel_cost == UNKNOWN_COST
        self.novel_cost += [int((novel_cost < LETHAL).sum()), int(((novel_cost >= LETHAL) & ~unknown).sum()),
                            int(unknown.sum())]
        ordinary = novelty == NOT_NOVEL
        known = ordinary & (cost != UNKNOWN_COST)
        labelled = known & (gt != IGNORE_INDEX)
        crossable = ordinary & (gt != IGNORE_INDEX) & (cost_lut[gt] < LETHAL)
        lethal = (cost >= LETHAL) & (cost != UNKNOWN_COST)
        counts = [int(ordinary.sum()), int(known.sum()), int(labelled.sum()), int((labelled & (mask == gt)).sum())]
        self._count_by_class(novelty, image > FLAG_LEVEL, gt, len(cost_lut))
        no_sky = gt != sky if sky is not None else np.ones_like(ordinary)
        self.ordinary += [*counts, int(crossable.sum()), int((crossable & lethal).sum()),
                          int((ordinary & no_sky).sum()), int((known & no_sky).sum()), int((labelled & no_sky).sum()),
                          int((labelled & no_sky & (mask == gt)).sum())]

    def _count_by_class(self, novelty: np.ndarray, flagged: np.ndarray, gt: np.ndarray, classes: int) -> None:
        labelled = gt != IGNORE_INDEX
        counts = [np.bincount(gt[labelled & (novelty == kind) & f], minlength=classes)
                  for kind in (NOT_NOVEL, PASTED) for f in (np.True_, flagged)]
        self._add_by_class(np.stack(counts, 1))

    def _add_by_class(self, counts: np.ndarray) -> None:
        if len(self.by_class) < len(counts):
            self.by_class = np.pad(self.by_class, ((0, len(counts) - len(self.by_class)), (0, 0)))
        self.by_class[:len(counts)] += counts

    def merge(self, other: NoveltyTally) -> NoveltyTally:
        self.hist.merge(other.hist)
        self.frames += other.frames
        self.novel_cost += other.novel_cost
        self.ordinary += other.ordinary
        self._add_by_class(other.by_class)
        return self

    def summary(self) -> dict[str, Any]:
        h = self.hist.summary(threshold=FLAG_LEVEL + 1)  # bins FLAG_LEVEL + 1 and up: image > 128
        novel = int(self.novel_cost.sum())
        passable, lethal, unknown = (int(v) for v in self.novel_cost)
        ordinary, known, labelled, right, crossable, crossable_lethal, *no_sky = (int(v) for v in self.ordinary)
        return {
            "frames": self.frames, "pixels": h["pixels"],
            "auroc": h["auroc"], "fpr_at_95_tpr": h["fpr_at_95_tpr"], "average_precision": h["average_precision"],
            "novel": {"flagged": h["novel_flagged"], "passable": _share(passable, novel),
                      "lethal": _share(lethal, novel), "unknown": _share(unknown, novel)},
            "ordinary": {"false_alarm_rate": h["false_alarm_rate"], "known": _share(known, ordinary),
                         "known_right": _share(right, labelled),
                         "crossable_lethal": _share(crossable_lethal, crossable),
                         "known_no_sky": _share(no_sky[1], no_sky[0]),
                         "known_right_no_sky": _share(no_sky[3], no_sky[2])},
            "pasted": {"flagged": h["pasted_flagged"]},
            "by_class": [{"ordinary": int(o), "ordinary_flagged": _share(int(of), int(o)),
                          "pasted": int(p), "pasted_flagged": _share(int(pf), int(p))}
                         for o, of, p, pf in self.by_class],
        }


def novelty_splits(source: str | Path) -> list[Path]:
    """The split folders with novelty masks: `source` itself, else those one or two levels below
    (`offroad-seg synth --out ROOT` per kind or biome: ROOT/<split>, ROOT/<biome>/<split>)."""
    source = Path(source)
    if (source / NOVELTY_DIR).is_dir():
        return [source]
    found = sorted(p.parent for pattern in (f"*/{NOVELTY_DIR}", f"*/*/{NOVELTY_DIR}")
                   for p in source.glob(pattern) if p.is_dir())
    if not found:
        raise DatasetError(f"{source} has no {NOVELTY_DIR}/ folder of novelty masks (nor a split folder below it "
                           f"with one): generate frames with novel objects, e.g. `offroad-seg synth "
                           f"--novel-objects held_out --pasted-patches 2 --out DATA`")
    return found


def check_novelty_statistics(model: str | Path) -> None:
    """Refuse a model without novelty statistics before it loads: there is no novelty image."""
    if read_artifact(model).novelty is None:
        raise ValueError(f"model {model} has no novelty statistics (model.json has no `novelty` section): "
                         f"fit them with `offroad-seg novelty {model} DATA`")


def tally_split(segmenter: Segmenter, split: Path, limit: int | None = None, ignore_unknown: bool = False,
                bar: Any = None) -> NoveltyTally:
    """Run the Segmenter over a split folder's frames (at most `limit`) and count."""
    tally = NoveltyTally()
    cost_lut = segmenter.classes.cost_lut()  # the Segmenter's own, without overrides
    samples = list_samples(split)
    for s in samples[:limit] if limit else samples:
        assert s.mask is not None
        novelty = read_novelty_mask(split / NOVELTY_DIR / s.mask.name)
        try:
            gt = segmenter.classes.remap(read_raw_mask(s.mask), ignore_unknown=ignore_unknown, source=s.mask.name)
        except ValueError as exc:
            raise DatasetError(f"ground truth of frame {s.mask}: {exc}") from exc
        out = segmenter(read_image(s.image), OUTPUTS)
        assert out.mask is not None and out.cost is not None and out.novelty is not None
        try:
            tally.update(novelty, out.novelty, out.cost, out.mask, gt, cost_lut, segmenter.classes.sky_index)
        except ValueError as exc:
            raise DatasetError(f"frame {s.image}: {exc}") from exc
        if bar is not None:
            bar.update(1)
    return tally


@dataclass
class NoveltyResult:
    groups: dict[str, NoveltyTally]
    overall: NoveltyTally
    settings: dict[str, Any]


def evaluate_novelty(source: str | Path, model: str | Path, novel_threshold: float | None = None,
                     min_confidence: float = DEFAULT_MIN_CONFIDENCE, device: str = "auto", precision: str = "fp32",
                     backend: str = "torch", threads: int = 0, limit: int | None = None,
                     ignore_unknown: bool = False, progress: bool = True) -> NoveltyResult:
    """Score the model's novelty outputs on every split folder with novelty masks under `source`
    (at most `limit` frames of each); novel_threshold None = the node's default."""
    source = Path(source)
    splits = novelty_splits(source)  # both refusals before the model loads
    check_novelty_statistics(model)
    threshold = node_novel_threshold() if novel_threshold is None else novel_threshold
    seg = Segmenter(model, device=device, precision=precision, backend=backend, threads=threads,
                    warmup_size=None, min_confidence=min_confidence, novel_threshold=threshold)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit="frame", desc="eval --novelty", dynamic_ncols=True)
    start = time.perf_counter()
    try:
        groups = {(split.relative_to(source).as_posix() if split != source else source.name):
                  tally_split(seg, split, limit, ignore_unknown, bar) for split in splits}
    finally:
        if bar is not None:
            bar.close()
    overall = NoveltyTally()
    for tally in groups.values():
        overall.merge(tally)
    settings = {
        "source": str(source), "model": str(model), "model_name": seg.name, "novel_threshold": threshold,
        "novel_limit": seg.novel_limit, "image_mid": seg.novelty_mid, "image_scale": seg.novelty_scale,
        "novel_cost": seg.novel_cost, "classes": list(seg.classes.names),
        "min_confidence": min_confidence, "limit": limit, "backend": backend, "device": str(seg.device),
        "precision": seg.precision, "seconds": time.perf_counter() - start, "offroad_seg": __version__,
    }
    return NoveltyResult(groups, overall, settings)


def novelty_report(result: NoveltyResult) -> dict[str, Any]:
    """The report's JSON document: settings, then each split folder's figures and the overall ones."""
    return {"settings": result.settings, "flag_level": FLAG_LEVEL,
            "groups": {name: t.summary() for name, t in result.groups.items()},
            OVERALL: result.overall.summary()}


def _pct(v: float | None) -> str:
    return "n/a" if v is None or np.isnan(v) else f"{100 * v:.1f}%"


def _num(v: float | None) -> str:
    return "n/a" if v is None or np.isnan(v) else f"{v:.3f}"


def novelty_markdown(doc: dict[str, Any]) -> str:
    s = doc["settings"]
    rows = [*doc["groups"].items(), *([(f"**{OVERALL}**", doc[OVERALL])] if len(doc["groups"]) > 1 else [])]
    threshold = (f"novel_threshold {s['novel_threshold']:g} (score {s['novel_limit']:.3f})" if s["novel_threshold"]
                 else f"novel_threshold off: 128 = the ordinary pixels' 0.99 quantile (score {s['image_mid']:.3f})")
    lines = ["# offroad-seg novelty evaluation", "",
             f"- source: `{s['source']}`; model: `{s['model']}`",
             f"- as the node publishes: min_confidence {s['min_confidence']:g}, {threshold}, novel_cost "
             f"{s['novel_cost']}; flagged = novelty image > {doc['flag_level']}", "",
             "## Novel pixels", "",
             "| split | frames | novel px | AUROC | FPR@95%TPR | AP | flagged | passable | lethal | unknown |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, g in rows:
        n = g["novel"]
        lines.append(f"| {name} | {g['frames']} | {g['pixels']['novel']} | {_num(g['auroc'])} | "
                     f"{_pct(g['fpr_at_95_tpr'])} | {_num(g['average_precision'])} | {_pct(n['flagged'])} | "
                     f"{_pct(n['passable'])} | {_pct(n['lethal'])} | {_pct(n['unknown'])} |")
    lines += ["", "## Ordinary and pasted pixels", "",
              "| split | ordinary px | false alarms | known | known right | known, no sky | right, no sky | "
              "crossable ground lethal | pasted px | pasted flagged |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, g in rows:
        o = g["ordinary"]
        lines.append(f"| {name} | {g['pixels']['ordinary']} | {_pct(o['false_alarm_rate'])} | {_pct(o['known'])} | "
                     f"{_pct(o['known_right'])} | {_pct(o['known_no_sky'])} | {_pct(o['known_right_no_sky'])} | "
                     f"{_pct(o['crossable_lethal'])} | {g['pixels']['pasted']} | "
                     f"{_pct(g['pasted']['flagged'])} |")
    lines += _by_class_lines(doc)
    lines += ["", "passable: cost < 254; lethal: 254; unknown: 255 (below min_confidence). known right: the class "
              "mask equals the ground truth (Sky included; the no-sky columns leave ground-truth Sky out). "
              "Crossable ground: ground-truth classes of cost < 254. "
              "The novelty masks do not say which kind a novel pixel is: one split folder per kind gives per-kind "
              "rows.", "", f"![ROC curves and score histograms]({FIGURE})", ""]
    return "\n".join(lines)


def _by_class_lines(doc: dict[str, Any]) -> list[str]:
    """All frames' ordinary and pasted pixels flagged, per ground-truth class present."""
    names = doc["settings"].get("classes", [])
    lines = ["", "## Flagged by class (all frames)", "",
             "| class | ordinary px | flagged | pasted px | pasted flagged |", "| --- | ---: | ---: | ---: | ---: |"]
    for i, c in enumerate(doc[OVERALL]["by_class"]):
        if c["ordinary"] or c["pasted"]:
            name = names[i] if i < len(names) else str(i)
            lines.append(f"| {name} | {c['ordinary']} | {_pct(c['ordinary_flagged'])} | {c['pasted']} | "
                         f"{_pct(c['pasted_flagged'])} |")
    return lines


def _roc(hist: NoveltyHistogram) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every image value, from flagging all to flagging none."""
    thresholds = hist.edges[:-1]
    return (np.append(hist.false_alarm_rate(thresholds), 0.0), np.append(hist.flagged_share(NOVEL, thresholds), 0.0))


def plot_novelty(path: Path, result: NoveltyResult) -> None:
    """ROC curves of each split folder (and overall), the threshold marked; beside them the
    overall novelty image histograms of ordinary, novel and pasted pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5))
    curves = {**result.groups, **({OVERALL: result.overall} if len(result.groups) > 1 else {})}
    for name, tally in curves.items():
        fpr, tpr = _roc(tally.hist)
        line, = ax.plot(fpr, tpr, lw=2 if name == OVERALL else 1, label=f"{name} (AUROC {tally.hist.auroc():.3f})")
        point = tally.hist.bin_of(FLAG_LEVEL + 1)
        ax.plot([fpr[point]], [tpr[point]], "o", color=line.get_color(), ms=4)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="ordinary pixels flagged (FPR)", ylabel="novel pixels flagged (TPR)",
           title=f"ROC of the novelty image (dots: > {FLAG_LEVEL})")
    ax.legend(fontsize=7, loc="lower right")
    values = np.arange(256)
    for kind, name in ((NOT_NOVEL, "ordinary"), (NOVEL, "novel"), (PASTED, "pasted")):
        counts = result.overall.hist.counts[KINDS.index(kind)].astype(float)
        if counts.sum():
            bx.step(values, counts / counts.sum(), where="post", label=name)
    bx.axvline(FLAG_LEVEL + 0.5, color="k", ls="--", lw=1, label="threshold")
    bx.set(xlim=(0, 256), yscale="log", xlabel="novelty image value", ylabel="share of the kind's pixels",
           title="Novelty image by pixel kind (all frames)")
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_novelty_report(out: str | Path, result: NoveltyResult, force: bool = False) -> Path:
    """novelty.json, novelty.md and novelty.png in `out`, through a temporary folder renamed when complete."""
    out = Path(out)
    doc = jsonable(novelty_report(result))
    with atomic_directory(out, force) as tmp:
        tmp.mkdir()
        (tmp / REPORT_JSON).write_text(json.dumps(doc, indent=1) + "\n")
        (tmp / REPORT_MD).write_text(novelty_markdown(doc))
        plot_novelty(tmp / FIGURE, result)
    return out

