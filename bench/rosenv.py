"""Imported first by the ROS benchmarks: their own ROS_DOMAIN_ID, discovery on
loopback, the large-frame Fast DDS profile (as the tests set them), and the
repository on sys.path. Must run before rclpy is imported."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# One domain per benchmark run, shared with the processes it starts (they import this too).
os.environ.setdefault("OFFROAD_SEG_BENCH_DOMAIN", str(random.Random(os.getpid()).randint(1, 100)))
os.environ["ROS_DOMAIN_ID"] = os.environ["OFFROAD_SEG_BENCH_DOMAIN"]
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_large_frames.xml"))
sys.path.insert(0, str(REPO))
