"""The node's own callbacks, run against a small rclpy stand-in (fake_rclpy.py)
whose every method is checked against rclpy's real Python sources."""

import ast
import importlib
import inspect
import sys
import threading
from pathlib import Path

import fake_rclpy
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

REPO = Path(__file__).resolve().parents[1]
STUBS = REPO / ".stubs" / "rclpy"
TS = get_typestore(Stores.ROS2_HUMBLE)

# (file under .stubs/rclpy, class or None, stand-in callable)
CHECKED = [
    ("node.py", "Node", fake_rclpy.Node.__init__),
    ("node.py", "Node", fake_rclpy.Node.declare_parameter),
    ("node.py", "Node", fake_rclpy.Node.get_parameter),
    ("node.py", "Node", fake_rclpy.Node.create_publisher),
    ("node.py", "Node", fake_rclpy.Node.create_subscription),
    ("node.py", "Node", fake_rclpy.Node.create_timer),
    ("node.py", "Node", fake_rclpy.Node.get_logger),
    ("node.py", "Node", fake_rclpy.Node.get_clock),
    ("node.py", "Node", fake_rclpy.Node.resolve_topic_name),
    ("node.py", "Node", fake_rclpy.Node.get_fully_qualified_name),
    ("node.py", "Node", fake_rclpy.Node.destroy_node),
    ("publisher.py", "Publisher", fake_rclpy.Publisher.publish),
    ("publisher.py", "Publisher", fake_rclpy.Publisher.get_subscription_count),
    ("impl/rcutils_logger.py", "RcutilsLogger", fake_rclpy.Logger.info),
    ("impl/rcutils_logger.py", "RcutilsLogger", fake_rclpy.Logger.warning),
    ("impl/rcutils_logger.py", "RcutilsLogger", fake_rclpy.Logger.error),
    ("impl/rcutils_logger.py", "RcutilsLogger", fake_rclpy.Logger.fatal),
    ("clock.py", "Clock", fake_rclpy.Clock.now),
    ("__init__.py", None, fake_rclpy.init),
    ("__init__.py", None, fake_rclpy.spin),
    ("utilities.py", None, fake_rclpy.try_shutdown),
    ("logging.py", None, fake_rclpy.get_logger),
]


def _real_params(file, cls, name):
    tree = ast.parse((STUBS / file).read_text())
    scope = tree.body
    if cls:
        scope = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body
    fn = next(n for n in scope if isinstance(n, ast.FunctionDef) and n.name == name)
    a = fn.args
    return ([p.arg for p in a.posonlyargs + a.args], [p.arg for p in a.kwonlyargs], a.kwarg is not None)


@pytest.mark.parametrize("file, cls, fake", CHECKED, ids=lambda x: getattr(x, "__qualname__", str(x)))
def test_stand_in_matches_real_rclpy(file, cls, fake):
    if not STUBS.is_dir():
        pytest.fail("rclpy sources missing: `make test` unpacks rclpy-intellisense into .stubs/")
    positional, kwonly, has_kwargs = _real_params(file, cls, fake.__name__)
    sig = inspect.signature(fake).parameters.values()
    assert [p.name for p in sig if p.kind == p.POSITIONAL_OR_KEYWORD] == positional
    assert [p.name for p in sig if p.kind == p.KEYWORD_ONLY] == kwonly
    assert any(p.kind == p.VAR_KEYWORD for p in sig) == has_kwargs


@pytest.fixture
def node_module(monkeypatch):
    for name, mod in fake_rclpy.modules().items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.delitem(sys.modules, "offroad_seg_ros.node", raising=False)
    module = importlib.import_module("offroad_seg_ros.node")
    yield module
    sys.modules.pop("offroad_seg_ros.node", None)


@pytest.fixture
def make_node(node_module, tiny_artifact, monkeypatch):
    nodes = []

    def make(**params):
        monkeypatch.setattr(fake_rclpy.Node, "overrides", {"model": str(tiny_artifact), "device": "cpu", **params})
        node = node_module.SegmentationNode()
        nodes.append(node)
        return node

    yield make
    for n in nodes:
        n.destroy_node()


def _frame(sec=5, frame_id="cam", encoding="rgb8", h=60, w=80):
    Image, Header, Time = (TS.types[t] for t in ("sensor_msgs/msg/Image", "std_msgs/msg/Header",
                                                 "builtin_interfaces/msg/Time"))
    data = np.random.default_rng(sec).integers(0, 255, h * w * 3, dtype=np.uint8)
    return bytes(TS.serialize_cdr(Image(Header(Time(sec, 7), frame_id), h, w, encoding, 0, w * 3, data),
                                  Image.__msgtype__))


def _deliver(node, raw):
    _, _, callback, _, _ = node.subscriptions[0]
    callback(raw)
    assert node.worker.idle()  # taken, processed and published


