"""The held-out renderings of the corruptions (corruptions_held_out.py): the same kinds as the
tuning set, each changing the image and stronger at each severity, deterministic for a seed,
the lens dirt translucent, the frozen stream near-identical repeats, and robustness able to
run them in place of the tuning set."""

import json
from typing import Any

import cv2
import numpy as np
import pytest

from offroad_seg_ros.evaluation import corruptions as tuning
from offroad_seg_ros.evaluation.corruptions_held_out import (
    CORRUPTIONS,
    DIRT_BLOBS,
    FROZEN_HOLDS,
    MIDDLE,
    SEVERITIES,
    _linear,
    corrupt_stream,
    corruption_set,
)
from offroad_seg_train.synth import TEST_BIOME, TRAIN_BIOME, render_scene

IMAGE_KINDS = [n for n in CORRUPTIONS if n != "frozen"]


@pytest.fixture(scope="module")
def scenes():
    """Generated frames of both biomes at half size (the renderings scale with the width)."""
    return [cv2.resize(render_scene(np.random.default_rng(500 + i), TEST_BIOME if i % 2 else TRAIN_BIOME)[0],
                       (480, 270), interpolation=cv2.INTER_AREA) for i in range(3)]


def _render(images, name, severity, seed=0):
    return [img for _, img, _ in corrupt_stream(images, name, severity, seed=seed, image=lambda f: f)]


def _mad(a, b):
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_the_same_kinds_checks_and_shape_as_the_tuning_set():
    assert list(CORRUPTIONS) == list(tuning.CORRUPTIONS)
    for name, c in CORRUPTIONS.items():
        t = tuning.CORRUPTIONS[name]
        assert isinstance(c, tuning.Corruption)
        assert (c.check, c.static, c.what) == (t.check, t.static, t.what), name
        assert c.scale != t.scale and c.make is not t.make, f"{name} is the tuning set's rendering"
    assert corruption_set("tuning") == (tuning.CORRUPTIONS, tuning.corrupt_stream)
    assert corruption_set("held_out") == (CORRUPTIONS, corrupt_stream)
    with pytest.raises(ValueError, match="renderings must be one of tuning, held_out"):
        corruption_set("fog")


@pytest.mark.parametrize("name", IMAGE_KINDS)
def test_each_changes_the_image_not_its_input_nor_its_type(scenes, name):
    pytest.importorskip("albumentations")  # the tuning set's rendering, to compare with
    frame = scenes[0]
    before = frame.copy()
    for severity in SEVERITIES:
        out = _render([frame], name, severity)[0]
        assert out.dtype == np.uint8 and out.shape == frame.shape
        assert _mad(out, frame) > 0.5, (name, severity)
    np.testing.assert_array_equal(frame, before)  # the input untouched
    other = [img for _, img, _ in tuning.corrupt_stream([frame], name, MIDDLE, image=lambda f: f)][0]
    assert _mad(_render([frame], name, MIDDLE)[0], other) > 0.5  # not the tuning set's image


@pytest.mark.parametrize("name", IMAGE_KINDS)
def test_each_grows_with_the_severity(scenes, name):
    """Mean absolute difference to the clean frame, over the scenes, strictly up at every level."""
    mad = [np.mean([_mad(o, f) for o, f in zip(_render(scenes, name, s), scenes)]) for s in SEVERITIES]
    assert all(b > a for a, b in zip(mad, mad[1:])), (name, mad)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_deterministic_for_a_seed_and_different_across_seeds(scenes, name):
    frames = [scenes[i % 3] for i in range(8)]  # frozen needs a stream long enough to stall in
    a, b, c = (_render(frames, name, MIDDLE, seed) for seed in (4, 4, 5))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_frames_draw_anew_except_the_dirt_which_stays(scenes):
    same = [scenes[0]] * 2
    for name in IMAGE_KINDS:
        first, second = _render(same, name, MIDDLE)
        # a static draw repeats on every frame; the others are drawn per frame (blur/jpeg vary by path, step)
        assert np.array_equal(first, second) == CORRUPTIONS[name].static, name


def _dirt(image, severity, seed=0):
    return _render([image], "lens_dirt", severity, seed)[0]


def test_lens_dirt_is_translucent_soft_and_the_same_blobs_grow_in_number():
    h, w = 270, 480
    white, black = np.full((h, w, 3), 255, np.uint8), np.zeros((h, w, 3), np.uint8)
    # out = in (1 - a) + dust a in linear light: a white and a black frame give the opacity a
    alpha = {s: 1 - (_linear(_dirt(white, s)) - _linear(_dirt(black, s))).mean(-1) for s in SEVERITIES}
    for s, a in alpha.items():
        assert 0.3 - 0.02 < a.max() < 0.7 + 0.02, (s, a.max())  # no blob opaque, none too faint
        assert (a > 0.05).mean() > 0.004 * DIRT_BLOBS[s - 1]
        soft = (a > 0.02) & (a < 0.25)  # the edges fade out rather than stop
        assert soft.sum() > 0.3 * (a >= 0.25).sum(), s
    for lo, hi in zip(SEVERITIES, SEVERITIES[1:]):
        assert (alpha[hi] >= alpha[lo] - 0.01).all()  # severity adds blobs to the same ones
        assert (alpha[hi] > 0.05).sum() > (alpha[lo] > 0.05).sum()


