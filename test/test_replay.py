"""`offroad-seg replay` against a node process over real DDS: the replayed
bag scores exactly like running the model on the same bag."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from offroad_seg_ros.data.bag import GT_TOPIC, IMAGE_TOPIC, NAME_TOPIC, bag_topics, write_bag
from offroad_seg_ros.evaluation.evaluate import evaluate

CLI = Path(sys.executable).with_name("offroad-seg")


@pytest.fixture(scope="module")
def split_bag(synth_root, tmp_path_factory):
    return write_bag(synth_root / "test", tmp_path_factory.mktemp("replay") / "split_bag")


def _replay(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), "replay", "--quiet", *args], capture_output=True, text=True, timeout=timeout)


def test_lockstep_replay_scores_like_the_model(start_node, split_bag, tiny_artifact, tmp_path):
    node = start_node("-r", "__ns:=/robot", "-r", "image:=/camera/image_raw")
    node.wait_for_line("segmenting")
    out = tmp_path / "replayed"
    res = _replay(str(split_bag), "--out", str(out), "--node", "/robot/segmentation_node", "--lockstep", "--cost")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 frames sent, 3 answered, 0 dropped" in res.stdout
    topics = bag_topics(out)
    assert {t: n for t, (_, n) in topics.items()} == {
        "/robot/segmentation_node/mask": 3, "/robot/segmentation_node/cost": 3, GT_TOPIC: 3, NAME_TOPIC: 3}
    replayed, _ = evaluate(out, predictions_topic="/robot/segmentation_node/mask", progress=False)
    direct, _ = evaluate(split_bag, model=tiny_artifact, device="cpu", progress=False)
    np.testing.assert_array_equal(replayed["confusion_matrix"], direct["confusion_matrix"])
    assert replayed["run"]["frames_scored"] == direct["run"]["frames_scored"] == 3
    # The eval command on the replay bag, as the README shows it.
    cmd = [str(CLI), "eval", str(out), "--predictions", "/robot/segmentation_node/mask", "--out", str(tmp_path / "r"),
           "--quiet"]
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0


def test_rate_mode_counts_what_the_node_dropped(start_node, split_bag, tmp_path):
    node = start_node()
    node.wait_for_line("segmenting")
    out = tmp_path / "rate"
    # 3 frames at 200 Hz: the CPU model (hundreds of ms a frame) cannot keep up.
    res = _replay(str(split_bag), "--out", str(out), "--rate", "200", "--image-topic", IMAGE_TOPIC)
    assert res.returncode == 0, res.stdout + res.stderr
    sent, answered, dropped = (int(res.stdout.split(w)[0].split()[-1]) for w in (" frames sent", " answered",
                                                                                  " dropped"))
    assert sent == 3 and answered + dropped == 3 and dropped >= 1
    assert bag_topics(out)["/segmentation_node/mask"][1] == answered


def test_a_node_that_never_appears_is_named(split_bag, tmp_path):
    res = _replay(str(split_bag), "--out", str(tmp_path / "x"), "--node", "/nobody/home", "--wait", "1")
    assert res.returncode == 2
    assert "node /nobody/home did not appear within 1 s" in res.stderr
    assert not (tmp_path / "x").exists()


def test_ctrl_c_mid_replay_leaves_no_output(start_node, split_bag, tmp_path):
    node = start_node("-p", "max_rate:=0.01")  # answers the first frame only: replay waits on the second
    node.wait_for_line("segmenting")
    out = tmp_path / "cut"
    proc = subprocess.Popen([str(CLI), "replay", str(split_bag), "--out", str(out), "--quiet", "--timeout", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 60
    while not any(p.name.startswith(f".{out.name}") for p in tmp_path.iterdir()):  # writing has begun
        assert time.monotonic() < end and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}")]
