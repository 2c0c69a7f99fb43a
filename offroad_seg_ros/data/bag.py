"""rosbag2 tools without ROS (the `rosbags` library): dataset split -> bag, and
a streaming reader that pairs images, ground truth and predictions by stamp.

Topics written (defaults):
  /camera/image_raw      sensor_msgs/Image rgb8 (or CompressedImage with --compressed)
  /camera/segmentation   sensor_msgs/Image mono16, raw Duality class IDs
  /camera/image_name     std_msgs/Header; frame_id carries the image file name
All three share one header stamp per frame, so they pair by stamp in the bag
and in any bag recorded while replaying it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from offroad_seg_ros.core.classes import ClassTable
from offroad_seg_ros.core.fsutil import atomic_directory
from offroad_seg_ros.core.stamps import NS_PER_S, from_ns, to_ns
from offroad_seg_ros.data.dataset import DatasetError, list_samples, read_image, read_raw_mask
from offroad_seg_ros.data.image_msgs import (
    ImageConversionError,
    parse_cdr,
    to_array,
    view_to_rgb,
)

IMAGE_TOPIC = "/camera/image_raw"
GT_TOPIC = "/camera/segmentation"
NAME_TOPIC = "/camera/image_name"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
HEADER = "std_msgs/msg/Header"
# rosbag2 metadata version 8 is read by Humble and Jazzy alike (version 9, the
# Kilted default, changes how QoS profiles are stored and Humble rejects it).
BAG_VERSION = 8
# The one message type store of the package (bags, camera_info, replay): Humble's
# definitions, which Jazzy's sensor_msgs / std_msgs match on the wire.
TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)


class BagError(ValueError):
    """A bag that is missing, unreadable or lacks the needed topics."""


def write_bag(
    split_dir: str | Path,
    out: str | Path,
    storage: str = "mcap",
    compressed: str | None = None,
    rate: float = 10.0,
    frame_id: str = "camera",
    start_ns: int = 1_700_000_000 * NS_PER_S,
    table: ClassTable | None = None,
    ignore_unknown: bool = False,
    force: bool = False,
    version: int = BAG_VERSION,
    image_topic: str = IMAGE_TOPIC,
    gt_topic: str = GT_TOPIC,
    name_topic: str = NAME_TOPIC,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write every image (and mask, if the split has them) of a split to a rosbag2.

    Written into a temporary folder and renamed when complete.
    """
    out = Path(out)
    if storage not in ("mcap", "sqlite3"):
        raise ValueError(f"storage must be mcap or sqlite3, got {storage!r}")
    if compressed not in (None, "png", "jpeg"):
        raise ValueError(f"compressed must be png or jpeg, got {compressed!r}")
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    samples = list_samples(split_dir, require_masks=False)
    if not samples:
        raise DatasetError(f"{split_dir}: no images")
    table = table or ClassTable.default()
    ts = TYPESTORE
    Header, Time, Image, Compressed = (ts.types[t] for t in (HEADER, "builtin_interfaces/msg/Time", IMAGE, COMPRESSED))
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    if version not in (8, 9):  # what rosbags writes; 8 is the newest Humble and Jazzy read
        raise ValueError(f"bag metadata version must be 8 or 9, got {version}")
    with atomic_directory(out, force) as tmp, Writer(tmp, version=version, storage_plugin=plugin) as writer:  # type: ignore[arg-type]
        c_img = writer.add_connection(image_topic, COMPRESSED if compressed else IMAGE, typestore=ts)
        c_gt = writer.add_connection(gt_topic, IMAGE, typestore=ts) if samples[0].mask else None
        c_name = writer.add_connection(name_topic, HEADER, typestore=ts)
        for i, s in enumerate(samples):
            t = start_ns + round(i * NS_PER_S / rate)
            header = Header(Time(*from_ns(t)), frame_id)
            rgb = read_image(s.image)
            if compressed:
                ok, buf = cv2.imencode(".png" if compressed == "png" else ".jpg",
                                       cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                msg = Compressed(header, compressed, buf.ravel())
            else:
                h, w = rgb.shape[:2]
                msg = Image(header, h, w, "rgb8", 0, w * 3, rgb.reshape(-1))
            writer.write(c_img, t, ts.serialize_cdr(msg, msg.__msgtype__))
            if c_gt is not None:
                assert s.mask is not None
                raw = read_raw_mask(s.mask)
                if raw.shape != rgb.shape[:2]:
                    raise DatasetError(f"{s.mask}: mask is {raw.shape[1]}x{raw.shape[0]}, image is "
                                       f"{rgb.shape[1]}x{rgb.shape[0]}")
                table.remap(raw, ignore_unknown=ignore_unknown, source=str(s.mask))  # validate
                h, w = raw.shape
                gt = Image(header, h, w, "mono16", 0, w * 2, raw.astype("<u2").view(np.uint8).reshape(-1))
                writer.write(c_gt, t, ts.serialize_cdr(gt, IMAGE))
            writer.write(c_name, t, ts.serialize_cdr(Header(header.stamp, s.image.name), HEADER))  # type: ignore[attr-defined]
            if progress:
                progress(i + 1, len(samples))
    return out
    return out


@dataclass
class Frame:
    stamp: int  # ns
    name: str
    image: np.ndarray | None = None  # RGB uint8
    gt_raw: np.ndarray | None = None  # uint16 raw IDs
    pred: np.ndarray | None = None  # uint8 class indices


@dataclass
class PairingStats:
    frames: int = 0
    unmatched: dict[str, int] = field(default_factory=lambda: {})
    bad: list[str] = field(default_factory=list)  # skipped frames and why (first few kept)
    bad_count: int = 0

    def skip(self, why: str) -> None:
        self.bad_count += 1
        if len(self.bad) < 20:
            self.bad.append(why)


def open_bag(path: str | Path) -> Reader:
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several types for broken bags
        raise BagError(f"cannot open bag {path}: {type(exc).__name__}: {exc}") from exc
    return reader


def read_frames(
    bag: str | Path,
    topics: dict[str, str],
    stats: PairingStats,
    window: int = 64,
    limit: int | None = None,
) -> Iterator[Frame]:
    """Stream frames that have every role in `topics` ({"image"|"gt"|"pred"|"name": topic}).

    Messages are paired by header stamp in a bounded window (constant memory);
    partial frames that fall out of the window, or remain at the end, are
    counted in `stats.unmatched` per missing role. "name" is optional: frames
    without it are named by stamp.
    """
    reader = open_bag(bag)
    try:
        available = {c.topic: c.msgtype for c in reader.connections}
        missing = [t for role, t in topics.items() if t not in available and role != "name"]
        if missing:
            listed = ", ".join(f"{t} ({m})" for t, m in sorted(available.items()))
            raise BagError(f"bag {bag} has no topic(s) {', '.join(missing)}; it has: {listed}")
        role_of = {t: r for r, t in topics.items() if t in available}
        required = {r for r in topics if r != "name"}
        want_name = "name" in role_of.values()
        pending: OrderedDict[int, dict] = OrderedDict()
        conns = [c for c in reader.connections if c.topic in role_of]

        def finish(stamp: int, parts: dict) -> Frame | None:
            lacking = required - parts.keys()
            if lacking:
                for r in lacking:
                    stats.unmatched[r] = stats.unmatched.get(r, 0) + 1
                return None
            return Frame(stamp, parts.get("name", str(stamp)), parts.get("image"), parts.get("gt"), parts.get("pred"))

        def paired() -> Iterator[Frame]:
            """Complete frames as their last part arrives; partial ones as they
            fall out of the window or at the end (counted, not yielded)."""
            try:
                for conn, _t, raw in reader.messages(connections=conns):
                    role = role_of[conn.topic]
                    try:
                        value, stamp = _decode(role, available[conn.topic], raw)
                    except ImageConversionError as exc:
                        stats.skip(f"{conn.topic} at {_t}: {exc}")
                        continue
                    except Exception as exc:  # noqa: BLE001 - a malformed message is a skipped frame, not a crash
                        stats.skip(f"{conn.topic} at {_t}: {type(exc).__name__}: {exc}")
                        continue
                    parts = pending.setdefault(stamp, {})
                    parts[role] = value
                    if required <= parts.keys() and (not want_name or "name" in parts):
                        yield from _some(finish(stamp, pending.pop(stamp)))
                    while len(pending) > window:
                        yield from _some(finish(*pending.popitem(last=False)))
            except BagError:
                raise
            except Exception as exc:  # noqa: BLE001 - truncated files surface mid-iteration
                raise BagError(f"cannot read bag {bag}: {type(exc).__name__}: {exc}") from exc
            while pending:
                yield from _some(finish(*pending.popitem(last=False)))

        for emitted, frame in enumerate(paired(), start=1):
            stats.frames += 1
            yield frame
            if limit and emitted >= limit:
                return
    finally:
        reader.close()


def _some(frame: Frame | None) -> Iterator[Frame]:
    if frame is not None:
        yield frame


def _decode(role: str, msgtype: str, raw: bytes):
    if msgtype == HEADER:
        msg: Any = TYPESTORE.deserialize_cdr(raw, HEADER)  # rosbags' generated class: untyped fields
        return msg.frame_id, to_ns(msg.stamp)
    view = parse_cdr(raw, msgtype == COMPRESSED)
    if msgtype not in (IMAGE, COMPRESSED):
        raise ImageConversionError(f"unsupported message type {msgtype}")
    if role == "image":
        return view_to_rgb(view), to_ns(view)
    arr = to_array(view.encoding, view.height, view.width, view.step, view.is_bigendian, view.data)
    if role == "gt" and arr.dtype != np.uint16:
        raise ImageConversionError(f"ground truth must be mono16 raw IDs, got {view.encoding!r}")
    if role == "pred" and arr.dtype != np.uint8:
        raise ImageConversionError(f"predictions must be mono8 class indices, got {view.encoding!r}")
    return np.array(arr), to_ns(view)  # copy: the reader's buffer is reused


def is_bag(path: str | Path) -> bool:
    """A rosbag2 folder (metadata.yaml) or a single .mcap / .db3 file."""
    path = Path(path)
    return (path / "metadata.yaml").is_file() or path.suffix in (".mcap", ".db3")


def folder_frames(split_dir: str | Path, stats: PairingStats, limit: int | None = None) -> Iterator[Frame]:
    """A dataset split's image / mask pairs as the Frames read_frames gives from a bag."""
    samples = list_samples(split_dir)
    for i, s in enumerate(samples[:limit] if limit else samples):
        assert s.mask is not None
        stats.frames += 1
        yield Frame(i, s.image.name, read_image(s.image), read_raw_mask(s.mask))


def bag_topics(bag: str | Path) -> dict[str, tuple[str, int]]:
    reader = open_bag(bag)
    try:
        return {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
    finally:
        reader.close()


def _typed_topic(reader: Reader, bag: str | Path, topic: str, msgtype: str) -> list:
    """The reader's connections on `topic`; a BagError naming the topic when the bag lacks it (listing
    what it has) or holds another message type there."""
    available = {c.topic: c.msgtype for c in reader.connections}
    if topic not in available:
        listed = ", ".join(f"{t} ({m})" for t, m in sorted(available.items()))
        raise BagError(f"bag {bag} has no topic {topic}; it has: {listed}")
    if available[topic] != msgtype:
        raise BagError(f"bag {bag}: topic {topic} is {available[topic]}, not {msgtype}")
    return [c for c in reader.connections if c.topic == topic]


def read_odometry(bag: str | Path, topic: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(stamps int64 ns from the headers, x, y, yaw float64) of every nav_msgs/Odometry on `topic`: the
    base's planar pose in the odometry frame, sorted by stamp. A stamp seen before is dropped (the first
    message kept), so the arrays make a ground.footprints.Trajectory."""
    odometry = "nav_msgs/msg/Odometry"
    reader = open_bag(bag)
    try:
        connections = _typed_topic(reader, bag, topic, odometry)
        rows: list[tuple[int, float, float, float, float, float, float]] = []
        try:
            for _conn, _t, raw in reader.messages(connections=connections):
                msg: Any = TYPESTORE.deserialize_cdr(raw, odometry)  # rosbags' generated class: untyped fields
                p, q = msg.pose.pose.position, msg.pose.pose.orientation
                rows.append((to_ns(msg.header.stamp), p.x, p.y, q.x, q.y, q.z, q.w))
        except Exception as exc:  # noqa: BLE001 - truncated files and malformed messages surface mid-iteration
            raise BagError(f"cannot read {topic} from bag {bag}: {type(exc).__name__}: {exc}") from exc
    finally:
        reader.close()
    stamps = np.array([r[0] for r in rows], np.int64)
    values = np.array([r[1:] for r in rows], np.float64).reshape(-1, 6)
    order = np.argsort(stamps, kind="stable")
    stamps, values = stamps[order], values[order]
    first = np.diff(stamps, prepend=stamps[:1] - 1) > 0  # empty stays empty
    stamps, values = stamps[first], values[first]
    x, y, qx, qy, qz, qw = values.T
    yaw = np.arctan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))  # as local_map.yaw_from_quaternion
    return stamps, x.copy(), y.copy(), yaw


def first_message(bag: str | Path, topic: str, msgtype: str) -> Any:
    """The first message on `topic` (e.g. a sensor_msgs/msg/CameraInfo), deserialized; a BagError naming
    the topic when the bag lacks it, holds another type there or has no message on it."""
    reader = open_bag(bag)
    try:
        for _conn, _t, raw in reader.messages(connections=_typed_topic(reader, bag, topic, msgtype)):
            return TYPESTORE.deserialize_cdr(raw, msgtype)
    finally:
        reader.close()
    raise BagError(f"bag {bag} has no message on {topic}")
