"""`colcon build` installs the package the way `ros2 run` / `ros2 launch` find it.

colcon (from PyPI) builds ament_python packages without ROS installed, so this
runs everywhere: the launch files, configs, package.xml, ament index marker and
`lib/offroad_seg_ros/segmentation_node` land in the install space, and the
installed Python package finds its config through the sourced workspace.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COLCON = Path(sys.executable).parent / "colcon"
PKG = "offroad_seg_ros"

pytestmark = pytest.mark.skipif(not COLCON.is_file(), reason="colcon is installed by the test extra")


def colcon_build(ws: Path, *extra: str) -> Path:
    cmd = [str(COLCON), "--log-base", str(ws / "log"), "build", "--base-paths", str(REPO),
           "--build-base", str(ws / "build"), "--install-base", str(ws / "install"), *extra]
    done = subprocess.run(cmd, cwd=ws, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return ws / "install"


def in_workspace(install: Path, command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `command` in bash after sourcing the workspace, as a ROS user would."""
    # setup.bash puts the install space in front of PYTHONPATH and AMENT_PREFIX_PATH.
    return subprocess.run(["bash", "-c", f"source {install}/setup.bash && {command}"], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("mode", [(), ("--symlink-install",)], ids=["copy", "symlink"])
def test_colcon_install_layout(tmp_path: Path, mode: tuple[str, ...]) -> None:
    install = colcon_build(tmp_path, *mode) / PKG
    share = install / "share" / PKG
    for name in ("segment.launch.py", "cameras.launch.py", "evaluate.launch.py"):
        assert (share / "launch" / name).read_text() == (REPO / "launch" / name).read_text()
    for path in (REPO / "config").glob("*.yaml"):
        assert (share / "config" / path.name).read_text() == path.read_text()
    assert (share / "package.xml").is_file()
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / PKG).is_file()
    # `ros2 run offroad_seg_ros segmentation_node` runs lib/<package>/<executable>.
    assert os.access(install / "lib" / PKG / "segmentation_node", os.X_OK)


def test_colcon_install_finds_its_config_and_explains_missing_ros(tmp_path: Path) -> None:
    install = colcon_build(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The installed copy (not this checkout) must load the class table from the install space.
    script = ("import offroad_seg_ros, offroad_seg_ros.core.classes as c; "
              "from offroad_seg_ros.core.resources import share_dir; "
              "print(offroad_seg_ros.__file__); print(share_dir()); print(len(c.ClassTable.default()))")
    probe = in_workspace(install, f'{sys.executable} -c "{script}"', elsewhere)
    assert probe.returncode == 0, probe.stderr
    module_file, share, n_classes = probe.stdout.split()
    assert module_file.startswith(str(install)), module_file
    assert share == str(install / PKG / "share" / PKG)
    assert int(n_classes) == 10

    # Without ROS sourced: `python -S` leaves site-packages (where the test venv
    # keeps its ROS wheels) off the path; the install space comes from setup.bash.
    node = in_workspace(install, f"{sys.executable} -S {install / PKG / 'lib' / PKG / 'segmentation_node'}",
                        elsewhere)
    assert node.returncode == 1
    assert "ROS 2 Python module 'rclpy' not found" in node.stderr
    assert "Traceback" not in node.stderr
