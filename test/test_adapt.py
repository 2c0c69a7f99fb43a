"""`offroad-seg adapt`: a model adapted to a colour-shifted copy of the generated desert gets better
on held-out frames of it, deterministically for a seed; the gate refuses a model that loses source
accuracy or lets a class collapse; the artifact records where it came from."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
import torch

from offroad_seg_ros.core.artifact import Artifact, ModelSpec, read_artifact, save_artifact
from offroad_seg_ros.core.calibration import CalibrationAccumulator
from offroad_seg_ros.core.model import build_model
from offroad_seg_ros.core.preprocess import Preprocess
from offroad_seg_ros.data.dataset import IMAGE_DIR, MASK_DIR, list_samples, read_image, write_png_atomic
from offroad_seg_ros.tools.novelty import fit_novelty
from offroad_seg_train.adapt import AdaptSettings, GateRefused, adapt, parent_id
from offroad_seg_train.adapt_data import AdaptCrops, matched_preprocess, pixel_statistics, read_source
from offroad_seg_train.gate import GateSettings, collapse_check, source_check
from offroad_seg_train.scoring import Scored
from offroad_seg_train.self_training import AUX_LABELS, SelfTraining, footprint_loss

GAIN = np.array([0.4, 0.5, 1.0])
OFFSET = np.array([120.0, 60.0, 0.0])
FAST = dict(steps=3, crop=96, batch=2, max_frames=4, source_frames=4)
OPEN_GATE = GateSettings(tolerance=1.0, min_agreement=0.0, keep_share=0.0)


def shifted(image: np.ndarray) -> np.ndarray:
    """A new place: another white balance and exposure of the same desert."""
    return np.clip(image * GAIN + OFFSET, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def world(tmp_path_factory, synth_root, table):
    """A tiny model taught the generated desert (the adaptation's own recipe with true labels), and
    the shifted place: unlabelled frames to adapt on, labelled held-out frames to score on."""
    import pytorch_lightning as L
    from torch.utils.data import DataLoader

    root = tmp_path_factory.mktemp("adapt")
    L.seed_everything(0, verbose=False)
    pre = Preprocess(scale=0.5, train_size=(960, 540))
    model = build_model("FPN", "resnet18", len(table), None, decoder_pyramid_channels=32,
                        decoder_segmentation_channels=32)
    images, masks = read_source(synth_root / "train", table, pre)
    module = SelfTraining(model, pre, torch.ones(len(table)), [], lr=3e-3, aux=AUX_LABELS, steps=60)
    crops = AdaptCrops(images, ([], []), 128, 60, 4, aux=masks, seed=0)
    L.Trainer(max_steps=60, accelerator="cpu", logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False).fit(module, DataLoader(crops, batch_size=4))
    art = Artifact(ModelSpec("FPN", "resnet18", {"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32}),
                   table, pre, name="desert")
    parent = save_artifact(root / "parent", art, module.student.eval())
    with_onnx = save_artifact(root / "parent_onnx", replace(art, name="desert"), module.student.eval(), onnx=True)
    fit_novelty(with_onnx, synth_root, fit_frames=4, frames=3)
    target = root / "target"
    target.mkdir()
    for s in list_samples(synth_root / "train"):
        write_png_atomic(target / s.image.name, shifted(read_image(s.image)))
    held_out = root / "held_out"
    for sub in (IMAGE_DIR, MASK_DIR):
        (held_out / sub).mkdir(parents=True)
    for s in list_samples(synth_root / "test"):
        write_png_atomic(held_out / IMAGE_DIR / s.image.name, shifted(read_image(s.image)))
        assert s.mask is not None
        shutil.copy(s.mask, held_out / MASK_DIR / s.mask.name)
    return {"root": root, "parent": parent, "parent_onnx": with_onnx, "target": target, "held_out": held_out,
            "source": synth_root}


def miou_on(model_dir, split) -> float:
    from offroad_seg_ros.evaluation.evaluate import evaluate

    metrics, _ = evaluate(split, model=model_dir, device="cpu", progress=False)
    return float(metrics["miou"])


def test_adapting_improves_held_out_frames_of_the_new_place(world, tmp_path):
    out = tmp_path / "adapted"
    result = adapt(world["parent"], world["target"], out, world["source"],
                   AdaptSettings(**{**FAST, "steps": 10, "max_frames": 8}, gate=OPEN_GATE), quiet=True)
    assert result.out == out and result.gate.passed
    before, after = miou_on(world["parent"], world["held_out"]), miou_on(out, world["held_out"])
    assert after > before + 0.05, (before, after)


def test_adaptation_is_deterministic_for_a_seed(world, tmp_path):
    digests = []
    for name in ("a", "b"):
        adapt(world["parent"], world["target"], tmp_path / name, world["source"],
              AdaptSettings(**FAST, gate=OPEN_GATE), quiet=True)
        digests.append(read_artifact(tmp_path / name).weights_digest(64))
    assert digests[0] == digests[1]
    adapt(world["parent"], world["target"], tmp_path / "c", world["source"],
          AdaptSettings(**FAST, seed=1, gate=OPEN_GATE), quiet=True)
    assert read_artifact(tmp_path / "c").weights_digest(64) != digests[0]


def test_the_artifact_records_parent_data_settings_and_gate(world, tmp_path):
    out = tmp_path / "adapted"
    adapt(world["parent_onnx"], world["target"], out, world["source"], AdaptSettings(**FAST, gate=OPEN_GATE),
          quiet=True)
    art, parent = read_artifact(out), read_artifact(world["parent_onnx"])
    record = art.extra["provenance"]
    assert art.parent == parent_id(parent) == f"desert@{parent.weights_digest()}"
    digest = hashlib.sha256()
    frames = sorted(world["target"].iterdir())
    for i in np.linspace(0, len(frames) - 1, FAST["max_frames"]).round().astype(int):  # spread over the recording
        digest.update(read_image(frames[i]).tobytes())
    assert record["adapted_on"]["sha256"] == digest.hexdigest() and record["adapted_on"]["frames"] == FAST["max_frames"]
    assert record["settings"]["steps"] == FAST["steps"] and record["gate"]["passed"] is True
    assert {c["name"] for c in record["gate"]["checks"]} >= {"source mIoU drop", "class shares", "teacher-student"}
    assert art.has_onnx and art.calibration["split"] == "source val" and art.calibration["temperature"] > 0
    # The input normalisation is the new place's (matched), and differs from the parent's.
    assert art.preprocess.mean != parent.preprocess.mean
    # The novelty statistics refitted through the adapted network, and its model.onnx computes the score.
    assert art.novelty is not None and parent.novelty is not None
    assert art.novelty["pixel_quantiles"]["values"] != parent.novelty["pixel_quantiles"]["values"]
    assert [o.name for o in ort.InferenceSession(str(art.onnx_path)).get_outputs()] == ["logits", "novelty"]


def test_the_gate_refuses_a_model_that_loses_source_accuracy(world, tmp_path):
    out = tmp_path / "adapted"
    with pytest.raises(GateRefused) as refused:
        adapt(world["parent"], world["target"], out, world["source"],
              AdaptSettings(**{**FAST, "lr": 0.5}, match_input=False,
                            gate=GateSettings(min_agreement=0.0, keep_share=0.0)), quiet=True)
    failed = [c.name for c in refused.value.result.checks if not c.passed]
    assert "source mIoU drop" in failed and not out.exists()
    assert not list(tmp_path.iterdir())  # nothing half-written beside it either


def _scored(cms: list[np.ndarray], shares: list[float] | None = None) -> Scored:
    return Scored(cms=cms, calibration=CalibrationAccumulator(),
                  shares=None if shares is None else np.asarray(shares))


def _frame(right: int, wrong: int) -> np.ndarray:
    """Two classes' confusion matrix: `right` pixels of each class right, `wrong` of class 1 called 0."""
    return np.array([[right, 0, 0], [wrong, right, 0]])


def test_source_check_judges_the_drop_or_its_bound():
    same = [_frame(100, 0)] * 60
    worse = [_frame(100, 40)] * 60
    settings = GateSettings(tolerance=0.02, min_source_frames=50)
    assert source_check(_scored(same), _scored(same), settings).passed
    check = source_check(_scored(same), _scored(worse), settings)
    assert not check.passed and check.value > 0.2
    # Few frames: a drop within tolerance on average but uncertain is refused on its bound.
    noisy_before = [_frame(100, 0)] * 6
    noisy_after = [_frame(100, 0)] * 5 + [_frame(100, 12)]
    few = source_check(_scored(noisy_before), _scored(noisy_after), settings)
    assert few.value > 0.02 and not few.passed and "bound" in few.detail


def test_collapse_check_catches_a_swallowed_class():
    names = ["sand", "rock", "sky"]
    before = _scored([], [0.6, 0.1, 0.3])
    assert collapse_check(before, _scored([], [0.55, 0.12, 0.33]), names, GateSettings()).passed
    check = collapse_check(before, _scored([], [0.69, 0.01, 0.3]), names, GateSettings())
    assert not check.passed and "rock" in check.detail


def test_footprint_loss_pushes_probability_off_lethal_classes_only():
    logits = torch.zeros(1, 3, 4, 4, requires_grad=True)
    driven = torch.zeros(1, 4, 4, dtype=torch.bool)
    driven[0, 2:] = True
    footprint_loss(logits, driven, [2]).backward()
    assert logits.grad is not None
    grad = logits.grad[0]
    assert (grad[2][driven[0]] > 0).all()  # descending lowers the lethal logit where driven
    assert (grad[:, ~driven[0]] == 0).all()  # nothing elsewhere
    assert float(footprint_loss(logits, torch.zeros_like(driven), [2])) == 0.0


def test_matched_preprocess_undoes_a_per_channel_shift(synth_root, table):
    pre = Preprocess(scale=0.5, train_size=(960, 540))
    images, _ = read_source(synth_root / "train", table, pre)
    moved = [shifted(im) for im in images]
    matched = matched_preprocess(pre, pixel_statistics(images), pixel_statistics(moved))
    original = pre.normalize(torch.from_numpy(images[0])[None])
    recovered = matched.normalize(torch.from_numpy(moved[0])[None])
    moved_exact = np.asarray(images[0]) * GAIN + OFFSET
    keep = torch.from_numpy(((moved_exact >= 0) & (moved_exact <= 255)).all(-1))  # pixels the shift did not clip
    diff = (original - recovered)[0].permute(1, 2, 0)[: keep.shape[0], : keep.shape[1]][keep].abs()
    assert float(diff.mean()) < 0.05
    assert pre.mean == Preprocess().mean and matched.scale == pre.scale  # a new Preprocess; the parent's kept


def test_the_command_says_why_it_refused_and_writes_nothing(world, tmp_path, capsys):
    from offroad_seg_ros.cli.app import main

    out = tmp_path / "adapted"
    code = main(["adapt", str(world["parent"]), str(world["target"]), "--out", str(out), "--source",
                 str(world["source"]), "--steps", "3", "--max-frames", "4", "--lr", "0.5", "--quiet"])
    printed = capsys.readouterr()
    assert code == 3 and not out.exists(), printed.err
    printed = printed.out
    assert "nothing was written" in printed and "source mIoU drop" in printed and "FAIL" in printed
    # A bag's camera must be named.
    assert main(["adapt", str(world["parent"]), str(world["target"]), "--out", str(out), "--source",
                 str(world["source"]), "--odom-topic", "/odom", "--quiet"]) == 2
    assert "--camera-info-topic" in capsys.readouterr().err
