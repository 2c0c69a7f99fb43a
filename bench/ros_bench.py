"""Through real DDS on this machine (loopback, Fast DDS, the large-frame
profile): 960x540 rgb8 camera frames to the node and masks back.

python bench/ros_bench.py [--frames 100] [--only SECTION ...] [--json bench/ros_results.json]

Sections, one run:
- transport: publish -> the node's callback -> mono8 mask published back ->
  received, with a trivial model (an echo process built from the node's own
  parts: raw subscription, newest-frame worker, FramePipeline), against the
  same with a plain (deserializing) rclpy Image subscription;
- cameras: two cameras in one node vs two nodes;
- node: the light profile end to end, segmentation_node (onnxruntime fp32, then
  OpenVINO precision auto) offered 10 and 30 Hz;
- replay: `offroad-seg replay --lockstep` throughput on a generated bag;
- contention: the light profile through OpenVINO (precision auto), one camera
  and two cameras in one node, offered 30 Hz per camera, on an idle machine
  and with every core kept busy by other processes (a robot's other work):
  masks/s, latency, frames dropped and how /diagnostics reports them;
- large_frames: best-effort 960x540 rgb8 frames at 30 Hz between two plain
  processes (no node), 3 x --frames of them, with Fast DDS's default transport
  and with config/fastdds_large_frames.xml: frames received, and the loss the
  node's upstream count (node/stamp_gaps.py) finds against the true loss.
Latency is stamp (set at publish) -> mask received, wall clock.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
import rosenv  # noqa: E402, F401  (domain, loopback, Fast DDS profile; before rclpy.init)
from rclpy.context import Context  # noqa: E402
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from results import RESULTS, markdown, row, rss_mib  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from offroad_seg_ros.core.stamps import from_ns, to_seconds  # noqa: E402

BIN = Path(sys.executable).parent
H, W = 540, 960


def _stamp_now(msg: Image) -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = from_ns(time.time_ns())


def echo(mode: str) -> None:
    """The node's I/O path with a trivial model: every frame answered with an all-zero mask."""
    from offroad_seg_ros.data.image_msgs import image_msg_to_rgb
    from offroad_seg_ros.inference.segmenter import Segmentation
    from offroad_seg_ros.node.latest import LatestFrameWorker
    from offroad_seg_ros.node.pipeline import FramePipeline

    class Trivial:
        def segment_batch(self, images, outputs):
            return [Segmentation(mask=np.zeros(rgb.shape[:2], np.uint8)) for rgb in images]

    rclpy.init()
    node = Node("echo")
    pub = node.create_publisher(Image, "~/mask", 1)
    pipe = FramePipeline(Trivial())  # type: ignore[arg-type]

    def raw_frame(raw: bytes) -> None:
        res = pipe.process(raw, ["mask"])
        if res is not None:
            out = Image(**res.outputs["mask"])
            out.header.stamp.sec, out.header.stamp.nanosec = res.header.sec, res.header.nanosec
            pub.publish(out)

    def plain_frame(msg: Image) -> None:
        rgb = image_msg_to_rgb(msg)
        pub.publish(Image(header=msg.header, height=rgb.shape[0], width=rgb.shape[1], encoding="mono8",
                          step=rgb.shape[1], data=np.zeros(rgb.shape[:2], np.uint8).tobytes()))

    if mode == "raw":
        worker = LatestFrameWorker(raw_frame)
        node.create_subscription(Image, "image", worker.submit, qos_profile_sensor_data, raw=True)
    else:
        worker = LatestFrameWorker(plain_frame)
        node.create_subscription(Image, "image", worker.submit, qos_profile_sensor_data)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()


