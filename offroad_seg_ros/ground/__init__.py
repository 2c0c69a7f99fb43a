"""Segmented frames onto the ground around the robot: projection, the node's ground outputs, previews."""
