"""The node's logic without ROS: newest-frame worker, frame pipeline on real
serialized messages, diagnostics, parameters and launch files."""

import ast
import re
import threading
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rosbags.typesys import Stores, get_typestore

from offroad_seg_ros.core.stamps import Stamp
from offroad_seg_ros.inference.segmenter import Segmenter
from offroad_seg_ros.node.health import OK, WARN
from offroad_seg_ros.node.latest import LatestFrameWorker
from offroad_seg_ros.node.params import PARAMETERS, check_parameters, parse_cost_overrides
from offroad_seg_ros.node.pipeline import FramePipeline, wanted_outputs

REPO = Path(__file__).resolve().parents[1]
TS = get_typestore(Stores.ROS2_HUMBLE)
Image = TS.types["sensor_msgs/msg/Image"]
CompressedImage = TS.types["sensor_msgs/msg/CompressedImage"]
Header = TS.types["std_msgs/msg/Header"]
Time = TS.types["builtin_interfaces/msg/Time"]


def test_a_busy_model_takes_only_the_newest_frame():
    """Inference never queues behind the camera: frames arriving while the
    model is busy replace each other, the model then takes the newest, and
    every frame ends in exactly one count. (Decided by events, not by timing,
    so the verdict is the same on a loaded computer.)"""
    started, release = threading.Event(), threading.Event()
    taken = []

    def model(item):
        taken.append(item)
        started.set()
        assert release.wait(60)

    worker = LatestFrameWorker(model)
    worker.submit(0)
    assert started.wait(60)
    for i in range(1, 250):  # the model is still on frame 0
        worker.submit(i)
    release.set()
    assert worker.idle(60)
    worker.stop()
    assert taken == [0, 249]
    assert (worker.received, worker.processed, worker.dropped) == (250, 2, 248)


def test_idle_waits_for_the_frame_in_progress():
    worker = LatestFrameWorker(lambda item: time.sleep(0.2))
    worker.submit(1)
    assert worker.idle()
    assert worker.processed == 1  # not only taken: finished
    worker.stop()


def test_call_runs_on_the_worker_thread_ahead_of_frames():
    seen = []
    worker = LatestFrameWorker(lambda item: seen.append(("frame", threading.get_ident())))
    worker.submit(1)  # may already be taken; a second one waits behind the call below
    thread = worker.call(threading.get_ident)
    assert thread != threading.get_ident()
    with pytest.raises(ZeroDivisionError):
        worker.call(lambda: 1 / 0)  # the caller gets the exception; the worker carries on
    worker.submit(2)
    assert worker.idle()
    assert {t for _, t in seen} == {thread} and worker.failed == 0
    worker.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        worker.call(lambda: None)


def test_a_call_stops_waiting_when_interrupted():
    """A signal during a model load or warm-up ends the node's wait at once
    (the call itself runs on: a load cannot be interrupted)."""
    from offroad_seg_ros.node.shutdown import Shutdown, ShutdownRequested

    shutdown = Shutdown()
    release = threading.Event()
    polls = []

    def interrupt():
        polls.append(1)
        if len(polls) == 3:  # a signal came while waiting
            shutdown.requested.set()
        shutdown.check()

    worker = LatestFrameWorker(lambda item: None)
    with pytest.raises(ShutdownRequested):
        worker.call(lambda: release.wait(60), interrupt)
    assert len(polls) == 3
    release.set()
    assert worker.stop()


def test_memory_stays_flat_over_thousands_of_frames():
    worker = LatestFrameWorker(lambda item: None)
    frame = np.zeros(960 * 540 * 3, np.uint8).tobytes()
    for _ in range(200):
        worker.submit(frame)
    worker.idle()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for _ in range(4000):
        worker.submit(bytes(frame[:1000]))
    worker.idle()
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    worker.stop()
    assert grown < 200_000, grown


def test_worker_survives_a_failing_frame():
    errors = []

    def model(item):
        if item == 1:
            raise RuntimeError("boom")

    worker = LatestFrameWorker(model, on_error=lambda item, exc: errors.append(str(exc)))
    for i in range(3):
        worker.submit(i)
        assert worker.idle()
    worker.stop()
    assert errors == ["boom"] and worker.failed == 1 and worker.processed == 2