class Client:
    def __init__(self, mask_topic: str):
        self.ctx = Context()
        rclpy.init(context=self.ctx)
        self.node = Node("bench_client", context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.pub = self.node.create_publisher(Image, "/image", qos_profile_sensor_data)
        self.lat: list[float] = []
        self.node.create_subscription(Image, mask_topic, self._on_mask,
                                      QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))

    def _on_mask(self, msg: Image) -> None:
        self.lat.append(time.time() - to_seconds(msg.header.stamp))

    def connect(self, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while self.pub.get_subscription_count() == 0:
            if time.monotonic() > end:
                raise RuntimeError("the node never subscribed")
            self.ex.spin_once(timeout_sec=0.1)

    def offer(self, rate: float, n: int) -> tuple[float, float, int]:
        """Offer n frames at `rate` Hz; (p50 ms, p95 ms, masks received)."""
        img = Image(height=H, width=W, encoding="rgb8", step=W * 3,
                    data=np.random.default_rng(0).integers(0, 256, H * W * 3, dtype=np.uint8).tobytes())
        # warm-up
        for _ in range(5):
            _stamp_now(img)
            self.pub.publish(img)
            self._spin_for(0.3)
        self.lat.clear()
        start = time.monotonic()
        for i in range(n):
            due = start + i / rate
            while (now := time.monotonic()) < due:
                self.ex.spin_once(timeout_sec=due - now)
            _stamp_now(img)
            self.pub.publish(img)
        self._spin_for(1.5)
        lat = np.array(self.lat) * 1e3
        return float(np.percentile(lat, 50)), float(np.percentile(lat, 95)), len(lat)

    def _spin_for(self, s: float) -> None:
        end = time.monotonic() + s
        while time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.01)

    def close(self) -> None:
        self.node.destroy_node()
        self.ctx.try_shutdown()


def _run_against(cmd: list[str], mask_topic: str, rates: list[float], n: int, label: str, key: str) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = Client(mask_topic)
    try:
        client.connect()
        for rate in rates:
            p50, p95, got = client.offer(rate, n)
            row(f"{label}, {rate:g} Hz: p50 stamp -> mask", p50, "ms", f"{key}_{rate:g}hz_p50_ms")
            row(f"{label}, {rate:g} Hz: p95", p95, "ms", f"{key}_{rate:g}hz_p95_ms")
            row(f"{label}, {rate:g} Hz: masks received of {n}", got, "frames", f"{key}_{rate:g}hz_received")
    finally:
        client.close()
        proc.send_signal(2)
        proc.wait(30)


def bench_two_cameras(light: Path, seconds: float = 10.0) -> None:
    """2 cameras in one node (one model, batched) vs 2 nodes: frames/s, start-up, RSS.
    Both cameras offered 960x540 rgb8 at 30 Hz, more than the CPU can do."""
    base = [str(BIN / "segmentation_node"), "--ros-args", "-p", f"model:={light}", "-p", "backend:=onnxruntime",
            "-p", "publish_cost:=false"]
    layouts = {
        "one node, cameras [a, b]": ([[*base, "-p", "cameras:=[a, b]"]], ["/segmentation_node/a/mask",
                                                                          "/segmentation_node/b/mask"]),
        "two nodes": ([[*base, "-r", "__ns:=/a", "-r", "image:=/a/image"],
                       [*base, "-r", "__ns:=/b", "-r", "image:=/b/image"]],
                      ["/a/segmentation_node/mask", "/b/segmentation_node/mask"]),
    }
    img = Image(height=H, width=W, encoding="rgb8", step=W * 3,
                data=np.random.default_rng(0).integers(0, 256, H * W * 3, dtype=np.uint8).tobytes())
    for label, (cmds, topics) in layouts.items():
        key = "cams_one_node" if "one" in label else "cams_two_nodes"
        ctx = Context()
        rclpy.init(context=ctx)
        node = Node("bench_cams", context=ctx)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        got = {t: 0 for t in topics}
        for t in topics:
            node.create_subscription(Image, t, lambda m, t=t, got=got: got.__setitem__(t, got[t] + 1),
                                     QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        pubs = [node.create_publisher(Image, f"/{c}/image", qos_profile_sensor_data) for c in "ab"]
        t0 = time.monotonic()
        procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in cmds]
        try:
            while not all(p.get_subscription_count() for p in pubs):
                ex.spin_once(timeout_sec=0.05)
            row(f"{label}: start-up, process start -> both cameras subscribed", time.monotonic() - t0, "s",
                f"{key}_startup_s")
            start = time.monotonic()
            counting = False
            while time.monotonic() - start < 2 + seconds:
                if not counting and time.monotonic() - start > 2:  # 2 s warm-up, then count
                    got.update({t: 0 for t in topics})
                    counting = True
                for p in pubs:
                    _stamp_now(img)
                    p.publish(img)
                end = time.monotonic() + 1 / 30
                while time.monotonic() < end:
                    ex.spin_once(timeout_sec=max(0.0, end - time.monotonic()))
            row(f"{label}: masks/s, both cameras together", sum(got.values()) / seconds, "frames/s", f"{key}_fps")
            row(f"{label}: RSS, all processes", sum(rss_mib(p.pid) for p in procs), "MiB", f"{key}_rss_mib")
        finally:
            for p in procs:
                p.send_signal(2)
                p.wait(30)
            node.destroy_node()
            ctx.try_shutdown()


