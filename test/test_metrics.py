import numpy as np
import pytest
import torch
from torchmetrics.classification import (
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)

from offroad_seg_ros.core.metrics import MetricAccumulator, confusion_matrix, scores

C = 6


def _random(seed, shape=(3, 17, 23), ignore_frac=0.1):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, C, shape, generator=g)
    pred = torch.where(torch.rand(shape, generator=g) < 0.6, target, torch.randint(0, C, shape, generator=g))
    target[torch.rand(shape, generator=g) < ignore_frac] = 255
    return pred, target


@pytest.mark.parametrize("seed", range(5))
def test_per_class_matches_torchmetrics(seed):
    pred, target = _random(seed)
    s = scores(confusion_matrix(pred, target, C))
    kw = dict(num_classes=C, ignore_index=255, average="none")
    np.testing.assert_allclose(s["iou"], MulticlassJaccardIndex(**kw)(pred, target).numpy(), atol=1e-6)
    np.testing.assert_allclose(s["dice"], MulticlassF1Score(**kw)(pred, target).numpy(), atol=1e-6)
    np.testing.assert_allclose(s["precision"], MulticlassPrecision(**kw)(pred, target).numpy(), atol=1e-6)
    np.testing.assert_allclose(s["recall"], MulticlassRecall(**kw)(pred, target).numpy(), atol=1e-6)
    macro = MulticlassJaccardIndex(num_classes=C, ignore_index=255, average="macro")(pred, target)
    assert s["miou"] == pytest.approx(float(macro), abs=1e-6)


def test_accumulation_equals_one_shot():
    acc = MetricAccumulator(C)
    batches = [_random(s) for s in range(4)]
    for p, t in batches:
        acc.update(p, t)
    pred = torch.cat([p for p, _ in batches])
    target = torch.cat([t for _, t in batches])
    assert (acc.compute()["confusion_matrix"] == confusion_matrix(pred, target, C).numpy()).all()
    assert acc.compute()["per_image"]["count"] == 12


def test_smp_reference_figures():
    smp_metrics = pytest.importorskip("segmentation_models_pytorch.metrics")
    pred, target = _random(11, ignore_frac=0.0)
    tp, fp, fn, tn = smp_metrics.get_stats(pred, target, mode="multiclass", num_classes=C)
    micro = float(smp_metrics.iou_score(tp, fp, fn, tn, reduction="micro"))
    imagewise = float(smp_metrics.iou_score(tp, fp, fn, tn, reduction="micro-imagewise"))
    acc = MetricAccumulator(C)
    acc.update(pred, target)
    out = acc.compute()
    assert out["smp_micro_iou"] == pytest.approx(micro, abs=1e-6)
    assert out["smp_micro_imagewise_iou"] == pytest.approx(imagewise, abs=1e-6)
    a = out["pixel_accuracy"]
    assert out["smp_micro_iou"] == pytest.approx(a / (2 - a))


def test_absent_class_is_na_not_zero_or_one():
    target = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 0, 1, 2]])  # class 2 predicted, never in ground truth
    s = scores(confusion_matrix(pred, target, 4))
    assert s["iou"][0] == 1.0 and s["iou"][1] == 0.5 and s["iou"][2] == 0.0
    assert np.isnan(s["iou"][3])  # neither ground truth nor prediction
    assert s["miou"] == pytest.approx(0.75)  # over classes present in ground truth
    assert s["miou_all"] == pytest.approx(0.5)  # over classes that are not n/a
    assert np.isnan(s["recall"][2]) and s["precision"][2] == 0.0


def test_ignore_pixels_and_edge_cases():
    # All-ignore image: nothing scored, no division errors.
    s = scores(confusion_matrix(torch.zeros(5, 5), torch.full((5, 5), 255), 3))
    assert np.isnan(s["miou"]) and np.isnan(s["iou"]).all() and np.isnan(s["pixel_accuracy"])
    # One-pixel image.
    s = scores(confusion_matrix(torch.tensor([[2]]), torch.tensor([[2]]), 3))
    assert s["miou"] == 1.0 and s["pixel_accuracy"] == 1.0
    # "No prediction" (255) counts as wrong for its ground-truth class.
    s = scores(confusion_matrix(torch.tensor([[255, 1]]), torch.tensor([[1, 1]]), 3))
    assert s["recall"][1] == 0.5 and s["iou"][1] == 0.5


def test_shape_mismatch_and_bad_ground_truth_are_errors():
    acc = MetricAccumulator(3)
    with pytest.raises(ValueError, match="differ"):
        acc.update(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="class index 7"):
        confusion_matrix(torch.zeros(2), torch.tensor([7, 0]), 3)


def test_per_image_distribution_names_best_and_worst():
    acc = MetricAccumulator(2)
    t = torch.tensor([[0, 1]])
    acc.update(t.clone(), t, names=["perfect"])
    acc.update(1 - t, t, names=["wrong"])
    pi = acc.compute()["per_image"]
    assert pi["best"][0] == ("perfect", 1.0) and pi["worst"][0] == ("wrong", 0.0)
    assert pi["mean"] == 0.5


@pytest.mark.parametrize("seed", range(3))
def test_uint8_fast_path_equals_general_path(seed):
    pred, target = _random(seed)
    pred[0, :3] = 255  # "no prediction"
    fast = confusion_matrix(pred.to(torch.uint8), target.to(torch.uint8), C)
    general = confusion_matrix(pred, target, C)
    assert torch.equal(fast, general)
    target[1, 2, 3] = 9
    with pytest.raises(ValueError, match="class index 9"):
        confusion_matrix(pred.to(torch.uint8), target.to(torch.uint8), C)
