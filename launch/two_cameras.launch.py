"""Example: two cameras, one node each, in their own namespaces.

ros2 launch offroad_seg_ros two_cameras.launch.py model:=/path/to/artifact
Outputs: /front/segmentation_node/mask, /rear/segmentation_node/mask, ...
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription


def generate_launch_description():
    segment = os.path.join(get_package_share_directory("offroad_seg_ros"), "launch", "segment.launch.py")
    cameras = {"front": "/front_camera/image_raw", "rear": "/rear_camera/image_raw"}
    includes = [
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(segment),
            launch_arguments={"model": LaunchConfiguration("model"), "image": topic, "namespace": ns,
                              "device": LaunchConfiguration("device"),
                              "backend": LaunchConfiguration("backend")}.items(),
        )
        for ns, topic in cameras.items()
    ]
    return LaunchDescription([
        DeclareLaunchArgument("model", description="model artifact directory"),
        DeclareLaunchArgument("device", default_value="auto"),
        DeclareLaunchArgument("backend", default_value="torch"),
        *includes,
    ])
