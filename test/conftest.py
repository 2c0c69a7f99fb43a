import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Keep tests on CPU and quiet, whatever the machine has.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# ROS 2 (real rclpy and DDS): this test session talks only to itself. Its own
# domain ID (parallel runs don't cross-talk), discovery on loopback only, and
# the large-frame shared-memory profile (Fast DDS's default 512 KiB segment
# drops most best-effort 960x540 frames). Set before rclpy is imported, and
# inherited by every node process a test starts.
os.environ["ROS_DOMAIN_ID"] = str(random.Random(os.getpid()).randint(1, 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_large_frames.xml"))
os.environ["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
os.environ["RCUTILS_COLORIZED_OUTPUT"] = "0"


def pytest_addoption(parser):
    parser.addoption("--hog", action="store_true",
                     help="keep every core busy with other processes for the whole session (make test-stress)")


def pytest_collection_modifyitems(config, items):
    # Tests that start node processes (start_node) or talk to a node in this
    # process over DDS (peer, ros) are the ones a busy computer can upset.
    for item in items:
        if {"start_node", "peer", "ros"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.ros)


@pytest.fixture(scope="session", autouse=True)
def cpu_hog(request):
    """With --hog: one busy process per core for the whole session, as on a
    robot computer running other work (a test's verdict must not change)."""
    if not request.config.getoption("--hog"):
        yield None
        return
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def pytest_terminal_summary(terminalreporter):
    # Printed even with -q: `make test` runs the suite under two numpy / OpenCV pairs.
    import cv2
    import numpy
    import torch

    hog = " (every core kept busy by --hog)" if terminalreporter.config.getoption("--hog") else ""
    terminalreporter.write_line(f"numpy {numpy.__version__}, OpenCV {cv2.__version__}, torch {torch.__version__}{hog}")


@pytest.fixture(scope="session")
def table():
    from offroad_seg_ros.core.classes import ClassTable

    return ClassTable.default()


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A small generated dataset shared by the tests that only read it."""
    from offroad_seg_train.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, {"train": 8, "val": 3, "test": 3}, seed=7, workers=2, progress=None)
    return root


def make_artifact(path, table, arch="FPN", encoder="resnet18", scale=0.5, onnx=False, seed=0):
    import torch

    from offroad_seg_ros.core.artifact import Artifact, ModelSpec, save_artifact
    from offroad_seg_ros.core.model import build_model
    from offroad_seg_ros.core.preprocess import Preprocess

    torch.manual_seed(seed)
    model = build_model(arch, encoder, len(table))
    art = Artifact(ModelSpec(arch, encoder), table, Preprocess(scale=scale), name="tiny-random")
    return save_artifact(path, art, model, onnx=onnx)


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory, table):
    """Random-weights FPN + resnet18 artifact with its ONNX file."""
    return make_artifact(tmp_path_factory.mktemp("art") / "tiny", table, onnx=True)


@pytest.fixture
def peer():
    """A node of the test's own on real DDS (test/rosutil.py)."""
    from rosutil import Peer

    p = Peer()
    yield p
    p.close()


@pytest.fixture(scope="session")
def tf2_msgs():
    """tf2_msgs/TFMessage importable here and in every node process started from now on: a sourced
    ROS 2's, or built once per venv from its definition where none is (test/ros_interfaces.py)."""
    try:
        import tf2_msgs.msg  # noqa: F401

        return None
    except ImportError:
        from ros_interfaces import activate, build_tf2_msgs

        prefix = build_tf2_msgs()
        activate(prefix)
        return prefix


# The trust features (min_confidence, the camera checks) have tests of their own; elsewhere they
# would turn a random-weights model's unsure outputs, and frames resent until received, unknown.
TRUST_OFF = ("-p", "min_confidence:=0.0", "-p", "degraded_policy:=publish")


@pytest.fixture
def start_node(tmp_path, tiny_artifact):
    """segmentation_node processes started as users start them; stopped at the end."""
    from rosutil import NodeProcess

    procs = []

    def start(*ros_args: str, model: str | None = None, name: str = "node", lifecycle: bool = False):
        args = [*(["--lifecycle"] if lifecycle else []), "--ros-args", "-p", f"model:={model or tiny_artifact}",
                "-p", "device:=cpu", *TRUST_OFF, *ros_args]
        proc = NodeProcess(args, tmp_path / f"{name}{len(procs)}.log")
        procs.append(proc)
        return proc

    yield start
    for p in procs:
        p.stop()
