"""segmentation_node: camera images in, class masks and traversability cost out.

Thin glue around `FramePipeline` (all maths and parsing live there): declares
parameters, subscribes raw (serialized) with the sensor-data QoS, hands the
newest frame to one worker thread, publishes outputs with the input header and
/diagnostics once per `diagnostics_period`.
"""

from __future__ import annotations

import array
import sys
import time
from typing import Any

import rclpy
import rclpy.logging
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import OccupancyGrid
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from .artifact import ArtifactError
from .ground import POINT_FIELDS, GroundMapper, pointcloud_fields
from .health import WARN, Health
from .image_msgs import MAX_PIXELS
from .latest import LatestFrameWorker
from .model import ModelConfigError
from .pipeline import FramePipeline, check_parameters, parse_cost_overrides, wanted_outputs
from .projection import CameraPose, ClassCosts, GridSpec
from .segmenter import Segmenter
from .shutdown import Shutdown, ShutdownRequested

PARAMETERS: dict[str, tuple[Any, str]] = {
    "model": ("", "model artifact directory (model.json + weights.safetensors)"),
    "device": ("auto", "auto | cpu | cuda | cuda:N"),
    "precision": ("fp32", "fp32 | fp16 | bf16"),
    "backend": ("torch", "torch | onnxruntime"),
    "compile": (False, "torch.compile the inference path (CUDA graphs on GPU)"),
    "compressed": (False, "subscribe to image/compressed instead of image"),
    "max_pixels": (MAX_PIXELS, "frames above this many pixels are refused unread (decompression bombs)"),
    "input_bits": (16, "significant bits of 16-bit input (mono16, rgb16, bayer_*16): 12 for a 12-bit camera"),
    "publish_mask": (True, "publish ~/mask (mono8 class indices)"),
    "publish_cost": (True, "publish ~/cost (mono8 Nav2 cost)"),
    "publish_confidence": (False, "publish ~/confidence (mono8)"),
    "publish_color": (True, "publish ~/color (rgb8) while subscribed"),
    "publish_overlay": (True, "publish ~/overlay (rgb8) while subscribed"),
    "overlay_alpha": (0.5, "weight of the class colour in ~/overlay"),
    "cost_overrides": ([""], "per-class cost overrides, 'Class Name=cost'"),
    "max_rate": (0.0, "maximum processing rate in Hz (0 = unlimited)"),
    "qos_depth": (1, "input subscription queue depth"),
    "qos_reliability": ("best_effort", "input reliability: best_effort | reliable"),
    "diagnostics_period": (1.0, "seconds between /diagnostics messages"),
    "publish_grid": (False, "publish ~/grid (nav_msgs/OccupancyGrid) from camera_info and camera_pose"),
    "publish_obstacles": (False, "publish ~/obstacles (sensor_msgs/PointCloud2): obstacle-class cells"),
    "base_frame": ("base_link", "frame of ~/grid and ~/obstacles: the robot's base"),
    "camera_pose": ([0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
                    "camera body frame (x forward, z up) in base_frame: x, y, z, roll, pitch, yaw (m, rad)"),
    "rectified": (False, "images are rectified: project with camera_info's P and no distortion"),
    "grid_resolution": (0.05, "m per grid cell"),
    "grid_size": ([10.0, 10.0], "grid extent in m along x and y, centred on base_frame"),
    "max_range": (8.0, "m from base_frame; pixels landing farther stay unknown"),
    "obstacle_height": (0.3, "z of the ~/obstacles points, m"),
    "depth": (False, "place pixels by an aligned depth image (topic depth) instead of on flat ground"),
    "depth_fallback": ("flat", "a frame without a paired depth image: flat (flat ground) | skip (no grid)"),
    "depth_slop": (0.02, "s: the largest stamp difference between a colour frame and its depth image"),
}
OUTPUTS = ("mask", "cost", "confidence", "color", "overlay")


class SegmentationNode(Node):
    def __init__(self, **node_options: Any) -> None:
        super().__init__("segmentation_node", **node_options)
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text))
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        check_parameters(p)
        self.worker: LatestFrameWorker[tuple[bytes, float]] = LatestFrameWorker(self._process, self._failed)
        try:
            self._start(p)
        except BaseException:  # incl. Ctrl-C during start-up: the model thread must not outlive us
            self.worker.stop()
            raise

    def _start(self, p: dict[str, Any]) -> None:
        log = self.get_logger()
        log.info(f"loading model {p['model']} ({p['backend']}, device {p['device']}, {p['precision']})")
        # The worker thread owns the model: torch.compile keeps its CUDA
        # graphs per thread (older torch even fails on another thread), so
        # loading, warm-up and inference all run there.
        self.segmenter = self.worker.call(lambda: Segmenter(
            p["model"], device=p["device"], precision=p["precision"], backend=p["backend"],
            compile=p["compile"], cost_overrides=parse_cost_overrides(p["cost_overrides"] or []),
            overlay_alpha=p["overlay_alpha"], warmup_size=None,
        ))
        log.info("warming up" + (" (compiling: this takes a while the first time)" if p["compile"] else ""))
        self.worker.call(self.segmenter.warm_up)
        msg_type = CompressedImage if p["compressed"] else Image
        topic = "image/compressed" if p["compressed"] else "image"
        self.pipeline = FramePipeline(self.segmenter, compressed=p["compressed"], max_pixels=p["max_pixels"],
                                      input_bits=p["input_bits"],
                                      health=Health(self.resolve_topic_name(topic), 3 * p["diagnostics_period"]))
        self.enabled = {name: bool(p[f"publish_{name}"]) for name in OUTPUTS}
        self.min_period = 1.0 / p["max_rate"] if p["max_rate"] > 0 else 0.0
        self.last_accept = 0.0
        self.rate_skipped = 0

        qos = QoSProfile(depth=int(p["qos_depth"]), history=qos_profile_sensor_data.history,
                         reliability=ReliabilityPolicy.RELIABLE if p["qos_reliability"] == "reliable"
                         else ReliabilityPolicy.BEST_EFFORT)
        self.pubs = {name: self.create_publisher(Image, f"~/{name}", 1) for name in OUTPUTS if self.enabled[name]}
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 1)
        self.create_subscription(msg_type, topic, self._on_frame, qos, raw=True)
        self.ground = self._ground_outputs(p)
        # Steady time: diagnostics keep coming while a simulation (or a paused bag) holds /clock still.
        self.create_timer(float(p["diagnostics_period"]), self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        log.info(
            f"segmenting {self.resolve_topic_name(topic)} with {self.segmenter.name} on "
            f"{self.segmenter.device} ({self.segmenter.precision}, {self.segmenter.backend})"
        )

    def _ground_outputs(self, p: dict[str, Any]) -> GroundMapper | None:
        """~/grid and ~/obstacles (off by default): camera_info (and depth) in."""
        if not (p["publish_grid"] or p["publish_obstacles"]):
            return None
        size_x, size_y = (float(v) for v in p["grid_size"])
        self.grid_spec = GridSpec(p["grid_resolution"], size_x, size_y, max_range=p["max_range"])
        mapper = GroundMapper(CameraPose.from_list(list(p["camera_pose"])), self.grid_spec,
                              ClassCosts(self.segmenter.classes, self.segmenter.cost_lut.cpu().numpy()),
                              rectified=p["rectified"], depth=p["depth"], depth_fallback=p["depth_fallback"],
                              depth_slop=p["depth_slop"], info_topic=self.resolve_topic_name("camera_info"))
        self.base_frame, self.obstacle_height = str(p["base_frame"]), float(p["obstacle_height"])
        self.grid_pub = self.create_publisher(OccupancyGrid, "~/grid", 1) if p["publish_grid"] else None
        self.cloud_pub = self.create_publisher(PointCloud2, "~/obstacles", 1) if p["publish_obstacles"] else None
        self.create_subscription(CameraInfo, "camera_info", mapper.on_camera_info, qos_profile_sensor_data, raw=True)
        if p["depth"]:
            self.create_subscription(Image, "depth", mapper.on_depth, qos_profile_sensor_data, raw=True)
        return mapper

    def _publish_ground(self, mask: Any, header: Header) -> None:
        assert self.ground is not None
        frame = self.ground.project(mask, header.stamp.sec * 10**9 + header.stamp.nanosec)
        if frame is None:
            return
        out_header = Header(stamp=header.stamp, frame_id=self.base_frame)
        if self.grid_pub is not None:
            grid = OccupancyGrid(header=out_header)
            g = self.grid_spec
            grid.info.map_load_time = header.stamp
            grid.info.resolution, grid.info.width, grid.info.height = float(g.resolution), g.cols, g.rows
            grid.info.origin.position.x, grid.info.origin.position.y = (float(v) for v in g.origin)
            grid.info.origin.orientation.w = 1.0
            grid.data = array.array("b", frame.occupancy().tobytes())
            self.grid_pub.publish(grid)
        if self.cloud_pub is not None:
            fields = [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1) for n, o in POINT_FIELDS]
            self.cloud_pub.publish(PointCloud2(header=out_header, fields=fields,
                                               **pointcloud_fields(frame.points(self.grid_spec, self.obstacle_height))))

    # The subscription callback only hands over the bytes: never blocks on inference.
    def _on_frame(self, raw: bytes) -> None:
        now = time.monotonic()
        if self.min_period and now - self.last_accept < self.min_period:
            self.rate_skipped += 1
            return
        self.last_accept = now
        self.worker.submit((raw, now))

    def _process(self, item: tuple[bytes, float]) -> None:
        raw, _ = item
        wanted = wanted_outputs(self.enabled, lambda n: self.pubs[n].get_subscription_count())
        if self.ground is not None and "mask" not in wanted:
            wanted.append("mask")  # the ground outputs project the mask
        health = self.pipeline.health
        failures = health.failed
        result = self.pipeline.process(raw, wanted)
        if result is None:
            if health.failed > failures:
                self.get_logger().error(f"inference failed: {health.last_failure}", throttle_duration_sec=5.0)
            else:
                self.get_logger().warning(f"skipping bad frame: {health.last_bad}", throttle_duration_sec=5.0)
            return
        header = Header(frame_id=result.header.frame_id)
        header.stamp.sec, header.stamp.nanosec = result.header.sec, result.header.nanosec
        for name, fields in result.outputs.items():
            if name in self.pubs:
                self.pubs[name].publish(Image(header=header, **fields))
        if self.ground is not None:
            self._publish_ground(result.mask, header)
        health.frame_done(result.header.sec, result.header.nanosec, self.get_clock().now().nanoseconds * 1e-9)

    def _failed(self, item: tuple[bytes, float], exc: BaseException) -> None:
        self.get_logger().error(f"publishing failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    def _publish_diagnostics(self) -> None:
        w = self.worker
        ground_warning = self.ground.condition() if self.ground is not None else None
        level, message, values = self.pipeline.diagnostics(w.received, w.dropped, self.rate_skipped, w.failed,
                                                           extra=[(WARN, ground_warning)] if ground_warning else None)
        if self.ground is not None:
            values += self.ground.values()
        status = DiagnosticStatus(level=bytes([level]), name=f"{self.get_fully_qualified_name()}: segmentation",
                                  message=message, hardware_id=str(self.segmenter.device),
                                  values=[KeyValue(key=k, value=v) for k, v in values])
        self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                              status=[status]))

    def destroy_node(self) -> None:
        self.worker.stop()
        super().destroy_node()


STARTUP_ERRORS = (ArtifactError, ModelConfigError, ValueError, OSError)


def main(args: list[str] | None = None, shutdown: Shutdown | None = None) -> int:
    """Run the node until SIGINT / SIGTERM; 0 on a clean exit (at any moment), 1
    with one fatal line when it cannot start (bad parameter, missing model)."""
    shutdown = shutdown or Shutdown().install()
    node = None
    try:
        with shutdown.interruptible():
            # rclpy's own handlers would raise KeyboardInterrupt again on the
            # second Ctrl-C; Shutdown takes the signals instead.
            rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
            node = SegmentationNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        # A short timeout: the signal handler only sets a flag, checked here.
        while not shutdown.requested.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (ShutdownRequested, ExternalShutdownException):
        pass
    except STARTUP_ERRORS as exc:
        rclpy.logging.get_logger("segmentation_node").fatal(f"cannot start: {exc}")
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        shutdown.exiting()
    return 0


if __name__ == "__main__":
    sys.exit(main())
