"""The robustness evaluation: its clean row is a plain eval, it is deterministic for a seed,
what it counts as known follows the node's settings, and its report is written whole."""

import json
import math

import pytest

from offroad_seg_ros.evaluation.evaluate import evaluate
from offroad_seg_ros.evaluation.robustness import evaluate_robustness, write_robustness_report


def _run(art, split, **kw):
    args = dict(corruptions=["dark", "frozen"], severities=[3], limit=3, device="cpu", progress=False)
    return evaluate_robustness(split, art, **{**args, **kw})


def _same(a, b):
    return all((isinstance(x, float) and math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b))


def test_clean_row_is_a_plain_eval(tiny_artifact, synth_root):
    split = synth_root / "test"
    plain, _ = evaluate(split, model=tiny_artifact, device="cpu", limit=3, progress=False)
    result = _run(tiny_artifact, split, min_confidence=0.0, degraded_policy="publish")
    clean = result["rows"][0]
    assert (clean["corruption"], clean["frames"]) == ("clean", 3)
    assert clean["miou"] == plain["miou"] and clean["pixel_accuracy"] == plain["pixel_accuracy"]
    assert clean["ece"] == plain["calibration"]["ece"]
    # nothing withheld, nothing below a zero threshold: everything known, right as often as the pixels are
    assert clean["coverage"] == 1.0 and clean["known_accuracy"] == pytest.approx(plain["pixel_accuracy"])
    frozen = next(r for r in result["rows"] if r["corruption"] == "frozen")
    assert frozen["detection"] == 1.0  # every repeated frame flagged


def test_deterministic_for_a_seed_and_the_report(tiny_artifact, synth_root, tmp_path):
    split = synth_root / "test"
    a = _run(tiny_artifact, split, corruptions=["glare", "lens_dirt"], seed=3)
    b = _run(tiny_artifact, split, corruptions=["glare", "lens_dirt"], seed=3)
    for ra, rb in zip(a["rows"], b["rows"]):
        assert _same(list(ra.values()), list(rb.values())), (ra, rb)
    out = write_robustness_report(tmp_path / "rob", a)
    assert sorted(p.name for p in out.iterdir()) == ["calibration.png", "robustness.json", "robustness.md",
                                                     "robustness.png"]
    saved = json.loads((out / "robustness.json").read_text())
    assert [r["corruption"] for r in saved["rows"]] == ["clean", "glare", "lens_dirt"]
    assert "| lens_dirt |" in (out / "robustness.md").read_text()
    with pytest.raises(FileExistsError):
        write_robustness_report(tmp_path / "rob", a)


def test_withheld_frames_count_as_unknown(tiny_artifact, synth_root):
    split = synth_root / "test"
    policy = {p: _run(tiny_artifact, split, corruptions=["dark"], severities=[5], min_confidence=0.0,
                      degraded_policy=p)["rows"][1] for p in ("publish", "unknown", "drop")}
    assert policy["publish"]["alarm_rate"] == 1.0 and policy["publish"]["coverage"] == 1.0
    assert policy["unknown"]["coverage"] == policy["drop"]["coverage"] == 0.0


def test_bad_arguments_are_named(tiny_artifact, synth_root):
    with pytest.raises(ValueError, match="unknown corruption"):
        _run(tiny_artifact, synth_root / "test", corruptions=["rain"])
    with pytest.raises(ValueError, match="degraded_policy must be one of"):
        _run(tiny_artifact, synth_root / "test", degraded_policy="ignore")
