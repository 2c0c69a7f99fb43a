"""The fields of the node's outgoing messages, without rclpy or the message
packages: plain (nested) mappings that `fill` copies into a message object.
The node only picks the message type; what goes into it is decided here and
tested without ROS."""

from __future__ import annotations

import array
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

from offroad_seg_ros.core.stamps import StampLike
from offroad_seg_ros.ground.projection import GridSpec

M = TypeVar("M")

# sensor_msgs/PointField of ~/obstacles: all FLOAT32 (datatype 7), count 1.
POINT_FIELDS = (("x", 0), ("y", 4), ("z", 8), ("cost", 12))
FLOAT32 = 7


def fill(msg: M, fields: Mapping[str, Any]) -> M:
    """Set `msg`'s fields from `fields`; a nested mapping fills the sub-message of that name."""
    for key, value in fields.items():
        if isinstance(value, Mapping):
            fill(getattr(msg, key), value)
        else:
            setattr(msg, key, value)
    return msg


def header_fields(stamp: StampLike, frame_id: str) -> dict[str, Any]:
    return {"stamp": {"sec": int(stamp.sec), "nanosec": int(stamp.nanosec)}, "frame_id": frame_id}


def grid_fields(spec: GridSpec, occupancy: np.ndarray, header: Mapping[str, Any]) -> dict[str, Any]:
    """nav_msgs/OccupancyGrid: int8 occupancy (rows, cols), row-major from the
    origin corner, with the input frame's stamp as the map load time."""
    x, y = (float(v) for v in spec.origin)
    return {"header": header,
            "info": {"map_load_time": header["stamp"], "resolution": float(spec.resolution),
                     "width": spec.cols, "height": spec.rows,
                     "origin": {"position": {"x": x, "y": y}, "orientation": {"w": 1.0}}},
            "data": array.array("b", np.ascontiguousarray(occupancy, np.int8).tobytes())}


def cloud_fields(points: np.ndarray, header: Mapping[str, Any]) -> dict[str, Any]:
    """sensor_msgs/PointCloud2 fields (less `fields`, see POINT_FIELDS) for (N, 4)
    float32 x, y, z, cost: one unorganised row, 16 bytes a point, little-endian."""
    pts = np.ascontiguousarray(points, dtype="<f4")
    return {"header": header, "height": 1, "width": int(pts.shape[0]), "is_bigendian": False, "point_step": 16,
            "row_step": 16 * int(pts.shape[0]), "is_dense": True, "data": pts.tobytes()}


def status_fields(level: int, name: str, message: str, hardware_id: str) -> dict[str, Any]:
    """diagnostic_msgs/DiagnosticStatus, less its key/values (a list of KeyValue)."""
    return {"level": bytes([level]), "name": name, "message": message, "hardware_id": hardware_id}
