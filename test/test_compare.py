"""`offroad-seg eval --model A --compare B`: two models on the same frames, one report comparing them
(evaluation/compare.py): the numbers of compare() on hand-made metrics, and end to end through the CLI."""

import json

import cv2
import numpy as np
import pytest
from conftest import make_artifact

from offroad_seg_ros.cli import main
from offroad_seg_ros.evaluation.compare import FIGURE, TIE_TOLERANCE, compare, compare_markdown, write_comparison
from offroad_seg_ros.evaluation.evaluate import evaluate
from offroad_seg_ros.evaluation.report import jsonable

LIMIT = 2  # frames scored end to end: enough to pair, cheap to run


def _metrics(table, iou, frames, miou=0.5, accuracy=0.8, ece=None, names=None):
    """A hand-made `evaluate` result: what compare() reads of it."""
    per_image = dict(frames)
    m = {
        "classes": table.to_dict() if names is None else {**table.to_dict(), "classes": names},
        "iou": np.array(iou, dtype=float),
        "miou": miou, "miou_all": miou, "pixel_accuracy": accuracy, "fwiou": 0.5, "mdice": 0.5,
        "per_image": {"names": list(per_image), "miou": list(per_image.values()),
                      "mean": float(np.nanmean([v for v in per_image.values() if v is not None]))},
        "run": {"source": "split", "model": "m", "frames_scored": len(per_image)},
    }
    if ece is not None:
        m["calibration"] = {"ece": ece}
    return m


@pytest.fixture
def pair(table):
    n = len(table)
    iou_a = [0.5] * n
    iou_b = [0.75] * n
    iou_a[1] = iou_b[1] = float("nan")  # n/a in both
    iou_b[2] = 0.25
    # Shared f1..f4 (B better on f1, f2; worse on f3; level on f4); f0 only A's, f5 only B's.
    a = _metrics(table, iou_a, {"f0": 0.1, "f1": 0.5, "f2": 0.25, "f3": 0.75, "f4": 0.5},
                 miou=0.5, accuracy=0.75, ece=0.125)
    b = _metrics(table, iou_b, {"f1": 0.75, "f2": 1.0, "f3": 0.5, "f4": 0.5, "f5": 0.9},
                 miou=0.625, accuracy=0.5, ece=0.0625)
    return a, b


def test_compare_gives_the_differences_and_the_paired_counts(pair, table):
    a, b = pair
    cmp = compare(a, b, "parent", "adapted")
    json.dumps(cmp, allow_nan=False)  # JSON-able, n/a as null
    head = {h["key"]: h for h in cmp["headline"]}
    assert head["miou"] == {"key": "miou", "label": head["miou"]["label"], "a": 0.5, "b": 0.625, "diff": 0.125}
    assert head["pixel_accuracy"]["diff"] == -0.25
    assert head["calibration.ece"]["a"] == 0.125 and head["calibration.ece"]["diff"] == -0.0625
    assert [c["class"] for c in cmp["per_class"]] == table.names
    assert cmp["per_class"][0] == {"class": table.names[0], "a": 0.5, "b": 0.75, "diff": 0.25}
    assert cmp["per_class"][1] == {"class": table.names[1], "a": None, "b": None, "diff": None}
    assert cmp["per_class"][2]["diff"] == -0.25
    p = cmp["paired"]
    assert (p["frames"], p["only_a"], p["only_b"]) == (4, 1, 1)
    assert (p["wins"], p["losses"], p["ties"]) == (2, 1, 1)
    assert p["mean_diff"] == pytest.approx((0.25 + 0.75 - 0.25 + 0) / 4)
    lo, hi = p["ci95"]
    assert lo <= p["mean_diff"] <= hi and lo < hi
    assert compare(a, b, "parent", "adapted") == cmp  # fixed seed: the same interval every time
    md = compare_markdown(cmp)
    assert "| metric | A | B | B - A |" in md
    assert "| mIoU (classes present in ground truth) | 0.5000 | 0.6250 | +0.1250 |" in md
    assert f"| {table.names[2]} | 0.5000 | 0.2500 | -0.2500 |" in md and f"| {table.names[1]} | n/a | n/a | n/a |" in md
    assert "B better on 2, worse on 1, level on 1" in md and f"[{lo:+.4f}, {hi:+.4f}]" in md


