"""The ROS 2 node (the one class that imports rclpy) and its ROS-free per-frame logic."""