def test_lens_dirt_lets_the_scene_show_through():
    yy, xx = np.mgrid[:270, :480]
    checker = np.where(((yy // 6 + xx // 6) % 2)[..., None] == 1, 220, 60).astype(np.uint8).repeat(3, -1)
    white = np.full_like(checker, 255)
    covered = (white.astype(int) - _dirt(white, 5)).max(-1) > 60  # under a blob's denser part
    assert covered.sum() > 200
    out = _dirt(checker, 5)
    assert (out[covered] != checker[covered]).any(-1).mean() > 0.95  # changed ...
    assert out[covered].min() > 20  # ... but never black
    bright, dark = covered & (checker[..., 0] == 220), covered & (checker[..., 0] == 60)
    assert out[bright].mean() - out[dark].mean() > 0.3 * (220 - 60)  # the checker still visible


def test_frozen_stalls_at_random_and_repeats_are_near_not_bit_identical(scenes):
    frames = [scenes[i % 3] for i in range(60)]
    change = _mad(scenes[0], scenes[1])  # what a new frame changes
    shares = []
    for severity in SEVERITIES:
        stream = list(corrupt_stream(frames, "frozen", severity, seed=1, image=lambda f: f))
        repeats = [r for _, _, r in stream]
        assert not repeats[0]
        runs: list[int] = []  # copies delivered per stall
        for r in repeats:
            if r:
                runs[-1] += 1
            else:
                runs.append(1)
        lo, hi = FROZEN_HOLDS[severity - 1]
        assert all(lo <= k <= hi for k in runs[:-1]), (severity, runs)  # the last may be cut short
        shares.append(np.mean(repeats))
        pairs = [(a[1], b[1]) for a, b in zip(stream, stream[1:]) if b[2]]
        assert all(_mad(a, b) < min(6, 0.2 * change) for a, b in pairs)  # the same stale frame ...
        assert np.mean([not np.array_equal(a, b) for a, b in pairs]) > 0.6  # ... rarely the same bits
        assert all(_mad(img, f) < 6 for f, img, r in stream if not r)  # a fresh frame: only the transport's loss
    assert shares[-1] > shares[0] + 0.2


def test_bad_arguments_are_named(scenes):
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        list(corrupt_stream(scenes, "fog", 3))
    with pytest.raises(ValueError, match="severity must be one of"):
        list(corrupt_stream(scenes, "haze", 0))


def test_robustness_runs_either_set(tiny_artifact, synth_root):
    from offroad_seg_ros.evaluation.robustness import evaluate_robustness, robustness_markdown

    args: dict[str, Any] = dict(corruptions=["lens_dirt", "haze"], severities=[MIDDLE], limit=2, device="cpu",
                                progress=False)
    split = synth_root / "test"
    held = evaluate_robustness(split, tiny_artifact, renderings="held_out", **args)
    tuned = evaluate_robustness(split, tiny_artifact, **args)
    assert held["settings"]["renderings"] == "held_out" and tuned["settings"]["renderings"] == "tuning"
    assert [r["corruption"] for r in held["rows"]] == ["clean", "lens_dirt", "haze"]
    assert held["rows"][0] == tuned["rows"][0]  # the clean frames are the clean frames
    assert held["corruptions"]["haze"]["scale"] == CORRUPTIONS["haze"].scale
    assert held["corruptions"]["haze"]["check"] == "hazy"
    assert any(h["mean_confidence"] != t["mean_confidence"] for h, t in zip(held["rows"][1:], tuned["rows"][1:]))
    assert "held_out renderings" in robustness_markdown(held).split("\n")[2]
    assert "renderings" not in robustness_markdown(tuned).split("\n")[2]
    with pytest.raises(ValueError, match="renderings must be one of"):
        evaluate_robustness(split, tiny_artifact, renderings="other", **args)


def test_the_robustness_command_takes_the_set(tiny_artifact, synth_root, tmp_path, capsys):
    from offroad_seg_ros.cli import main

    out = tmp_path / "rob"
    assert main(["robustness", str(synth_root / "test"), "--model", str(tiny_artifact), "--out", str(out),
                 "--corruptions", "lens_dirt", "--severities", "3", "--limit", "1", "--device", "cpu",
                 "--renderings", "held_out", "--quiet"]) == 0
    saved = json.loads((out / "robustness.json").read_text())
    assert saved["settings"]["renderings"] == "held_out"
    assert saved["corruptions"]["lens_dirt"]["scale"] == CORRUPTIONS["lens_dirt"].scale
    assert main(["robustness", str(synth_root / "test"), "--model", str(tiny_artifact), "--out", str(out),
                 "--renderings", "fog"]) == 2
    assert "invalid choice: 'fog'" in capsys.readouterr().err
