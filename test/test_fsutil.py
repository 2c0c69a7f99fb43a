"""Outputs are complete or absent: a file or directory appears in one rename."""

import os

import pytest

from offroad_seg_ros.core.fsutil import atomic_directory, write_atomic


def test_write_atomic_replaces_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "model.json"
    path.write_text("old")
    write_atomic(path, "new")
    write_atomic(tmp_path / "blob", b"\x00\x01")
    assert path.read_text() == "new" and (tmp_path / "blob").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob", "model.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.json"
    path.write_text("old")

    def no_rename(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["model.json"]


def test_atomic_directory_is_complete_or_absent(tmp_path):
    out = tmp_path / "report"
    with pytest.raises(RuntimeError), atomic_directory(out) as staged:
        staged.mkdir()
        (staged / "a.txt").write_text("half")
        raise RuntimeError("cut short")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(out) as staged:
        staged.mkdir()
        (staged / "a.txt").write_text("whole")
    assert (out / "a.txt").read_text() == "whole" and [p.name for p in tmp_path.iterdir()] == ["report"]
    with pytest.raises(FileExistsError, match="--force"), atomic_directory(out):
        pass
