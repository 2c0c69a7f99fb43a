import os

import pytest

# Keep tests on CPU and quiet, whatever the machine has.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def pytest_terminal_summary(terminalreporter):
    # Printed even with -q: `make test` runs the suite under two numpy / OpenCV pairs.
    import cv2
    import numpy
    import torch

    terminalreporter.write_line(f"numpy {numpy.__version__}, OpenCV {cv2.__version__}, torch {torch.__version__}")


@pytest.fixture(scope="session")
def table():
    from offroad_seg_ros.classes import ClassTable

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

    from offroad_seg_ros.artifact import Artifact, ModelSpec, save_artifact
    from offroad_seg_ros.model import build_model
    from offroad_seg_ros.preprocess import Preprocess

    torch.manual_seed(seed)
    model = build_model(arch, encoder, len(table))
    art = Artifact(ModelSpec(arch, encoder), table, Preprocess(scale=scale), name="tiny-random")
    return save_artifact(path, art, model, onnx=onnx)


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory, table):
    """Random-weights FPN + resnet18 artifact with its ONNX file."""
    return make_artifact(tmp_path_factory.mktemp("art") / "tiny", table, onnx=True)
