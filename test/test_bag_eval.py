import json
import shutil

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from offroad_seg_ros.cli import main
from offroad_seg_ros.data.bag import (
    COMPRESSED,
    GT_TOPIC,
    IMAGE,
    IMAGE_TOPIC,
    NAME_TOPIC,
    TYPESTORE,
    BagError,
    PairingStats,
    bag_topics,
    read_frames,
    write_bag,
)
from offroad_seg_ros.data.dataset import list_samples, read_image, read_raw_mask
from offroad_seg_ros.evaluation.evaluate import evaluate
from offroad_seg_ros.evaluation.report import CALIBRATION_FIGURE, FIGURES, write_report
from offroad_seg_ros.inference.segmenter import Segmenter

ROLES = {"image": IMAGE_TOPIC, "gt": GT_TOPIC, "name": NAME_TOPIC}


@pytest.fixture(scope="module")
def split_bag(synth_root, tmp_path_factory):
    return write_bag(synth_root / "test", tmp_path_factory.mktemp("bags") / "split_bag")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_round_trip(synth_root, tmp_path, storage):
    bag = write_bag(synth_root / "val", tmp_path / "b", storage=storage, rate=5)
    topics = bag_topics(bag)
    assert topics[IMAGE_TOPIC] == (IMAGE, 3) and topics[GT_TOPIC] == (IMAGE, 3)
    stats = PairingStats()
    frames = list(read_frames(bag, ROLES, stats))
    samples = list_samples(synth_root / "val")
    assert [f.name for f in frames] == [s.image.name for s in samples]
    assert [f.stamp - frames[0].stamp for f in frames] == [0, 200_000_000, 400_000_000]
    for f, s in zip(frames, samples):
        np.testing.assert_array_equal(f.image, read_image(s.image))
        np.testing.assert_array_equal(f.gt_raw, read_raw_mask(s.mask))
    assert stats.unmatched == {} and stats.bad_count == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temporary folders left


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_compressed_bag(synth_root, tmp_path, fmt):
    bag = write_bag(synth_root / "val", tmp_path / "b", compressed=fmt)
    assert bag_topics(bag)[IMAGE_TOPIC][0] == COMPRESSED
    frame = next(read_frames(bag, ROLES, PairingStats()))
    ref = read_image(list_samples(synth_root / "val")[0].image)
    if fmt == "png":
        np.testing.assert_array_equal(frame.image, ref)
    else:
        assert np.abs(frame.image.astype(int) - ref).mean() < 6


def test_bag_refuses_overwrite_and_bad_masks(synth_root, tmp_path):
    write_bag(synth_root / "val", tmp_path / "b")
    with pytest.raises(FileExistsError, match="--force"):
        write_bag(synth_root / "val", tmp_path / "b")
    broken = tmp_path / "broken"
    shutil.copytree(synth_root / "val", broken)
    mask_path = sorted((broken / "Segmentation").glob("*.png"))[1]
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    mask[0, 0] = 31337
    cv2.imwrite(str(mask_path), mask)
    with pytest.raises(ValueError, match=f"in {mask_path}: 31337 \\(1 px\\)"):
        write_bag(broken, tmp_path / "c")
    assert not (tmp_path / "c").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_image_only_split(synth_root, tmp_path):
    split = tmp_path / "imgs"
    shutil.copytree(synth_root / "test" / "Color_Images", split / "Color_Images")
    bag = write_bag(split, tmp_path / "b")
    assert GT_TOPIC not in bag_topics(bag) and bag_topics(bag)[IMAGE_TOPIC][1] == 3


def test_bag_eval_equals_folder_eval(split_bag, synth_root, tiny_artifact):
    from_bag, _ = evaluate(split_bag, model=tiny_artifact, device="cpu", progress=False)
    from_dir, _ = evaluate(synth_root / "test", model=tiny_artifact, device="cpu", progress=False)
    np.testing.assert_array_equal(from_bag["confusion_matrix"], from_dir["confusion_matrix"])
    assert from_bag["per_image"]["names"] == from_dir["per_image"]["names"]
    assert from_bag["run"]["frames_scored"] == 3 and from_bag["run"]["mode"] == "bag"


