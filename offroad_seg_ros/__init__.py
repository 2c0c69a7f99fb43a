"""offroad-seg runtime, by role: `core` (class table, preprocessing, network,
artifact, metrics), `inference` (the Segmenter and its backends), `data`
(dataset, rosbag2, sensor_msgs images), `evaluation`, `ground` (projection),
`node` (the ROS 2 node and its ROS-free logic) and `tools` (the offline
commands that drive or inspect the runtime). Only `node.node`, `node.process` and
`tools.replay` import rclpy."""

__version__ = "0.1.0"
