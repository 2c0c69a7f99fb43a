"""`offroad-seg eval SPLIT --model MODEL --novelty` (offroad_seg_ros/evaluation/novelty_report.py): the
Segmenter's novelty image and cost on generated frames with novel objects, scored against their
novelty masks."""

import json
import shutil

import cv2
import numpy as np
import pytest

from offroad_seg_ros.cli import main
from offroad_seg_ros.core.artifact import read_artifact, update_artifact
from offroad_seg_ros.core.classes import IGNORE_INDEX
from offroad_seg_ros.data.dataset import (
    NOT_NOVEL,
    NOVEL,
    NOVELTY_DIR,
    NOVELTY_IGNORE,
    PASTED,
    list_samples,
    read_image,
    read_novelty_mask,
    read_raw_mask,
)
from offroad_seg_ros.evaluation.novelty_report import (
    FIGURE,
    REPORT_JSON,
    REPORT_MD,
    NoveltyTally,
    evaluate_novelty,
    node_novel_threshold,
)
from offroad_seg_ros.inference.segmenter import Segmenter
from offroad_seg_train.novel_objects import NovelScenes
from offroad_seg_train.synth import TRAIN_BIOME, generate

W, H = 96, 64  # tiny frames: the network sees 48x32 (the tiny artifact's scale 0.5)
KIND_FOLDERS = ("drum", "tarp")


def _shrink(folder):
    """Every PNG of a generated split at W x H: images averaged, masks nearest (their values kept)."""
    for path in sorted(folder.rglob("*.png")):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert image is not None, path
        nearest = "Color_Images" not in path.parts
        cv2.imwrite(str(path), cv2.resize(image, (W, H), interpolation=cv2.INTER_NEAREST if nearest
                                          else cv2.INTER_AREA))


@pytest.fixture(scope="module")
def novel_root(tmp_path_factory):
    """ROOT/<kind>/test: two frames each with three novel objects of one kind and two pasted
    patches, in the train biome (the one the statistics are fitted in)."""
    root = tmp_path_factory.mktemp("novel")
    for kind in KIND_FOLDERS:
        generate(root / kind, {"test": 2}, seed=3, workers=1, progress=None, biome=TRAIN_BIOME,
                 scene=NovelScenes((kind,), per_scene=3, pasted=2))
    _shrink(root)
    return root


@pytest.fixture(scope="module")
def novel_model(tiny_artifact, tmp_path_factory):
    """A copy of the tiny artifact with novelty statistics fitted on tiny ordinary frames."""
    data = tmp_path_factory.mktemp("fit")
    generate(data, {"train": 3, "val": 2}, seed=5, workers=1, progress=None)
    _shrink(data)
    art = tmp_path_factory.mktemp("model") / "tiny"
    shutil.copytree(tiny_artifact, art)
    from offroad_seg_ros.tools.novelty import fit_novelty

    fit_novelty(art, data, fit_frames=3, frames=2, onnx=False)
    return art


def _independent(model, split, novel_threshold, min_confidence):
    """The report's figures of one split folder, from the Segmenter's outputs with numpy alone."""
    seg = Segmenter(model, device="cpu", warmup_size=None, min_confidence=min_confidence,
                    novel_threshold=novel_threshold)
    lut = seg.classes.cost_lut()
    frames: list[tuple[np.ndarray, ...]] = []
    for s in list_samples(split):
        assert s.mask is not None
        out = seg(read_image(s.image), ("mask", "cost", "novelty"))
        assert out.mask is not None and out.cost is not None and out.novelty is not None
        gt = seg.classes.remap(read_raw_mask(s.mask))
        frames.append((read_novelty_mask(split / NOVELTY_DIR / s.mask.name), out.novelty.astype(int),
                       out.cost.astype(int), np.where(gt == IGNORE_INDEX, -1, out.mask == gt),
                       (gt != IGNORE_INDEX) & (lut[gt] < 254)))
    # every pixel of the split, one array per quantity: novelty kind, image, cost, right (-1 unlabelled), crossable
    kind, image, cost, right, crossable = (np.concatenate([f[i].ravel() for f in frames]) for i in range(5))
    novel, ordinary = kind == NOVEL, kind == NOT_NOVEL
    a, b = image[novel], image[ordinary]
    # AUROC as the Mann-Whitney statistic: P(novel scores above ordinary), ties half
    auroc = ((a[:, None] > b[None]).sum() + 0.5 * (a[:, None] == b[None]).sum()) / (a.size * b.size)
    known = ordinary & (cost != 255)
    return {
        "pixels": {"ordinary": int(ordinary.sum()), "novel": int(novel.sum()), "pasted": int((kind == PASTED).sum())},
        "auroc": auroc,
        "novel": {"flagged": (a > 128).mean(), "passable": (cost[novel] < 254).mean(),
                  "lethal": (cost[novel] == 254).mean(), "unknown": (cost[novel] == 255).mean()},
        "ordinary": {"false_alarm_rate": (b > 128).mean(), "known": known.sum() / ordinary.sum(),
                     "known_right": (right[known] == 1).sum() / (right[known] >= 0).sum(),
                     "crossable_lethal": (cost[ordinary & crossable] == 254).mean()},
        "pasted": {"flagged": (image[kind == PASTED] > 128).mean()},
    }


