"""Data in and out without ROS: the Duality dataset layout, rosbag2 files, sensor_msgs images."""
