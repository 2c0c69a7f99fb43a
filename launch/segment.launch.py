"""Start segmentation_node on one camera.

ros2 launch offroad_seg_ros segment.launch.py model:=/path/to/artifact image:=/camera/image_raw

The params file (default: the installed config/segment.yaml) sets every parameter; a launch
argument overrides it only when given (offroad_seg_ros/node/launch_args.py), so `model` may come
from the YAML alone.
"""

import os

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


def _node(context):
    value = {name: LaunchConfiguration(name).perform(context) for name in (
        *PARAMETER_ARGUMENTS, "params_file", "image", "camera_info", "depth_topic", "namespace", "name",
        "log_level", "lifecycle", "large_frames")}
    common = dict(
        package="offroad_seg_ros", executable="segmentation_node", name=value["name"], namespace=value["namespace"],
        parameters=node_parameters(value["params_file"], value),
        remappings=image_remappings("", value["image"], value["camera_info"], value["depth_topic"]),
        ros_arguments=ros_arguments(value["log_level"]), output="screen", emulate_tty=True,
        additional_env=transport_env(os.environ, get_package_share_directory("offroad_seg_ros"),
                                     flag("large_frames", value["large_frames"])),
    )
    if value["lifecycle"].lower() == "true":
        return [LifecycleNode(arguments=["--lifecycle"], **common)]
    return [Node(**common)]


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("offroad_seg_ros"), "config", "segment.yaml")
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value="", description=text)
          for name, text in PARAMETER_ARGUMENTS.items()),
        DeclareLaunchArgument("params_file", default_value=default_params, description="node parameters YAML"),
        DeclareLaunchArgument("image", default_value="image", description="input image topic"),
        DeclareLaunchArgument("camera_info", default_value="camera_info",
                              description="camera_info topic (for the ground outputs)"),
        DeclareLaunchArgument("depth_topic", default_value="depth",
                              description="aligned depth image topic (with depth:=true)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("name", default_value="segmentation_node", description="name of the node"),
        DeclareLaunchArgument("log_level", default_value="", description="debug | info | warn | error | fatal"),
        DeclareLaunchArgument("lifecycle", default_value="false",
                              description="run as a managed lifecycle node (configure / activate by a manager)"),
        DeclareLaunchArgument("large_frames", default_value="true",
                              description="give the node the Fast DDS large-frame profile (config/fastdds_large_frames"
                                          ".xml) when no profile is set and the RMW is Fast DDS; false: never"),
        OpaqueFunction(function=_node),
    ])