def test_declares_parameters_and_subscribes_raw_best_effort(make_node, node_module):
    node = make_node()
    assert set(node.params) == set(node_module.PARAMETERS)
    assert all(d.description for d in node.descriptors.values())
    msg_type, topic, _, qos, raw = node.subscriptions[0]
    assert (msg_type.__name__, topic, raw, qos.depth) == ("Image", "image", True, 1)
    assert qos.reliability == fake_rclpy.ReliabilityPolicy.BEST_EFFORT
    assert set(node.publishers) == {"~/mask", "~/cost", "~/color", "~/overlay", "/diagnostics"}


def test_frame_in_mask_and_cost_out_with_input_header(make_node, table):
    node = make_node()
    _deliver(node, _frame(sec=42, frame_id="front"))
    mask = node.publishers["~/mask"].sent[-1]
    cost = node.publishers["~/cost"].sent[-1]
    assert (mask.header.stamp.sec, mask.header.stamp.nanosec, mask.header.frame_id) == (42, 7, "front")
    assert (mask.height, mask.width, mask.encoding, mask.step) == (60, 80, "mono8", 80)
    m = np.frombuffer(mask.data, np.uint8).reshape(60, 80)
    np.testing.assert_array_equal(np.frombuffer(cost.data, np.uint8).reshape(60, 80), table.cost_lut()[m])
    # Colour outputs only while someone subscribes.
    assert node.publishers["~/color"].sent == [] and node.publishers["~/overlay"].sent == []
    node.publishers["~/overlay"].subscribers = 1
    _deliver(node, _frame(sec=43))
    assert node.publishers["~/overlay"].sent[-1].encoding == "rgb8" and node.publishers["~/color"].sent == []


def test_model_loads_and_runs_on_the_worker_thread(make_node, node_module, monkeypatch):
    # torch.compile's CUDA graphs are kept per thread: loading (with its
    # warm-up) and inference must share one thread, never the executor's.
    threads = []

    class Recording(node_module.Segmenter):
        def segment_batch(self, *args, **kwargs):
            threads.append(threading.get_ident())
            return super().segment_batch(*args, **kwargs)

    monkeypatch.setattr(node_module, "Segmenter", Recording)
    node = make_node()
    _deliver(node, _frame())
    assert len(threads) == 2  # warm-up, then the frame
    assert threads[0] == threads[1] == node.worker._thread.ident != threading.get_ident()


def test_bad_frame_is_logged_counted_and_in_diagnostics(make_node):
    node = make_node()
    _deliver(node, _frame(encoding="yuv422"))
    assert node.publishers["~/mask"].sent == []
    level, message, kwargs = node.logger.records[-1]
    assert level == "warning" and "yuv422" in message and kwargs["throttle_duration_sec"] == 5.0
    period, publish_diagnostics = node.timers[0]
    publish_diagnostics()
    status = node.publishers["/diagnostics"].sent[-1].status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert values["bad_frames"] == "1" and values["frames_in"] == "1" and status.level == b"\x01"
    assert values["device"] == "cpu" and status.name.endswith("segmentation")


def test_max_rate_skips_frames_between_accepted_ones(make_node):
    node = make_node(max_rate=0.01)  # one frame per 100 s
    _deliver(node, _frame(sec=1))
    _deliver(node, _frame(sec=2))
    assert node.rate_skipped == 1 and len(node.publishers["~/mask"].sent) == 1


def test_compressed_parameter_switches_the_subscription(make_node):
    node = make_node(compressed=True, publish_color=False, publish_overlay=False)
    msg_type, topic, _, _, _ = node.subscriptions[0]
    assert (msg_type.__name__, topic) == ("CompressedImage", "image/compressed")
    assert "~/color" not in node.publishers


def test_missing_model_is_one_fatal_line_and_exit_1(node_module, monkeypatch, tmp_path):
    monkeypatch.setattr(fake_rclpy.Node, "overrides", {"model": str(tmp_path / "no_model")})
    assert node_module.main([]) == 1
    level, message, _ = fake_rclpy.get_logger("segmentation_node").records[-1]
    assert level == "fatal" and "no_model does not exist" in message


def test_bad_parameter_is_one_fatal_line_and_exit_1(node_module, tiny_artifact, monkeypatch):
    monkeypatch.setattr(fake_rclpy.Node, "overrides", {"model": str(tiny_artifact), "qos_reliability": "reliabel"})
    assert node_module.main([]) == 1
    level, message, _ = fake_rclpy.get_logger("segmentation_node").records[-1]
    assert level == "fatal" and "qos_reliability" in message and "'reliabel'" in message


def test_ctrl_c_shuts_down_cleanly(node_module, tiny_artifact, monkeypatch):
    monkeypatch.setattr(fake_rclpy.Node, "overrides", {"model": str(tiny_artifact), "device": "cpu"})
    assert node_module.main([]) == 0


def test_ctrl_c_while_the_model_loads_exits_cleanly(node_module, tiny_artifact, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(node_module, "Segmenter", interrupted)
    monkeypatch.setattr(fake_rclpy.Node, "overrides", {"model": str(tiny_artifact), "device": "cpu"})
    assert node_module.main([]) == 0