def test_the_bootstrap_interval_narrows_around_the_mean_with_more_frames(table):
    rng = np.random.default_rng(1)
    base = rng.random(400)
    diffs = rng.normal(0.05, 0.1, 400)
    frames_a = {f"f{i}": float(v) for i, v in enumerate(base)}
    frames_b = {f"f{i}": float(v + d) for i, (v, d) in enumerate(zip(base, diffs))}
    iou = [0.5] * len(table)
    p = compare(_metrics(table, iou, frames_a), _metrics(table, iou, frames_b), "a", "b")["paired"]
    lo, hi = p["ci95"]
    assert p["mean_diff"] == pytest.approx(diffs.mean())
    assert lo < diffs.mean() < hi
    # The standard error of the mean is 0.1 / sqrt(400) = 0.005: the interval is about +-2 of them.
    assert 0.015 < hi - lo < 0.025


def test_no_ece_row_when_neither_model_has_calibration(table):
    iou = [0.5] * len(table)
    a = _metrics(table, iou, {"f0": 0.5})
    cmp = compare(a, a, "a", "b")
    assert "calibration.ece" not in {h["key"] for h in cmp["headline"]}
    assert all(h["diff"] == 0 for h in cmp["headline"])
    assert (cmp["paired"]["ties"], cmp["paired"]["ci95"]) == (1, [0.0, 0.0])


def test_different_class_tables_are_refused(pair, table):
    a, b = pair
    renamed = [dict(c) for c in table.to_dict()["classes"]]
    renamed[0]["name"] = "Something else"
    other = _metrics(table, b["iou"], dict(zip(b["per_image"]["names"], b["per_image"]["miou"])), names=renamed)
    with pytest.raises(ValueError, match="parent and adapted were scored with different class tables"):
        compare(a, other, "parent", "adapted")


def test_no_shared_frames_is_refused(pair, table):
    a, _ = pair
    b = _metrics(table, a["iou"], {"g0": 0.5, "g1": 0.25})
    with pytest.raises(ValueError, match="parent and adapted share no scored frame"):
        compare(a, b, "parent", "adapted")


# -- end to end ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def other_artifact(tmp_path_factory, table):
    """The tiny architecture with other random weights: a different model."""
    return make_artifact(tmp_path_factory.mktemp("other") / "other", table, seed=1)


def _eval(*words):
    return main(["eval", *map(str, words), "--device", "cpu", "--quiet", "--limit", str(LIMIT)])


def _files(out):
    return {"compare.md", "compare.json", FIGURE, "a", "b"} <= {p.name for p in out.iterdir()} and all(
        (out / side / "report.md").is_file() and (out / side / "metrics.json").is_file() for side in "ab")


