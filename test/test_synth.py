import hashlib

import numpy as np

from offroad_seg_ros.data.dataset import list_samples, read_image, read_raw_mask
from offroad_seg_train.synth import TEST_BIOME, TRAIN_BIOME, generate, render_scene


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_any_worker_count(tmp_path):
    a = generate(tmp_path / "a", {"train": 3, "test": 2}, seed=3, workers=1, progress=None)
    b = generate(tmp_path / "b", {"train": 3, "test": 2}, seed=3, workers=2, progress=None)
    c = generate(tmp_path / "c", {"train": 3, "test": 2}, seed=4, workers=1, progress=None)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_layout_and_mask_values(synth_root, table):
    for split in ("train", "val", "test"):
        samples = list_samples(synth_root / split)
        for s in samples:
            mask = read_raw_mask(s.mask)
            assert read_image(s.image).shape == (540, 960, 3) and mask.shape == (540, 960)
            assert set(np.unique(mask).tolist()) <= set(table.raw_ids)


def test_all_classes_present_in_train(synth_root, table):
    seen = set()
    for s in list_samples(synth_root / "train"):
        seen |= set(np.unique(read_raw_mask(s.mask)).tolist())
    assert seen == set(table.raw_ids)


def test_test_biome_is_shifted():
    def stats(biome, n=6):
        means, rocks, seen = [], [], set()
        for i in range(n):
            image, mask = render_scene(np.random.default_rng(100 + i), biome)
            means.append(image.reshape(-1, 3).mean(0))
            rocks.append((mask == 800).mean())
            seen |= set(np.unique(mask).tolist())
        return np.mean(means, 0), np.mean(rocks), seen

    train_mean, train_rocks, _ = stats(TRAIN_BIOME)
    test_mean, test_rocks, test_seen = stats(TEST_BIOME)
    assert (test_mean < train_mean - 10).all(), (train_mean, test_mean)
    assert test_rocks > 4 * train_rocks
    assert not test_seen & {700, 600, 550}  # no logs, flowers, ground clutter


def test_image_and_mask_are_aligned():
    # Sky pixels are bluish, sand is not: a shifted mask would break this.
    image, mask = render_scene(np.random.default_rng(5))
    sky, land = image[mask == 10000].astype(float), image[mask == 7100].astype(float)
    assert (sky[:, 2] - sky[:, 0]).mean() > 20
    assert (land[:, 0] - land[:, 2]).mean() > 20


def test_interrupted_split_leaves_no_partial_folder(tmp_path, monkeypatch):
    import offroad_seg_train.synth as synth

    calls = {"n": 0}
    real = synth._write_one

    def boom(job):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real(job)

    monkeypatch.setattr(synth, "_write_one", boom)
    try:
        synth.generate(tmp_path, {"train": 4}, workers=1, progress=None)
    except KeyboardInterrupt:
        pass
    assert not (tmp_path / "train").exists()


def test_workers_start_clean_in_a_process_that_cannot_be_forked(tmp_path):
    # A process holding runtime thread pools (onnxruntime, OpenVINO) cannot be forked safely: a
    # forked worker hung in an inherited session's destructor. Stand in for such a library with a
    # fork hook that kills a forked child; the generator's workers must not be forked from here.
    import subprocess
    import sys

    script = (
        "import os, sys\n"
        "from offroad_seg_train.synth import generate\n"
        "os.register_at_fork(after_in_child=lambda: os._exit(17))\n"
        "generate(sys.argv[1], {'train': 4}, seed=1, workers=2, progress=None)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "d")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(list_samples(tmp_path / "d" / "train")) == 4
