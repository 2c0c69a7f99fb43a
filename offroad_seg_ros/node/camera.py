"""One camera of the node without rclpy: its topic names, its frame pipeline
and ground outputs, its counters, rate limit and diagnostics summary. The node
keeps its publishers here, and nothing else."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from offroad_seg_ros.core.stamps import to_ns
from offroad_seg_ros.data.camera_checks import CameraChecks
from offroad_seg_ros.data.image_msgs import header_stamp_ns
from offroad_seg_ros.ground.mapper import GroundFrame, GroundMapper
from offroad_seg_ros.ground.projection import CameraPose, ClassCosts
from offroad_seg_ros.inference.outputs import KNOWN_MASK
from offroad_seg_ros.inference.segmenter import Segmenter
from offroad_seg_ros.node.health import WARN, Health
from offroad_seg_ros.node.latest import LatestFrameWorker
from offroad_seg_ros.node.params import NodeConfig
from offroad_seg_ros.node.pipeline import FramePipeline, FrameResult, wanted_outputs


def camera_topic(name: str, base: str) -> str:
    """An input topic: `<name>/<base>`, or `<base>` in the single-camera layout (name '')."""
    return f"{name}/{base}" if name else base


def camera_output(name: str, base: str) -> str:
    """An output topic in the node's namespace: `~/<name>/<base>`, or `~/<base>`."""
    return f"~/{name}/{base}" if name else f"~/{base}"


def ground_mapper(c: NodeConfig, pose: list[float], seg: Segmenter, info_topic: str) -> GroundMapper:
    """A camera's ground outputs, as the parameters ask (the grid is the node's)."""
    assert c.grid is not None
    costs = ClassCosts(seg.classes, seg.cost_lut.cpu().numpy(), seg.novel_cost)
    return GroundMapper(CameraPose.from_list(pose), c.grid, costs, c.mapper, info_topic=info_topic, count=c.fused)


@dataclass
class Camera:
    name: str  # "" = the single-camera layout (image, ~/mask)
    pipeline: FramePipeline
    ground: GroundMapper | None = None
    pubs: dict[str, Any] = field(default_factory=dict)  # output name (image outputs, grid outputs) -> publisher
    last_accept: float = -float("inf")
    rate_limited: int = 0
    publish_failures: int = 0

    @classmethod
    def configured(cls, name: str, c: NodeConfig, seg: Segmenter, resolve: Callable[[str], str]) -> Camera:
        """A camera as the node's parameters ask, without its ROS parts; `resolve` gives a topic's full name."""
        p = c.params
        health = Health(resolve(camera_topic(name, c.image_topic)), 3 * p["diagnostics_period"])
        return cls(name, FramePipeline(seg, compressed=p["compressed"], max_pixels=p["max_pixels"],
                                       input_bits=p["input_bits"], health=health, checks=CameraChecks(c.checks),
                                       degraded_policy=p["degraded_policy"], shift_policy=p["shift_policy"]))

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
            wanted.append(KNOWN_MASK)
        return wanted

    @property
    def label(self) -> str:
        return f"{self.name} segmentation" if self.name else "segmentation"

    def arrived(self, raw: bytes | memoryview) -> None:
        """A frame reached the node: its stamp counts the frames missing before it upstream. Called
        before max_rate and the newest-frame policy, whose frames did arrive."""
        stamp = header_stamp_ns(raw)
        if stamp is not None:
            self.pipeline.health.upstream.add(stamp)

    def accept(self, now: float, min_period: float) -> bool:
        """max_rate: a frame within `min_period` of the last accepted one is counted and not taken."""
        if min_period and now - self.last_accept < min_period:
            self.rate_limited += 1
            return False
        self.last_accept = now
        return True

    def ground_inputs(self) -> list[tuple[str, Callable[[bytes], None]]]:
        """(input topic base, raw callback) of the ground outputs: camera_info, and depth if used."""
        g = self.ground
        if g is None:
            return []
        return [("camera_info", g.on_camera_info), *([("depth", g.on_depth)] if g.depth else [])]

    def diagnostics(self, worker: LatestFrameWorker[Any]) -> tuple[int, str, list[tuple[str, str]]]:
        """(level, message, key/values) of this camera's DiagnosticStatus: the
        frames' health, with the ground outputs' condition competing."""
        warning = self.ground.condition() if self.ground is not None else None
        level, message, values = self.pipeline.diagnostics(
            worker.received_by.get(self.name, 0), worker.dropped_by.get(self.name, 0), self.rate_limited,
            self.publish_failures, extra=[(WARN, warning)] if warning else None)
        if self.ground is not None:
            values += self.ground.values()
        return level, message, values

    def ground_frame(self, result: FrameResult) -> GroundFrame | None:
        """The frame's grid; None without ground outputs, for a withheld frame, or when
        it got none (counted in diagnostics)."""
        if self.ground is None or result.withheld:
            return None
        return self.ground.project(result.known_mask, to_ns(result.header))
