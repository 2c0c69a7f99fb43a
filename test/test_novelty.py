"""Novelty: the metrics of a per-pixel score against a novelty mask (evaluation/novelty.py) and the
candidate scores of a network in memory (inference/novelty_scores.py)."""

import numpy as np
import pytest
import torch

from offroad_seg_ros.core.classes import IGNORE_INDEX
from offroad_seg_ros.core.preprocess import Preprocess
from offroad_seg_ros.data.dataset import NOT_NOVEL, NOVEL, NOVELTY_IGNORE, PASTED
from offroad_seg_ros.evaluation.novelty import NoveltyHistogram
from offroad_seg_ros.inference.novelty_scores import (
    FeatureDensity,
    FeatureDensityFit,
    energy,
    labels_on_feature_grid,
    max_logit,
    max_softmax,
    run_network,
    sky_below_horizon,
    to_frame,
)


def _hist(ordinary, novel, pasted=(), low=0.0, high=1.0, bins=10):
    h = NoveltyHistogram(low, high, bins)
    scores = np.array([*ordinary, *novel, *pasted], np.float32)
    kinds = np.array([NOT_NOVEL] * len(ordinary) + [NOVEL] * len(novel) + [PASTED] * len(pasted), np.uint8)
    h.update(scores, kinds)
    return h


# ---- metrics ----

def test_perfectly_separated_scores():
    h = _hist(ordinary=np.linspace(0, 0.4, 50), novel=np.linspace(0.6, 0.99, 20), bins=100)
    assert h.auroc() == pytest.approx(1.0)
    assert h.fpr_at_tpr(0.95) == 0.0
    assert h.average_precision() == pytest.approx(1.0)
    t = h.threshold_at_false_alarm(0.0)
    assert h.false_alarm_rate(t) == 0.0 and h.flagged_share(NOVEL, t) == 1.0


def test_identical_scores_are_chance():
    values = np.random.default_rng(0).uniform(0, 1, 500)
    h = _hist(ordinary=values, novel=values, bins=64)
    assert h.auroc() == pytest.approx(0.5, abs=1e-12)
    assert h.average_precision() == pytest.approx(0.5, abs=0.02)  # the positives' share, at every threshold
    assert _hist(ordinary=[0.5] * 4, novel=[0.5] * 4).fpr_at_tpr(0.95) == 1.0  # one tie: all or nothing


def test_a_small_case_computed_by_hand():
    # Bins of 0.1. ordinary in bins 0, 3, 4, 7; novel in 4, 8, 9; pasted in 1, 5.
    h = _hist(ordinary=[0.05, 0.35, 0.45, 0.75], novel=[0.45, 0.85, 0.95], pasted=[0.15, 0.55])
    # 12 (novel, ordinary) pairs: 0.95 and 0.85 beat all 4; 0.45 beats 2 and ties 1 -> 10.5 / 12.
    assert h.auroc() == pytest.approx(0.875)
    # Every novel pixel flagged from 0.4 up, and with them 2 of the 4 ordinary ones.
    assert h.fpr_at_tpr(0.95) == pytest.approx(0.5)
    # Recall 1/3 at precision 1 (0.9), 1/3 at 1 (0.8), 1/3 at 3/5 (0.4).
    assert h.average_precision() == pytest.approx(13 / 15)
    assert h.false_alarm_rate(0.4) == pytest.approx(0.5)
    assert h.flagged_share(PASTED, 0.5) == pytest.approx(0.5)
    assert h.threshold_at_false_alarm(0.25) == pytest.approx(0.5)  # 0.4 would flag 2 of 4
    np.testing.assert_allclose(h.false_alarm_rate(np.array([0.0, 0.3, 0.8, 0.99])), [1.0, 0.75, 0.0, 0.0])


def _reference(scores: np.ndarray, kinds: np.ndarray) -> tuple[float, float, float]:
    """AUROC, FPR at 95% TPR and AP straight from the pixels: pairwise and sorted."""
    pos, neg = scores[kinds == NOVEL], scores[kinds == NOT_NOVEL]
    diff = pos[:, None] - neg[None, :]
    auroc = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
    thresholds = np.unique(scores[kinds != PASTED])[::-1]
    tpr = np.array([(pos >= t).mean() for t in thresholds])
    fpr = np.array([(neg >= t).mean() for t in thresholds])
    fpr95 = fpr[np.flatnonzero(tpr >= 0.95)[0]]
    precision = np.array([(pos >= t).sum() / ((pos >= t).sum() + (neg >= t).sum()) for t in thresholds])
    ap = np.sum(np.diff(np.concatenate([[0], tpr])) * precision)
    return float(auroc), float(fpr95), float(ap)


