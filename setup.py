"""ament_python package `offroad_seg_ros`; `pip install -e .` works without ROS."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "offroad_seg_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Off-road semantic segmentation: training, a ROS 2 node and rosbag evaluation",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["offroad_seg_ros*", "offroad_seg_train*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    # Ranges, not pins: robots bring their own torch (Jetson, CUDA builds) and
    # share numpy / OpenCV with ROS 2. locks/ (make lock) pins the
    # versions CI and the README's commands use.
    install_requires=[
        "numpy>=1.26,<3",
        "opencv-python-headless>=4.8,<5",  # cv_bridge breaks on OpenCV 5
        # libjpeg-turbo with its warnings as errors: a JPEG cut short is refused
        # (OpenCV fills the missing rows with grey and cannot tell).
        "simplejpeg>=1.8",
        "pyyaml>=6",
        "safetensors>=0.4",
        "torch>=2.2",
        "segmentation-models-pytorch>=0.5,<0.7",
        "rosbags>=0.10",
        "matplotlib>=3.7",
        "tqdm>=4.60",
    ],
    extras_require={
        "train": [
            "pytorch-lightning>=2.4,<3",
            "jsonargparse[signatures]>=4.27",
            "albumentations>=2.0,<3",
            "torchmetrics>=1.3",
            "tensorboard>=2.14",
        ],
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17", "onnxscript>=0.1"],
        # CPU robots: backend openvino (fp32 / bf16 / int8) and `offroad-seg quantize`.
        "openvino": ["openvino>=2024.4", "nncf>=2.14"],
        "test": ["pytest>=8", "pytest-timeout", "ruff", "mypy", "colcon-common-extensions>=0.3"],
    },
    entry_points={
        "console_scripts": [
            "offroad-seg = offroad_seg_ros.cli:main",
            "segmentation_node = offroad_seg_ros.node.entry:main",
        ],
        # `offroad-seg` subcommands from outside the runtime, loaded by offroad_seg_ros/cli/registry.py
        # (the runtime never imports the training package): one Command each, named as the command.
        "offroad_seg.commands": [
            "synth = offroad_seg_train.commands:SYNTH",
            "train = offroad_seg_train.commands:TRAIN",
            "export = offroad_seg_train.commands:EXPORT",
            "demo = offroad_seg_train.commands:DEMO",
            "adapt = offroad_seg_train.commands:ADAPT",
            "outlier-head = offroad_seg_train.commands:OUTLIER_HEAD",
        ],
    },
)