def _replay_bag(path, split_bag, tiny_artifact, drop=(), latency_ns=35_000_000):
    """A bag as `ros2 bag record` would write it while the node ran on `split_bag`:
    masks on /segmentation_node/mask, later receive times, some frames missing."""
    seg = Segmenter(tiny_artifact, device="cpu", warmup_size=None)
    Header, Time, Image = (TYPESTORE.types[t] for t in ("std_msgs/msg/Header", "builtin_interfaces/msg/Time", IMAGE))
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        c_gt = w.add_connection(GT_TOPIC, IMAGE, typestore=TYPESTORE)
        c_pred = w.add_connection("/segmentation_node/mask", IMAGE, typestore=TYPESTORE)
        for i, f in enumerate(read_frames(split_bag, ROLES, PairingStats())):
            hdr = Header(Time(f.stamp // 10**9, f.stamp % 10**9), "camera")
            h, wd = f.gt_raw.shape
            gt = Image(hdr, h, wd, "mono16", 0, wd * 2, f.gt_raw.view(np.uint8).reshape(-1))
            w.write(c_gt, f.stamp + 1000, TYPESTORE.serialize_cdr(gt, IMAGE))
            if i in drop:
                continue
            mask = seg(f.image).mask
            pred = Image(hdr, h, wd, "mono8", 0, wd, mask.reshape(-1))
            w.write(c_pred, f.stamp + latency_ns, TYPESTORE.serialize_cdr(pred, IMAGE))
    return path


def test_replay_scoring_equals_running_the_model(split_bag, tiny_artifact, tmp_path):
    replay = _replay_bag(tmp_path / "replay", split_bag, tiny_artifact)
    scored, _ = evaluate(replay, predictions_topic="/segmentation_node/mask", progress=False)
    direct, _ = evaluate(split_bag, model=tiny_artifact, device="cpu", progress=False)
    np.testing.assert_array_equal(scored["confusion_matrix"], direct["confusion_matrix"])
    assert scored["run"]["mode"] == "replay" and scored["run"]["unmatched"] == {}


def test_replay_counts_unmatched_frames(split_bag, tiny_artifact, tmp_path):
    replay = _replay_bag(tmp_path / "replay", split_bag, tiny_artifact, drop={1})
    scored, _ = evaluate(replay, predictions_topic="/segmentation_node/mask", progress=False)
    assert scored["run"]["frames_scored"] == 2 and scored["run"]["unmatched"] == {"pred": 1}


def test_missing_topics_are_listed(split_bag):
    with pytest.raises(BagError, match=r"no topic\(s\) /cam/nope; it has: /camera/image_name"):
        list(read_frames(split_bag, {"image": "/cam/nope", "gt": GT_TOPIC}, PairingStats()))


def test_missing_and_truncated_bags(split_bag, tmp_path):
    with pytest.raises(BagError, match="bag not found"):
        list(read_frames(tmp_path / "nope", ROLES, PairingStats()))
    cut = tmp_path / "cut"
    shutil.copytree(split_bag, cut)
    mcap = next(cut.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    with pytest.raises(BagError, match="cut"):
        list(read_frames(cut, ROLES, PairingStats()))


def test_corrupt_compressed_frame_is_a_counted_skip(synth_root, tmp_path, tiny_artifact):
    bag = tmp_path / "bad"
    Header, Time, Image, Comp = (TYPESTORE.types[t] for t in ("std_msgs/msg/Header", "builtin_interfaces/msg/Time",
                                                               IMAGE, COMPRESSED))
    samples = list_samples(synth_root / "val")
    with Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        ci = w.add_connection(IMAGE_TOPIC, COMPRESSED, typestore=TYPESTORE)
        cg = w.add_connection(GT_TOPIC, IMAGE, typestore=TYPESTORE)
        for i, s in enumerate(samples):
            hdr = Header(Time(10 + i, 0), "camera")
            data = np.frombuffer(s.image.read_bytes(), np.uint8)
            if i == 1:
                data = data[:200]  # truncated PNG
            w.write(ci, (10 + i) * 10**9, TYPESTORE.serialize_cdr(Comp(hdr, "png", data), COMPRESSED))
            raw = read_raw_mask(s.mask)
            gt = Image(hdr, raw.shape[0], raw.shape[1], "mono16", 0, raw.shape[1] * 2, raw.view(np.uint8).reshape(-1))
            w.write(cg, (10 + i) * 10**9, TYPESTORE.serialize_cdr(gt, IMAGE))
    out, _ = evaluate(bag, model=tiny_artifact, device="cpu", progress=False)
    assert out["run"]["frames_scored"] == 2 and out["run"]["skipped"] == 1
    assert "corrupt CompressedImage" in out["run"]["skipped_examples"][0]
    assert out["run"]["unmatched"] == {"image": 1}


def test_report_is_complete_and_na_is_not_zero(split_bag, tiny_artifact, tmp_path, table):
    assert main(["eval", str(split_bag), "--model", str(tiny_artifact), "--out", str(tmp_path / "rep"),
                 "--device", "cpu", "--quiet"]) == 0
    rep = tmp_path / "rep"
    assert {p.name for p in rep.iterdir()} == {"metrics.json", "report.md", CALIBRATION_FIGURE, *FIGURES.values()}
    m = json.loads((rep / "metrics.json").read_text())
    logs = table.index_of("Logs")  # the test biome has no logs
    if m["pred_pixels"][logs] == 0:
        assert m["iou"][logs] is None
    assert "smp" in json.dumps(m["versions"]) or "torch" in m["versions"]
    assert m["run"]["frames_scored"] == 3 and len(m["per_image"]["names"]) == 3
    md = (rep / "report.md").read_text()
    assert '"micro" ("dataset IoU" in the reference report)' in md and "| Logs |" in md
    for fig in FIGURES.values():
        assert cv2.imread(str(rep / fig)) is not None


def test_report_written_completely_or_not_at_all(split_bag, tiny_artifact, tmp_path, monkeypatch):
    import offroad_seg_ros.evaluation.report as report

    metrics, gallery = evaluate(split_bag, model=tiny_artifact, device="cpu", progress=False)

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "_figures", broken)
    with pytest.raises(RuntimeError):
        write_report(tmp_path / "rep", metrics, gallery)
    assert list(tmp_path.iterdir()) == []


def test_eval_cli_errors(tmp_path, capsys, tiny_artifact):
    assert main(["eval", str(tmp_path / "nobag"), "--model", str(tiny_artifact), "--out", str(tmp_path / "r")]) == 2
    assert "nobag" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "exactly one of --model" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--model", str(tmp_path / "nomodel"), "--out", str(tmp_path / "r")]) == 2
    assert "nomodel does not exist" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_gallery_keeps_best_worst_and_makes_few_thumbnails():
    from offroad_seg_ros.evaluation.evaluate import Gallery, Thumb

    rng = np.random.default_rng(0)
    scores = rng.random(200)
    made = []
    g = Gallery(k=5, spread=4)
    for i, s in enumerate(scores):
        g.add(f"f{i}", float(s), lambda i=i, s=s: made.append(i) or Thumb(f"f{i}", float(s), None, None, None))
    best, worst = g.ranked()
    order = np.argsort(scores)
    assert [t.name for t in best] == [f"f{i}" for i in order[::-1][:5]]
    assert [t.name for t in worst] == [f"f{i}" for i in order[:5]]
    assert len(g.sample) == 4 and len(made) < 80


def test_limit_and_custom_topics(synth_root, tmp_path, tiny_artifact):
    bag = write_bag(synth_root / "val", tmp_path / "b", image_topic="/front/image", gt_topic="/front/labels",
                    name_topic="/front/name")
    out, _ = evaluate(bag, model=tiny_artifact, device="cpu", limit=2, image_topic="/front/image",
                      gt_topic="/front/labels", name_topic="/front/name", progress=False)
    assert out["run"]["frames_scored"] == 2
    assert out["per_image"]["names"] == [s.image.name for s in list_samples(synth_root / "val")][:2]
