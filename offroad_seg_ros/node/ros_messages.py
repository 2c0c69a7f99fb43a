"""The node's message objects: the message packages' types of its topics, and
outgoing messages built from the fields messages.py decides. No rclpy (node.py
does the talking); message packages only, so this imports where ROS is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from offroad_seg_ros.core.stamps import StampLike
from offroad_seg_ros.node.messages import FLOAT32, POINT_FIELDS, fill, header_fields, status_fields

CLOUD_FIELDS = [PointField(name=n, offset=o, datatype=FLOAT32, count=1) for n, o in POINT_FIELDS]
GROUND_INPUTS = {"camera_info": CameraInfo, "depth": Image}  # Camera.ground_inputs
GROUND_OUTPUTS = {"grid": OccupancyGrid, "obstacles": PointCloud2}  # NodeConfig.grid_outputs, and ~/map


def output_images(stamp: StampLike, frame_id: str, outputs: Mapping[str, Mapping[str, Any]]) -> dict[str, Image]:
    """A frame's image outputs (name -> Image fields), each with the input's header."""
    header = fill(Header(), header_fields(stamp, frame_id))
    return {name: Image(header=header, **fields) for name, fields in outputs.items()}


def ground_msg(name: str, fields: Mapping[str, Any]) -> Any:
    """A grid output (GROUND_OUTPUTS) from its fields (node/ground_outputs.py)."""
    return fill(PointCloud2(fields=CLOUD_FIELDS) if name == "obstacles" else OccupancyGrid(), fields)


def diagnostics_msg(reports: list[tuple[str, int, str, list[tuple[str, str]]]], node: str, hardware_id: str,
                    stamp: Any) -> DiagnosticArray:
    """/diagnostics from (label, level, message, key/values) reports, each status named `<node>: <label>`."""
    statuses = [DiagnosticStatus(values=[KeyValue(key=k, value=v) for k, v in values],
                                 **status_fields(level, f"{node}: {label}", message, hardware_id))
                for label, level, message, values in reports]
    return DiagnosticArray(header=Header(stamp=stamp), status=statuses)
