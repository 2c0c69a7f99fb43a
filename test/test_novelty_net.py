"""The novelty scores in the artifact and on every backend (inference/novelty_net.py,
tools/novelty.py, offroad_seg_train/outlier_head.py, the Segmenter's novel pixels and shift score)."""

import shutil

import numpy as np
import pytest
import torch

from offroad_seg_ros.core.artifact import read_artifact
from offroad_seg_ros.data.dataset import list_samples, read_image, split_folder
from offroad_seg_ros.inference.novelty_net import PIXEL, SHIFT, DensityScore, NoveltyNet, OutlierHead, threshold_at
from offroad_seg_ros.inference.novelty_scores import FeatureDensityFit, head_input
from offroad_seg_ros.inference.segmenter import Segmenter
from offroad_seg_ros.tools.novelty import fit_novelty
from offroad_seg_train.outlier_head import HeadSettings, cell_weights, exposure_set, fit_with_outlier_head, train_head

HEAD = HeadSettings(frames=8, variants=2, steps=80)  # small, for the tiny model


@pytest.fixture(scope="module")
def novel_artifact(tiny_artifact, synth_root, tmp_path_factory):
    """The tiny artifact with its outlier head and novelty statistics (model.onnx re-exported
    with the scores)."""
    art = tmp_path_factory.mktemp("novel") / "art"
    shutil.copytree(tiny_artifact, art, ignore=shutil.ignore_patterns("model_int8.*"))
    fit_with_outlier_head(art, synth_root, HEAD, fit_frames=8, frames=3)
    return art


@pytest.fixture(scope="module")
def frames(synth_root):
    return [read_image(s.image) for s in list_samples(split_folder(synth_root, "test"))]


@pytest.fixture(scope="module")
def val_frames(synth_root):
    return [read_image(s.image) for s in list_samples(split_folder(synth_root, "val"))]


@pytest.mark.parametrize("rank", [0, 3])
def test_the_in_graph_score_is_the_feature_density(rank):
    rng = np.random.default_rng(rank)
    fit = FeatureDensityFit(3, 6)
    for c in range(3):
        x = torch.from_numpy(rng.normal(c, 1 + c, (1, 6, 20, 20)).astype(np.float32))
        fit.update(x, torch.full((1, 20, 20), c, dtype=torch.uint8))
    density = fit.finish(rank, min_count=10)
    features = torch.from_numpy(rng.normal(1, 3, (2, 6, 5, 7)).astype(np.float32))
    got = DensityScore(density)(features)[:, 0]
    torch.testing.assert_close(got, density.score(features), rtol=1e-4, atol=1e-4)


def test_the_artifact_records_the_statistics_and_thresholds(novel_artifact):
    import onnxruntime as ort

    art = read_artifact(novel_artifact)
    record = art.novelty
    assert record is not None and record["method"] == "feature_density"
    assert record["pixel_score"] == "outlier_head" and record["outlier_head"]["settings"]["steps"] == HEAD.steps
    assert Segmenter(novel_artifact, device="cpu", warmup_size=None).novelty_status == "on (pixel score: outlier head)"
    for key in ("pixel_quantiles", "frame_quantiles"):
        values = record[key]["values"]
        assert len(values) == len(record[key]["levels"]) and np.all(np.diff(values) >= 0)
    assert record["thresholds_from"]["frames"] == 3 and record["fitted_on"]["frames"] == 8
    outputs = [o.name for o in ort.InferenceSession(str(art.onnx_path)).get_outputs()]
    assert outputs == ["logits", "novelty"]


def test_the_novelty_image_puts_the_threshold_at_128(novel_artifact, val_frames):
    """Without a novel_threshold the image's 128 is the 0.99 quantile of the validation pixels,
    the frames the quantiles were taken on: about 1% of them lie above it."""
    seg = Segmenter(novel_artifact, device="cpu", warmup_size=None, novel_threshold=0)
    above = np.mean([(seg(f, ("novelty",)).novelty > 128).mean() for f in val_frames])
    assert 0.002 < above < 0.03


def test_novel_pixels_get_the_novel_cost_and_keep_their_class(novel_artifact, val_frames, table):
    plain = Segmenter(novel_artifact, device="cpu", warmup_size=None, novel_threshold=0)
    seg = Segmenter(novel_artifact, device="cpu", warmup_size=None, novel_threshold=0.5, novel_cost=200)
    for f in val_frames:
        a, b = plain(f, ("mask", "cost")), seg(f, ("mask", "cost", "known_mask"))
        novel = b.known_mask == table.novel_index
        assert b.novel_pixels == int(novel.sum()) and novel.mean() > 0.3  # the median and the sky cue
        np.testing.assert_array_equal(b.mask, a.mask)  # the class mask keeps its argmax
        assert (b.cost[novel] == 200).all()
        np.testing.assert_array_equal(b.cost[~novel], a.cost[~novel])


