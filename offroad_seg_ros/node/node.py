"""segmentation_node: camera images in, class masks and traversability cost out.

Thin glue (all maths and parsing live in ROS-free modules): declares
parameters, subscribes raw (serialized) with the sensor-data QoS, hands the
newest frame of every camera to one worker thread, which runs them as one
batch, publishes outputs with each input's header, the ground outputs, and
/diagnostics once per `diagnostics_period`.

One class serves both ways of running it: a plain node that configures and
activates itself at start (the default), or a managed lifecycle node
(`--lifecycle`) that waits for configure / activate / deactivate / cleanup /
shutdown (Nav2-style bring-up). The lifecycle callbacks are the only place
where anything is created or released, in both modes.
"""

from __future__ import annotations

import array
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import rclpy
import rclpy.logging
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import OccupancyGrid
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from offroad_seg_ros.core.artifact import ArtifactError
from offroad_seg_ros.core.model import ModelConfigError
from offroad_seg_ros.data.image_msgs import MAX_PIXELS
from offroad_seg_ros.ground.mapper import POINT_FIELDS, GroundMapper, pointcloud_fields
from offroad_seg_ros.ground.projection import CameraPose, ClassCosts, GridSpec
from offroad_seg_ros.inference.segmenter import Segmenter
from offroad_seg_ros.node.health import WARN, Health
from offroad_seg_ros.node.latest import LatestFrameWorker
from offroad_seg_ros.node.pipeline import (
    FramePipeline,
    check_parameters,
    parse_cost_overrides,
    process_batch,
    wanted_outputs,
)
from offroad_seg_ros.node.shutdown import Shutdown, ShutdownRequested

