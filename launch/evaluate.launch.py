"""Replay evaluation on a ROS machine: play a bag made by `offroad-seg bag`, run
the node on it, and record the node's masks with the ground truth into a new
bag that `offroad-seg eval OUT --predictions <namespace>/segmentation_node/mask` scores.

ros2 launch offroad_seg_ros evaluate.launch.py bag:=test_bag model:=artifact out:=replay_bag

The node runs as a lifecycle node that this launch file configures and activates; the bag
starts playing when the node is active (its model loaded and warmed up), not after a guessed
delay. Playback is slowed (`rate`, default 0.2) so the node keeps up: the node keeps only the
newest frame, and a frame it drops has no prediction in the output bag (the evaluator reports it
as unmatched). The node subscribes best effort (sensor data QoS); `ros2 bag play` publishes
reliable by default, which a best effort subscriber accepts. Recording subscribes reliable to
the node's outputs, which the node publishes reliable. The recorded mask topic follows
`namespace` and `name` (offroad_seg_ros/node/launch_args.py, node_topic).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    OpaqueFunction,
    RegisterEventHandler,
    Shutdown,
    TimerAction,
)
from launch.event_handlers import OnProcessExit
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from launch import LaunchDescription
from offroad_seg_ros.node.launch_args import image_remappings, node_parameters, node_topic, transport_env


def _transition(node, transition_id):
    return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id))


def _evaluation(context):
    value = {name: LaunchConfiguration(name).perform(context) for name in (
        "bag", "model", "out", "rate", "image_topic", "gt_topic", "name_topic", "device", "namespace", "name",
        "params_file")}
    share = get_package_share_directory("offroad_seg_ros")
    node = LifecycleNode(
        package="offroad_seg_ros", executable="segmentation_node", name=value["name"], namespace=value["namespace"],
        arguments=["--lifecycle"], parameters=node_parameters(value["params_file"], value),
        remappings=image_remappings("", value["image_topic"]), additional_env=transport_env(os.environ, share),
        output="screen", emulate_tty=True,
    )
    record = ExecuteProcess(
        cmd=["ros2", "bag", "record", "-s", "mcap", "-o", value["out"],
             node_topic(value["namespace"], value["name"], "mask"), value["gt_topic"], value["name_topic"]],
        output="screen",
    )
    play = ExecuteProcess(
        cmd=["ros2", "bag", "play", value["bag"], "--rate", value["rate"],
             "--topics", value["image_topic"], value["gt_topic"], value["name_topic"]],
        output="screen",
    )
    return [
        node, record,
        RegisterEventHandler(OnStateTransition(target_lifecycle_node=node, goal_state="inactive",
                                               entities=[_transition(node, Transition.TRANSITION_ACTIVATE)])),
        RegisterEventHandler(OnStateTransition(target_lifecycle_node=node, goal_state="active", entities=[play])),
        RegisterEventHandler(OnProcessExit(target_action=play, on_exit=[
            TimerAction(period=3.0, actions=[Shutdown(reason="bag finished")])])),
        _transition(node, Transition.TRANSITION_CONFIGURE),
    ]


def generate_launch_description():
    share = get_package_share_directory("offroad_seg_ros")
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="input bag (offroad-seg bag)"),
        DeclareLaunchArgument("model", description="model artifact directory"),
        DeclareLaunchArgument("out", default_value="replay_bag", description="output bag"),
        DeclareLaunchArgument("rate", default_value="0.2", description="playback rate"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw"),
        DeclareLaunchArgument("gt_topic", default_value="/camera/segmentation"),
        DeclareLaunchArgument("name_topic", default_value="/camera/image_name"),
        DeclareLaunchArgument("device", default_value=""),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("name", default_value="segmentation_node", description="name of the node"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "segment.yaml"),
                              description="node parameters YAML"),
        OpaqueFunction(function=_evaluation),
    ])
