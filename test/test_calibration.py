"""Calibration: ECE / reliability / risk-coverage against independent computations,
temperature fitting (tools/temperature.py), every backend applying the temperature, and min_confidence."""

import json
import shutil

import numpy as np
import pytest
import torch

from offroad_seg_ros.core.artifact import read_artifact, update_artifact
from offroad_seg_ros.core.calibration import CalibrationAccumulator, confidence_level
from offroad_seg_ros.inference.segmenter import Segmenter
from offroad_seg_ros.tools.temperature import fit_artifact_temperature, fit_temperature
from offroad_seg_train.export import export_checkpoint
from offroad_seg_train.module import CHECKPOINT_KEY
from offroad_seg_train.outlier_head import HeadSettings
from offroad_seg_train.synth import TEST_BIOME, render_scene


def test_ece_equals_an_independent_computation():
    rng = np.random.default_rng(0)
    conf = rng.integers(0, 256, (40, 50)).astype(np.uint8)
    gt = rng.integers(0, 4, (40, 50)).astype(np.uint8)
    # right more often where confident, but not as often as the confidence says
    right = rng.random((40, 50)) < conf / 255 * 0.8
    pred = np.where(right, gt, (gt + 1) % 4).astype(np.uint8)
    gt[0, :10] = 255  # ignore pixels are left out
    acc = CalibrationAccumulator()
    acc.update(conf[:20], pred[:20], gt[:20])
    acc.update(conf[20:], pred[20:], gt[20:])
    # by hand, pixel by pixel, with 10 bins
    bins: dict[int, list[tuple[float, bool]]] = {}
    for c, p, g in zip(conf.ravel(), pred.ravel(), gt.ravel()):
        if g == 255:
            continue
        b = min(int(c / 255 * 10), 9)
        bins.setdefault(b, []).append((c / 255, p == g))
    n = sum(len(v) for v in bins.values())
    want = sum(abs(np.mean([r for _, r in v]) - np.mean([c for c, _ in v])) * len(v) for v in bins.values()) / n
    assert acc.ece(bins=10) == pytest.approx(want, abs=1e-12)
    assert acc.pixels == n == 40 * 50 - 10
    assert acc.ece(bins=10) > 0.05  # the hand-made case is miscalibrated


def test_risk_coverage_keeps_the_confident_pixels():
    conf = np.array([[10, 200, 255, 128]], np.uint8)
    gt = np.zeros((1, 4), np.uint8)
    pred = np.array([[1, 0, 0, 1]], np.uint8)  # the two least confident are wrong
    acc = CalibrationAccumulator()
    acc.update(conf, pred, gt)
    rc = acc.risk_coverage()
    assert rc["coverage"][0] == 1.0 and rc["accuracy"][0] == 0.5
    assert rc["coverage"][129] == 0.5 and rc["accuracy"][129] == 1.0  # 128 dropped too
    assert acc.at(0.5) == (0.75, 2 / 3)  # level 128 kept at 0.5
    assert confidence_level(0.5) == 128 and confidence_level(0.0) == 0
    with pytest.raises(ValueError, match="min_confidence must be within 0..1, got 1.5"):
        confidence_level(1.5)


def test_temperature_fit_recovers_a_known_temperature():
    # labels drawn from softmax(z / 2.5): the logits z are overconfident by exactly 2.5
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 6, generator=g) * 4
    target = torch.multinomial((z / 2.5).softmax(1), 1, generator=g)[:, 0]
    t = fit_temperature(z, target)
    assert t == pytest.approx(2.5, rel=0.05)
    nll = torch.nn.functional.cross_entropy
    assert nll(z / t, target) < nll(z, target)