def test_the_shift_threshold_is_a_multiple_of_the_validation_frames_highest(novel_artifact, val_frames):
    record = read_artifact(novel_artifact).novelty
    assert record is not None
    highest = threshold_at(record["frame_quantiles"], 1.0)
    shifts = sorted(Segmenter(novel_artifact, device="cpu", warmup_size=None)(f, ("mask",)).shift for f in val_frames)
    assert shifts[-1] == pytest.approx(highest, rel=1e-4)  # the node's score is the one the thresholds came from
    assert not any(Segmenter(novel_artifact, device="cpu", warmup_size=None, shift_threshold=1.001)(f).shifted
                   for f in val_frames)
    between = (shifts[-2] + shifts[-1]) / 2 / highest  # flags the highest of the three alone
    seg = Segmenter(novel_artifact, device="cpu", warmup_size=None, shift_threshold=between)
    assert sum(seg(f).shifted for f in val_frames) == 1


def test_every_backend_flags_the_same_pixels(novel_artifact, val_frames, synth_root, table):
    from offroad_seg_ros.tools.quantize import quantize_artifact

    quantize_artifact(novel_artifact, synth_root, frames=3, check_split="val")
    kwargs = {"device": "cpu", "warmup_size": None, "novel_threshold": 0.99, "shift_threshold": 1.0}
    ref = Segmenter(novel_artifact, **kwargs)
    for backend, precision, share in (("onnxruntime", "fp32", 0.999), ("openvino", "fp32", 0.999),
                                      ("openvino", "int8", 0.95)):
        # int8 on random weights calibrated on 3 frames: a loose bound; the trained demo model's
        # agreement is measured in bench/RESULTS.md.
        seg = Segmenter(novel_artifact, backend=backend, precision=precision, **kwargs)
        for f in val_frames:
            a, b = ref(f, ("known_mask",)), seg(f, ("known_mask",))
            novel_a, novel_b = a.known_mask == table.novel_index, b.known_mask == table.novel_index
            assert (novel_a == novel_b).mean() >= share, (backend, precision)
            assert b.shift == pytest.approx(a.shift, rel=0.1 if precision == "int8" else 1e-4)


