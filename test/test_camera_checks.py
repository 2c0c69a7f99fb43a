"""The camera checks against the corruption set: each fires on its corruption at the middle
severity and stays quiet on clean generated frames; the corruptions are deterministic."""

import numpy as np
import pytest

from offroad_seg_ros.data.camera_checks import CameraChecks, CheckThresholds
from offroad_seg_ros.evaluation.corruptions import CORRUPTIONS, MIDDLE, corrupt_stream
from offroad_seg_train.synth import TEST_BIOME, TRAIN_BIOME, render_scene


@pytest.fixture(scope="module")
def clean():
    """Frames of both biomes, each a new scene: a robot driving (every frame changes)."""
    return [render_scene(np.random.default_rng(200 + i), TEST_BIOME if i % 2 else TRAIN_BIOME)[0] for i in range(12)]


def _alarms(images):
    checks = CameraChecks()
    return [{c.name for c in checks(img)} for img in images]


def test_clean_frames_raise_no_alarm(clean):
    assert _alarms(clean) == [set()] * len(clean)


@pytest.mark.parametrize("name", [n for n, c in CORRUPTIONS.items() if c.check])
def test_each_check_fires_on_its_corruption(clean, name):
    c = CORRUPTIONS[name]
    stream = list(corrupt_stream(clean, name, MIDDLE, seed=0, image=lambda f: f))
    alarms = _alarms(img for _, img, _ in stream)
    if name == "frozen":  # every repeated frame, and no other
        assert [c.check in a for a in alarms] == [repeat for _, _, repeat in stream]
    elif name == "lens_dirt":  # once the spots stayed still through occlusion_frames frames of change
        late = alarms[CheckThresholds().occlusion_frames:]
        assert all(c.check in a for a in late), alarms
    else:
        hit = np.mean([c.check in a for a in alarms])
        assert hit >= 0.5, (name, alarms)


def test_a_threshold_of_zero_turns_its_check_off(clean):
    dark = [(img // 6).astype(np.uint8) for img in clean[:3]]
    assert all("dark" in a for a in _alarms(dark))
    off = CameraChecks(CheckThresholds(min_brightness=0, min_contrast=0, min_sharpness=0))
    assert all("dark" not in {c.name for c in off(img)} for img in dark)


def test_conditions_name_their_measure(clean):
    checks = CameraChecks()
    found = checks((clean[0] // 6).astype(np.uint8))
    dark = next(c for c in found if c.name == "dark")
    assert dark.text.startswith(f"dark: mean grey {dark.measure:.0f} < 80")
    assert checks.measures["brightness"] == dark.measure


def test_glare_is_the_largest_white_region_not_the_white_total():
    # 14% of the view white in scattered clouds: over the glare threshold in total, not in one region
    grey = np.full((180, 320), 120, np.uint8)
    for x in range(0, 320, 40):
        grey[10:60, x:x + 29] = 250  # 8 regions of 50x29: 2.5% each, 20% together
    checks = CameraChecks(CheckThresholds(max_saturated=0))
    rgb = np.repeat(grey[..., None], 3, axis=2)
    assert "glare" not in {c.name for c in checks(rgb)}
    assert checks.measures["saturated"] > 0.19 and checks.measures["glare"] == pytest.approx(50 * 29 / 320 / 180)
    rgb[60:120, 100:220] = 250  # one sun-sized region below, joining the 4 clouds it touches
    found = {c.name: c for c in checks(rgb)}
    assert found["glare"].measure == pytest.approx((60 * 120 + 4 * 50 * 29) / 320 / 180)
    assert found["glare"].text.startswith(f"glare: one near-white region covers {found['glare'].measure:.0%}")


def test_thresholds_from_node_parameters():
    t = CheckThresholds.from_params({"check_min_brightness": 60, "check_frozen_frames": 0, "other": 1})
    assert t.min_brightness == 60.0 and t.frozen_frames == 0 and t.max_black == CheckThresholds().max_black
    with pytest.raises(ValueError, match="check_min_sharpness=-1.0"):
        CheckThresholds.from_params({"check_min_sharpness": -1.0})


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruptions_are_deterministic_for_a_seed(clean, name):
    def run(seed):
        return [img for _, img, _ in corrupt_stream(clean[:3], name, 4, seed=seed, image=lambda f: f)]

    a, b = run(5), run(5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, f) for x, f in zip(a, clean[:3]))  # it does corrupt
    if name in ("glare", "noise", "lens_dirt", "haze"):  # drawn from the seed
        assert not all(np.array_equal(x, y) for x, y in zip(a, run(6)))


def test_bad_corruption_arguments_are_named(clean):
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        list(corrupt_stream(clean, "fog", 3))
    with pytest.raises(ValueError, match="severity must be one of"):
        list(corrupt_stream(clean, "haze", 7))
