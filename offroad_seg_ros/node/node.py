"""segmentation_node: camera images in, class masks and traversability cost out.

Thin glue (all maths, parsing and message fields live in ROS-free modules):
declares parameters, subscribes raw (serialized) with the sensor-data QoS,
hands the newest frame of every camera to one worker thread, which runs them
as one batch, publishes outputs with each input's header, the ground
outputs, and /diagnostics once per `diagnostics_period`.

One class serves both ways of running it: a plain node that configures and
activates itself at start (the default), or a managed lifecycle node
(`--lifecycle`) that waits for configure / activate / deactivate / cleanup /
shutdown (Nav2-style bring-up). The lifecycle callbacks are the only place
where anything is created or released, in both modes. The process around it
(signals, spin, exit code) is process.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import OccupancyGrid, Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from offroad_seg_ros.core.artifact import ArtifactError
from offroad_seg_ros.core.model import ModelConfigError
from offroad_seg_ros.data.camera_checks import CameraChecks
from offroad_seg_ros.ground.fusion import GridFusion
from offroad_seg_ros.ground.local_map import LocalMap, odometry_pose
from offroad_seg_ros.ground.mapper import GroundFrame
from offroad_seg_ros.ground.projection import occupancy_values
from offroad_seg_ros.inference.segmenter import Segmenter
from offroad_seg_ros.node.camera import Camera, camera_topic, ground_fields, ground_mapper
from offroad_seg_ros.node.health import OK, WARN, Health
from offroad_seg_ros.node.latest import LatestFrameWorker
from offroad_seg_ros.node.messages import FLOAT32, POINT_FIELDS, fill, grid_fields, header_fields, status_fields
from offroad_seg_ros.node.params import OUTPUTS, PARAMETERS, NodeConfig, parse_cost_overrides
from offroad_seg_ros.node.pipeline import FramePipeline, process_batch
from offroad_seg_ros.node.shutdown import MODEL_THREAD, Shutdown

STARTUP_ERRORS = (ArtifactError, ModelConfigError, ValueError, OSError)
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
CLOUD_FIELDS = [PointField(name=n, offset=o, datatype=FLOAT32, count=1) for n, o in POINT_FIELDS]


class SegmentationNode(LifecycleNodeMixin, Node):
    def __init__(self, lifecycle: bool = False, shutdown: Shutdown | None = None, **node_options: Any) -> None:
        Node.__init__(self, "segmentation_node", **node_options)
        LifecycleNodeMixin.__init__(self, enable_communication_interface=lifecycle)
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text))
        self.lifecycle = lifecycle
        self.shutdown = shutdown  # a signal ends the waits for the model thread (load, warm-up) at once
        self.config: NodeConfig | None = None  # set by configure
        self.worker: LatestFrameWorker[bytes] | None = None
        self.segmenter: Segmenter | None = None
        self.cameras: dict[str, Camera] = {}
        self.configure_error: BaseException | None = None
        self.finalized = False
        self.diag_pub: Any = None
        self.fusion: GridFusion | None = None  # several cameras: ~/grid and ~/obstacles fuse theirs
        self.fused_pubs: tuple[Any, Any] = (None, None)  # (~/grid, ~/obstacles) of the fusion
        self.local_map: LocalMap | None = None  # ~/map: the grids over odometry
        self.map_pub: Any = None
        self._map_timer: Any = None
        self._timer: Any = None
        self._map_sub: Any = None
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
        assert self.config is not None and self.segmenter is not None
        c, p, seg = self.config, self.config.params, self.segmenter
        qos = QoSProfile(depth=int(p["qos_depth"]), history=qos_profile_sensor_data.history,
                         reliability=ReliabilityPolicy.RELIABLE if p["qos_reliability"] == "reliable"
                         else ReliabilityPolicy.BEST_EFFORT)
        for cam in self.cameras.values():
            topic = cam.topic(c.image_topic)
            cam.subs.append(self.create_subscription(CompressedImage if p["compressed"] else Image, topic,
                                                     self._frame_callback(cam), qos, raw=True))
            if cam.ground is not None:
                cam.subs.append(self.create_subscription(CameraInfo, cam.topic("camera_info"),
                                                         cam.ground.on_camera_info, qos_profile_sensor_data, raw=True))
                if p["depth"]:
                    cam.subs.append(self.create_subscription(Image, cam.topic("depth"), cam.ground.on_depth,
                                                             qos_profile_sensor_data, raw=True))
            self.get_logger().info(f"segmenting {self.resolve_topic_name(topic)} with {seg.name} on "
                                   f"{seg.device} ({seg.precision}, {seg.backend})")
        if self.local_map is not None:
            self._map_sub = self.create_subscription(Odometry, p["odom_topic"], self._on_odometry,
                                                     QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT))
            self._map_timer = self.create_timer(1.0 / p["map_rate"], self._publish_map,
                                                clock=Clock(clock_type=ClockType.STEADY_TIME))
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
        c = self.config = NodeConfig.from_params({name: self.get_parameter(name).value for name in PARAMETERS})
        p = c.params
        self.worker = LatestFrameWorker(self._process, self._failed, name=MODEL_THREAD, batch=True)
        self.get_logger().info(f"loading model {p['model']} ({p['backend']}, device {p['device']}, {p['precision']})")
        # The worker thread owns the model: torch.compile keeps its CUDA
        # graphs per thread (older torch even fails on another thread), so
        # loading, warm-up and inference all run there.

        def load() -> Segmenter:
            return Segmenter(p["model"], device=p["device"], precision=p["precision"], backend=p["backend"],
                             compile=p["compile"], cost_overrides=parse_cost_overrides(p["cost_overrides"] or []),
                             overlay_alpha=p["overlay_alpha"], warmup_size=None, threads=p["threads"],
                             min_confidence=p["min_confidence"])

        interrupt = self.shutdown.check if self.shutdown is not None else None
        self.segmenter = seg = self.worker.call(load, interrupt)
        self.get_logger().info("warming up" + (" (compiling: this takes a while the first time)"
                                               if p["compile"] else ""))
        self.worker.call(seg.warm_up, interrupt)
        self.diag_pub = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 1)
        self.cameras = {name: self._camera(name, c, seg) for name in c.cameras}
        if c.fused:
            self.fusion = GridFusion(p["fused_max_age"])
            self.fused_pubs = self._ground_publishers("~/grid", "~/obstacles")
        if p["publish_map"]:
            assert c.grid is not None
            self.local_map = LocalMap(c.map_spec(), c.grid)
            # Transient local: Nav2's StaticLayer subscribes so (map_subscribe_transient_local).
            self.map_pub = self.create_lifecycle_publisher(OccupancyGrid, "~/map", QoSProfile(
                depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))

    def _camera(self, name: str, c: NodeConfig, seg: Segmenter) -> Camera:
        p = c.params
        health = Health(self.resolve_topic_name(camera_topic(name, c.image_topic)), 3 * p["diagnostics_period"])
        cam = Camera(name, FramePipeline(seg, compressed=p["compressed"], max_pixels=p["max_pixels"],
                                         input_bits=p["input_bits"], health=health, checks=CameraChecks(c.checks),
                                         degraded_policy=p["degraded_policy"]))
        cam.pubs = {n: self.create_lifecycle_publisher(Image, cam.output(n), 1) for n in OUTPUTS if c.enabled[n]}
        if c.grid is None:
            return cam
        pose = p["camera_pose"]
        if name:  # per camera: <name>.camera_pose, the global camera_pose by default
            key = f"{name}.camera_pose"
            if not self.has_parameter(key):
                self.declare_parameter(key, list(pose), ParameterDescriptor(description=f"camera_pose of {name}"))
            pose = self.get_parameter(key).value
        cam.ground = ground_mapper(c, list(pose), seg, self.resolve_topic_name(cam.topic("camera_info")))
        if not c.fused or p["per_camera_grids"]:
            cam.grid_pub, cam.cloud_pub = self._ground_publishers(cam.output("grid"), cam.output("obstacles"))
        return cam

    def _ground_publishers(self, grid: str, obstacles: str) -> tuple[Any, Any]:
        assert self.config is not None
        flags = self.config.params
        return (self.create_lifecycle_publisher(OccupancyGrid, grid, 1) if flags["publish_grid"] else None,
                self.create_lifecycle_publisher(PointCloud2, obstacles, 1) if flags["publish_obstacles"] else None)

    def _unsubscribe(self) -> None:
        for cam in self.cameras.values():
            for sub in cam.subs:
                self.destroy_subscription(sub)
            cam.subs.clear()
        for timer in (self._timer, self._map_timer):
            if timer is not None:
                self.destroy_timer(timer)
        self._timer = self._map_timer = None
        if self._map_sub is not None:
            self.destroy_subscription(self._map_sub)
            self._map_sub = None

    def _release(self) -> None:
        if self.worker is not None:
            # May time out inside a model load or warm-up: see process.py. Leaving
            # on a signal, the process exits without waiting for it.
            leaving = self.shutdown is not None and self.shutdown.requested.is_set()
            self.worker.stop(timeout=0.5 if leaving else 5.0)
            self.worker = None
        for cam in self.cameras.values():
            for pub in [*cam.pubs.values(), cam.grid_pub, cam.cloud_pub]:
                if pub is not None:
                    self.destroy_lifecycle_publisher(pub)
        self.cameras = {}
        for pub in self.fused_pubs:
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self.fused_pubs, self.fusion = (None, None), None
        if self.map_pub is not None:
            self.destroy_lifecycle_publisher(self.map_pub)
        self.map_pub, self.local_map = None, None
        if self.diag_pub is not None:
            self.destroy_lifecycle_publisher(self.diag_pub)
            self.diag_pub = None
        if self.segmenter is not None:
            self.segmenter.release()
            self.segmenter = None

    # -- frames ------------------------------------------------------------------
    # The subscription callback only hands over the bytes: never blocks on inference.
    def _frame_callback(self, cam: Camera) -> Callable[[bytes], None]:
        def on_frame(raw: bytes) -> None:
            worker, c = self.worker, self.config
            if worker is not None and c is not None and cam.accept(time.monotonic(), c.min_period):
                worker.submit(raw, cam.name)
        return on_frame

    def _process(self, batch: dict[str, bytes]) -> None:
        assert self.segmenter is not None and self.config is not None
        cams = [self.cameras[name] for name in batch]
        frames = [(cam.pipeline, batch[cam.name], cam.wanted(self.config.enabled)) for cam in cams]
        failures = [cam.pipeline.health.failed for cam in cams]
        results = process_batch(self.segmenter, frames)
        fused = False
        for cam, result, failed_before in zip(cams, results, failures):
            health = cam.pipeline.health
            if result is None:
                if health.failed > failed_before:
                    self.get_logger().error(f"inference failed: {health.last_failure}", throttle_duration_sec=5.0)
                else:
                    self.get_logger().warning(f"skipping bad frame on {health.topic}: {health.last_bad}",
                                              throttle_duration_sec=5.0)
                continue
            if result.conditions:
                self.get_logger().warning(f"camera degraded on {health.topic}: {health.last_degraded}",
                                          throttle_duration_sec=5.0)
            h = result.header
            header = fill(Header(), header_fields(h.sec, h.nanosec, h.frame_id))
            for name, fields in result.outputs.items():
                if name in cam.pubs:
                    cam.pubs[name].publish(Image(header=header, **fields))
            ground = cam.ground_frame(result.ground_mask, h.sec, h.nanosec) \
                if cam.ground is not None and not result.withheld else None
            if ground is not None:
                self._publish_ground((cam.grid_pub, cam.cloud_pub), ground, h.sec, h.nanosec)
                if self.fusion is not None:
                    self.fusion.update(cam.name, ground, h.sec * 10**9 + h.nanosec)
                    fused = True
                if self.local_map is not None:  # each camera at its own stamp's pose
                    self.local_map.integrate(ground, h.sec * 10**9 + h.nanosec)
            health.frame_done(h.sec, h.nanosec, self.get_clock().now().nanoseconds * 1e-9)
        latest = self.fusion.fused() if fused and self.fusion is not None else None
        if latest is not None:  # once a batch, stamped with the newest grid in it
            grid, stamp, _ = latest
            self._publish_ground(self.fused_pubs, grid, stamp // 10**9, stamp % 10**9)

    def _publish_ground(self, pubs: tuple[Any, Any], frame: GroundFrame, sec: int, nanosec: int) -> None:
        assert self.config is not None
        if pubs == (None, None):
            return
        grid, cloud = ground_fields(frame, sec, nanosec, self.config)
        if grid is not None and pubs[0] is not None:
            pubs[0].publish(fill(OccupancyGrid(), grid))
        if cloud is not None and pubs[1] is not None:
            pubs[1].publish(fill(PointCloud2(fields=CLOUD_FIELDS), cloud))

    def _on_odometry(self, msg: Odometry) -> None:
        if self.local_map is not None:
            self.local_map.on_odometry(*odometry_pose(msg))

    def _publish_map(self) -> None:
        m, pub = self.local_map, self.map_pub
        snapshot = m.snapshot() if m is not None and pub is not None else None
        if snapshot is None:
            return
        assert m is not None and pub is not None
        cost, window, stamp = snapshot
        header = header_fields(stamp // 10**9, stamp % 10**9, m.frame_id or "odom")
        pub.publish(fill(OccupancyGrid(), grid_fields(window, occupancy_values(cost), header)))

    def _failed(self, batch: dict[str, bytes], exc: BaseException) -> None:
        if self.worker is None:
            return  # released under a frame in flight (shutdown): its publishers are gone, nothing to count
        for name in batch:
            self.cameras[name].publish_failures += 1
        self.get_logger().error(f"publishing failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    def _publish_diagnostics(self) -> None:
        worker, seg = self.worker, self.segmenter
        if worker is None or seg is None or self.diag_pub is None:
            return
        statuses = []
        for cam in self.cameras.values():
            level, message, values = cam.diagnostics(worker.received_by.get(cam.name, 0),
                                                     worker.dropped_by.get(cam.name, 0))
            fields = status_fields(level, f"{self.get_fully_qualified_name()}: {cam.label}", message, str(seg.device))
            statuses.append(DiagnosticStatus(values=[KeyValue(key=k, value=v) for k, v in values], **fields))
        if self.local_map is not None:
            problem = self.local_map.condition()
            fields = status_fields(WARN if problem else OK, f"{self.get_fully_qualified_name()}: local map",
                                   problem or f"{self.local_map.frames} frame(s) placed", str(seg.device))
            statuses.append(DiagnosticStatus(values=[KeyValue(key=k, value=v) for k, v in self.local_map.values()],
                                             **fields))
        self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=statuses))

    def destroy_node(self) -> None:
        self._unsubscribe()
        self._release()
        super().destroy_node()
