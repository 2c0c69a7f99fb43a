"""Soak: segmentation_node under real rclpy, fed a long run of mixed good and
bad frames at twice the rate it can process, while its RSS and the mask
latency are sampled. Not a test (minutes long); the suite has a short version.

python bench/soak.py [--frames 10000] [--bad 0.1] [--json bench/soak_results.json]

Reports: RSS after warm-up vs at the end, p50/p95 latency per tenth of the
run, and whether every frame is accounted for in /diagnostics
(frames_in = processed + dropped + bad + rate_limited + failed, nothing in flight).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
import rosenv  # noqa: E402, F401  (domain, loopback, Fast DDS profile; before rclpy.init)
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from offroad_seg_ros.core.stamps import from_ns, to_seconds  # noqa: E402

H, W = 270, 480
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def frames(rng: np.random.Generator, bad_share: float):
    """Endless (kind, Image) pairs: good frames, unstamped good frames, and
    bad ones of several kinds."""
    good = rng.integers(0, 256, H * W * 3, dtype=np.uint8).tobytes()
    i = 0
    while True:
        i += 1
        kind = "good"
        img = Image(height=H, width=W, encoding="rgb8", step=W * 3, data=good)
        r = rng.random()
        if r < bad_share:
            kind = "bad"
            variant = i % 3
            if variant == 0:
                img.encoding = "xyz"
            elif variant == 1:
                img.step = W * 3 - 1  # step shorter than a row
            else:
                img.height, img.width = 50_000, 50_000  # claims 2.5 Gpixel, carries 389 KB
        elif r < bad_share + 0.05:
            kind = "unstamped"
        if kind != "unstamped":
            img.header.stamp.sec, img.header.stamp.nanosec = from_ns(time.time_ns())
        yield kind, img


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--bad", type=float, default=0.1, help="share of bad frames (default 0.1)")
    parser.add_argument("--json", help="write results as JSON to this path")
    args = parser.parse_args()
    from cpu_bench import cpu_name, light_artifact
    from results import RESULTS, markdown, row, rss_mib

    with tempfile.TemporaryDirectory() as d:
        model = light_artifact(Path(d))
        # Reliable input with a deep queue: every frame reaches the node, so all are accounted for there.
        cmd = [str(Path(sys.executable).with_name("segmentation_node")), "--ros-args", "-p", f"model:={model}",
               "-p", "backend:=onnxruntime", "-p", "qos_reliability:=reliable", "-p", "qos_depth:=100"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rclpy.init()
        node = Node("soak")
        pub = node.create_publisher(Image, "/image", RELIABLE)
        lat: list[tuple[float, float]] = []  # (received at, latency s)
        diags: list[dict[str, str]] = []
        # Unstamped frames (stamp 0) have no latency: counted by the node, left out here too.
        node.create_subscription(Image, "/segmentation_node/mask", lambda m: lat.append(
            (time.monotonic(), time.time() - to_seconds(m.header.stamp)))
            if m.header.stamp.sec else None, RELIABLE)
        node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diags.append(
            {kv.key: kv.value for kv in m.status[0].values}), 10)
        while pub.get_subscription_count() == 0:
            rclpy.spin_once(node, timeout_sec=0.1)
        source = frames(np.random.default_rng(0), args.bad)
        # The node's rate: frames answered one at a time.
        t0 = time.monotonic()
        for _ in range(20):
            n0 = len(lat)
            pub.publish(next(g for g in source if g[0] == "good")[1])
            while len(lat) == n0:
                rclpy.spin_once(node, timeout_sec=0.05)
        rate = 20 / (time.monotonic() - t0)
        offered = 2 * rate
        print(f"CPU: {cpu_name()}; node rate {rate:.1f} frames/s, offering {offered:.1f} frames/s, "
              f"{args.frames} frames", flush=True)
        warm = len(lat)
        rss: list[tuple[int, float]] = []
        start = time.monotonic()
        sent = 20
        next_sample = start
        for i in range(args.frames):
            due = start + i / offered
            while (now := time.monotonic()) < due:
                rclpy.spin_once(node, timeout_sec=due - now)
            if now >= next_sample:
                rss.append((i, rss_mib(proc.pid)))
                next_sample = now + 1.0
            pub.publish(next(source)[1])
            sent += 1
        end = time.monotonic() + 10
        while time.monotonic() < end and not (diags and diags[-1]["frames_in"] == str(sent)
                                              and diags[-1]["frames_in_flight"] == "0"):
            rclpy.spin_once(node, timeout_sec=0.1)
        rss.append((args.frames, rss_mib(proc.pid)))
        final = {k: int(v) for k, v in diags[-1].items() if k.startswith(("frames", "bad", "inference", "unstamped"))}
        proc.send_signal(2)
        code = proc.wait(30)
        node.destroy_node()
        rclpy.shutdown()

    after_warmup = next(r for i, r in rss if i >= args.frames // 10)
    row("node rate (one frame at a time), 480x270, light profile ORT", rate, "frames/s", "soak_node_fps")
    row("offered rate", offered, "frames/s", "soak_offered_fps")
    row("run length", time.monotonic() - start, "s", "soak_seconds")
    row("RSS after warm-up (10% of the run)", after_warmup, "MiB", "soak_rss_warm_mib")
    row("RSS at the end", rss[-1][1], "MiB", "soak_rss_end_mib")
    row("RSS growth after warm-up", 100 * (rss[-1][1] / after_warmup - 1), "%", "soak_rss_growth_pct")
    lats = [v for _, v in lat[warm:]]
    tenths = np.array_split(np.array(lats) * 1e3, 10)
    for k in (0, 4, 9):
        row(f"latency p95, tenth {k + 1} of the run", float(np.percentile(tenths[k], 95)), "ms",
            f"soak_p95_tenth{k + 1}_ms")
    row("latency p50 over the run", float(np.percentile(lats, 50) * 1e3), "ms", "soak_p50_ms")
    row("frames sent", sent, "frames", "soak_sent")
    for key in ("frames_in", "frames_processed", "frames_dropped", "bad_frames", "frames_rate_limited",
                "inference_failures", "frames_in_flight", "unstamped_frames"):
        row(f"/diagnostics {key}", final[key], "frames", f"soak_{key}")
    accounted = final["frames_in"] == sent and final["frames_in"] == sum(
        final[k] for k in ("frames_processed", "frames_dropped", "bad_frames", "frames_rate_limited",
                           "inference_failures"))
    row("every frame accounted for (1 = yes)", float(accounted), "", "soak_accounted")
    row("node exit code after SIGINT", code, "", "soak_exit_code")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_name(), "results": RESULTS}, indent=1))
    print("\n" + markdown("soak"))


if __name__ == "__main__":
    main()
