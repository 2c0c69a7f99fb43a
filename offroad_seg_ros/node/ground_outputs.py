"""The node's ground outputs past each camera's own grid, without rclpy: the
fusion of several cameras' grids (~/grid, ~/obstacles), the rolling local map
(~/map), the message fields of all of them, and the map's diagnostics. The
robot's pose for ~/map comes from odom_topic, or with odom_frame from TF
(odom_frame <- base_frame at each frame's stamp)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from offroad_seg_ros.core.stamps import NS_PER_S, from_ns
from offroad_seg_ros.ground.fusion import GridFusion
from offroad_seg_ros.ground.local_map import LocalMap, Pose2D, odometry_pose
from offroad_seg_ros.ground.mapper import GroundFrame
from offroad_seg_ros.ground.projection import occupancy_values
from offroad_seg_ros.ground.transforms import TransformError, TransformLookup
from offroad_seg_ros.node.health import OK, WARN
from offroad_seg_ros.node.messages import cloud_fields, grid_fields, header_fields
from offroad_seg_ros.node.params import NodeConfig


class GroundOutputs:
    """What the cameras' grids feed: the fusion (several cameras) and ~/map, when published."""

    def __init__(self, c: NodeConfig, tf: TransformLookup | None = None) -> None:
        assert c.grid is not None
        self.config, self.grid = c, c.grid
        self.fusion = GridFusion(c.params["fused_max_age"]) if c.fused else None
        self.local_map = LocalMap(c.local_map, c.grid) if c.local_map is not None else None
        odom_frame = str(c.params["odom_frame"])
        self.odom_tf = (tf, odom_frame, str(c.params["base_frame"])) if odom_frame and tf is not None else None
        self._fresh = False  # a grid came since the last fused one

    # -- frames (worker thread) ----------------------------------------------------
    def take(self, camera: str, frame: GroundFrame, stamp_ns: int,
             wanted: Collection[str]) -> dict[str, dict[str, Any]]:
        """One camera's grid: the message fields of its own grid outputs (of those `wanted`),
        and into the fusion and the map (at its own stamp's pose)."""
        out = self.fields(frame, stamp_ns, wanted)
        if self.fusion is not None:
            self.fusion.update(camera, frame, stamp_ns)
            self._fresh = True
        if self.local_map is not None:
            self._integrate(frame, stamp_ns)
        return out

    def _integrate(self, frame: GroundFrame, stamp_ns: int) -> None:
        m = self.local_map
        assert m is not None
        if self.odom_tf is None:
            m.integrate(frame, stamp_ns)
            return
        tf, odom, base = self.odom_tf
        try:
            t = tf.lookup(odom, base, stamp_ns)
        except TransformError as exc:
            m.pose_missing(f"no transform {odom} <- {base} at {stamp_ns / NS_PER_S:.6f} s: {exc}")
            return
        m.integrate_at(frame, stamp_ns, Pose2D(t.translation[0], t.translation[1], t.yaw), odom)

    def fused(self, wanted: Collection[str]) -> dict[str, dict[str, Any]]:
        """The fused grid's fields (of those `wanted`) once after new grids came (a batch),
        stamped with the newest grid in it; else none."""
        latest = self.fusion.fused() if self.fusion is not None and self._fresh else None
        self._fresh = False
        return {} if latest is None else self.fields(latest[0], latest[1], wanted)

    def fields(self, frame: GroundFrame, stamp_ns: int, wanted: Collection[str]) -> dict[str, dict[str, Any]]:
        """A grid's message fields by output (NodeConfig.grid_outputs), of those `wanted`."""
        p = self.config.params
        header = header_fields(from_ns(stamp_ns), str(p["base_frame"]))
        out = {}
        if "grid" in wanted:
            out["grid"] = grid_fields(self.grid, frame.occupancy(), header)
        if "obstacles" in wanted:
            out["obstacles"] = cloud_fields(frame.points(self.grid, float(p["obstacle_height"])), header)
        return out

    # -- ~/map (executor and timer) ---------------------------------------------------
    def on_odometry(self, msg: Any) -> None:
        """A nav_msgs/Odometry message: the robot's pose that places grids into ~/map (without odom_frame)."""
        if self.local_map is not None and self.odom_tf is None:
            self.local_map.on_odometry(*odometry_pose(msg))

    def map_fields(self) -> dict[str, Any] | None:
        """~/map's nav_msgs/OccupancyGrid fields in the odometry frame; None before odometry."""
        m = self.local_map
        snapshot = m.snapshot() if m is not None else None
        if snapshot is None:
            return None
        assert m is not None
        cost, window, stamp = snapshot
        return grid_fields(window, occupancy_values(cost), header_fields(from_ns(stamp), m.frame_id or "odom"))

    def diagnostics(self) -> list[tuple[str, int, str, list[tuple[str, str]]]]:
        """(label, level, message, key/values) of the local map's DiagnosticStatus, if it runs."""
        m = self.local_map
        if m is None:
            return []
        problem = m.condition()
        source = (f"tf {self.odom_tf[1]} <- {self.odom_tf[2]}" if self.odom_tf is not None
                  else f"odom_topic {self.config.params['odom_topic']}")
        return [("local map", WARN if problem else OK, problem or f"{m.frames} frame(s) placed",
                 [*m.values(), ("odometry_source", source)])]