def test_thresholds_need_the_statistics_and_sane_values(tiny_artifact, novel_artifact, tmp_path, synth_root, frames):
    # A model without the statistics runs without the checks (a robot keeps its older models) and says why.
    plain = Segmenter(tiny_artifact, device="cpu", warmup_size=None, novel_threshold=0.99)
    out = plain(frames[0], ("cost", "known_mask"))
    assert plain.novelty_status.startswith("unavailable: ") and "offroad-seg novelty" in plain.novelty_status
    assert out.novel_pixels is None and out.shift is None and out.shifted is None
    with pytest.raises(ValueError, match="novelty"):
        Segmenter(tiny_artifact, device="cpu", warmup_size=None)(np.zeros((64, 96, 3), np.uint8), ("novelty",))
    for bad in ({"novel_threshold": 1.0}, {"shift_threshold": -0.1}, {"novel_cost": 256}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Segmenter(novel_artifact, device="cpu", warmup_size=None, **bad)
    stale = tmp_path / "stale"  # statistics fitted but the model.onnx left without the score
    shutil.copytree(tiny_artifact, stale, ignore=shutil.ignore_patterns("model_int8.*"))
    fit_novelty(stale, synth_root, fit_frames=2, frames=2, onnx=False)
    with pytest.raises(RuntimeError, match="re-export"):
        Segmenter(stale, backend="onnxruntime", novel_threshold=0.99)


def test_the_wrapped_network_keeps_its_logits_and_adds_both_scores(tiny_artifact):
    from offroad_seg_ros.core.artifact import load_artifact

    _, net = load_artifact(tiny_artifact)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad(), head_input(net) as seen:
        before = net(x)
    features = seen[-1]
    fit = FeatureDensityFit(len(read_artifact(tiny_artifact).classes), 128)
    fit.update(torch.randn(1, 128, 16, 24), torch.zeros(1, 16, 24, dtype=torch.uint8))
    density = fit.finish(0, 10)
    torch.manual_seed(0)
    head = OutlierHead(128).eval()
    with torch.no_grad():
        logits, plain = NoveltyNet(load_artifact(tiny_artifact)[1], density)(x)
        logits_h, scores = NoveltyNet(net, density, head)(x)
        up = torch.nn.functional.interpolate  # the scores at the logits' resolution, as FPN's head scales
        want_pixel = up(head(features), size=(64, 96), mode="bilinear", align_corners=False)[:, 0]
        want_density = up(density.score(features)[:, None], size=(64, 96), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(logits, before)
    torch.testing.assert_close(logits_h, before)
    assert plain.shape == scores.shape == (1, 2, 64, 96)
    torch.testing.assert_close(plain[:, PIXEL], plain[:, SHIFT])  # without a head the density is the pixel score
    torch.testing.assert_close(scores[:, SHIFT], want_density, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(scores[:, PIXEL], want_pixel, rtol=1e-4, atol=1e-4)


def test_the_outlier_head_learns_outliers_it_was_not_trained_on(tiny_artifact, synth_root):
    """Trained on the train split's pasted frames, the head ranks the outlier cells of the val
    split's pasted frames (other shapes, other frames) above the ordinary ones; the head as
    initialised does not. The same seed gives the same head."""
    from sklearn.metrics import roc_auc_score

    from offroad_seg_ros.core.artifact import load_artifact

    art, net = load_artifact(tiny_artifact)
    cells = exposure_set(net, art.preprocess, synth_root, "train", HEAD)
    unseen = exposure_set(net, art.preprocess, synth_root, "val", HeadSettings(variants=3, seed=5))

    def auroc(head: OutlierHead) -> float:
        with torch.no_grad():
            scores = torch.cat([head(f[None].float())[0, 0].flatten() for f, _, _ in unseen])
        share = torch.cat([s.flatten() for _, s, _ in unseen])
        keep = (share > 0.5) | (share < 0.01)
        return float(roc_auc_score((share[keep] > 0.5).numpy(), scores[keep].numpy()))

    head = train_head(cells, HEAD)
    assert auroc(head) > 0.85
    assert auroc(train_head(cells, HeadSettings(steps=0))) < 0.75
    again = train_head(cells, HEAD)
    for k, v in head.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v, rtol=0, atol=0)


def test_ordinary_cells_weigh_by_class_not_by_area():
    """Outlier cells weigh half; the ordinary cells' half goes a quarter by area and a quarter
    equally per class, so a class covering a tenth of them (rocks beside the ground) weighs far
    more than its area; cells partly covered by an outlier weigh nothing."""
    share = torch.zeros(2, 10, 10)
    cls = torch.full((2, 10, 10), 7)
    cls[0, :2] = 3  # 20 of 200 cells: the rare class
    share[1, :1, :5] = 0.9  # 5 outlier cells
    share[1, 1, :5] = 0.3  # 5 cells partly covered
    w = cell_weights(share, cls)
    ordinary = share < 0.01
    assert float(w[share > 0.5].sum()) == pytest.approx(0.5)
    assert float(w[ordinary & (cls == 3)].sum()) == pytest.approx(0.25 * 20 / 190 + 0.125)
    assert float(w[ordinary & (cls == 7)].sum()) == pytest.approx(0.25 * 170 / 190 + 0.125)
    assert float(w[(share > 0.01) & (share < 0.5)].abs().sum()) == 0
    assert float(w[0, 0, 0]) == pytest.approx(0.25 / 190 + 0.125 / 20)


def test_a_refit_keeps_the_stored_outlier_head(novel_artifact, synth_root, tmp_path):
    """`offroad-seg novelty` on an artifact with a head refits the density and the thresholds
    with the head it has: its weights, its record and its pixel score stay."""
    from offroad_seg_ros.inference.novelty_net import outlier_head_of

    art = tmp_path / "refit"
    shutil.copytree(novel_artifact, art, ignore=shutil.ignore_patterns("model_int8.*"))
    before = read_artifact(art)
    head = outlier_head_of(before)
    record = fit_novelty(art, synth_root, fit_frames=2, frames=2, onnx=False)
    after = read_artifact(art)
    assert record["pixel_score"] == "outlier_head" and record["fitted_on"]["frames"] == 2
    assert after.novelty is not None and after.novelty["outlier_head"] == before.novelty["outlier_head"]
    kept = outlier_head_of(after)
    assert head is not None and kept is not None
    for k, v in head.state_dict().items():
        torch.testing.assert_close(kept.state_dict()[k], v, rtol=0, atol=0)
