"""`offroad-seg replay`: play a bag's camera topic into a running node over DDS
and record what the node publishes, without rosbag2.

The bag's serialized image messages are published as they are (same bytes,
same header stamps) to the topic the node subscribes to, found in the ROS
graph. The node's `~/mask` (and optionally `~/cost`) is recorded, raw, beside
the bag's ground-truth and name topics into a new rosbag2 (rosbags' writer),
each mask at the log time of the frame it answers, so `offroad-seg eval
REPLAY_BAG --predictions /segmentation_node/mask` pairs them by stamp.

Modes: `lockstep` sends a frame, waits for its mask and only then sends the
next (every frame is scored; throughput is the node's); `rate` sends at a fixed
rate as a camera would and counts the frames the node dropped. The output bag
is written under a temporary name: complete, or absent after an error or
Ctrl-C.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rosbags.rosbag2 import StoragePlugin, Writer
from sensor_msgs.msg import CompressedImage, Image

from offroad_seg_ros.core.fsutil import atomic_directory
from offroad_seg_ros.core.stamps import from_ns, to_ns
from offroad_seg_ros.data.bag import (
    COMPRESSED,
    GT_TOPIC,
    HEADER,
    IMAGE,
    IMAGE_TOPIC,
    NAME_TOPIC,
    TYPESTORE,
    BagError,
    open_bag,
)
from offroad_seg_ros.data.image_msgs import ImageConversionError, parse_cdr

RECORD_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
SEND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)  # also matches best-effort subscriptions


class ReplayError(BagError):
    """The node is missing, never answers, or the bag lacks what replay needs."""


@dataclass
class ReplayResult:
    out: Path
    mode: str
    sent: int
    received: int  # frames with a mask recorded
    seconds: float

    @property
    def dropped(self) -> int:
        return self.sent - self.received

    @property
    def fps(self) -> float:
        return self.received / self.seconds if self.seconds > 0 else 0.0


def split_node_name(node: str) -> tuple[str, str]:
    """'/robot/segmentation_node' -> ('/robot', 'segmentation_node')."""
    full = node if node.startswith("/") else "/" + node
    ns, _, name = full.rpartition("/")
    if not name:
        raise ValueError(f"--node {node!r} is not [NAMESPACE/]NAME")
    return ns or "/", name


class _Session:
    """The replay's own node, in its own context, spun from this thread only.

    Ctrl-C sets a flag that `spin` turns into KeyboardInterrupt between spins: raised
    anywhere, it could land inside rclpy between taking a lock and the block that
    releases it, and closing the session then waited on that lock forever."""

    def __init__(self, node: str):
        self.interrupted = False
        self._previous_sigint = None
        self.context = Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node("offroad_seg_replay", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.target_ns, self.target_name = split_node_name(node)
        self.target = (self.target_ns.rstrip("/") + "/" + self.target_name)
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.interrupted = True

    def spin(self, seconds: float) -> None:
        if not self.interrupted:
            self.executor.spin_once(timeout_sec=min(seconds, 0.1))
        if self.interrupted:
            raise KeyboardInterrupt

    def wait(self, done: Callable[[], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not done():
            if time.monotonic() > end:
                return False
            self.spin(0.02)
        return True

    def find_input(self, compressed: bool, timeout: float) -> str:
        """The topic the target node subscribes to for images of the bag's type."""
        want = COMPRESSED if compressed else IMAGE

        def present() -> bool:
            return (self.target_name, self.target_ns) in self.node.get_node_names_and_namespaces()

        if not self.wait(present, timeout):
            nodes = sorted(f"{ns.rstrip('/')}/{n}" for n, ns in self.node.get_node_names_and_namespaces()
                           if n != "offroad_seg_replay")
            raise ReplayError(
                f"node {self.target} did not appear within {timeout:g} s on ROS_DOMAIN_ID="
                f"{os.environ.get('ROS_DOMAIN_ID', '0')}; nodes seen: {', '.join(nodes) or 'none'}"
            )
        found: list[str] = []

        def subscribed() -> bool:
            # From the endpoints, not the node's own listing: a node of the same
            # name that just died can linger in the graph for a while with none.
            found[:] = [topic for topic, types in self.node.get_topic_names_and_types() if want in types
                        and any((i.node_name, i.node_namespace) == (self.target_name, self.target_ns)
                                for i in self.node.get_subscriptions_info_by_topic(topic))]
            return bool(found)

        if not self.wait(subscribed, timeout):
            listed = ", ".join(t for t, _ in self.node.get_subscriber_names_and_types_by_node(
                self.target_name, self.target_ns)) or "none"
            raise ReplayError(f"node {self.target} subscribes to no {want} topic (the bag's image type); "
                              f"its subscriptions: {listed}")
        return found[0]

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)


