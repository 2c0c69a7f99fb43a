"""segmentation_node: camera images in; masks, cost, ground outputs and /diagnostics out.

Thin ROS glue: parsing, maths and message fields live in ROS-free modules (params.py,
camera.py, pipeline.py, ground_outputs.py, messages.py, model_swap.py). The newest
frame of every camera goes to one worker thread, which runs them as one batch.
One class runs as a plain node that configures and activates itself at start,
or as a managed lifecycle node (`--lifecycle`, Nav2-style bring-up); the
lifecycle callbacks are the only place where anything is created or released,
in both modes. process.py is the process around it (signals, spin, exit code).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid, Odometry
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.timer import Timer
from sensor_msgs.msg import CompressedImage, Image

from offroad_seg_ros.core.artifact import ArtifactError
from offroad_seg_ros.core.model import ModelConfigError
from offroad_seg_ros.core.stamps import to_ns, to_seconds
from offroad_seg_ros.inference.segmenter import Segmenter
from offroad_seg_ros.node.camera import Camera, camera_output, ground_mapper
from offroad_seg_ros.node.ground_outputs import GroundOutputs
from offroad_seg_ros.node.latest import LatestFrameWorker
from offroad_seg_ros.node.model_swap import ModelSwap
from offroad_seg_ros.node.params import PARAMETERS, NodeConfig, load_segmenter
from offroad_seg_ros.node.pipeline import FrameNotes, process_batch
from offroad_seg_ros.node.ros_messages import GROUND_INPUTS, GROUND_OUTPUTS, diagnostics_msg, ground_msg, output_images
from offroad_seg_ros.node.shutdown import MODEL_THREAD, Shutdown
from offroad_seg_ros.node.tf_listener import TfListener

STARTUP_ERRORS = (ArtifactError, ModelConfigError, ValueError, OSError)
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
# Transient local: Nav2's StaticLayer subscribes so (map_subscribe_transient_local).
MAP_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
ODOM_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)


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
        self.swap: ModelSwap | None = None  # `model` set at run time (model_swap.py), while configured
        self.cameras: dict[str, Camera] = {}
        self.notes = FrameNotes()
        self.ground_outputs: GroundOutputs | None = None  # fusion and ~/map, with the ground outputs
        self.tf: TfListener | None = None  # camera poses and odom -> base, when something uses TF
        self.configure_error: BaseException | None = None
        self.finalized = False
        # The node's own publishers: diagnostics, map, and the fusion's grid outputs (grid, obstacles).
        self.pubs: dict[str, Any] = {}
        self._active: list[Any] = []  # subscriptions and timers, while active
        self.add_on_set_parameters_callback(self._on_set_parameters)
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
            cam.pipeline.health.upstream.restart()  # frames sent while inactive weren't lost upstream
            topic = cam.topic(c.image_topic)
            self._active.append(self.create_subscription(CompressedImage if p["compressed"] else Image, topic,
                                                         self._frame_callback(cam), qos, raw=True))
            self._active += [self.create_subscription(GROUND_INPUTS[base], cam.topic(base), callback,
                                                      qos_profile_sensor_data, raw=True)
                             for base, callback in cam.ground_inputs()]
            self.get_logger().info(f"segmenting {self.resolve_topic_name(topic)} with {seg.name} on "
                                   f"{seg.device} ({seg.precision}, {seg.backend})")
        # Steady time: diagnostics and ~/map keep coming while a simulation (or a paused bag) holds /clock still.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        if "map" in self.pubs:
            assert self.ground_outputs is not None
            self._active.append(self.create_timer(1.0 / p["map_rate"], self._publish_map, clock=steady))
            if not p["odom_frame"]:  # else odom -> base comes from TF
                self._active.append(self.create_subscription(Odometry, p["odom_topic"],
                                                             self.ground_outputs.on_odometry, ODOM_QOS))
        self._active += self.tf.subscribe() if self.tf is not None else []
        self._active.append(self.create_timer(float(p["diagnostics_period"]), self._publish_diagnostics, clock=steady))
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
        self._release()
        self.finalized = True
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
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
        interrupt = self.shutdown.check if self.shutdown is not None else None
        self.segmenter = seg = self.worker.call(lambda: load_segmenter(p["model"], p), interrupt)
        self.get_logger().info("warming up" + (" (compiling: this takes a while the first time)"
                                               if p["compile"] else ""))
        self.worker.call(seg.warm_up, interrupt)
        if seg.novelty_status.startswith("unavailable"):
            self.get_logger().warning(f"novelty checks {seg.novelty_status}")
        self.swap = ModelSwap(seg, p["model"], self.worker, lambda path: load_segmenter(path, p), p["compile"],
                              users=lambda: [self, *(cam.pipeline for cam in self.cameras.values())])
        self.pubs["diagnostics"] = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 1)
        self.tf = TfListener(self) if TfListener.wanted(c) else None
        self.cameras = {name: self._camera(name, c, seg) for name in c.cameras}
        if c.grid is not None:
            self.ground_outputs = GroundOutputs(c, self.tf)
        if c.fused:
            self.pubs.update(self._ground_publishers(""))
        if c.local_map is not None:
            self.pubs["map"] = self.create_lifecycle_publisher(OccupancyGrid, "~/map", MAP_QOS)

    def _camera(self, name: str, c: NodeConfig, seg: Segmenter) -> Camera:
        p = c.params
        cam = Camera.configured(name, c, seg, self.resolve_topic_name)
        cam.pubs = {n: self.create_lifecycle_publisher(Image, cam.output(n), 1) for n, on in c.enabled.items() if on}
        if c.grid is None:
            return cam
        pose = p["camera_pose"]
        if name:  # per camera: <name>.camera_pose, the global camera_pose by default
            key = f"{name}.camera_pose"
            if not self.has_parameter(key):
                self.declare_parameter(key, list(pose), ParameterDescriptor(description=f"camera_pose of {name}"))
            pose = self.get_parameter(key).value
        cam.ground = ground_mapper(c, list(pose), seg, self.resolve_topic_name(cam.topic("camera_info")))
        cam.ground.use_tf(self.tf, p["base_frame"])
        if not c.fused or p["per_camera_grids"]:
            cam.pubs.update(self._ground_publishers(name))
        return cam

    def _ground_publishers(self, camera: str) -> dict[str, Any]:
        """A camera's grid outputs; camera '': the fusion's (~/grid, ~/obstacles)."""
        assert self.config is not None
        outputs = self.config.grid_outputs
        return {n: self.create_lifecycle_publisher(GROUND_OUTPUTS[n], camera_output(camera, n), 1) for n in outputs}

    def _unsubscribe(self) -> None:
        for entity in self._active:
            (self.destroy_timer if isinstance(entity, Timer) else self.destroy_subscription)(entity)
        self._active = []

    def _release(self) -> None:
        """Everything configure and activate made (unsubscribing first: frames stop coming)."""
        self._unsubscribe()
        if self.worker is not None:
            # May time out inside a model load or warm-up: see process.py. Leaving
            # on a signal, the process exits without waiting for it.
            leaving = self.shutdown is not None and self.shutdown.requested.is_set()
            self.worker.stop(timeout=0.5 if leaving else 5.0)
            self.worker = None
        for pub in [*(pub for cam in self.cameras.values() for pub in cam.pubs.values()), *self.pubs.values()]:
            self.destroy_lifecycle_publisher(pub)
        self.cameras, self.pubs, self.ground_outputs, self.tf, self.swap = {}, {}, None, None, None
        if self.segmenter is not None:
            self.segmenter.release()
            self.segmenter = None

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """`model` while configured: accepted, loaded beside the model in use and swapped in (model_swap.py)."""
        for param in params:
            if param.name == "model" and self.swap is not None:
                self.swap.request(str(param.value))
        return SetParametersResult(successful=True)

    # -- frames ------------------------------------------------------------------
    # The subscription callback only hands over the bytes: never blocks on inference.
    def _frame_callback(self, cam: Camera) -> Callable[[bytes], None]:
        def on_frame(raw: bytes) -> None:
            worker, c = self.worker, self.config
            if worker is None or c is None:
                return
            cam.arrived(raw)
            if cam.accept(time.monotonic(), c.min_period):
                worker.submit(raw, cam.name)
        return on_frame

    def _process(self, batch: dict[str, bytes]) -> None:
        assert self.segmenter is not None and self.config is not None
        cams = [self.cameras[name] for name in batch]
        frames = [(cam.pipeline, batch[cam.name], cam.wanted(self.config.enabled)) for cam in cams]
        failures = [cam.pipeline.health.failed for cam in cams]
        results = process_batch(self.segmenter, frames)
        for cam, result, failed_before in zip(cams, results, failures):
            health = cam.pipeline.health
            note = self.notes.note(result, health, failed_before)
            if note is not None:  # each kind at most once every 5 s (pipeline.FrameNotes)
                getattr(self.get_logger(), note[0])(note[1])
            if result is None:
                continue
            h = result.header
            for name, msg in output_images(h, h.frame_id, result.outputs).items():
                cam.pubs[name].publish(msg)
            if cam.ground is not None:  # its pose is looked up for the image's frame (camera_pose_source tf)
                cam.ground.frame_id = h.frame_id
            ground = cam.ground_frame(result)
            if ground is not None and self.ground_outputs is not None:
                for name, fields in self.ground_outputs.take(cam.name, ground, to_ns(h), cam.pubs).items():
                    cam.pubs[name].publish(ground_msg(name, fields))
            health.frame_done(h, to_seconds(self.get_clock().now().to_msg()))
        fused = self.ground_outputs.fused(self.pubs) if self.ground_outputs is not None else {}
        for name, fields in fused.items():  # once a batch
            self.pubs[name].publish(ground_msg(name, fields))

    def _publish_map(self) -> None:
        ground, pub = self.ground_outputs, self.pubs.get("map")
        fields = ground.map_fields() if ground is not None and pub is not None else None
        if fields is not None:
            assert pub is not None
            pub.publish(ground_msg("grid", fields))

    def _failed(self, batch: dict[str, bytes], exc: BaseException) -> None:
        if self.worker is None:
            return  # released under a frame in flight (shutdown): its publishers are gone, nothing to count
        for name in batch:
            self.cameras[name].publish_failures += 1
        self.get_logger().error(f"publishing failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    def _publish_diagnostics(self) -> None:
        worker, seg, swap, pub = self.worker, self.segmenter, self.swap, self.pubs.get("diagnostics")
        if worker is None or seg is None or swap is None or pub is None:
            return
        revert = swap.take_revert()
        if revert is not None:  # a failed swap: the parameter names the model in use again
            self.set_parameters([Parameter("model", value=revert)])
        reports = [(cam.label, *swap.diagnostics(*cam.diagnostics(worker))) for cam in self.cameras.values()]
        reports += self.ground_outputs.diagnostics() if self.ground_outputs is not None else []
        pub.publish(diagnostics_msg(reports, self.get_fully_qualified_name(), str(seg.device),
                                    self.get_clock().now().to_msg()))

    def destroy_node(self) -> None:
        self._release()
        super().destroy_node()
