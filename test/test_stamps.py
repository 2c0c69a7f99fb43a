"""core/stamps.py: the one sec/nanosec <-> ns conversion."""

from types import SimpleNamespace

from offroad_seg_ros.core.stamps import Stamp, from_ns, seconds_to_ns, to_ns, to_seconds


def test_stamps_round_trip_through_ns():
    ns = 1_700_000_000 * 10**9 + 5
    assert from_ns(ns) == Stamp(1_700_000_000, 5) and to_ns(from_ns(ns)) == ns
    sec, nanosec = from_ns(999_999_999)  # unpacks into a message's two fields
    assert (sec, nanosec) == (0, 999_999_999)
    msg_stamp = SimpleNamespace(sec=2, nanosec=500_000_000)  # any object with the two fields
    assert to_ns(msg_stamp) == 2_500_000_000 and to_seconds(msg_stamp) == 2.5
    assert seconds_to_ns(0.02) == 20_000_000 and seconds_to_ns(0.5) == 500_000_000