def replay(
    bag: str | Path,
    out: str | Path,
    node: str = "/segmentation_node",
    image_topic: str = IMAGE_TOPIC,
    gt_topic: str = GT_TOPIC,
    name_topic: str = NAME_TOPIC,
    rate: float | None = None,
    record_cost: bool = False,
    wait_node: float = 30.0,
    timeout: float = 30.0,
    resend: float = 2.0,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Replay `bag` through `node`; lockstep unless `rate` (Hz) is given."""
    if rate is not None and rate <= 0:
        raise ValueError(f"--rate must be positive, got {rate}")
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    reader = open_bag(bag)
    session: _Session | None = None
    try:
        conns = {c.topic: c for c in reader.connections}
        if image_topic not in conns or conns[image_topic].msgtype not in (IMAGE, COMPRESSED):
            listed = ", ".join(f"{t} ({c.msgtype})" for t, c in sorted(conns.items()))
            raise ReplayError(f"bag {bag} has no image topic {image_topic}; it has: {listed}")
        image_conn = conns[image_topic]
        compressed = image_conn.msgtype == COMPRESSED
        copied = [conns[t] for t in (gt_topic, name_topic) if t in conns and conns[t].msgtype in (IMAGE, HEADER)]
        total = image_conn.msgcount

        session = _Session(node)
        input_topic = session.find_input(compressed, wait_node)
        outputs = ["mask", "cost"] if record_cost else ["mask"]
        out_topics = {name: f"{session.target}/{name}" for name in outputs}
        received: dict[str, dict[int, bytes]] = {name: {} for name in outputs}
        subs = [session.node.create_subscription(Image, topic, _keeper(received[name]), RECORD_QOS, raw=True)
                for name, topic in out_topics.items()]
        pub = session.node.create_publisher(
            CompressedImage if compressed else Image, input_topic, SEND_QOS)

        def matched() -> bool:
            return pub.get_subscription_count() > 0 and all(s.get_publisher_count() > 0 for s in subs)

        if not session.wait(matched, wait_node):
            raise ReplayError(f"node {session.target} did not connect: its input {input_topic} and output "
                              f"{out_topics['mask']} must both match within {wait_node:g} s")

        with atomic_directory(out, force) as tmp, Writer(tmp, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
            w_out = {name: writer.add_connection(topic, IMAGE, typestore=TYPESTORE)
                     for name, topic in out_topics.items()}
            w_copy = {c.topic: writer.add_connection(c.topic, c.msgtype, typestore=TYPESTORE) for c in copied}
            log_time: dict[int, int] = {}  # header stamp -> the frame's bag time
            written: set[tuple[str, int]] = set()

            def flush() -> None:
                for name, by_stamp in received.items():
                    for stamp in [s for s in by_stamp if s in log_time]:
                        raw = by_stamp.pop(stamp)
                        if (name, stamp) not in written:  # a resent frame may be answered twice
                            written.add((name, stamp))
                            writer.write(w_out[name], log_time[stamp], raw)

            sent = 0
            start = time.monotonic()
            for conn, t, raw in reader.messages(connections=[image_conn, *copied]):
                if conn.topic != image_topic:
                    writer.write(w_copy[conn.topic], t, raw)
                    continue
                try:
                    stamp = to_ns(parse_cdr(raw, compressed))
                except ImageConversionError as exc:
                    raise ReplayError(f"bag {bag}: a message on {image_topic} at {t} cannot be parsed: {exc}") from exc
                log_time[stamp] = t
                if rate is None:
                    _send_lockstep(session, pub, bytes(raw), stamp, received["mask"], written,
                                   out_topics["mask"], timeout, resend)
                else:
                    due = start + sent / rate
                    while (now := time.monotonic()) < due:
                        session.spin(due - now)
                    pub.publish(bytes(raw))
                sent += 1
                flush()
                if progress:
                    progress(sent, total)
            if rate is not None:  # the last masks are still on their way: wait while they keep coming
                _drain(session, lambda: sum(s in received["mask"] or ("mask", s) in written for s in log_time),
                       len(log_time), quiet=1.5, limit=timeout)
            seconds = time.monotonic() - start
            for name in outputs:  # a late output of an answered frame
                session.wait(functools.partial(_answered, name, written, received, log_time), 1.0)
            flush()
            got = sum(1 for s in log_time if ("mask", s) in written)
        return ReplayResult(out, "lockstep" if rate is None else f"rate {rate:g} Hz", sent, got, seconds)
    finally:
        reader.close()
        if session is not None:
            session.close()


def _answered(name: str, written: set[tuple[str, int]], received: dict[str, dict[int, bytes]],
              log_time: dict[int, int]) -> bool:
    """Every frame whose mask is written has its `name` output too (written or received)."""
    return all(("mask", s) not in written or (name, s) in written or s in received[name] for s in log_time)


def _keeper(store: dict[int, bytes]) -> Callable[[bytes], None]:
    return lambda raw: _keep(store, raw)


def _keep(store: dict[int, bytes], raw: bytes) -> None:
    try:
        store[to_ns(parse_cdr(raw, False))] = bytes(raw)
    except ImageConversionError:
        pass  # not an Image we can pair; the node never publishes one


def _drain(session: _Session, count: Callable[[], int], total: int, quiet: float, limit: float) -> None:
    """Spin until `count()` reaches `total`, or nothing new came for `quiet` s."""
    end = time.monotonic() + limit
    last, changed = count(), time.monotonic()
    while last < total and time.monotonic() < min(end, changed + quiet):
        session.spin(0.05)
        if (now := count()) != last:
            last, changed = now, time.monotonic()


def _send_lockstep(session: _Session, pub, raw: bytes, stamp: int, masks: dict[int, bytes],
                   written: set[tuple[str, int]], topic: str, timeout: float, resend: float) -> None:
    """Publish one frame and wait for its mask; resend after `resend` s (the
    node's input may be best effort), give up after `timeout` s."""
    end = time.monotonic() + timeout
    while True:
        pub.publish(raw)
        if session.wait(lambda: stamp in masks or ("mask", stamp) in written, min(resend, end - time.monotonic())):
            return
        if time.monotonic() >= end:
            sec, nanosec = from_ns(stamp)
            raise ReplayError(f"no answer on {topic} within {timeout:g} s for the frame stamped "
                              f"{sec}.{nanosec:09d} (is the node running and publishing masks?)")
