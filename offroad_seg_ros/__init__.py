"""offroad-seg runtime: class table, model artifacts, the Segmenter, metrics,
rosbag tools and the evaluator. Only `offroad_seg_ros.node` imports rclpy."""

__version__ = "0.1.0"