PROFILE_VARIABLES = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
LOSS_RATE = 30  # Hz; frame i is stamped 1 s + i / LOSS_RATE, as a camera's clock would


def loss_peer(role: str, profile: str, n: int) -> None:
    """One end of the large_frames section, in its own process: `pub` offers n frames best effort
    and prints how many; `sub` takes them (the node's raw subscription) until SIGINT, then prints
    what arrived and what the node's upstream count makes of the rest, as JSON."""
    for name in PROFILE_VARIABLES:  # before rclpy.init: Fast DDS reads it as the participant starts
        os.environ.pop(name, None)
    if profile == "large":
        os.environ[PROFILE_VARIABLES[0]] = str(rosenv.REPO / "config" / "fastdds_large_frames.xml")
    from offroad_seg_ros.data.image_msgs import header_stamp_ns
    from offroad_seg_ros.node.stamp_gaps import StampGaps

    rclpy.init()
    node = Node(f"large_frames_{role}")
    period = 1_000_000_000 // LOSS_RATE
    if role == "pub":
        pub = node.create_publisher(Image, "/large_frames", qos_profile_sensor_data)
        while pub.get_subscription_count() == 0:
            rclpy.spin_once(node, timeout_sec=0.05)
        time.sleep(1.0)  # the reader's side of the match (see test/rosutil.py send_until)
        img = Image(height=H, width=W, encoding="rgb8", step=W * 3,
                    data=np.random.default_rng(0).integers(0, 256, H * W * 3, dtype=np.uint8).tobytes())
        start = time.monotonic()
        for i in range(n):
            time.sleep(max(0.0, start + i / LOSS_RATE - time.monotonic()))
            img.header.stamp.sec, img.header.stamp.nanosec = from_ns(1_000_000_000 + i * period)
            pub.publish(img)
        print(n, flush=True)
        return
    gaps, got = StampGaps(), set()

    def on_frame(raw: bytes) -> None:
        ns = header_stamp_ns(raw)
        if ns is not None:
            got.add((ns - 1_000_000_000) // period)
            gaps.add(ns)

    node.create_subscription(Image, "/large_frames", on_frame, qos_profile_sensor_data, raw=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):  # SIGINT from bench_large_frames
        pass
    # The truth the stamps can show: frames missing between the first and the last that arrived.
    between = max(got) - min(got) + 1 - len(got) if got else 0
    print(json.dumps({"received": len(got), "lost_between": between, "lost_counted": gaps.lost}), flush=True)


def bench_large_frames(n: int) -> None:
    """Best-effort 960x540 frames between two processes, without and with the profile."""
    for profile, label in (("default", "Fast DDS default"), ("large", "fastdds_large_frames.xml")):
        cmd = [sys.executable, __file__, "--loss-peer"]
        sub = subprocess.Popen([*cmd, "sub", profile, str(n)], stdout=subprocess.PIPE, text=True)
        try:
            out = subprocess.run([*cmd, "pub", profile, str(n)], capture_output=True, text=True, timeout=120 + n)
            time.sleep(1.0)  # the last frames in flight
        finally:
            sub.send_signal(2)
        got = json.loads(sub.communicate(timeout=30)[0].splitlines()[-1])
        sent = int(out.stdout.split()[-1])
        key = f"large_frames_{profile}"
        row(f"best effort 960x540 at {LOSS_RATE} Hz, two processes, {label}: received of {sent}", got["received"],
            "frames", f"{key}_received", 0)
        row(f"{label}: lost between first and last received, as counted upstream (StampGaps) / true",
            got["lost_counted"] / got["lost_between"] if got["lost_between"] else float("nan"), "ratio",
            f"{key}_counted_ratio", 3)


def _hog() -> list[subprocess.Popen]:
    """One busy process per core, at the node's priority."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]


def bench_contention(light: Path, seconds: float = 10.0, rate: float = 30.0) -> None:
    """The light profile through OpenVINO under load: one and two cameras,
    idle and with a hog on every core. Every frame offered is accounted for
    by the node's own counts (/diagnostics)."""
    from diagnostic_msgs.msg import DiagnosticArray

    base = [str(BIN / "segmentation_node"), "--ros-args", "-p", f"model:={light}", "-p", "backend:=openvino",
            "-p", "precision:=auto", "-p", "publish_cost:=false", "-p", "diagnostics_period:=1.0"]
    img = Image(height=H, width=W, encoding="rgb8", step=W * 3,
                data=np.random.default_rng(0).integers(0, 256, H * W * 3, dtype=np.uint8).tobytes())
    for names in ([""], ["a", "b"]):
        for loaded in (False, True):
            label = (f"{'two cameras, one node' if len(names) > 1 else 'one camera'}, "
                     f"{'hog on every core' if loaded else 'idle'}")
            key = f"contention_{len(names)}cam_{'hog' if loaded else 'idle'}"
            cmd = [*base, *(["-p", f"cameras:=[{', '.join(names)}]"] if len(names) > 1 else [])]
            ctx = Context()
            rclpy.init(context=ctx)
            node = Node("bench_contention", context=ctx)
            ex = SingleThreadedExecutor(context=ctx)
            ex.add_node(node)
            lat: dict[str, list[float]] = {n: [] for n in names}
            diags: list[DiagnosticArray] = []

            def on_mask(msg: Image, into: list[float]) -> None:
                into.append(time.time() - to_seconds(msg.header.stamp))

            for n in names:
                node.create_subscription(Image, f"/segmentation_node/{n + '/' if n else ''}mask",
                                         lambda m, into=lat[n]: on_mask(m, into),
                                         QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
            node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
            pubs = {n: node.create_publisher(Image, f"/{n + '/' if n else ''}image", qos_profile_sensor_data)
                    for n in names}
            hog = _hog() if loaded else []
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                while not all(p.get_subscription_count() for p in pubs.values()):
                    ex.spin_once(timeout_sec=0.05)
                offered, start = 0, time.monotonic()
                for phase, length in (("warm-up", 2.0), ("measured", seconds)):
                    if phase == "measured":
                        for v in lat.values():
                            v.clear()
                        start = time.monotonic()
                        first_measured_diag = len(diags)
                    t0 = time.monotonic()
                    i = 0
                    while (due := t0 + i / rate) < t0 + length:
                        while (now := time.monotonic()) < due:
                            ex.spin_once(timeout_sec=due - now)
                        for p in pubs.values():
                            _stamp_now(img)
                            p.publish(img)
                        offered += len(pubs)
                        i += 1
                elapsed = time.monotonic() - start
                # The node's own frame rate, as /diagnostics reported it while frames came.
                during = [sum(float(kv.value) for st in d.status for kv in st.values if kv.key == "fps")
                          for d in diags[first_measured_diag:]]
                # Let the last frame settle, then read the node's counts.
                settle = time.monotonic() + 3.0
                first_diag = len(diags)
                while time.monotonic() < settle or len(diags) <= first_diag:
                    ex.spin_once(timeout_sec=0.05)
                status = {st.name.split(": ")[-1]: {kv.key: kv.value for kv in st.values} for st in diags[-1].status}
                got = sum(len(v) for v in lat.values())
                all_lat = np.concatenate([np.array(v) for v in lat.values()]) * 1e3
                row(f"{label}: masks/s, all cameras (offered {rate:g} Hz each)", got / elapsed, "frames/s",
                    f"{key}_fps")
                row(f"{label}: p50 stamp -> mask", float(np.percentile(all_lat, 50)), "ms", f"{key}_p50_ms")
                row(f"{label}: p95", float(np.percentile(all_lat, 95)), "ms", f"{key}_p95_ms")
                counts = {k: sum(int(v[k]) for v in status.values())
                          for k in ("frames_in", "frames_processed", "frames_dropped", "bad_frames",
                                    "frames_rate_limited", "inference_failures", "frames_in_flight")}
                accounted = counts["frames_in"] == sum(v for k, v in counts.items() if k != "frames_in")
                row(f"{label}: frames offered / taken in by the node (DDS best effort)", counts["frames_in"] / offered,
                    "ratio", f"{key}_received_ratio", 3)
                row(f"{label}: frames dropped (newest-frame policy), all cameras", counts["frames_dropped"], "frames",
                    f"{key}_dropped", 0)
                row(f"{label}: every frame accounted for (in = processed + dropped + ...)", float(accounted),
                    "bool", f"{key}_accounted", 0)
                row(f"{label}: /diagnostics fps while measured (mean of {len(during)} reports), all cameras",
                    float(np.mean(during)) if during else float("nan"), "frames/s", f"{key}_diag_fps")
            finally:
                proc.send_signal(2)
                proc.wait(30)
                for h in hog:
                    h.kill()
                    h.wait()
                node.destroy_node()
                ctx.try_shutdown()


SECTIONS = ("transport", "cameras", "node", "replay", "contention", "large_frames")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=100, help="frames per rate (default 100)")
    parser.add_argument("--json", help="write results as JSON to this path")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--echo", choices=["raw", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--loss-peer", nargs=3, metavar=("ROLE", "PROFILE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        return echo(args.echo)
    if args.loss_peer:
        role, profile, count = args.loss_peer
        return loss_peer(role, profile, int(count))
    from cpu_bench import cpu_name
    from cpu_sections.models import light_artifact

    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; Python {platform.python_version()}; "
          f"ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']}")
    n = args.frames
    only = set(args.only or SECTIONS)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "transport" in only:
            for mode in ("raw", "plain"):
                _run_against([sys.executable, __file__, "--echo", mode], "/echo/mask", [10, 30], n,
                             f"transport, {mode} {'CDR' if mode == 'raw' else 'rclpy Image'} subscription",
                             f"transport_{mode}")
        if "large_frames" in only:
            bench_large_frames(3 * n)
        light = light_artifact(tmp) if only - {"transport", "large_frames"} else None
        if "cameras" in only:
            bench_two_cameras(light)
        base = [str(BIN / "segmentation_node"), "--ros-args", "-p", f"model:={light}", "-p", "publish_cost:=false"]
        node = [*base, "-p", "backend:=onnxruntime"]
        if "node" in only:
            for backend, precision in (("onnxruntime", "fp32"), ("openvino", "auto")):
                cmd = [*base, "-p", f"backend:={backend}", "-p", f"precision:={precision}"]
                key = "light" if backend == "onnxruntime" else f"light_{backend}"
                _run_against(cmd, "/segmentation_node/mask", [10, 30], n,
                             f"light profile node ({backend} {precision})", key)
        if "contention" in only:
            bench_contention(light)
        if "replay" in only:
            from offroad_seg_ros.data.bag import write_bag
            from offroad_seg_train.synth import generate

            generate(tmp / "synth", {"test": 20}, seed=0, workers=2, progress=None)
            bag = write_bag(tmp / "synth" / "test", tmp / "bag")
            proc = subprocess.Popen([*node, "-r", "image:=/camera/image_raw"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            try:
                out = subprocess.run([str(BIN / "offroad-seg"), "replay", str(bag), "--out", str(tmp / "replayed"),
                                      "--lockstep", "--quiet", "--wait", "120"], capture_output=True, text=True,
                                     check=True)
                fps = float(out.stdout.split(" frames/s")[0].split()[-1])
                row("replay --lockstep, light profile node, 20 frames 960x540", fps, "frames/s",
                    "replay_lockstep_fps")
            finally:
                proc.send_signal(2)
                proc.wait(30)
    if args.json:
        path = Path(args.json)
        # A partial run updates its sections' rows and keeps the others.
        kept = json.loads(path.read_text())["results"] if args.only and path.is_file() else {}
        path.write_text(json.dumps({"cpu": cpu_name(), "cores": os.cpu_count(), "results": {**kept, **RESULTS}},
                                   indent=1))
    print("\n" + markdown("ROS 2 benchmark (real DDS, loopback)"))


if __name__ == "__main__":
    main()
