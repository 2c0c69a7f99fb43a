"""One camera of the node without rclpy: its topic names, its frame pipeline
and ground outputs, its counters, rate limit and diagnostics summary. The node
keeps its publishers and subscriptions here, and nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from offroad_seg_ros.ground.mapper import GroundFrame, GroundMapper
from offroad_seg_ros.ground.projection import CameraPose, ClassCosts
from offroad_seg_ros.inference.segmenter import Segmenter
from offroad_seg_ros.node.health import WARN
from offroad_seg_ros.node.messages import cloud_fields, grid_fields, header_fields
from offroad_seg_ros.node.params import NodeConfig
from offroad_seg_ros.node.pipeline import FramePipeline, wanted_outputs


def camera_topic(name: str, base: str) -> str:
    """An input topic: `<name>/<base>`, or `<base>` in the single-camera layout (name '')."""
    return f"{name}/{base}" if name else base


def camera_output(name: str, base: str) -> str:
    """An output topic in the node's namespace: `~/<name>/<base>`, or `~/<base>`."""
    return f"~/{name}/{base}" if name else f"~/{base}"


def ground_mapper(c: NodeConfig, pose: list[float], seg: Segmenter, info_topic: str) -> GroundMapper:
    """A camera's ground outputs, as the parameters ask (the grid is the node's)."""
    assert c.grid is not None
    p = c.params
    return GroundMapper(CameraPose.from_list(pose), c.grid, ClassCosts(seg.classes, seg.cost_lut.cpu().numpy()),
                        rectified=p["rectified"], depth=p["depth"], depth_fallback=p["depth_fallback"],
                        depth_slop=p["depth_slop"], info_topic=info_topic, count=c.fused)


@dataclass
class Camera:
    name: str  # "" = the single-camera layout (image, ~/mask)
    pipeline: FramePipeline
    ground: GroundMapper | None = None
    pubs: dict[str, Any] = field(default_factory=dict)  # image output name -> publisher
    grid_pub: Any = None
    cloud_pub: Any = None
    subs: list[Any] = field(default_factory=list)
    last_accept: float = -float("inf")
    rate_limited: int = 0
    publish_failures: int = 0

    def topic(self, base: str) -> str:
        return camera_topic(self.name, base)

    def output(self, base: str) -> str:
        return camera_output(self.name, base)

    def subscribers(self, output: str) -> int:
        return int(self.pubs[output].get_subscription_count())

    def wanted(self, enabled: dict[str, bool]) -> list[str]:
        """The outputs to compute for the next frame (see wanted_outputs), and the
        known mask (unsure pixels unknown) whenever the ground outputs project it."""
        wanted = wanted_outputs(enabled, self.subscribers)
        if self.ground is not None:
            wanted.append("known_mask")
        return wanted

    @property
    def label(self) -> str:
        return f"{self.name} segmentation" if self.name else "segmentation"

    def accept(self, now: float, min_period: float) -> bool:
        """max_rate: a frame within `min_period` of the last accepted one is counted and not taken."""
        if min_period and now - self.last_accept < min_period:
            self.rate_limited += 1
            return False
        self.last_accept = now
        return True

    def diagnostics(self, received: int, dropped: int) -> tuple[int, str, list[tuple[str, str]]]:
        """(level, message, key/values) of this camera's DiagnosticStatus: the
        frames' health, with the ground outputs' condition competing."""
        warning = self.ground.condition() if self.ground is not None else None
        level, message, values = self.pipeline.diagnostics(
            received, dropped, self.rate_limited, self.publish_failures, extra=[(WARN, warning)] if warning else None)
        if self.ground is not None:
            values += self.ground.values()
        return level, message, values

    def ground_frame(self, mask: Any, sec: int, nanosec: int) -> GroundFrame | None:
        """The frame's grid, or None when it got none (counted in diagnostics)."""
        assert self.ground is not None
        return self.ground.project(mask, sec * 10**9 + nanosec)


def ground_fields(frame: GroundFrame, sec: int, nanosec: int,
                  c: NodeConfig) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """A grid's ~/grid and ~/obstacles message fields (None for those not published)."""
    assert c.grid is not None
    header = header_fields(sec, nanosec, str(c.params["base_frame"]))
    grid = grid_fields(c.grid, frame.occupancy(), header) if c.params["publish_grid"] else None
    cloud = None
    if c.params["publish_obstacles"]:
        cloud = cloud_fields(frame.points(c.grid, float(c.params["obstacle_height"])), header)
    return grid, cloud
