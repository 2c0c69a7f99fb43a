"""The locked environments (locks/): the checker that `make test` runs before each pass, and the
locks' agreement with setup.py's ranges and with what a ROS 2 Jazzy robot has."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "locks"
EXTRAS = ("train", "onnx", "openvino", "test")  # the Makefile's EXTRAS


def _lockfile():
    spec = importlib.util.spec_from_file_location("lockfile", LOCKS / "lockfile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lockfile = _lockfile()


def _check(lock: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LOCKS / "lockfile.py"), "check", str(lock)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", ["main.txt", "robot.txt", "ros-jazzy.txt"])
def test_every_lock_line_is_an_exact_pin_for_every_supported_python(name):
    for minor in (10, 11, 12):
        env = {"python_version": f"3.{minor}", "python_full_version": f"3.{minor}.0"}
        pins = lockfile.read_lock(LOCKS / name, env)
        assert pins, f"{name} pins nothing for Python 3.{minor}"


def test_a_range_is_not_a_lock(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("numpy>=1.26\n")
    with pytest.raises(ValueError, match=r"lock.txt:1: not an exact pin"):
        lockfile.read_lock(lock)


def test_differences_name_the_package_and_both_versions():
    pins = {"numpy": "1.26.4", "torch": "2.14.1", "pip": "1.0"}
    assert lockfile.differences(pins, {"numpy": "1.26.4", "torch": "2.14.1", "pip": "26.3"}) == []
    assert lockfile.differences(pins, {"numpy": "2.4.6", "pip": "26.3"}) == [
        "numpy: locked at 1.26.4, installed 2.4.6",
        "torch: locked at 2.14.1, not installed",
    ]


def test_check_fails_naming_a_package_installed_at_another_version(tmp_path):
    """The real check against this interpreter's packages: a lock that agrees passes; one that
    pins another numpy (what an install that drifted looks like from the other side) fails."""
    have = metadata.version("numpy")
    same = tmp_path / "same.txt"
    same.write_text(f"numpy=={have}\n    # via test\n")
    assert _check(same).returncode == 0
    other = tmp_path / "other.txt"
    other.write_text("numpy==1.0.0 ; python_version >= '3'\n")
    result = _check(other)
    assert result.returncode == 1
    assert f"numpy: locked at 1.0.0, installed {have}" in result.stderr
    assert "make lock" in result.stderr


def test_the_locks_satisfy_setup_py(tmp_path):
    """Every requirement of the package and its tested extras is pinned by both locks, within
    setup.py's range: a range changed without `make lock` fails here."""
    requires = [Requirement(r) for r in metadata.requires("offroad_seg_ros") or []]
    assert requires, "offroad_seg_ros is not installed (pip install -e .)"
    for name in ("main.txt", "robot.txt"):
        pins = lockfile.read_lock(LOCKS / name)
        for req in requires:
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in ("", *EXTRAS)):
                continue
            key = lockfile.canonical(req.name)
            assert key in pins, f"locks/{name} does not pin {req.name} ({req})"
            assert req.specifier.contains(pins[key], prereleases=True), \
                f"locks/{name} pins {req.name}=={pins[key]}, outside setup.py's {req}"


def test_the_robot_lock_keeps_what_the_robot_has():
    """robot.txt is resolved around the robot's own numpy, scipy and OpenCV (locks/robot.in)."""
    pins = lockfile.read_lock(LOCKS / "robot.txt")
    wanted = [Requirement(line.split("#")[0]) for line in (LOCKS / "robot.in").read_text().splitlines()
              if line.split("#")[0].strip()]
    assert {lockfile.canonical(r.name) for r in wanted} >= {"numpy", "scipy", "opencv-python-headless"}
    for req in wanted:
        if req.marker is None or req.marker.evaluate():
            assert req.specifier.contains(pins[lockfile.canonical(req.name)]), f"robot.txt breaks robot.in's {req}"
    assert pins["numpy"] == "1.26.4"
    assert int(lockfile.read_lock(LOCKS / "main.txt")["numpy"].split(".")[0]) >= 2


def test_the_ros_lock_only_adds_to_the_package_locks():
    ros = lockfile.read_lock(LOCKS / "ros-jazzy.txt")
    assert "ros-rclpy" in ros
    for name in ("main.txt", "robot.txt"):
        assert not set(ros) & set(lockfile.read_lock(LOCKS / name)), f"ros-jazzy.txt repeats a pin of {name}"


def test_the_robot_constraints_are_the_robot_lock_less_torch():
    """The README's robot install uses robot-constraints.txt: the robot lock, less the torch stack
    robots bring themselves (a pinned torch would replace a Jetson's own)."""
    constraints = lockfile.read_lock(LOCKS / "robot-constraints.txt")
    robot = lockfile.read_lock(LOCKS / "robot.txt")
    torch_stack = {n for n in robot if n in ("torch", "torchvision", "triton") or n.startswith(("nvidia-", "cuda-"))}
    assert "torch" in torch_stack and not torch_stack & set(constraints)
    assert constraints == {n: v for n, v in robot.items() if n not in torch_stack}