def _close(report, expected, path=""):
    for key, want in expected.items():
        got = report[key]
        if isinstance(want, dict):
            _close(got, want, f"{path}{key}.")
        elif isinstance(want, list):
            assert len(got) == len(want), f"{path}{key}"
            for i, (g, w) in enumerate(zip(got, want)):
                _close(g, w, f"{path}{key}[{i}].")
        elif isinstance(want, float) and np.isnan(want):
            assert got is None or np.isnan(got), f"{path}{key}: {got} != nan"  # JSON writes NaN as null
        else:
            assert got == pytest.approx(want, abs=1e-9), f"{path}{key}: {got} != {want}"


def test_the_data_has_novel_ordinary_and_pasted_pixels(novel_root):
    for kind in KIND_FOLDERS:
        masks = [read_novelty_mask(p) for p in sorted((novel_root / kind / "test" / NOVELTY_DIR).glob("*.png"))]
        values = np.concatenate([m.ravel() for m in masks])
        assert masks[0].shape == (H, W)
        assert (values == NOVEL).sum() > 20 and (values == PASTED).sum() > 20, kind
        assert set(np.unique(values).tolist()) <= {NOT_NOVEL, NOVEL, PASTED, NOVELTY_IGNORE}


@pytest.mark.parametrize("novel_threshold, min_confidence", [(None, 0.6), (0.9, 0.0)])
def test_each_split_folder_matches_an_independent_computation(novel_root, novel_model, novel_threshold,
                                                              min_confidence):
    result = evaluate_novelty(novel_root, novel_model, novel_threshold=novel_threshold,
                              min_confidence=min_confidence, device="cpu", progress=False)
    level = node_novel_threshold() if novel_threshold is None else novel_threshold
    assert list(result.groups) == [f"{k}/test" for k in KIND_FOLDERS]
    assert result.settings["novel_threshold"] == level
    frames = 0
    for name, tally in result.groups.items():
        summary = tally.summary()
        _close(summary, _independent(novel_model, novel_root / name, level, min_confidence))
        frames += summary["frames"]
    overall = result.overall.summary()
    assert overall["frames"] == frames == 4
    for kind in ("ordinary", "novel", "pasted"):
        assert overall["pixels"][kind] == sum(t.summary()["pixels"][kind] for t in result.groups.values())


def test_a_threshold_below_every_score_makes_every_pixel_novel_and_lethal(novel_root, novel_model, tmp_path):
    """The lowest recorded quantile set to 0: the threshold at a tiny level is below every score."""
    art = tmp_path / "low"
    shutil.copytree(novel_model, art)
    record = read_artifact(art).novelty
    assert record is not None
    record["pixel_quantiles"]["values"][0] = 0.0
    update_artifact(art, novelty=record)
    result = evaluate_novelty(novel_root / "drum" / "test", art, novel_threshold=1e-9, min_confidence=0.6,
                              device="cpu", progress=False)
    assert list(result.groups) == ["test"]
    s = result.overall.summary()
    assert s["novel"] == {"flagged": 1.0, "passable": 0.0, "lethal": 1.0, "unknown": 0.0}
    assert s["ordinary"]["false_alarm_rate"] == 1.0 and s["pasted"]["flagged"] == 1.0
    assert s["ordinary"]["known"] == 1.0  # novel_cost replaces the unknown cost of unsure pixels
    assert s["ordinary"]["crossable_lethal"] == 1.0


