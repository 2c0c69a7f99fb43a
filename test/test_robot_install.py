"""The README's robot install, followed literally (`make test-install`; marker `install`).

ROS's Python is stood in for by a prefix laid out as /opt/ros/<distro>, with a setup.bash that
puts it on PYTHONPATH and LD_LIBRARY_PATH as ROS's does: numpy 1.26.4 (Jazzy's python3-numpy), ROS 2 Jazzy's
wheels (rclpy, the messages) and colcon, as the distribution's python3-colcon-* packages
provide it. Then the lines of the README's "On a robot" block run as written, in a scratch
workspace, with only the paths replaced; `rosdep` and `git clone` are left out (the checkout
itself is the package) and `ros2 launch` is replaced by starting the built entry point, which is
what `ros2 launch` runs. Checked: numpy 1.26.4 from ROS's folder is still the one in use (pip put
no numpy in the venv), cv2 imports against it, the entry point runs the venv's Python, and the
node it starts loads a model and subscribes. Minutes, not seconds: torch is installed into a
fresh venv.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rosutil import NodeProcess

REPO = Path(__file__).resolve().parents[1]
ROBOT_NUMPY = "1.26.4"  # locks/robot.in: what Jazzy's python3-numpy is

pytestmark = [pytest.mark.install, pytest.mark.timeout(1800)]


def readme_robot_steps() -> list[str]:
    """The shell lines of the README's robot install block, comments dropped."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## On a robot"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README.md: no bash block under '## On a robot'"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def as_run_here(steps: list[str], ws: Path, venv: Path, ros: Path) -> str:
    """The README's steps with this machine's paths; the steps this machine can't take replaced."""
    out = ["set -eo pipefail", f"mkdir -p {ws}/src", f"ln -s {REPO} {ws}/src/offroad_seg_ros", f"cd {ws}"]
    for step in steps:
        if step.startswith(("cd ~/ros2_ws/src && git clone", "rosdep ", "ros2 launch ")):
            continue  # the checkout is the package; rosdep and ros2 launch need a full ROS install
        if step.startswith("source /opt/ros/"):
            out.append(f"source {ros}/setup.bash")
            continue
        out.append(step.replace("~/offroad-venv", str(venv)).replace("~/ros2_ws", str(ws)))
    return "\n".join(out) + "\n"


def ros_python(folder: Path) -> Path:
    """ROS's Python as a robot has it: numpy 1.26, the ROS wheels, colcon, at the tested versions,
    laid out as /opt/ros/<distro> is (a prefix with lib/pythonX.Y/site-packages), with the
    setup.bash that puts them on PYTHONPATH and LD_LIBRARY_PATH. --prefix, not --target: the ROS
    wheels install part of their packages as data files, which --target leaves out."""
    site = folder / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    if not (folder / "setup.bash").is_file():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-warn-conflicts", "--ignore-installed",
                        "--prefix", str(folder), "-c", str(REPO / "locks" / "robot.txt"), f"numpy=={ROBOT_NUMPY}",
                        "colcon-common-extensions", "-r", str(REPO / "locks" / "ros-jazzy.txt")],
                       check=True, timeout=900)
        libs = ":".join(str(p) for p in sorted(site.glob("*.libs")))
        (folder / "setup.bash").write_text(f"export PYTHONPATH={site}\nexport LD_LIBRARY_PATH={libs}:{folder}/lib\n")
    return site


def test_the_readme_robot_install_keeps_ros_numpy_and_starts_the_node(tmp_path, tiny_artifact):
    steps = readme_robot_steps()
    assert any(s.startswith("pip install -c") and "robot-constraints.txt" in s for s in steps), steps
    ros, ws, venv = tmp_path / "ros", tmp_path / "ros2_ws", tmp_path / "offroad-venv"
    ros_site = ros_python(ros)
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "_ROS_WHEELS_BOOTSTRAP_COMPLETE")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(sys.prefix))
    script = as_run_here(steps, ws, venv, ros)
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, f"{script}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"

    # numpy: ROS's, and none in the venv; cv2 imports against it.
    probe = subprocess.run(["bash", "-c", f"source {ros}/setup.bash && {venv}/bin/python -c "
                            "'import numpy, cv2; print(numpy.__version__, numpy.__file__, cv2.__version__)'"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    version, where, cv = probe.stdout.split()
    assert (version, where.startswith(str(ros_site))) == (ROBOT_NUMPY, True), probe.stdout
    assert cv < "5", cv
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert not list(site.glob("numpy-*.dist-info")), "pip installed a numpy into the venv beside ROS's"

    # The entry point colcon built runs the venv's Python, and starts the node.
    exe = ws / "install" / "offroad_seg_ros" / "lib" / "offroad_seg_ros" / "segmentation_node"
    assert exe.read_text().splitlines()[0] == f"#!{venv}/bin/python3"
    start = (f"source {ros}/setup.bash && source {ws}/install/setup.bash && exec {exe} --ros-args "
             f"-p model:={tiny_artifact} -p device:=cpu")
    node = NodeProcess(["-c", start], tmp_path / "node.log", env={"PYTHONPATH": "", "VIRTUAL_ENV": "",
                                                                  "_ROS_WHEELS_BOOTSTRAP_COMPLETE": ""},
                       exe=Path("/bin/bash"), cwd=ws)
    try:
        node.wait_for_line("segmenting", timeout=180)
    finally:
        node.stop()
