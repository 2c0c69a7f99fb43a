"""Novel objects drawn into generated scenes (evaluation only), the pasted-patch control and the
training outlier shapes (offroad_seg_train/novel_objects.py, pasted_patches.py, outliers.py)."""

import ast
import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from offroad_seg_ros.cli import main
from offroad_seg_ros.data.dataset import (
    NOVEL,
    NOVELTY_DIR,
    NOVELTY_IGNORE,
    PASTED,
    DatasetError,
    list_samples,
    read_novelty_mask,
    read_raw_mask,
)
from offroad_seg_train.biomes import ROCKS, TRAIN_BIOME
from offroad_seg_train.novel_objects import (
    HELD_OUT_KINDS,
    KINDS,
    NOVEL_RAW,
    TUNING_KINDS,
    NovelScenes,
    draw_at,
    novelty_from_mask,
    placer,
    resolve_kinds,
)
from offroad_seg_train.outliers import outlier_shape, paste_outlier
from offroad_seg_train.pasted_patches import PASTE_CLASSES
from offroad_seg_train.synth import plain_scene, render_scene, scene_key

PACKAGE = Path(__file__).resolve().parents[1] / "offroad_seg_train"
SIZE = (480, 270)
BARE = dataclasses.replace(TRAIN_BIOME, name="bare", counts={})  # sky and sand only: nothing hides an object


