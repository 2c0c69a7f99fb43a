"""Segmented frames onto the ground around the robot: projection and the node's ground outputs."""
