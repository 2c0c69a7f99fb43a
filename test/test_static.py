"""Lint, and type-check both packages against the installed rclpy (py.typed)
and whichever numpy / OpenCV stubs the run has (both passes of make test)."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ["-p", "offroad_seg_ros", "-p", "offroad_seg_train"]


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    out = subprocess.run([ruff, "check", str(REPO)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_packages_type_check_against_installed_rclpy(tmp_path):
    import rclpy  # the real one: sourced ROS 2, or the Jazzy wheels `make test` installs

    assert (Path(rclpy.__file__).parent / "py.typed").is_file()
    out = subprocess.run([sys.executable, "-m", "mypy", *PACKAGES], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    # The check is real: the same rclpy rejects a misspelt keyword.
    bad = tmp_path / "mypy_probe.py"
    bad.write_text("from rclpy.node import Node\n\n\ndef f(n: Node) -> None:\n"
                   "    n.create_subscription(int, 't', print, 1, raww=True)\n")
    out = subprocess.run([sys.executable, "-m", "mypy", str(bad)], cwd=REPO, capture_output=True, text=True)
    assert "raww" in out.stdout
