"""The generator's biomes: the default output unchanged, the registry, its committed groups and
`offroad-seg synth --biome` (offroad_seg_train/biomes.py, synth.py, commands.py)."""

import argparse
import hashlib

import cv2
import numpy as np
import pytest

from offroad_seg_ros.cli import main
from offroad_seg_ros.data.dataset import NOVELTY_DIR, list_samples, read_image, read_raw_mask
from offroad_seg_train import biomes
from offroad_seg_train.commands import _synth_counts
from offroad_seg_train.synth import TEST_BIOME, TRAIN_BIOME, _scene_rng, generate, render_scene, scene_key

# sha256 of image bytes + mask bytes, computed from the generator BEFORE biomes.py existed (the
# code of commit 9d90a32), per OpenCV version: its rasterisation and resampling differ slightly
# between versions, so each locked environment (locks/main.txt, locks/robot.txt) has its own.
# "train" / "test": scene 0 of seed 0 of that split, 960x540; "default": render_scene(rng(5)).
GOLDEN = {
    "4.14.0": {"train": "33cedbb2afb1a619a3e22561bbdb8cbe5d0c3b3d55af84d7c8a43e620233cf43",
               "test": "f516ce4400de578b619ac0ce96513a698003d08522d6bbe0e7bddeae4393b52e",
               "default": "acb0fd19ebf4ab9108b2854b4e552d438dae41251c6e573674dd74d3427caee8"},
    "4.10.0": {"train": "921f352f8543a072f259ba85f59d50f9fb517d0a4d37bbb23856312c5a6a7919",
               "test": "cbe6b8b56d96fd8e5f052a5ec2f402500bb672048575bfa54fdd64eefbab1c2c",
               "default": "b85434885d98b53678b4afb5c561c13d3dcf875b043a4b6319144105f8c47a37"},
}
SMALL = (320, 180)