@pytest.fixture(scope="module")
def pipeline(tiny_artifact):
    return FramePipeline(Segmenter(tiny_artifact, device="cpu", warmup_size=None))


def _raw_image(rgb, encoding="rgb8", frame_id="cam_front", sec=100, nanosec=5):
    data = rgb if encoding == "rgb8" else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    msg = Image(Header(Time(sec, nanosec), frame_id), rgb.shape[0], rgb.shape[1], encoding, 0,
                rgb.shape[1] * 3, data.ravel())
    return bytes(TS.serialize_cdr(msg, Image.__msgtype__))


def test_pipeline_outputs_keep_header_and_size(pipeline, table):
    rgb = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    res = pipeline.process(_raw_image(rgb), ["mask", "cost", "overlay"])
    assert (res.header.sec, res.header.nanosec, res.header.frame_id) == (100, 5, "cam_front")
    mask = res.outputs["mask"]
    assert (mask["height"], mask["width"], mask["encoding"], mask["step"]) == (120, 200, "mono8", 200)
    m = np.frombuffer(mask["data"], np.uint8).reshape(120, 200)
    cost = np.frombuffer(res.outputs["cost"]["data"], np.uint8).reshape(120, 200)
    np.testing.assert_array_equal(cost, table.cost_lut()[m])
    assert res.outputs["overlay"]["encoding"] == "rgb8" and res.outputs["overlay"]["step"] == 600
    # bgr8 input of the same picture gives the same mask.
    res_bgr = pipeline.process(_raw_image(rgb, "bgr8"), ["mask"])
    assert res_bgr.outputs["mask"]["data"] == mask["data"]


def test_pipeline_compressed(tiny_artifact):
    pipe = FramePipeline(Segmenter(tiny_artifact, device="cpu", warmup_size=None), compressed=True)
    rgb = np.random.default_rng(1).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".png", rgb)
    raw = bytes(TS.serialize_cdr(CompressedImage(Header(Time(7, 8), "c"), "png", buf.ravel()),
                                 CompressedImage.__msgtype__))
    res = pipe.process(raw, ["mask"])
    assert res.header.sec == 7 and res.outputs["mask"]["width"] == 96


def test_bad_frames_are_counted_and_skipped(pipeline):
    before = pipeline.health.bad
    msg = Image(Header(Time(1, 0), "c"), 4, 4, "yuv999", 0, 8, np.zeros(32, np.uint8))
    assert pipeline.process(bytes(TS.serialize_cdr(msg, Image.__msgtype__)), ["mask"]) is None
    assert pipeline.process(b"\x00\x01\x00\x00garbage", ["mask"]) is None
    assert pipeline.health.bad == before + 2 and "truncated" in pipeline.health.last_bad
    level, message, values = pipeline.diagnostics(received=10, dropped=0)
    assert dict(values)["bad_frames"] == str(before + 2)


def test_diagnostics_report_rate_latency_and_device(tiny_artifact):
    pipeline = FramePipeline(Segmenter(tiny_artifact, device="cpu", warmup_size=None))
    level, message, _ = pipeline.diagnostics(0, 0, 0)
    assert level == WARN and "no frames" in message
    now = time.monotonic()
    for i in range(20):
        pipeline.health.frame_done(Stamp(100, 0), 100.010 + 0.001 * i, done_at=now - 1 + i * 0.05)
    level, message, values = pipeline.diagnostics(25, 5, now=now)
    v = dict(values)
    assert level == OK
    assert v["frames_dropped"] == "5" and v["device"] == "cpu" and v["model"] == "tiny-random"
    assert 19.0 < float(v["latency_p50_ms"]) < 20.5 and float(v["fps"]) > 15


def test_colour_outputs_only_while_subscribed():
    enabled = {"mask": True, "cost": True, "confidence": False, "color": True, "overlay": True}
    subs = {"color": 0, "overlay": 2}
    assert wanted_outputs(enabled, lambda n: subs.get(n, 0)) == ["mask", "cost", "overlay"]


