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


@pytest.fixture(scope="module")
def deserts(tmp_path_factory, tiny_artifact, synth_root):
    """Two other deserts (ROOT/<biome>/test, two frames each) and the tiny model with novelty
    statistics (the shift score)."""
    import shutil

    from offroad_seg_ros.tools.novelty import fit_novelty
    from offroad_seg_train.biomes import REGISTRY
    from offroad_seg_train.synth import generate

    root = tmp_path_factory.mktemp("deserts")
    for name in ("red_canyon", "green_oasis"):
        generate(root / name, {"test": 2}, seed=11, workers=1, progress=None, biome=REGISTRY[name])
    art = tmp_path_factory.mktemp("shift") / "art"
    shutil.copytree(tiny_artifact, art, ignore=shutil.ignore_patterns("model_int8.*"))
    fit_novelty(art, synth_root, fit_frames=3, frames=2, onnx=False)
    return root, art


def test_other_deserts_get_a_row_each_as_the_node_publishes(deserts, synth_root, tmp_path):
    import numpy as np

    from offroad_seg_ros.core.classes import IGNORE_INDEX
    from offroad_seg_ros.data.dataset import list_samples, read_image, read_raw_mask
    from offroad_seg_ros.inference.segmenter import Segmenter

    root, art = deserts
    result = _run(art, synth_root / "test", corruptions=["dark"], min_confidence=0.6, biomes=root)
    assert [b["biome"] for b in result["biomes"]] == ["green_oasis/test", "red_canyon/test"]
    seg = Segmenter(art, device="cpu", warmup_size=None, min_confidence=0.6)
    for row in result["biomes"]:
        known = right = labelled = 0
        shifts = []
        for s in list_samples(root / row["biome"]):
            out = seg(read_image(s.image), ("mask", "cost"))
            gt = seg.classes.remap(read_raw_mask(s.mask))
            costed = (gt != IGNORE_INDEX) & (out.cost != 255)
            labelled += int((gt != IGNORE_INDEX).sum())
            known += int(costed.sum())
            right += int((costed & (out.mask == gt)).sum())
            shifts.append((out.shift, out.shifted))
        assert row["frames"] == 2
        assert row["cost_known"] == pytest.approx(known / labelled)
        assert row["cost_known_accuracy"] == pytest.approx(right / known)
        assert row["shift_median"] == pytest.approx(float(np.median([s for s, _ in shifts])))
        assert row["shifted"] == sum(f for _, f in shifts) / 2
    md = (write_robustness_report(tmp_path / "rob", result) / "robustness.md").read_text()
    assert "## Other deserts (clean frames)" in md and "| red_canyon/test | 2 |" in md


def test_a_folder_without_deserts_is_named(tiny_artifact, synth_root, tmp_path):
    from offroad_seg_ros.data.dataset import DatasetError

    with pytest.raises(DatasetError, match=str(tmp_path)):
        _run(tiny_artifact, synth_root / "test", biomes=tmp_path)
