"""Header stamps and durations as integer nanoseconds, the one conversion (ROS-free).

A stamp is anything with integer `sec` and `nanosec` fields: a
builtin_interfaces/Time (rclpy or rosbags message), or a header view such as
data.image_msgs.ImageView. Stamps travel through the package as integer ns,
which pair, sort and subtract exactly.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

NS_PER_S = 1_000_000_000


class StampLike(Protocol):
    @property
    def sec(self) -> int: ...

    @property
    def nanosec(self) -> int: ...


class Stamp(NamedTuple):
    """(sec, nanosec) of a stamp: unpacks into a message's two fields."""

    sec: int
    nanosec: int


def to_ns(stamp: StampLike) -> int:
    """A stamp -> integer ns."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def from_ns(ns: int) -> Stamp:
    """Integer ns -> (sec, nanosec)."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return Stamp(sec, nanosec)


def to_seconds(stamp: StampLike) -> float:
    """A stamp -> float seconds (for latencies against a float clock)."""
    return stamp.sec + stamp.nanosec * 1e-9


def seconds_to_ns(seconds: float) -> int:
    """A duration in (float) seconds -> integer ns, truncated."""
    return int(seconds * 1e9)
