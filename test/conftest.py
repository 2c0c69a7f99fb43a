import os

import pytest

# Keep tests on CPU and quiet, whatever the machine has.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


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