def test_a_model_against_itself_differs_nowhere(synth_root, tiny_artifact, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert _eval(synth_root / "test", "--model", tiny_artifact, "--compare", tiny_artifact, "--out", out) == 0
    printed = capsys.readouterr().out
    assert "| metric | A | B | B - A |" in printed and f"{out}/compare.md" in printed
    assert _files(out)
    assert cv2.imread(str(out / FIGURE)) is not None
    cmp = json.loads((out / "compare.json").read_text())
    assert all(h["a"] == h["b"] and h["diff"] == 0 for h in cmp["headline"] if h["a"] is not None)
    assert "calibration.ece" in {h["key"] for h in cmp["headline"]}
    assert all(c["diff"] in (0.0, None) and c["a"] == c["b"] for c in cmp["per_class"])
    p = cmp["paired"]
    assert p["frames"] == p["ties"] == LIMIT and p["wins"] == p["losses"] == 0
    assert p["mean_diff"] == 0 and p["ci95"] == [0.0, 0.0]
    assert "level on 2" in (out / "compare.md").read_text()


def test_two_models_compare_as_each_scores_alone(synth_root, tiny_artifact, other_artifact, tmp_path):
    split = synth_root / "test"
    assert _eval(split, "--model", tiny_artifact, "--compare", other_artifact, "--out", tmp_path / "cmp") == 0
    assert _files(tmp_path / "cmp")
    cmp = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    # What `eval --model` computes for each alone, as its metrics.json holds it (n/a as null).
    alone = {s: jsonable(evaluate(split, model=m, device="cpu", limit=LIMIT, progress=False)[0])
             for s, m in (("a", tiny_artifact), ("b", other_artifact))}
    for s in "ab":
        assert [c[s] for c in cmp["per_class"]] == alone[s]["iou"]
        head = {h["key"]: h[s] for h in cmp["headline"]}
        assert head["miou"] == alone[s]["miou"] and head["calibration.ece"] == alone[s]["calibration"]["ece"]
        # Each model's own report inside the comparison is its ordinary one.
        inside = json.loads((tmp_path / "cmp" / s / "metrics.json").read_text())
        assert inside["iou"] == alone[s]["iou"] and inside["per_image"] == alone[s]["per_image"]
    assert any(c["a"] != c["b"] for c in cmp["per_class"]), "the two models should differ"
    diffs = np.subtract(alone["b"]["per_image"]["miou"], alone["a"]["per_image"]["miou"])
    p = cmp["paired"]
    assert p["frames"] == LIMIT and p["mean_diff"] == pytest.approx(diffs.mean())
    assert (p["wins"], p["losses"]) == (int((diffs > TIE_TOLERANCE).sum()), int((diffs < -TIE_TOLERANCE).sum()))
    assert p["wins"] + p["losses"] + p["ties"] == LIMIT
    assert p["ci95"][0] <= p["mean_diff"] <= p["ci95"][1]


def test_compare_needs_model_and_not_predictions(tiny_artifact, synth_root, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert _eval(synth_root / "test", "--compare", tiny_artifact, "--out", out) == 2
    err = capsys.readouterr().err
    assert "--compare needs --model" in err, err
    assert _eval(synth_root / "test", "--predictions", "/mask", "--compare", tiny_artifact, "--out", out) == 2
    err = capsys.readouterr().err
    assert "--compare" in err and "--predictions" in err, err
    assert _eval(synth_root / "test", "--model", tiny_artifact, "--compare", tmp_path / "nomodel", "--out", out) == 2
    assert "nomodel does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_an_existing_out_is_refused_without_force(tiny_artifact, synth_root, tmp_path, capsys):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "keep").touch()
    assert _eval(synth_root / "test", "--model", tiny_artifact, "--compare", tiny_artifact, "--out", out) == 2
    assert f"{out} exists; pass --force" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep"]


def test_the_comparison_is_written_completely_or_not_at_all(synth_root, tiny_artifact, tmp_path, monkeypatch):
    import offroad_seg_ros.evaluation.compare as compare_module

    m, g = evaluate(synth_root / "test", model=tiny_artifact, device="cpu", limit=1, progress=False)
    cmp = compare(m, m, "a", "b")
    with pytest.raises(FileExistsError, match=f"{tmp_path} exists"):
        write_comparison(tmp_path, cmp, m, m, g, g)

    def stub_report(out, metrics, gallery, force=False):  # each model's report is test_bag_eval's subject
        out.mkdir()
        (out / "report.md").touch()
        (out / "metrics.json").touch()

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(compare_module, "write_report", stub_report)
    monkeypatch.setattr(compare_module, "compare_markdown", broken)  # the last file written
    with pytest.raises(RuntimeError, match="disk full"):
        write_comparison(tmp_path / "cmp", cmp, m, m, g, g)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(compare_module, "compare_markdown", compare_markdown)
    old = tmp_path / "cmp"
    old.mkdir()
    (old / "stale").touch()
    write_comparison(old, cmp, m, m, g, g, force=True)
    assert _files(old) and not (old / "stale").exists()
