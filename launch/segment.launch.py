"""Start segmentation_node on one camera.

ros2 launch offroad_seg_ros segment.launch.py model:=/path/to/artifact image:=/camera/image_raw
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("offroad_seg_ros"), "config", "segment.yaml")
    args = [
        DeclareLaunchArgument("model", description="model artifact directory"),
        DeclareLaunchArgument("image", default_value="image", description="input image topic"),
        DeclareLaunchArgument("compressed", default_value="false",
                              description="subscribe to <image>/compressed (jpeg/png)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("params_file", default_value=default_params, description="node parameters YAML"),
        DeclareLaunchArgument("device", default_value="auto", description="auto | cpu | cuda | cuda:N"),
        DeclareLaunchArgument("backend", default_value="torch",
                              description="torch | onnxruntime | openvino (CPU; the artifact needs model.onnx)"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag playback)"),
        DeclareLaunchArgument("camera_info", default_value="camera_info",
                              description="camera_info topic (for the ground outputs)"),
        DeclareLaunchArgument("lifecycle", default_value="false",
                              description="run as a managed lifecycle node (configure / activate by a manager)"),
    ]
    image = LaunchConfiguration("image")
    common = dict(
        package="offroad_seg_ros",
        executable="segmentation_node",
        name="segmentation_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "model": LaunchConfiguration("model"),
                "device": LaunchConfiguration("device"),
                "backend": LaunchConfiguration("backend"),
                "compressed": ParameterValue(LaunchConfiguration("compressed"), value_type=bool),
                "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
            },
        ],
        remappings=[
            ("image", image),
            ("image/compressed", PythonExpression(["'", image, "' + '/compressed'"])),
            ("camera_info", LaunchConfiguration("camera_info")),
        ],
        output="screen",
        emulate_tty=True,
    )
    lifecycle = LaunchConfiguration("lifecycle")
    return LaunchDescription([
        *args,
        Node(condition=UnlessCondition(lifecycle), **common),
        LifecycleNode(condition=IfCondition(lifecycle), arguments=["--lifecycle"], **common),
    ])
