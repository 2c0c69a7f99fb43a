"""Replay evaluation on a ROS machine: play a bag made by `offroad-seg bag`, run
the node on it, and record the node's masks with the ground truth into a new
bag that `offroad-seg eval OUT --predictions /segmentation_node/mask` scores.

ros2 launch offroad_seg_ros evaluate.launch.py bag:=test_bag model:=artifact out:=replay_bag

Playback is slowed (`rate`, default 0.2) so the node keeps up: the node keeps
only the newest frame, and a frame it drops has no prediction in the output
bag (the evaluator reports it as unmatched). The node subscribes best effort
(sensor data QoS); `ros2 bag play` publishes reliable by default, which a best
effort subscriber accepts. Recording subscribes reliable to the node's
outputs, which the node publishes reliable.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    RegisterEventHandler,
    Shutdown,
    TimerAction,
)
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription


def generate_launch_description():
    segment = os.path.join(get_package_share_directory("offroad_seg_ros"), "launch", "segment.launch.py")
    bag, out = LaunchConfiguration("bag"), LaunchConfiguration("out")
    record = ExecuteProcess(
        cmd=["ros2", "bag", "record", "-s", "mcap", "-o", out, "/segmentation_node/mask",
             LaunchConfiguration("gt_topic"), LaunchConfiguration("name_topic")],
        output="screen",
    )
    play = ExecuteProcess(
        cmd=["ros2", "bag", "play", bag, "--rate", LaunchConfiguration("rate"),
             "--topics", LaunchConfiguration("image_topic"), LaunchConfiguration("gt_topic"),
             LaunchConfiguration("name_topic")],
        output="screen",
    )
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="input bag (offroad-seg bag)"),
        DeclareLaunchArgument("model", description="model artifact directory"),
        DeclareLaunchArgument("out", default_value="replay_bag", description="output bag"),
        DeclareLaunchArgument("rate", default_value="0.2", description="playback rate"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw"),
        DeclareLaunchArgument("gt_topic", default_value="/camera/segmentation"),
        DeclareLaunchArgument("name_topic", default_value="/camera/image_name"),
        DeclareLaunchArgument("device", default_value="auto"),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(segment),
            launch_arguments={"model": LaunchConfiguration("model"), "image": LaunchConfiguration("image_topic"),
                              "device": LaunchConfiguration("device")}.items(),
        ),
        record,
        # Give the node time to load the model and the recorder to subscribe.
        TimerAction(period=8.0, actions=[play]),
        RegisterEventHandler(OnProcessExit(target_action=play, on_exit=[
            TimerAction(period=3.0, actions=[Shutdown(reason="bag finished")])])),
    ])