def test_matches_the_definitions_on_pixels_with_ties_over_several_frames():
    rng = np.random.default_rng(3)
    bins, merged, pixels = 32, NoveltyHistogram(-2.0, 4.0, 32), []
    for _ in range(3):
        kinds = rng.choice(np.array([NOT_NOVEL, NOVEL, PASTED, NOVELTY_IGNORE], np.uint8), (12, 15),
                           p=[0.6, 0.2, 0.1, 0.1])
        scores = rng.normal(0, 1, kinds.shape) + 1.2 * (kinds == NOVEL)
        part = NoveltyHistogram(-2.0, 4.0, bins)
        part.update(scores, kinds)
        merged.merge(part)
        pixels.append((scores, kinds))
    scores = np.concatenate([s.ravel() for s, _ in pixels])
    kinds = np.concatenate([k.ravel() for _, k in pixels])
    keep = kinds != NOVELTY_IGNORE
    # Quantised as the histogram does (ties within a bin), clipped into the end bins.
    quantised = merged.edges[merged.bin_of(scores[keep])]
    auroc, fpr95, ap = _reference(quantised, kinds[keep])
    assert merged.auroc() == pytest.approx(auroc)
    assert merged.fpr_at_tpr(0.95) == pytest.approx(fpr95)
    assert merged.average_precision() == pytest.approx(ap)
    assert merged.below + merged.above == ((scores[keep] < -2) | (scores[keep] >= 4)).sum() > 0
    assert merged.pixels(PASTED) == (kinds == PASTED).sum()


def test_ignored_pixels_are_skipped_and_bad_input_refused():
    h = NoveltyHistogram(0, 1, 4)
    h.update(np.array([0.1, 0.9, 0.5]), np.array([NOT_NOVEL, NOVELTY_IGNORE, NOVEL], np.uint8))
    assert h.counts.sum() == 2
    with pytest.raises(ValueError, match="3"):
        h.update(np.zeros(2), np.array([0, 3], np.uint8))
    with pytest.raises(ValueError, match="shape"):
        h.update(np.zeros(3), np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        h.update(np.array([np.nan]), np.zeros(1, np.uint8))
    with pytest.raises(ValueError, match="merged"):
        h.merge(NoveltyHistogram(0, 2, 4))
    with pytest.raises(ValueError, match="range"):
        NoveltyHistogram(1, 1)
    assert np.isnan(NoveltyHistogram(0, 1, 4).auroc())


# ---- scores ----

def test_logit_scores_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]]).reshape(1, 2, 1, 2)  # pixel 0: (2, 0), pixel 1: (0, 0)
    np.testing.assert_allclose(max_softmax(logits)[0, 0], [1 - 1 / (1 + np.exp(-2)), 0.5], rtol=1e-6)
    np.testing.assert_allclose(max_logit(logits)[0, 0], [-2.0, 0.0])
    np.testing.assert_allclose(energy(logits)[0, 0], [-np.log(np.exp(2) + 1), -np.log(2)], rtol=1e-6)
    np.testing.assert_allclose(energy(logits, 2.0)[0, 0], [-2 * np.log(np.exp(1) + 1), -2 * np.log(2)], rtol=1e-6)


def _clusters(rng, n=400, dim=4):
    """Two classes of correlated Gaussian features on a (1, dim, n, 1) grid, labels beside."""
    mix = rng.normal(0, 1, (dim, dim))
    x = rng.normal(0, 1, (n, dim)) @ mix
    labels = (np.arange(n) % 2).astype(np.uint8)
    x[labels == 1] += 6.0
    return torch.from_numpy(x.T[None, :, :, None].astype(np.float32)), torch.from_numpy(labels[None, :, None])


def test_feature_density_rank_below_full_is_the_full_mahalanobis_distance():
    rng = np.random.default_rng(1)
    feats, labels = _clusters(rng)
    fit = FeatureDensityFit(3, 4)  # class 2 never seen: left out
    fit.update(feats, labels)
    density = fit.finish(rank=3, min_count=10)
    assert density.classes.tolist() == [0, 1]
    x = feats[0, :, :, 0].T.double().numpy()
    lab = labels[0, :, 0].numpy()
    means = np.stack([x[lab == c].mean(0) for c in (0, 1)])
    resid = x - means[lab]
    cov = resid.T @ resid / (len(x) - 2)
    probe = rng.normal(0, 3, (50, 4))
    d = np.stack([np.einsum("nd,de,ne->n", probe - m, np.linalg.inv(cov), probe - m) for m in means], 1)
    got = density.score(torch.from_numpy(probe.T[None, :, :, None].astype(np.float32)))[0, :, 0]
    np.testing.assert_allclose(got.numpy(), np.sqrt(d.min(1)), rtol=1e-3)