def test_fitting_the_temperature_lowers_validation_nll_and_records_it(tiny_artifact, synth_root, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(tiny_artifact, art)
    record = fit_artifact_temperature(art, synth_root, frames=3)
    assert record["nll_after"] < record["nll_before"]
    assert record["frames"] == 3 and record["pixels"] > 10000 and record["split"] == "val"
    assert read_artifact(art).temperature == record["temperature"] != 1.0
    assert json.loads((art / "model.json").read_text())["calibration"] == record


def test_export_fits_the_temperature_in_memory_as_on_the_written_artifact(tiny_artifact, synth_root, tmp_path):
    """export --calibrate fits on the network it holds and writes once; the record is the one
    fitting the written artifact afterwards gives."""
    from safetensors.torch import load_file

    art = read_artifact(tiny_artifact)
    state = load_file(str(tiny_artifact / "weights.safetensors"))
    meta = {"spec": {"arch": art.spec.arch, "encoder": art.spec.encoder, "kwargs": art.spec.kwargs},
            "classes": art.classes.to_dict(), "preprocess": art.preprocess.to_dict(), "epoch": 0, "global_step": 0}
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, CHECKPOINT_KEY: meta}, ckpt)
    fitted = export_checkpoint(ckpt, tmp_path / "fitted", temperature_data=synth_root,
                               outlier_head=HeadSettings(frames=4, variants=1, steps=20))
    later = export_checkpoint(ckpt, tmp_path / "later")
    assert read_artifact(later).calibration == {}
    record = fit_artifact_temperature(later, synth_root)
    assert read_artifact(fitted).calibration == record


@pytest.fixture(scope="module")
def frame():
    return render_scene(np.random.default_rng(4), TEST_BIOME)[0][:270, :480].copy()


@pytest.fixture(scope="module")
def hot_artifact(tiny_artifact, tmp_path_factory):
    """The tiny artifact with a temperature far from 1 in its model.json."""
    art = tmp_path_factory.mktemp("hot") / "art"
    shutil.copytree(tiny_artifact, art)
    update_artifact(art, calibration={"temperature": 0.05})  # random weights are unsure: sharpen them
    return art


def test_every_backend_applies_the_temperature(tiny_artifact, hot_artifact, frame):
    plain = Segmenter(tiny_artifact, device="cpu", warmup_size=None)(frame, ("mask", "confidence"))
    outs = {b: Segmenter(hot_artifact, backend=b, precision="fp32", warmup_size=None)(frame, ("mask", "confidence"))
            for b in ("torch", "onnxruntime", "openvino")}
    ref = outs["torch"]
    np.testing.assert_array_equal(ref.mask, plain.mask)  # the class map is unchanged
    assert ref.confidence.mean() > plain.confidence.mean() + 50  # and the confidence is not
    for name, out in outs.items():
        same = out.mask == ref.mask
        assert same.mean() > 0.999, name
        assert np.abs(out.confidence[same].astype(int) - ref.confidence[same]).max() <= 1, name


def test_min_confidence_makes_exactly_the_unsure_pixels_unknown(hot_artifact, frame, table):
    wanted = ("mask", "cost", "confidence", "known_mask")
    free = Segmenter(hot_artifact, device="cpu", warmup_size=None)(frame, wanted)
    level = int(np.median(free.confidence))  # about half the pixels below it
    gated_seg = Segmenter(hot_artifact, device="cpu", warmup_size=None, min_confidence=level / 255)
    gated = gated_seg(frame, wanted)
    unsure = gated.confidence < level
    assert 0.05 < unsure.mean() < 0.95  # both kinds present
    np.testing.assert_array_equal(gated.cost, np.where(unsure, 255, table.cost_lut()[gated.mask]))
    np.testing.assert_array_equal(gated.known_mask, np.where(unsure, 255, gated.mask))
    np.testing.assert_array_equal(free.mask, gated.mask)  # the mask keeps its argmax
    np.testing.assert_array_equal(free.known_mask, free.mask)
    np.testing.assert_array_equal(free.cost, table.cost_lut()[free.mask])
    # the cost alone, without the confidence asked for, is gated the same way
    np.testing.assert_array_equal(gated_seg(frame, ("cost",)).cost, gated.cost)


@pytest.mark.parametrize("temperature", [0.0, -1.0, 1000.0, "warm"])
def test_an_out_of_range_temperature_is_refused_by_name(tiny_artifact, tmp_path, temperature):
    from offroad_seg_ros.core.artifact import ArtifactError

    art = tmp_path / "bad"
    shutil.copytree(tiny_artifact, art)
    meta = json.loads((art / "model.json").read_text())
    meta["calibration"] = {"temperature": temperature}
    (art / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"model\.json: .*(temperature .* outside 0\.01\.\.100|invalid field)"):
        read_artifact(art)