def test_cost_override_parameter():
    assert parse_cost_overrides(["", "Dry Grass=60", "Lush Bushes = 254"]) == {"Dry Grass": 60, "Lush Bushes": 254}
    with pytest.raises(ValueError, match="not 'Class Name=cost'"):
        parse_cost_overrides(["Dry Grass"])
    with pytest.raises(ValueError, match="not an integer"):
        parse_cost_overrides(["Rocks=high"])


@pytest.mark.parametrize("name, value, match", [
    ("qos_reliability", "Reliable", "qos_reliability must be best_effort or reliable, got 'Reliable'"),
    ("qos_depth", 0, "qos_depth must be at least 1, got 0"),
    ("max_rate", -5.0, "max_rate must be >= 0 Hz"),
    ("diagnostics_period", 0.0, "diagnostics_period must be > 0 s"),
    ("model", "", "parameter model is empty"),
])
def test_bad_node_parameters_are_named(name, value, match):
    defaults = yaml.safe_load((REPO / "config" / "segment.yaml").read_text())["/**"]["ros__parameters"]
    check_parameters({**defaults, "model": "models/desert"})  # the shipped defaults pass
    with pytest.raises(ValueError, match=re.escape(match)):
        check_parameters({**defaults, "model": "models/desert", name: value})


def test_segment_yaml_declares_every_node_parameter():
    params = yaml.safe_load((REPO / "config" / "segment.yaml").read_text())["/**"]["ros__parameters"]
    assert {name: default for name, (default, _) in PARAMETERS.items()} == params


def test_node_config_derives_what_the_node_runs_with():
    from offroad_seg_ros.node.params import NodeConfig

    defaults = yaml.safe_load((REPO / "config" / "segment.yaml").read_text())["/**"]["ros__parameters"]
    plain = NodeConfig.from_params({**defaults, "model": "m"})
    assert plain.cameras == [""] and plain.grid is None and plain.min_period == 0.0
    assert plain.image_topic == "image" and plain.enabled["mask"] and not plain.enabled["confidence"]
    c = NodeConfig.from_params({**defaults, "model": "m", "cameras": ["front", "rear"], "max_rate": 4.0,
                                "publish_obstacles": True, "grid_size": [6.0, 4.0], "grid_resolution": 0.1,
                                "compressed": True})
    assert c.cameras == ["front", "rear"] and c.min_period == 0.25 and c.image_topic == "image/compressed"
    assert (c.grid.rows, c.grid.cols) == (40, 60)
    with pytest.raises(ValueError, match="distinct non-empty names"):
        NodeConfig.from_params({**defaults, "model": "m", "cameras": ["front", "front"]})


def test_ground_outputs_fuse_once_a_batch_and_build_only_wanted_fields():
    from offroad_seg_ros.ground.mapper import GroundFrame
    from offroad_seg_ros.node.ground_outputs import GroundOutputs
    from offroad_seg_ros.node.params import NodeConfig

    defaults = yaml.safe_load((REPO / "config" / "segment.yaml").read_text())["/**"]["ros__parameters"]
    c = NodeConfig.from_params({**defaults, "model": "m", "cameras": ["a", "b"], "publish_grid": True,
                                "publish_obstacles": True, "grid_size": [1.0, 1.0], "grid_resolution": 0.5})
    ground = GroundOutputs(c)
    frame = GroundFrame(np.full((2, 2), 255, np.uint8), np.zeros((2, 2), bool), False, np.ones((2, 2), np.int32))
    assert ground.fused({"grid": None}) == {}  # no grid yet
    assert ground.take("a", frame, 7 * 10**9 + 9, wanted=()) == {}  # fused: no grid outputs of its own
    fused = ground.fused({"grid": None, "obstacles": None, "diagnostics": None})
    assert set(fused) == {"grid", "obstacles"} and fused["grid"]["header"]["stamp"] == {"sec": 7, "nanosec": 9}
    assert list(fused["grid"]["data"]) == [-1] * 4 and fused["obstacles"]["width"] == 0
    assert ground.fused({"grid": None}) == {}  # once a batch: nothing new since
    assert ground.map_fields() is None and ground.diagnostics() == []  # no ~/map


