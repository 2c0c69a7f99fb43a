"""Several cameras in one segmentation_node: one model in memory, the newest
frame of every camera batched into one forward pass.

ros2 launch offroad_seg_ros cameras.launch.py model:=/path/to/artifact cameras_file:=/path/to/cameras.yaml
Outputs: <namespace>/segmentation_node/<camera>/mask, .../cost, ...; one /diagnostics status per camera.
The cameras file (default: the installed config/cameras.yaml) names each camera and its topics.
A launch argument overrides the params file only when given (offroad_seg_ros/node/launch_args.py).
"""

import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from launch import LaunchDescription
from offroad_seg_ros.node.launch_args import (
    PARAMETER_ARGUMENTS,
    flag,
    image_remappings,
    node_parameters,
    ros_arguments,
    transport_env,
)


def _nodes(context):
    value = {name: LaunchConfiguration(name).perform(context) for name in (
        *PARAMETER_ARGUMENTS, "params_file", "cameras_file", "namespace", "name", "log_level", "lifecycle",
        "large_frames")}
    with open(value["cameras_file"]) as f:
        cameras = yaml.safe_load(f)["cameras"]
    remappings = []
    for camera, topics in cameras.items():
        remappings += image_remappings(f"{camera}/", topics["image"], topics.get("camera_info", ""),
                                       topics.get("depth", ""))
    common = dict(
        package="offroad_seg_ros", executable="segmentation_node", name=value["name"], namespace=value["namespace"],
        parameters=node_parameters(value["params_file"], value, {"cameras": list(cameras)}),
        remappings=remappings, ros_arguments=ros_arguments(value["log_level"]), output="screen", emulate_tty=True,
        additional_env=transport_env(os.environ, get_package_share_directory("offroad_seg_ros"),
                                     flag("large_frames", value["large_frames"])),
    )
    if value["lifecycle"].lower() == "true":
        return [LifecycleNode(arguments=["--lifecycle"], **common)]
    return [Node(**common)]


def generate_launch_description():
    share = get_package_share_directory("offroad_seg_ros")
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value="", description=text)
          for name, text in PARAMETER_ARGUMENTS.items()),
        DeclareLaunchArgument("cameras_file", default_value=os.path.join(share, "config", "cameras.yaml"),
                              description="YAML: cameras: {name: {image: topic, camera_info: topic, depth: topic}}"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "segment.yaml"),
                              description="node parameters YAML"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("name", default_value="segmentation_node", description="name of the node"),
        DeclareLaunchArgument("log_level", default_value="", description="debug | info | warn | error | fatal"),
        DeclareLaunchArgument("lifecycle", default_value="false",
                              description="run as a managed lifecycle node (configure / activate by a manager)"),
        DeclareLaunchArgument("large_frames", default_value="true",
                              description="give the node the Fast DDS large-frame profile (config/fastdds_large_frames"
                                          ".xml) when no profile is set and the RMW is Fast DDS; false: never"),
        OpaqueFunction(function=_nodes),
    ])