def test_feature_density_diagonal_and_round_trip():
    rng = np.random.default_rng(2)
    feats, labels = _clusters(rng)
    fit = FeatureDensityFit(2, 4)
    fit.update(feats, labels)
    density = fit.finish(rank=0, min_count=10)
    assert density.rank == 0
    at_means = torch.from_numpy(density.means.T[None, :, :, None].copy())
    assert density.score(at_means).abs().max() < 0.01
    # 10 standard deviations from class 0's mean in each of the 4 features, away from class 1 (at +6).
    far = torch.from_numpy((density.means[0] - 10 * density.std)[None, :, None, None])
    np.testing.assert_allclose(density.score(far).numpy(), 20.0 / np.sqrt(density.residual_var), rtol=1e-4)
    again = FeatureDensity.from_dict({k: v.tolist() for k, v in density.to_dict().items()})
    torch.testing.assert_close(again.score(feats), density.score(feats))
    assert all(isinstance(v, np.ndarray) for v in density.to_dict().values())


class _Tiny(torch.nn.Module):
    """A decoder at a quarter of the input and a head that upsamples it, as smp's FPN."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.decoder = torch.nn.Conv2d(3, 5, 4, stride=4)
        self.segmentation_head = torch.nn.Sequential(torch.nn.Conv2d(5, 3, 1), torch.nn.Upsample(scale_factor=4))

    def forward(self, x):
        return self.segmentation_head(self.decoder(x))


def test_the_features_are_the_heads_input_and_scores_come_back_at_the_frames_size():
    model, pre = _Tiny().eval(), Preprocess(scale=0.5, pad_multiple=32)
    images = torch.randint(0, 255, (1, 100, 150, 3), dtype=torch.uint8)
    out = run_network(model, pre, images)
    assert out.scaled == (50, 75) and out.padded == (64, 96) and out.features.shape == (1, 5, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(pre.crop(model.segmentation_head(out.features), 100, 150), out.logits)
    assert not model.segmentation_head._forward_pre_hooks  # the hook is gone afterwards
    assert to_frame(max_logit(out.logits), out).shape == (1, 100, 150)
    assert to_frame(out.features[:, 0], out).shape == (1, 100, 150)
    # A left/right split of the frame survives the trip to the feature grid and back.
    step = torch.zeros(1, 16, 24)
    step[..., 10:] = 1.0  # feature columns 10.. cover input columns 40.. = frame columns 80..
    back = to_frame(step, out)[0]
    assert (back[:, :70] < 0.01).all() and (back[:, 90:] > 0.99).all()


def test_labels_on_the_feature_grid_keep_only_pure_cells():
    model, pre = _Tiny().eval(), Preprocess(scale=1.0, pad_multiple=32)
    out = run_network(model, pre, torch.zeros(1, 40, 40, 3, dtype=torch.uint8))  # padded to 64 x 64
    labels = torch.zeros(1, 40, 40, dtype=torch.uint8)
    labels[:, :, 10:] = 2  # a boundary inside cell column 2 (columns 8..11)
    labels[:, 0, 0] = IGNORE_INDEX
    grid = labels_on_feature_grid(labels, out)[0]
    assert grid.shape == (16, 16)
    assert grid[1, 0] == 0 and grid[1, 1] == 0 and grid[1, 3] == 2 and grid[5, 9] == 2
    assert grid[1, 2] == IGNORE_INDEX and grid[0, 0] == IGNORE_INDEX  # mixed; an ignored pixel
    assert (grid[10:] == IGNORE_INDEX).all() and (grid[:, 10:] == IGNORE_INDEX).all()  # padding


def test_sky_below_the_horizon_is_flagged_sky_above_it_is_not():
    sky, ground = 9, 8
    labels = torch.full((1, 100, 50), ground)
    labels[:, :40] = sky  # horizon: row 39
    labels[:, 40:44, :20] = sky  # a dune's trough: within the margin (6 rows)
    labels[:, 70:80, 10:20] = sky  # water mirroring the sky
    flags = sky_below_horizon(labels, sky)[0]
    assert flags[70:80, 10:20].all() and flags.sum() == 100
    assert not sky_below_horizon(torch.full((1, 100, 50), ground), sky).any()
    minority = labels.clone()
    minority[:, :40, 20:] = ground  # nowhere is sky most of a row: no horizon, nothing flagged
    assert not sky_below_horizon(minority, sky).any()