def test_message_fields_fill_nested_messages():
    from types import SimpleNamespace as NS

    from offroad_seg_ros.ground.projection import GridSpec
    from offroad_seg_ros.node.messages import fill, grid_fields, header_fields

    def blank_grid():
        pose = NS(position=NS(x=0.0, y=0.0), orientation=NS(w=0.0))
        return NS(header=NS(stamp=NS(sec=0, nanosec=0), frame_id=""), data=None,
                  info=NS(map_load_time=NS(sec=0, nanosec=0), resolution=0.0, width=0, height=0, origin=pose))

    spec = GridSpec(0.5, 2.0, 1.0)
    occupancy = np.arange(spec.rows * spec.cols, dtype=np.int8).reshape(spec.rows, spec.cols) - 1
    msg = fill(blank_grid(), grid_fields(spec, occupancy, header_fields(Stamp(7, 9), "base_link")))
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (7, 9, "base_link")
    assert (msg.info.map_load_time.sec, msg.info.map_load_time.nanosec) == (7, 9)
    assert (msg.info.width, msg.info.height, msg.info.resolution) == (spec.cols, spec.rows, 0.5)
    assert (msg.info.origin.position.x, msg.info.origin.position.y) == tuple(float(v) for v in spec.origin)
    assert msg.info.origin.orientation.w == 1.0
    assert list(msg.data) == occupancy.ravel().tolist()  # row-major from the origin corner, -1 unknown


def test_max_rate_takes_one_frame_per_period():
    from offroad_seg_ros.node.camera import Camera

    cam = Camera("front", pipeline=None)  # type: ignore[arg-type]  # rate limiting needs no pipeline
    taken = [t for t in range(100) if cam.accept(float(t), 25.0)]  # frames every 1 of 100 time units
    assert taken == [0, 25, 50, 75] and cam.rate_limited == 96
    assert all(Camera("x", None).accept(float(t), 0.0) for t in range(5))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["segment.launch.py", "cameras.launch.py", "evaluate.launch.py"])
def test_launch_files_use_only_declared_arguments_and_existing_executables(name):
    # `launch` is not on PyPI: read the file instead of running it. Every
    # LaunchConfiguration it reads must be declared (else `ros2 launch` fails at
    # run time), and every node it starts must be one this package installs.
    tree = ast.parse((REPO / "launch" / name).read_text())
    used = _names_passed(tree, "LaunchConfiguration")
    assert used and used <= _launch_arguments(name), f"{name} reads undeclared {used - _launch_arguments(name)}"
    executables = {kw.value.value for n in ast.walk(tree) if isinstance(n, ast.Call)
                   for kw in n.keywords if kw.arg == "executable"}
    installed = {line.split("=")[0].strip() for line in
                 (REPO / "setup.py").read_text().split('"console_scripts": [')[1].split("]")[0].split(",")
                 if "=" in line}
    installed = {name.strip().strip('"') for name in installed}
    assert executables <= installed, f"{name} starts {executables - installed}; setup.py installs {installed}"


def _strings(node: ast.AST) -> set[str]:
    """The names a launch file iterates over: a tuple of string constants, possibly with
    *PARAMETER_ARGUMENTS in it, or PARAMETER_ARGUMENTS(.items()) itself."""
    from offroad_seg_ros.node.launch_args import PARAMETER_ARGUMENTS

    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        node = node.func.value
    if getattr(node, "id", "") == "PARAMETER_ARGUMENTS":
        return set(PARAMETER_ARGUMENTS)
    out: set[str] = set()
    for elt in getattr(node, "elts", []):
        if isinstance(elt, ast.Constant):
            out.add(elt.value)
        elif isinstance(elt, ast.Starred):
            out |= _strings(elt.value)
    return out


