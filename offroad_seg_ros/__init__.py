"""offroad-seg runtime, by role: `core` (class table, preprocessing, network,
artifact, metrics), `inference` (the Segmenter and its backends), `data`
(dataset, rosbag2, sensor_msgs images), `evaluation`, `ground` (projection)
and `node` (the ROS 2 node and its ROS-free logic). Only `node.node` and
`node.replay` import rclpy."""

__version__ = "0.1.0"
