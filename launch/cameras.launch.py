"""Several cameras in one segmentation_node: one model in memory, the newest
frame of every camera batched into one forward pass.

ros2 launch offroad_seg_ros cameras.launch.py model:=/path/to/artifact cameras_file:=/path/to/cameras.yaml
Outputs: /segmentation_node/<camera>/mask, .../cost, ...; one /diagnostics status per camera.
The cameras file (default: the installed config/cameras.yaml) names each camera and its topics.
"""

import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def _nodes(context):
    with open(LaunchConfiguration("cameras_file").perform(context)) as f:
        cameras = yaml.safe_load(f)["cameras"]
    remappings = []
    for name, topics in cameras.items():
        image = topics["image"]
        remappings += [(f"{name}/image", image), (f"{name}/image/compressed", f"{image}/compressed")]
        for key in ("camera_info", "depth"):
            if key in topics:
                remappings.append((f"{name}/{key}", topics[key]))
    common = dict(
        package="offroad_seg_ros", executable="segmentation_node", name="segmentation_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), {
            "cameras": list(cameras),
            "model": LaunchConfiguration("model"),
            "device": LaunchConfiguration("device"),
            "backend": LaunchConfiguration("backend"),
            "compressed": ParameterValue(LaunchConfiguration("compressed"), value_type=bool),
        }],
        remappings=remappings, output="screen", emulate_tty=True,
    )
    lifecycle = LaunchConfiguration("lifecycle")
    return [Node(condition=UnlessCondition(lifecycle), **common),
            LifecycleNode(condition=IfCondition(lifecycle), arguments=["--lifecycle"], **common)]


def generate_launch_description():
    share = get_package_share_directory("offroad_seg_ros")
    return LaunchDescription([
        DeclareLaunchArgument("model", description="model artifact directory"),
        DeclareLaunchArgument("cameras_file", default_value=os.path.join(share, "config", "cameras.yaml"),
                              description="YAML: cameras: {name: {image: topic, camera_info: topic}}"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "segment.yaml"),
                              description="node parameters YAML"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("device", default_value="auto", description="auto | cpu | cuda | cuda:N"),
        DeclareLaunchArgument("backend", default_value="torch", description="torch | onnxruntime | openvino"),
        DeclareLaunchArgument("compressed", default_value="false", description="subscribe to <image>/compressed"),
        DeclareLaunchArgument("lifecycle", default_value="false",
                              description="run as a managed lifecycle node (configure / activate by a manager)"),
        OpaqueFunction(function=_nodes),
    ])