def _names_passed(tree: ast.AST, func: str) -> set[str]:
    """Every name given as the first argument of `func(...)`: a constant, or the variable of a
    comprehension over names."""
    names: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == func and isinstance(n.args[0], ast.Constant):
            names.add(n.args[0].value)
        if isinstance(n, (ast.DictComp, ast.ListComp, ast.SetComp, ast.GeneratorExp)):
            target = n.generators[0].target
            var = target.elts[0] if isinstance(target, ast.Tuple) else target
            if any(isinstance(c, ast.Call) and getattr(c.func, "id", "") == func and isinstance(c.args[0], ast.Name)
                   and c.args[0].id == getattr(var, "id", None) for c in ast.walk(n)):
                names |= _strings(n.generators[0].iter)
    return names


def _launch_arguments(name: str) -> set[str]:
    return _names_passed(ast.parse((REPO / "launch" / name).read_text()), "DeclareLaunchArgument")


def test_readme_launch_commands_use_declared_arguments():
    # The README and the pages it links to in docs/.
    readme = "\n".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    commands = re.findall(r"ros2 launch offroad_seg_ros (\S+\.launch\.py)((?: \w+:=\S+| \.\.\.)*)", readme)
    assert {name for name, _ in commands} >= {"segment.launch.py", "cameras.launch.py", "evaluate.launch.py"}
    for name, args in commands:
        used = set(re.findall(r"(\w+):=", args))
        assert used <= _launch_arguments(name), f"README passes {used - _launch_arguments(name)} to {name}"
    # Every argument of the main launch file is documented, and `backend:=` in the text is real.
    for arg in _launch_arguments("segment.launch.py"):
        assert f"`{arg}`" in readme, arg
    for arg in re.findall(r"`(\w+):=", readme):
        assert arg in _launch_arguments("segment.launch.py") | _launch_arguments("evaluate.launch.py"), arg


@pytest.mark.parametrize("changes, match", [
    ({"publish_grid": True, "fused_max_age": 0.0}, "fused_max_age must be > 0 s, got 0.0"),
    ({"publish_map": True, "map_resolution": 0.0, "map_mark_after": 0},
     "parameters out of range (> 0; map_mark_after >= 1, map_odom_slop >= 0): map_resolution=0.0, map_mark_after=0"),
    ({"publish_map": True, "map_odom_slop": -0.1}, "map_odom_slop=-0.1"),
])
def test_bad_ground_and_map_parameters_are_named(changes, match):
    defaults = yaml.safe_load((REPO / "config" / "segment.yaml").read_text())["/**"]["ros__parameters"]
    with pytest.raises(ValueError, match=re.escape(match)):
        check_parameters({**defaults, "model": "models/desert", **changes})
    # the same values are not looked at while the outputs they belong to are off
    check_parameters({**defaults, "model": "models/desert", **{k: v for k, v in changes.items()
                                                              if not k.startswith("publish_")}})


def test_frame_notes_throttle_each_kind_on_its_own():
    """A degraded camera's warning must not hide a bad frame's (the node logs every kind from one
    call site, so rclpy's per-call-site throttle would); each kind at most once a period."""
    from types import SimpleNamespace as NS

    from offroad_seg_ros.node.health import Health
    from offroad_seg_ros.node.pipeline import FrameNotes

    now = [100.0]
    notes, health = FrameNotes(period=5.0, clock=lambda: now[0]), Health("/image")
    degraded = NS(conditions=["frozen"], shifted=False)
    health.last_degraded, health.last_bad = "frozen: the same image 2 times in a row", "unsupported encoding 'xyz9'"
    assert notes.note(degraded, health, 0) == ("warning", f"camera degraded on /image: {health.last_degraded}")
    assert notes.note(None, health, 0) == ("warning", "skipping bad frame on /image: unsupported encoding 'xyz9'")
    assert notes.note(degraded, health, 0) is None and notes.note(None, health, 0) is None  # within 5 s
    health.failed, health.last_failure = 1, "RuntimeError: boom"
    assert notes.note(None, health, 0) == ("error", "inference failed: RuntimeError: boom")
    assert notes.note(NS(conditions=[], shifted=False), health, 1) is None  # a frame processed as it should be
    now[0] += 5.0
    assert notes.note(degraded, health, 0) is not None
