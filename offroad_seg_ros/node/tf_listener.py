"""TF for the ground outputs: each camera's pose and odom -> base at a frame's stamp.

Where tf2_ros imports (every full ROS 2 install) its Buffer and TransformListener do the work,
adapted to ground/transforms.py's TransformLookup. Elsewhere (ROS 2's PyPI wheels have no tf2)
ground/transforms.py's TransformBuffer is filled by subscriptions of our own to
tf2_msgs/TFMessage on /tf and /tf_static with tf2_ros's QoS: both reliable with depth 100,
/tf_static transient local (tf2_ros/qos.hpp: StaticListenerQoS), so static transforms
published before the node started still arrive. Without tf2_msgs either, every lookup fails
and says why (the cameras keep camera_pose). Lookups come from the worker thread; both
buffers are thread-safe.
"""

from __future__ import annotations

import importlib
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time

from offroad_seg_ros.ground.transforms import Transform, TransformBuffer, TransformError
from offroad_seg_ros.node.params import NodeConfig

TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


class Tf2Lookup:
    """tf2_ros.Buffer as a TransformLookup: its TransformStamped converted, its exceptions mapped to TransformError."""

    def __init__(self, tf2_ros: Any) -> None:
        self.tf2_ros = tf2_ros
        self.buffer = tf2_ros.Buffer()  # 10 s of history, as the node's own buffer keeps

    def set_transform(self, msg: Any, static: bool = False) -> None:
        """One geometry_msgs/TransformStamped (the known-answer tests feed both buffers this way)."""
        if static:
            self.buffer.set_transform_static(msg, "offroad_seg")
        else:
            self.buffer.set_transform(msg, "offroad_seg")

    def lookup(self, target: str, source: str, stamp_ns: int) -> Transform:
        t2 = self.tf2_ros
        try:
            msg = self.buffer.lookup_transform(target, source, Time(nanoseconds=stamp_ns))
        except t2.ExtrapolationException as exc:
            raise TransformError("extrapolation", f"{target} <- {source}: {exc}") from None
        except t2.ConnectivityException as exc:
            raise TransformError("connectivity", f"{target} <- {source}: {exc}") from None
        except t2.TransformException as exc:  # LookupException, InvalidArgumentException
            raise TransformError("lookup", f"{target} <- {source}: {exc}") from None
        return Transform.from_msg(msg.transform)


class TfListener:
    """The node's TF: a lookup (TransformLookup) and the subscriptions that feed it."""

    def __init__(self, node: Node) -> None:
        self.node = node
        tf2_ros = _module("tf2_ros")
        self.lookup_impl: Tf2Lookup | TransformBuffer = Tf2Lookup(tf2_ros) if tf2_ros else TransformBuffer()
        self.listener: Any = None  # tf2_ros.TransformListener: kept, its subscriptions die with it
        self.missing = "" if tf2_ros or _module("tf2_msgs.msg") else "neither tf2_ros nor tf2_msgs imports here"

    @staticmethod
    def wanted(c: NodeConfig) -> bool:
        """TF is listened to only when something uses it: a camera pose from TF, or ~/map's odom_frame."""
        return c.mapper is not None and (c.mapper.camera_pose_source == "tf"
                                         or c.local_map is not None and bool(c.params["odom_frame"]))

    def lookup(self, target: str, source: str, stamp_ns: int) -> Transform:
        if self.missing:
            raise TransformError("lookup", f"no TF: {self.missing}")
        return self.lookup_impl.lookup(target, source, stamp_ns)

    def subscribe(self) -> list[Any]:
        """Subscribe to /tf and /tf_static; the subscriptions (the node destroys them at deactivate)."""
        if self.missing:
            self.node.get_logger().warning(f"no camera poses or odometry from TF: {self.missing}")
            return []
        if isinstance(self.lookup_impl, Tf2Lookup):
            self.listener = self.lookup_impl.tf2_ros.TransformListener(self.lookup_impl.buffer, self.node,
                                                                       qos=TF_QOS, static_qos=TF_STATIC_QOS)
            return [self.listener.tf_sub, self.listener.tf_static_sub]
        buffer = self.lookup_impl
        tf_message = _module("tf2_msgs.msg").TFMessage
        return [self.node.create_subscription(tf_message, "/tf", lambda m: buffer.add_message(m, False), TF_QOS),
                self.node.create_subscription(tf_message, "/tf_static", lambda m: buffer.add_message(m, True),
                                              TF_STATIC_QOS)]
