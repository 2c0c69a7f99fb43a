"""Offline commands that drive or inspect the runtime, behind `offroad-seg`:
`replay` (a bag into a running node over DDS; imports rclpy), `project`
(frames drawn onto the ground), `temperature` (the confidence's temperature,
fitted on a validation split), `quantize` (an int8 model for CPU robots),
`check` (a dataset's layout and class IDs). Nothing below `tools` imports them."""
