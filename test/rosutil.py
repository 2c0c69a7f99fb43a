"""Test helpers on real rclpy and DDS: a peer node in the test process, and
segmentation_node started as a process the way users start it.

conftest.py gives the session its own ROS_DOMAIN_ID on loopback before rclpy
is imported; every process started here inherits it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosbags.typesys import Stores, get_typestore

TS = get_typestore(Stores.ROS2_HUMBLE)
NODE_EXE = Path(sys.executable).with_name("segmentation_node")
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)


def image_cdr(rgb: np.ndarray, sec: int = 1, nanosec: int = 0, frame_id: str = "cam", encoding: str = "rgb8",
              pad: int = 0) -> bytes:
    """Serialized sensor_msgs/Image (rosbags' serializer, independent of the node's parser)."""
    Image, Header, Time = (TS.types[t] for t in ("sensor_msgs/msg/Image", "std_msgs/msg/Header",
                                                 "builtin_interfaces/msg/Time"))
    h, w = rgb.shape[:2]
    row = rgb.reshape(h, -1)
    if pad:
        row = np.concatenate([row, np.full((h, pad), 7, np.uint8)], axis=1)
    data = np.ascontiguousarray(row).reshape(-1)
    return bytes(TS.serialize_cdr(Image(Header(Time(sec, nanosec), frame_id), h, w, encoding, 0, row.shape[1], data),
                                  "sensor_msgs/msg/Image"))


def compressed_cdr(jpeg: bytes, sec: int = 1, frame_id: str = "cam", fmt: str = "jpeg") -> bytes:
    C, Header, Time = (TS.types[t] for t in ("sensor_msgs/msg/CompressedImage", "std_msgs/msg/Header",
                                             "builtin_interfaces/msg/Time"))
    return bytes(TS.serialize_cdr(C(Header(Time(sec, 0), frame_id), fmt, np.frombuffer(jpeg, np.uint8)),
                                  "sensor_msgs/msg/CompressedImage"))


def random_rgb(h: int = 60, w: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def image_array(msg: Any) -> np.ndarray:
    """An rclpy sensor_msgs/Image (8-bit encodings) -> numpy, honouring step."""
    buf = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    ch = {"mono8": 1, "rgb8": 3}[msg.encoding]
    arr = buf[:, :msg.width * ch].reshape(msg.height, msg.width, ch)
    return arr[..., 0] if ch == 1 else arr


class Peer:
    """The test's side of the graph: one node in its own context."""

    def __init__(self, name: str = "test_peer", context: Context | None = None):
        self.context = context or Context()
        if not self.context.ok():
            rclpy.init(context=self.context)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()

    def publisher(self, msg_type: Any, topic: str, qos: QoSProfile = qos_profile_sensor_data):
        return self.node.create_publisher(msg_type, topic, qos)

    def collect(self, msg_type: Any, topic: str, qos: QoSProfile = RELIABLE, raw: bool = False) -> list:
        got: list = []
        self.node.create_subscription(msg_type, topic, got.append, qos, raw=raw)
        return got

    def spin_until(self, done: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
        end = time.monotonic() + timeout
        while not done():
            if time.monotonic() > end:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.05)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def send_until(self, pub, msg: Any, done: Callable[[], bool], timeout: float = 20.0, every: float = 0.5,
                   what: str = "an answer", before: Callable[[], None] | None = None) -> None:
        """Publish `msg` again every `every` s until `done()`. DDS matching is
        asynchronous on each side: a publisher may count a subscriber before that
        subscriber's reader has matched it, so the first sample after a match can
        be lost; the first frame of a test is sent this way. `before` runs
        before each send (e.g. publishing the camera_info that goes with it)."""
        end = time.monotonic() + timeout
        while True:
            if before is not None:
                before()
            pub.publish(msg)
            resend = time.monotonic() + every
            while time.monotonic() < resend:
                if done():
                    return
                self.executor.spin_once(timeout_sec=0.02)
            if time.monotonic() > end:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 60.0) -> Any:
        """Call a service of another process and wait for its answer."""
        client = self.node.create_client(srv_type, name)
        try:
            self.spin_until(client.service_is_ready, timeout, f"service {name}")
            future = client.call_async(request)
            self.spin_until(future.done, timeout, f"the answer of {name}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def wait_for_subscriber(self, pub, timeout: float = 30.0) -> None:
        self.spin_until(lambda: pub.get_subscription_count() > 0, timeout, f"a subscriber on {pub.topic_name}")

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


class NodeProcess:
    """segmentation_node as a process, with its output in a file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None, exe: Path = NODE_EXE,
                 cwd: Path | None = None):
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen([str(exe), *args], stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, cwd=cwd)

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_line(self, text: str, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while text not in self.output:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited ({self.proc.returncode}) before {text!r}:\n{self.output}")
            if time.monotonic() > end:
                raise AssertionError(f"no {text!r} from the node within {timeout} s:\n{self.output}")
            time.sleep(0.005)

    def send(self, sig: int = signal.SIGINT) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        """The exit code; a node still running after `timeout` prints every
        thread's stack (SIGUSR1: faulthandler, see node/entry.py) into its
        log, is killed, and fails the test with that log."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.dump_stacks()
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"the node did not exit within {timeout} s; its log and stacks:\n{self.output}") from None
        finally:
            self._log.close()

    def dump_stacks(self, timeout: float = 5.0) -> None:
        size = self.log_path.stat().st_size
        self.proc.send_signal(signal.SIGUSR1)
        end = time.monotonic() + timeout
        while self.log_path.stat().st_size == size and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(0.2)  # the rest of the dump (other threads)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