PARAMETERS: dict[str, tuple[Any, str]] = {
    "cameras": ([""], "camera names: each gets <name>/image and ~/<name>/... outputs; [''] = one camera on image"),
    "model": ("", "model artifact directory (model.json + weights.safetensors)"),
    "device": ("auto", "auto | cpu | cuda | cuda:N"),
    "precision": ("fp32", "fp32 | fp16 | bf16; with backend openvino also auto | int8"),
    "backend": ("torch", "torch | onnxruntime | openvino"),
    "threads": (0, "intra-op threads of the CPU runtime (torch on the CPU, onnxruntime, openvino); 0 = its default"),
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
STARTUP_ERRORS = (ArtifactError, ModelConfigError, ValueError, OSError)
MODEL_THREAD = "segmentation-model"
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


@dataclass
class Camera:
    """One camera's topics, publishers, counts and ground outputs."""

    name: str  # "" = the single-camera layout (image, ~/mask)
    pipeline: FramePipeline
    pubs: dict[str, Any]
    ground: GroundMapper | None = None
    grid_pub: Any = None
    cloud_pub: Any = None
    subs: list[Any] = field(default_factory=list)
    last_accept: float = 0.0
    rate_limited: int = 0
    publish_failures: int = 0

    def topic(self, base: str) -> str:
        return f"{self.name}/{base}" if self.name else base

    def output(self, base: str) -> str:
        return f"~/{self.name}/{base}" if self.name else f"~/{base}"


class SegmentationNode(LifecycleNodeMixin, Node):
    def __init__(self, lifecycle: bool = False, shutdown: Shutdown | None = None, **node_options: Any) -> None:
        Node.__init__(self, "segmentation_node", **node_options)
        LifecycleNodeMixin.__init__(self, enable_communication_interface=lifecycle)
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text))
        self.worker: LatestFrameWorker[tuple[bytes, float]] | None = None
        self.segmenter: Segmenter | None = None
        self.cameras: dict[str, Camera] = {}
        self.configure_error: BaseException | None = None
        self.finalized = False
        self.lifecycle = lifecycle
        # A signal ends the waits for the model thread (load, warm-up) at once.
        self.shutdown = shutdown
        self.diag_pub: Any = None
        self._timer: Any = None
        if lifecycle:
            self.get_logger().info("lifecycle node: unconfigured, waiting for configure")
            return
        try:  # a plain node brings itself up; a failure is fatal
            if self.trigger_configure() != SUCCESS:
                raise self.configure_error or RuntimeError("configure failed")
            self.trigger_activate()
        except BaseException:  # incl. Ctrl-C while loading: leave the graph cleanly
            self.destroy_node()
            raise

    # -- lifecycle -------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Check parameters, load and warm up the model, create publishers."""
        try:
            self._configure()
        except STARTUP_ERRORS as exc:
            self.configure_error = exc
            if self.lifecycle:  # a plain node reports it as its one fatal line instead
                self.get_logger().error(f"configure failed, back to unconfigured: {exc}")
            self._release()
            return FAILURE
        except BaseException:  # incl. Ctrl-C during start-up: the model thread must not outlive us
            self._release()
            raise
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe and start publishing."""
        p = self.params
        qos = QoSProfile(depth=int(p["qos_depth"]), history=qos_profile_sensor_data.history,
                         reliability=ReliabilityPolicy.RELIABLE if p["qos_reliability"] == "reliable"
                         else ReliabilityPolicy.BEST_EFFORT)
        msg_type = CompressedImage if p["compressed"] else Image
        for cam in self.cameras.values():
            topic = cam.topic("image/compressed" if p["compressed"] else "image")
            cam.subs.append(self.create_subscription(msg_type, topic, self._frame_callback(cam), qos, raw=True))
            if cam.ground is not None:
                cam.subs.append(self.create_subscription(CameraInfo, cam.topic("camera_info"),
                                                         cam.ground.on_camera_info, qos_profile_sensor_data, raw=True))
                if p["depth"]:
                    cam.subs.append(self.create_subscription(Image, cam.topic("depth"), cam.ground.on_depth,
                                                             qos_profile_sensor_data, raw=True))
            assert self.segmenter is not None
            self.get_logger().info(
                f"segmenting {self.resolve_topic_name(topic)} with {self.segmenter.name} on "
                f"{self.segmenter.device} ({self.segmenter.precision}, {self.segmenter.backend})")
        # Steady time: diagnostics keep coming while a simulation (or a paused bag) holds /clock still.
        self._timer = self.create_timer(float(p["diagnostics_period"]), self._publish_diagnostics,
                                        clock=Clock(clock_type=ClockType.STEADY_TIME))
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop taking frames; the model stays loaded."""
        self._unsubscribe()
        if self.worker is not None:
            self.worker.idle()
        self.get_logger().info("deactivated: not processing frames, model kept")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release publishers, the model thread and the model (and its GPU memory)."""
        self._release()
        self.get_logger().info("cleaned up: model released")
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe()
        self._release()
        self.finalized = True
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe()
        self._release()
        return SUCCESS  # back to unconfigured

    def _configure(self) -> None:
        p = self.params = {name: self.get_parameter(name).value for name in PARAMETERS}
        check_parameters(p)
        names = [str(n) for n in p["cameras"]] or [""]
        if len(names) > 1 and "" in names or len(set(names)) != len(names):
            raise ValueError(f"parameter cameras must be distinct non-empty names (or ['']), got {names}")
        log = self.get_logger()
        self.worker = LatestFrameWorker(self._process, self._failed, name=MODEL_THREAD, batch=True)
        log.info(f"loading model {p['model']} ({p['backend']}, device {p['device']}, {p['precision']})")
        # The worker thread owns the model: torch.compile keeps its CUDA
        # graphs per thread (older torch even fails on another thread), so
        # loading, warm-up and inference all run there.

        def load() -> Segmenter:
            return Segmenter(p["model"], device=p["device"], precision=p["precision"], backend=p["backend"],
                             compile=p["compile"], cost_overrides=parse_cost_overrides(p["cost_overrides"] or []),
                             overlay_alpha=p["overlay_alpha"], warmup_size=None, threads=p["threads"])

        interrupt = self.shutdown.check if self.shutdown is not None else None
        self.segmenter = seg = self.worker.call(load, interrupt)
        log.info("warming up" + (" (compiling: this takes a while the first time)" if p["compile"] else ""))
        self.worker.call(seg.warm_up, interrupt)
        self.enabled = {name: bool(p[f"publish_{name}"]) for name in OUTPUTS}
        self.min_period = 1.0 / p["max_rate"] if p["max_rate"] > 0 else 0.0
        self.diag_pub = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 1)
        self.cameras = {name: self._camera(name, p) for name in names}

    def _camera(self, name: str, p: dict[str, Any]) -> Camera:
        assert self.segmenter is not None
        probe = Camera(name, None, {})  # type: ignore[arg-type]  # for its topic names
        topic = self.resolve_topic_name(probe.topic("image/compressed" if p["compressed"] else "image"))
        pipeline = FramePipeline(self.segmenter, compressed=p["compressed"], max_pixels=p["max_pixels"],
                                 input_bits=p["input_bits"], health=Health(topic, 3 * p["diagnostics_period"]))
        pubs = {n: self.create_lifecycle_publisher(Image, probe.output(n), 1) for n in OUTPUTS if self.enabled[n]}
        cam = Camera(name, pipeline, pubs)
        if p["publish_grid"] or p["publish_obstacles"]:
            pose = p["camera_pose"]
            if name:  # per camera: <name>.camera_pose, the global camera_pose by default
                key = f"{name}.camera_pose"
                if not self.has_parameter(key):
                    self.declare_parameter(key, list(pose), ParameterDescriptor(description=f"camera_pose of {name}"))
                pose = self.get_parameter(key).value
            size_x, size_y = (float(v) for v in p["grid_size"])
            self.grid_spec = GridSpec(p["grid_resolution"], size_x, size_y, max_range=p["max_range"])
            cam.ground = GroundMapper(CameraPose.from_list(list(pose)), self.grid_spec,
                                      ClassCosts(self.segmenter.classes, self.segmenter.cost_lut.cpu().numpy()),
                                      rectified=p["rectified"], depth=p["depth"], depth_fallback=p["depth_fallback"],
                                      depth_slop=p["depth_slop"],
                                      info_topic=self.resolve_topic_name(cam.topic("camera_info")))
            if p["publish_grid"]:
                cam.grid_pub = self.create_lifecycle_publisher(OccupancyGrid, cam.output("grid"), 1)
            if p["publish_obstacles"]:
                cam.cloud_pub = self.create_lifecycle_publisher(PointCloud2, cam.output("obstacles"), 1)
        return cam

    def _unsubscribe(self) -> None:
        for cam in self.cameras.values():
            for sub in cam.subs:
                self.destroy_subscription(sub)
            cam.subs.clear()
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None

    def _release(self) -> None:
        if self.worker is not None:
            # May time out inside a model load or warm-up: see main(). Leaving
            # on a signal, the process exits without waiting for it.
            leaving = self.shutdown is not None and self.shutdown.requested.is_set()
            self.worker.stop(timeout=0.5 if leaving else 5.0)
            self.worker = None
        for cam in self.cameras.values():
            for pub in [*cam.pubs.values(), cam.grid_pub, cam.cloud_pub]:
                if pub is not None:
                    self.destroy_lifecycle_publisher(pub)
        self.cameras = {}
        if self.diag_pub is not None:
            self.destroy_lifecycle_publisher(self.diag_pub)
            self.diag_pub = None
        device = self.segmenter.device if self.segmenter is not None else None
        self.segmenter = None
        if device is not None and device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    # -- frames ------------------------------------------------------------------
    # The subscription callback only hands over the bytes: never blocks on inference.
    def _on_frame(self, cam: Camera, raw: bytes) -> None:
        now = time.monotonic()
        if self.min_period and now - cam.last_accept < self.min_period:
            cam.rate_limited += 1
            return
        cam.last_accept = now
        worker = self.worker
        if worker is not None:
            worker.submit((raw, now), cam.name)

    def _frame_callback(self, cam: Camera) -> Callable[[bytes], None]:
        return lambda raw: self._on_frame(cam, raw)

    def _process(self, batch: dict[str, tuple[bytes, float]]) -> None:
        assert self.segmenter is not None
        cams = [self.cameras[name] for name in batch]
        frames = []
        for cam in cams:
            wanted = wanted_outputs(self.enabled, self._subscribers(cam))
            if cam.ground is not None and "mask" not in wanted:
                wanted.append("mask")  # the ground outputs project the mask
            frames.append((cam.pipeline, batch[cam.name][0], wanted))
        failures = [cam.pipeline.health.failed for cam in cams]
        results = process_batch(self.segmenter, frames)
        for cam, result, failed_before in zip(cams, results, failures):
            health = cam.pipeline.health
            if result is None:
                if health.failed > failed_before:
                    self.get_logger().error(f"inference failed: {health.last_failure}", throttle_duration_sec=5.0)
                else:
                    self.get_logger().warning(f"skipping bad frame on {health.topic}: {health.last_bad}",
                                              throttle_duration_sec=5.0)
                continue
            header = Header(frame_id=result.header.frame_id)
            header.stamp.sec, header.stamp.nanosec = result.header.sec, result.header.nanosec
            for name, fields in result.outputs.items():
                if name in cam.pubs:
                    cam.pubs[name].publish(Image(header=header, **fields))
            if cam.ground is not None:
                self._publish_ground(cam, result.mask, header)
            health.frame_done(result.header.sec, result.header.nanosec, self.get_clock().now().nanoseconds * 1e-9)

    @staticmethod
    def _subscribers(cam: Camera) -> Callable[[str], int]:
        return lambda name: cam.pubs[name].get_subscription_count()

    def _publish_ground(self, cam: Camera, mask: Any, header: Header) -> None:
        assert cam.ground is not None
        frame = cam.ground.project(mask, header.stamp.sec * 10**9 + header.stamp.nanosec)
        if frame is None:
            return
        out_header = Header(stamp=header.stamp, frame_id=str(self.params["base_frame"]))
        if cam.grid_pub is not None:
            grid = OccupancyGrid(header=out_header)
            g = self.grid_spec
            grid.info.map_load_time = header.stamp
            grid.info.resolution, grid.info.width, grid.info.height = float(g.resolution), g.cols, g.rows
            grid.info.origin.position.x, grid.info.origin.position.y = (float(v) for v in g.origin)
            grid.info.origin.orientation.w = 1.0
            grid.data = array.array("b", frame.occupancy().tobytes())
            cam.grid_pub.publish(grid)
        if cam.cloud_pub is not None:
            fields = [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1) for n, o in POINT_FIELDS]
            points = frame.points(self.grid_spec, float(self.params["obstacle_height"]))
            cam.cloud_pub.publish(PointCloud2(header=out_header, fields=fields, **pointcloud_fields(points)))

    def _failed(self, batch: dict[str, tuple[bytes, float]], exc: BaseException) -> None:
        for name in batch:
            self.cameras[name].publish_failures += 1
        self.get_logger().error(f"publishing failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    def _publish_diagnostics(self) -> None:
        worker, seg = self.worker, self.segmenter
        if worker is None or seg is None or self.diag_pub is None:
            return
        statuses = []
        for cam in self.cameras.values():
            warning = cam.ground.condition() if cam.ground is not None else None
            level, message, values = cam.pipeline.diagnostics(
                worker.received_by.get(cam.name, 0), worker.dropped_by.get(cam.name, 0), cam.rate_limited,
                cam.publish_failures, extra=[(WARN, warning)] if warning else None)
            if cam.ground is not None:
                values += cam.ground.values()
            label = f"{cam.name} segmentation" if cam.name else "segmentation"
            statuses.append(DiagnosticStatus(level=bytes([level]), name=f"{self.get_fully_qualified_name()}: {label}",
                                             message=message, hardware_id=str(seg.device),
                                             values=[KeyValue(key=k, value=v) for k, v in values]))
        self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=statuses))

    def destroy_node(self) -> None:
        self._unsubscribe()
        self._release()
        super().destroy_node()


def main(args: list[str] | None = None, shutdown: Shutdown | None = None) -> int:
    """Run the node until SIGINT / SIGTERM; 0 on a clean exit (at any moment), 1
    with one fatal line when it cannot start (bad parameter, missing model).
    `--lifecycle` (before any --ros-args): a managed node, waiting unconfigured."""
    shutdown = shutdown or Shutdown().install()
    argv = sys.argv if args is None else args
    lifecycle = "--lifecycle" in remove_ros_args(argv)
    node = None
    rc = 0
    try:
        # A signal from here on only sets a flag (see shutdown.py): start-up
        # checks it before and while waiting for the model thread.
        shutdown.check()
        # rclpy's own handlers would raise KeyboardInterrupt again on the
        # second Ctrl-C; Shutdown takes the signals instead.
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
        node = SegmentationNode(lifecycle=lifecycle, shutdown=shutdown)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        # A short timeout: the signal handler only sets a flag, checked here.
        while not shutdown.requested.is_set() and rclpy.ok() and not node.finalized:
            executor.spin_once(timeout_sec=0.1)
        if lifecycle and not node.finalized:
            node.trigger_shutdown()  # from whichever primary state: releases everything
    except (ShutdownRequested, ExternalShutdownException):
        pass
    except STARTUP_ERRORS as exc:
        rclpy.logging.get_logger("segmentation_node").fatal(f"cannot start: {exc}")
        rc = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        shutdown.exiting()
    if shutdown.requested.is_set() or _model_thread_alive():
        # Stopped by a signal (everything above is already shut down), or the
        # model thread is still inside an uninterruptible model load or compile
        # (C++ in torch / onnxruntime; finalizing Python under it ended in
        # std::terminate). Interpreter finalization has nothing left to save and
        # can wait on library threads still winding down: leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


def _model_thread_alive() -> bool:
    return any(t.name == MODEL_THREAD and t.is_alive() for t in threading.enumerate())


if __name__ == "__main__":
    sys.exit(main())
