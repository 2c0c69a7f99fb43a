import shutil

import cv2
import numpy as np

from offroad_seg_ros.cli import main


def test_check_passes_on_generated_data(synth_root, capsys):
    assert main(["check", str(synth_root)]) == 0
    out = capsys.readouterr().out
    assert "OK: no problems found" in out
    assert "Flowers" in out and "train %" in out


def test_check_fails_on_broken_copy(synth_root, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(synth_root, broken)
    masks = sorted((broken / "train" / "Segmentation").glob("*.png"))
    masks[0].unlink()
    mask = cv2.imread(str(masks[1]), cv2.IMREAD_UNCHANGED)
    mask[:2, :5] = 4242
    cv2.imwrite(str(masks[1]), mask)
    assert main(["check", str(broken)]) == 1
    out = capsys.readouterr().out
    assert f"without a mask: {masks[0].stem}" in out
    assert "unknown raw mask IDs in train: 4242 (10 px)" in out


def test_check_missing_folder_is_clear(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_synth_refuses_to_overwrite(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--train", "1", "--val", "0", "--test", "0"]) == 0
    assert main(["synth", "--out", str(tmp_path), "--train", "1", "--val", "0", "--test", "0"]) == 2
    assert "--force" in capsys.readouterr().err
    np.testing.assert_equal(len(list((tmp_path / "train" / "Color_Images").iterdir())), 1)