def _digest(image, mask):
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(image).tobytes())
    h.update(np.ascontiguousarray(mask).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def golden():
    if cv2.__version__ not in GOLDEN:
        pytest.skip(f"no recorded default-output hashes for OpenCV {cv2.__version__}: record them from the "
                    "generator of commit 9d90a32 with this OpenCV")
    return GOLDEN[cv2.__version__]


def test_default_scenes_are_unchanged_to_the_pixel(golden):
    assert _digest(*render_scene(_scene_rng(0, "train", 0), TRAIN_BIOME)) == golden["train"]
    assert _digest(*render_scene(_scene_rng(0, "test", 0), TEST_BIOME)) == golden["test"]
    assert _digest(*render_scene(np.random.default_rng(5))) == golden["default"]


def test_default_generate_writes_the_same_frames_and_no_novelty_folder(golden, tmp_path):
    generate(tmp_path, {"train": 1, "test": 1}, seed=0, workers=1, progress=None)
    for split in ("train", "test"):
        (sample,) = list_samples(tmp_path / split)
        assert _digest(read_image(sample.image), read_raw_mask(sample.mask)) == golden[split], split
        assert not (tmp_path / split / NOVELTY_DIR).exists()


def _stats(biome, n=2):
    feats = []
    for i in range(n):
        image, _ = render_scene(np.random.default_rng([9, i]), biome, size=SMALL)
        px = image.reshape(-1, 3).astype(float)
        feats.append(np.r_[px.mean(0), px.std(0)])
    return np.mean(feats, 0)


def test_every_biome_renders_known_ids_and_looks_unlike_train(table):
    train = _stats(TRAIN_BIOME)
    for biome in biomes.REGISTRY.values():
        image, mask = render_scene(np.random.default_rng(1), biome, size=SMALL)
        assert image.shape == (SMALL[1], SMALL[0], 3) and image.dtype == np.uint8
        assert mask.shape == SMALL[::-1] and mask.dtype == np.uint16
        assert set(np.unique(mask).tolist()) <= set(table.raw_ids), biome.name
        table.remap(mask)  # strict: raises on an unknown raw ID
        if biome is not TRAIN_BIOME:
            # Mean or spread of some channel differs by more than 15 grey levels.
            assert np.abs(_stats(biome) - train).max() > 15, biome.name


def test_groups_are_committed_disjoint_and_named():
    tuning = {b.name for b in biomes.TUNING_BIOMES}
    held_out = {b.name for b in biomes.HELD_OUT_BIOMES}
    assert len(tuning) >= 2 and len(held_out) >= 3
    assert not tuning & held_out
    assert not (tuning | held_out) & {"train", "test"}
    assert set(biomes.REGISTRY) == {"train", "test"} | tuning | held_out
    assert all(b.about for b in biomes.REGISTRY.values())
    assert biomes.SPLIT_BIOMES == {"train": TRAIN_BIOME, "val": TRAIN_BIOME, "test": TEST_BIOME}
    assert [b.name for b in biomes.resolve(["tuning"])] == [b.name for b in biomes.TUNING_BIOMES]
    assert [b.name for b in biomes.resolve(["dusk_flats,red_canyon", "dusk_flats"])] == ["dusk_flats", "red_canyon"]
    for name in tuning | held_out:
        assert biomes.group_of(name) == ("tuning" if name in tuning else "held_out")


def test_scenes_of_other_biomes_share_no_seed():
    red = biomes.REGISTRY["red_canyon"]
    assert scene_key(0, "test", 3, TEST_BIOME) == scene_key(0, "test", 3) == [0, sum(map(ord, "test")), 3]
    assert scene_key(0, "val", 3, TRAIN_BIOME) == scene_key(0, "val", 3)
    assert scene_key(0, "test", 3, red) != scene_key(0, "test", 3, biomes.REGISTRY["dusk_flats"])
    assert len(scene_key(0, "test", 3, red)) == 4


def test_synth_biome_writes_the_named_splits_in_that_biome(tmp_path):
    one = tmp_path / "one"
    assert main(["synth", "--out", str(one), "--biome", "red_canyon", "--test", "1", "--workers", "1"]) == 0
    assert sorted(p.name for p in one.iterdir()) == ["test"]
    (sample,) = list_samples(one / "test")
    red = biomes.REGISTRY["red_canyon"]
    image, mask = render_scene(np.random.default_rng(scene_key(0, "test", 0, red)), red)
    assert np.array_equal(read_image(sample.image), image) and np.array_equal(read_raw_mask(sample.mask), mask)

    two = tmp_path / "two"
    assert main(["synth", "--out", str(two), "--biome", "dusk_flats,white_gypsum", "--val", "1", "--workers", "1"]) == 0
    assert sorted(p.relative_to(two).as_posix() for p in two.glob("*/*")) == ["dusk_flats/val", "white_gypsum/val"]


def test_synth_counts_keep_the_old_defaults_and_only_the_asked_splits_for_a_biome():
    def ns(train=None, val=None, test=None):
        return argparse.Namespace(train=train, val=val, test=test)

    assert _synth_counts(ns(), evaluation=False) == {"train": 40, "val": 10, "test": 10}
    assert _synth_counts(ns(test=3), evaluation=False) == {"train": 40, "val": 10, "test": 3}
    assert _synth_counts(ns(), evaluation=True) == {"train": 0, "val": 0, "test": 10}
    assert _synth_counts(ns(val=2), evaluation=True) == {"train": 0, "val": 2, "test": 0}


def test_synth_refuses_an_unknown_biome_naming_it(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "x"), "--biome", "red_canyon,mars_plain"]) == 2
    err = capsys.readouterr().err
    assert "mars_plain" in err and "red_canyon" in err and "held_out" in err
    assert not (tmp_path / "x").exists()


def test_list_biomes_names_each_with_its_group(capsys):
    assert main(["synth", "--list-biomes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(biomes.REGISTRY)
    for line, biome in zip(lines, biomes.REGISTRY.values(), strict=True):
        assert line.split()[:2] == [biome.name, biomes.group_of(biome.name)]