def test_a_crafted_frame_gives_exact_figures(table):
    """Novel pixels score 200, ordinary ones 10 or 140: AUROC 1, and every share by count."""
    novelty = np.full((4, 10), NOT_NOVEL, np.uint8)
    novelty[0, :4] = NOVEL
    novelty[0, 4:6] = PASTED
    novelty[0, 6:] = NOVELTY_IGNORE
    image = np.full(novelty.shape, 10, np.uint8)
    image[novelty == NOVEL] = 200
    image[1, :3] = 140  # three ordinary false alarms
    image[0, 4] = 129  # one pasted pixel flagged
    cost = np.zeros(novelty.shape, np.uint8)
    cost[0, :4] = [0, 254, 254, 255]  # novel: passable, lethal x2, unknown
    cost[2, :5] = 255  # five ordinary pixels unknown
    cost[3, :2] = 254  # two ordinary pixels lethal
    gt = np.zeros(novelty.shape, np.uint8)  # class 0 (crossable) everywhere
    mask = gt.copy()
    mask[1, :7] = 1  # seven of the known ordinary pixels wrong
    gt[3, 9] = IGNORE_INDEX
    lut = table.cost_lut()
    lut[0] = 0
    tally = NoveltyTally()
    tally.update(novelty, image, cost, mask, gt, lut)
    s = tally.summary()
    assert s["pixels"] == {"ordinary": 30, "novel": 4, "pasted": 2}
    assert s["auroc"] == 1.0 and s["fpr_at_95_tpr"] == 0.0 and s["average_precision"] == 1.0
    assert s["novel"] == {"flagged": 1.0, "passable": 0.25, "lethal": 0.5, "unknown": 0.25}
    assert s["ordinary"]["false_alarm_rate"] == pytest.approx(3 / 30)
    assert s["ordinary"]["known"] == pytest.approx(25 / 30)
    assert s["ordinary"]["known_right"] == pytest.approx((24 - 7) / 24)  # one known pixel unlabelled
    assert s["ordinary"]["crossable_lethal"] == pytest.approx(2 / 29)
    assert s["pasted"]["flagged"] == 0.5
    # by class: all of it class 0 (one ordinary pixel unlabelled), nothing of the other classes
    assert s["by_class"][0] == {"ordinary": 29, "ordinary_flagged": pytest.approx(3 / 29), "pasted": 2,
                                "pasted_flagged": 0.5}
    assert all(c["ordinary"] == c["pasted"] == 0 for c in s["by_class"][1:]) and len(s["by_class"]) == len(lut)
    # With row 1 Sky in the ground truth, the no-sky shares leave out its ten ordinary pixels,
    # three of them false alarms and seven of them wrong.
    sky_gt = gt.copy()
    sky_gt[1] = 9
    no_sky = NoveltyTally()
    no_sky.update(novelty, image, cost, mask, sky_gt, lut, sky=9)
    o = no_sky.summary()["ordinary"]
    assert o["known_no_sky"] == pytest.approx(15 / 20) and o["known_right_no_sky"] == pytest.approx(14 / 14)
    assert o["known"] == pytest.approx(25 / 30)
    by_class = no_sky.summary()["by_class"]  # the three false alarms are Sky's
    assert (by_class[9]["ordinary"], by_class[9]["ordinary_flagged"]) == (10, pytest.approx(0.3))
    assert (by_class[0]["ordinary"], by_class[0]["ordinary_flagged"]) == (19, 0.0)
    merged = NoveltyTally().merge(no_sky).merge(tally).summary()["by_class"]
    assert merged[0]["ordinary"] == 48 and merged[0]["pasted"] == 4 and merged[9]["ordinary"] == 10
    with pytest.raises(ValueError, match="differ in size"):
        tally.update(novelty, image[:2], cost, mask, gt, lut)


def test_eval_novelty_writes_the_report(novel_root, novel_model, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["eval", str(novel_root), "--model", str(novel_model), "--novelty", "--out", str(out),
                 "--device", "cpu", "--quiet", "--novel-threshold", "0.9"]) == 0
    assert f"{out}/{REPORT_MD}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted([REPORT_JSON, REPORT_MD, FIGURE])
    doc = json.loads((out / REPORT_JSON).read_text())
    assert doc["settings"]["novel_threshold"] == 0.9 and doc["settings"]["min_confidence"] == 0.6
    assert sorted(doc["groups"]) == ["drum/test", "tarp/test"] and doc["overall"]["frames"] == 4
    direct = evaluate_novelty(novel_root / "tarp" / "test", novel_model, novel_threshold=0.9, device="cpu",
                              progress=False).overall.summary()
    _close(doc["groups"]["tarp/test"], direct)
    md = (out / REPORT_MD).read_text()
    assert "| drum/test | 2 |" in md and "**overall**" in md and FIGURE in md and "## Flagged by class" in md
    figure = cv2.imread(str(out / FIGURE))
    assert figure is not None and figure.shape[0] > 200


def test_eval_novelty_refuses_a_split_without_novelty_masks(novel_model, tmp_path, capsys):
    plain = tmp_path / "plain"
    generate(plain, {"val": 1}, seed=1, workers=1, progress=None)
    out = tmp_path / "report"
    assert main(["eval", str(plain / "val"), "--model", str(novel_model), "--novelty", "--out", str(out),
                 "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{plain / 'val'} has no {NOVELTY_DIR}/ folder" in err and "offroad-seg synth --novel-objects" in err
    assert not out.exists()


def test_eval_novelty_refuses_a_model_without_statistics(novel_root, tiny_artifact, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["eval", str(novel_root), "--model", str(tiny_artifact), "--novelty", "--out", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"offroad-seg novelty {tiny_artifact} DATA" in err and "no novelty statistics" in err
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--novelty", "--predictions", "/mask"], "cannot be used with --predictions"),
    (["--novel-threshold", "0.9"], "--novel-threshold is for --novelty"),
])
def test_eval_novelty_refuses_other_modes(novel_root, novel_model, tmp_path, capsys, extra, message):
    out = tmp_path / "report"
    assert main(["eval", str(novel_root), "--model", str(novel_model), "--out", str(out), "--quiet", *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
