import cv2
import numpy as np
import pytest

from offroad_seg_ros.data.dataset import (
    DatasetError,
    find_split,
    list_samples,
    read_image,
    read_raw_mask,
)


def _make_split(root, stems_img, stems_mask, img_ext=".png"):
    (root / "Color_Images").mkdir(parents=True)
    (root / "Segmentation").mkdir()
    for s in stems_img:
        cv2.imwrite(str(root / "Color_Images" / f"{s}{img_ext}"), np.zeros((4, 6, 3), np.uint8))
    for s in stems_mask:
        cv2.imwrite(str(root / "Segmentation" / f"{s}.png"), np.full((4, 6), 7100, np.uint16))
    return root


def test_pairs_by_stem_not_position(tmp_path):
    split = _make_split(tmp_path / "train", ["b", "a", "c10", "c9"], ["c9", "a", "c10", "b"])
    samples = list_samples(split)
    assert [s.stem for s in samples] == ["a", "b", "c10", "c9"]
    assert all(s.image.stem == s.mask.stem for s in samples)


def test_different_extensions_pair(tmp_path):
    split = _make_split(tmp_path / "train", ["x", "y"], ["x", "y"], img_ext=".jpg")
    assert [s.image.suffix for s in list_samples(split)] == [".jpg", ".jpg"]


def test_missing_mask_is_named(tmp_path):
    split = _make_split(tmp_path / "train", ["a", "b", "c"], ["a"])
    with pytest.raises(DatasetError, match=r"2 image\(s\) without a mask: b, c"):
        list_samples(split)


def test_extra_mask_is_named(tmp_path):
    split = _make_split(tmp_path / "train", ["a"], ["a", "zz"])
    with pytest.raises(DatasetError, match=r"mask\(s\) without an image: zz"):
        list_samples(split)


def test_many_unmatched_are_summarised(tmp_path):
    split = _make_split(tmp_path / "train", [f"i{k:02d}" for k in range(12)], [])
    with pytest.raises(DatasetError, match=r"\+7 more, 12 in all"):
        list_samples(split)


def test_eight_bit_and_colour_masks_rejected(tmp_path):
    cv2.imwrite(str(tmp_path / "m8.png"), np.zeros((4, 4), np.uint8))
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match="m8.png is uint8"):
        read_raw_mask(tmp_path / "m8.png")
    with pytest.raises(DatasetError, match="3 channels"):
        read_raw_mask(tmp_path / "rgb.png")


def test_unreadable_files_are_named(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DatasetError, match="bad.png"):
        read_image(bad)


def test_find_split_layouts(tmp_path):
    _make_split(tmp_path / "Offroad_Segmentation_Training_Dataset" / "train", ["a"], ["a"])
    _make_split(tmp_path / "Offroad_Segmentation_testImages", ["t"], [])
    (tmp_path / "Offroad_Segmentation_testImages" / "Segmentation").rmdir()
    assert find_split(tmp_path, "train").parent.name == "Offroad_Segmentation_Training_Dataset"
    test_dir = find_split(tmp_path, "test")
    assert test_dir.name == "Offroad_Segmentation_testImages"
    assert list_samples(test_dir, require_masks=False)[0].mask is None
    with pytest.raises(DatasetError, match="no 'val' split"):
        find_split(tmp_path, "val")