def _render(extras_at, biome=BARE, seed=0):
    """A scene with `extras_at(horizon, w, h)` -> [(depth 0..1 below the horizon, x, what)], and its horizon."""
    seen = {}

    def extras(horizon, w, h):
        seen["horizon"] = horizon
        return [(horizon + d * (h - horizon), x, what) for d, x, what in extras_at(horizon, w, h)]

    image, mask = render_scene(np.random.default_rng(seed), biome, size=SIZE, extras=extras)
    return image, mask, seen["horizon"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_stands_on_the_ground_where_placed_and_is_ignored_by_the_metrics(kind, table):
    w, h = SIZE
    image, mask, horizon = _render(lambda hor, w, h: [(0.7, w / 2, draw_at(kind, np.random.default_rng(1)))])
    foot = horizon + 0.7 * (h - horizon)
    novelty = novelty_from_mask(mask)
    ys, xs = np.nonzero(novelty == NOVEL)
    assert ys.size > 30, kind
    rows = np.nonzero((mask == NOVEL_RAW).any(1))[0]
    assert foot - 8 <= rows.max() <= foot + 2, (kind, rows.max(), foot)  # its foot at the ground position
    assert rows.min() > horizon - 0.2 * h and rows.min() < foot  # above it, not floating high in the sky
    assert abs(xs.mean() - w / 2) < 0.15 * w
    assert (table.remap(mask)[mask == NOVEL_RAW] == table.ignore_index).all()  # metrics skip novel pixels
    assert set(np.unique(novelty).tolist()) <= {0, NOVEL, NOVELTY_IGNORE}
    assert (mask[novelty == NOVEL] == NOVEL_RAW).all()
    # Lit with the scene: the same object in a darker biome is darker.
    dark = dataclasses.replace(BARE, brightness=0.5)
    dim, dmask, _ = _render(lambda hor, w, h: [(0.7, w / 2, draw_at(kind, np.random.default_rng(1)))], biome=dark)
    assert dim[novelty_from_mask(dmask) == NOVEL].mean() < 0.7 * image[novelty == NOVEL].mean()


def test_objects_are_scaled_for_their_distance():
    def height(depth):
        _, mask, _ = _render(lambda hor, w, h: [(depth, w / 2, draw_at("drum", np.random.default_rng(4)))])
        rows = np.nonzero((mask == NOVEL_RAW).any(1))[0]
        return rows.max() - rows.min() + 1

    near, far = height(0.9), height(0.3)
    assert near > 2 * far


def test_a_nearer_rock_hides_a_farther_vehicle_in_image_and_novelty_mask():
    big_rocks = dataclasses.replace(BARE, rock_scale=2.0)

    def scene(vehicle, rock):  # the rock a little right of the vehicle's middle: it hides the right part
        return _render(lambda hor, w, h: [(0.4, w / 2, draw_at("vehicle", np.random.default_rng(2)))] * vehicle
                       + [(0.55, w / 2 + 30, ROCKS)] * rock, biome=big_rocks)

    both, both_mask, _ = scene(True, True)
    rock_only, _, _ = scene(False, True)
    _, vehicle_mask, _ = scene(True, False)
    hidden = (vehicle_mask == NOVEL_RAW) & (both_mask == ROCKS)
    assert hidden.sum() > 50
    assert (novelty_from_mask(both_mask)[hidden] != NOVEL).all()
    assert ((both_mask == NOVEL_RAW) & ~(vehicle_mask == NOVEL_RAW)).sum() == 0
    assert (both_mask == NOVEL_RAW).sum() > 50  # the part above the rock still shows
    interior = cv2.erode(hidden.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert interior.sum() > 20
    assert np.array_equal(both[interior], rock_only[interior])  # the rock's pixels, not the vehicle's


def test_a_puddle_mirrors_the_sky_below_the_horizon():
    image, mask, horizon = _render(lambda hor, w, h: [(0.8, w / 2, draw_at("puddle", np.random.default_rng(3)))])
    water = image[mask == NOVEL_RAW].astype(float).mean(0)
    sky, sand = (image[mask == v].astype(float).mean(0) for v in (10000, 7100))
    assert np.nonzero(mask == NOVEL_RAW)[0].min() > horizon
    # Blue like the sky it mirrors, where the sand around it is not.
    assert water[2] - water[0] > 0.5 * (sky[2] - sky[0]) > 0 > sand[2] - sand[0]


def test_the_scene_around_novel_objects_is_the_scene_without_them():
    key = scene_key(0, "test", 2)
    from offroad_seg_train.synth import TEST_BIOME

    image, mask, novelty = NovelScenes(("vehicle", "person", "drum"), 3)(key, TEST_BIOME)
    plain_image, plain_mask, none = plain_scene(key, TEST_BIOME)
    assert none is None and (novelty == NOVEL).sum() > 100
    covered = mask == NOVEL_RAW
    assert np.array_equal(mask[~covered], plain_mask[~covered])
    assert (image != plain_image).any(-1).mean() < 0.2


def test_kinds_groups_are_disjoint_and_placement_takes_them_in_turn():
    assert set(TUNING_KINDS) | set(HELD_OUT_KINDS) == set(KINDS) and not set(TUNING_KINDS) & set(HELD_OUT_KINDS)
    assert resolve_kinds(["tuning"]) == TUNING_KINDS and resolve_kinds(["drum,tarp", "drum"]) == ("drum", "tarp")
    with pytest.raises(ValueError, match="'ufo'.*vehicle"):
        resolve_kinds(["ufo"])
    placed = placer(np.random.default_rng(0), ("drum", "tarp"), 4)(100.0, 480, 270)
    assert len(placed) == 4 and all(100 + 32 <= y <= 0.95 * 270 and 48 <= x <= 432 for y, x, _ in placed)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    return names


def test_the_training_modules_do_not_import_the_novel_objects():
    assert "offroad_seg_train.synth" in _imports(PACKAGE / "novel_objects.py")  # the check sees imports
    for module in ("synth.py", "biomes.py", "data.py", "module.py", "augment.py", "outliers.py"):
        bad = {n for n in _imports(PACKAGE / module) if "novel_objects" in n or "pasted_patches" in n}
        assert not bad, f"offroad_seg_train/{module} imports {bad}: novel objects are for evaluation only"
    # The outlier head pastes ordinary patches as its negatives (pasted_patches.py), never novel objects.
    bad = {n for n in _imports(PACKAGE / "outlier_head.py") if "novel_objects" in n}
    assert not bad and any("pasted_patches" in n for n in _imports(PACKAGE / "outlier_head.py")), bad


def test_synth_writes_novelty_masks_and_pasted_controls(tmp_path, table):
    out = tmp_path / "novel"
    assert main(["synth", "--out", str(out), "--novel-objects", "tuning", "--novel-per-scene", "3",
                 "--pasted-patches", "3", "--test", "1", "--workers", "1"]) == 0
    (sample,) = list_samples(out / "test")
    novelty = read_novelty_mask(out / "test" / NOVELTY_DIR / sample.mask.name)
    mask = read_raw_mask(sample.mask)
    assert (novelty == NOVEL).sum() > 100 and (mask[novelty == NOVEL] == NOVEL_RAW).all()
    pasted = novelty == PASTED
    assert pasted.sum() > 100
    assert set(np.unique(mask[pasted]).tolist()) <= set(PASTE_CLASSES)  # ordinary class pixels
    table.remap(mask)  # known raw IDs only (0 is the ignore ID)


def test_synth_keeps_novel_objects_out_of_training_and_names_unknown_kinds(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "a"), "--novel-objects", "drum", "--train", "1"]) == 2
    assert "evaluation only" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "b"), "--novel-objects", "drum,ufo", "--test", "1"]) == 2
    assert "'ufo'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_read_novelty_mask_refuses_other_masks(tmp_path):
    cv2.imwrite(str(tmp_path / "wide.png"), np.zeros((4, 4), np.uint16))
    cv2.imwrite(str(tmp_path / "odd.png"), np.full((4, 4), 7, np.uint8))
    for name in ("wide.png", "odd.png"):
        with pytest.raises(DatasetError, match=name):
            read_novelty_mask(tmp_path / name)


def test_outlier_shapes_are_deterministic_for_a_seed_and_paste_where_their_alpha_is():
    a, alpha_a = outlier_shape(np.random.default_rng(3), (48, 40))
    b, alpha_b = outlier_shape(np.random.default_rng(3), (48, 40))
    c, _ = outlier_shape(np.random.default_rng(4), (48, 40))
    assert np.array_equal(a, b) and np.array_equal(alpha_a, alpha_b) and not np.array_equal(a, c)
    assert a.shape == (40, 48, 3) and a.dtype == np.uint8 and set(np.unique(alpha_a).tolist()) == {0, 255}
    assert len(np.unique(a[alpha_a > 0], axis=0)) >= 2  # a pattern, not a flat fill
    frame = np.zeros((30, 60, 3), np.uint8)
    covered = paste_outlier(frame, a, alpha_a, 30, -10)  # clipped at the right and top edges
    assert covered.sum() > 0 and (frame[covered] == a[10:, :30][alpha_a[10:, :30] > 127]).all()
    assert not frame[~covered].any()
