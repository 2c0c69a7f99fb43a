"""Lint, and type-check the node against rclpy's real Python sources."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUBS = REPO / ".stubs"


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    out = subprocess.run([ruff, "check", str(REPO)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_node_type_checks_against_real_rclpy():
    if not (STUBS / "rclpy" / "node.py").is_file():
        if os.environ.get("CI"):
            pytest.fail("rclpy sources missing: `make test` unpacks rclpy-intellisense into .stubs/")
        pytest.skip("run `make test` (or `make .stubs/rclpy/__init__.py`) to fetch rclpy's sources")
    out = subprocess.run([sys.executable, "-m", "mypy", "offroad_seg_ros/node.py"], cwd=REPO,
                         capture_output=True, text=True, env={**os.environ, "MYPYPATH": str(STUBS)})
    assert out.returncode == 0, out.stdout + out.stderr
    # The check is real: the same sources reject a misspelt rclpy keyword.
    bad = REPO / "offroad_seg_ros" / "_mypy_probe.py"
    bad.write_text("from rclpy.node import Node\n\n\ndef f(n: Node) -> None:\n"
                   "    n.create_subscription(int, 't', print, 1, raww=True)\n")
    try:
        out = subprocess.run([sys.executable, "-m", "mypy", str(bad)], cwd=REPO, capture_output=True,
                             text=True, env={**os.environ, "MYPYPATH": str(STUBS)})
    finally:
        bad.unlink()
    assert "raww" in out.stdout
