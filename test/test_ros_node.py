"""On a ROS 2 machine: launch the node on a tiny random-weights artifact, publish
Images, check the mask's header, size, encoding and values. Skips cleanly
where rclpy is not installed (pip-only machines, CI without ROS)."""

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed")
launch_testing = pytest.importorskip("launch_testing")

import launch_ros.actions  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

import launch  # noqa: E402


@pytest.mark.launch_test
def generate_test_description(tmp_path_factory=None):
    import tempfile

    from conftest import make_artifact

    from offroad_seg_ros.core.classes import ClassTable

    art = make_artifact(__import__("pathlib").Path(tempfile.mkdtemp()) / "tiny", ClassTable.default())
    node = launch_ros.actions.Node(
        package="offroad_seg_ros", executable="segmentation_node", name="segmentation_node",
        parameters=[{"model": str(art), "device": "cpu"}], remappings=[("image", "/test/image")],
    )
    return launch.LaunchDescription([node, launch_testing.actions.ReadyToTest()])


class TestMask:
    def test_mask_header_size_and_values(self, proc_output):
        rclpy.init()
        node = rclpy.create_node("offroad_seg_test")
        got = []
        node.create_subscription(Image, "/segmentation_node/mask", got.append, 10)
        pub = node.create_publisher(Image, "/test/image", qos_profile_sensor_data)
        img = Image(height=54, width=96, encoding="rgb8", step=96 * 3,
                    data=np.random.default_rng(0).integers(0, 255, 54 * 96 * 3, dtype=np.uint8).tobytes())
        img.header.frame_id = "cam"
        img.header.stamp.sec = 42
        end = time.monotonic() + 60
        while not got and time.monotonic() < end:
            pub.publish(img)
            rclpy.spin_once(node, timeout_sec=0.5)
        node.destroy_node()
        rclpy.shutdown()
        assert got, "no mask received"
        mask = got[0]
        assert (mask.header.frame_id, mask.header.stamp.sec) == ("cam", 42)
        assert (mask.height, mask.width, mask.encoding) == (54, 96, "mono8")
        assert max(mask.data) < 10
