"""A small stand-in for rclpy and the message packages the node imports, so the
node's callbacks run in tests on machines without ROS. test_node_callbacks.py
checks every stand-in method against rclpy's real sources (.stubs/rclpy)."""

from __future__ import annotations

import types
from enum import Enum


class Msg:
    """Keyword-constructed message with per-type defaults."""

    defaults: dict = {}

    def __init__(self, **fields):
        for k, v in self.defaults.items():
            setattr(self, k, v() if callable(v) else v)
        for k, v in fields.items():
            setattr(self, k, v)


class Time(Msg):
    defaults = {"sec": 0, "nanosec": 0}


class Header(Msg):
    defaults = {"stamp": Time, "frame_id": ""}


class Image(Msg):
    defaults = {"header": Header, "height": 0, "width": 0, "encoding": "", "is_bigendian": 0, "step": 0,
                "data": b""}


class CompressedImage(Msg):
    defaults = {"header": Header, "format": "", "data": b""}


class KeyValue(Msg):
    defaults = {"key": "", "value": ""}


class DiagnosticStatus(Msg):
    defaults = {"level": b"\x00", "name": "", "message": "", "hardware_id": "", "values": list}


class DiagnosticArray(Msg):
    defaults = {"header": Header, "status": list}


class ParameterDescriptor(Msg):
    defaults = {"description": ""}


class Logger:
    def __init__(self):
        self.records: list[tuple[str, str, dict]] = []

    def _log(self, level, message, **kwargs):
        self.records.append((level, message, kwargs))
        return True

    def info(self, message, **kwargs):
        return self._log("info", message, **kwargs)

    def warning(self, message, **kwargs):
        return self._log("warning", message, **kwargs)

    def error(self, message, **kwargs):
        return self._log("error", message, **kwargs)

    def fatal(self, message, **kwargs):
        return self._log("fatal", message, **kwargs)


class _Stamp:
    def __init__(self, ns):
        self.nanoseconds = ns

    def to_msg(self):
        return Time(sec=self.nanoseconds // 10**9, nanosec=self.nanoseconds % 10**9)


class Clock:
    now_ns = 0

    def now(self):
        return _Stamp(Clock.now_ns)


class Parameter:
    def __init__(self, value):
        self.value = value


class ReliabilityPolicy(Enum):
    RELIABLE = 1
    BEST_EFFORT = 2


class HistoryPolicy(Enum):
    KEEP_LAST = 1


class QoSProfile:
    def __init__(self, **kwargs):
        self.depth = kwargs.get("depth")
        self.history = kwargs.get("history")
        self.reliability = kwargs.get("reliability")


qos_profile_sensor_data = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST,
                                     reliability=ReliabilityPolicy.BEST_EFFORT)


class Publisher:
    def __init__(self, msg_type, topic):
        self.msg_type, self.topic, self.sent, self.subscribers = msg_type, topic, [], 0

    def publish(self, msg):
        self.sent.append(msg)

    def get_subscription_count(self):
        return self.subscribers


class Node:
    overrides: dict = {}  # parameter values "from the launch file"

    def __init__(self, node_name, *, context=None, cli_args=None, namespace=None, use_global_arguments=True,
                 enable_rosout=True, start_parameter_services=True, parameter_overrides=None,
                 allow_undeclared_parameters=False, automatically_declare_parameters_from_overrides=False):
        self.name = node_name
        self.params: dict[str, Parameter] = {}
        self.descriptors: dict[str, ParameterDescriptor] = {}
        self.publishers: dict[str, Publisher] = {}
        self.subscriptions: list[tuple] = []
        self.timers: list[tuple] = []
        self.logger = Logger()
        self.destroyed = False

    def declare_parameter(self, name, value=None, descriptor=None, ignore_override=False):
        self.params[name] = Parameter(self.overrides.get(name, value))
        self.descriptors[name] = descriptor
        return self.params[name]

    def get_parameter(self, name):
        return self.params[name]

    def create_publisher(self, msg_type, topic, qos_profile, *, callback_group=None, event_callbacks=None,
                         qos_overriding_options=None, publisher_class=None):
        self.publishers[topic] = Publisher(msg_type, topic)
        return self.publishers[topic]

    def create_subscription(self, msg_type, topic, callback, qos_profile, *, callback_group=None,
                            event_callbacks=None, qos_overriding_options=None, raw=False):
        self.subscriptions.append((msg_type, topic, callback, qos_profile, raw))

    def create_timer(self, timer_period_sec, callback, callback_group=None, clock=None):
        self.timers.append((timer_period_sec, callback))

    def get_logger(self):
        return self.logger

    def get_clock(self):
        return Clock()

    def resolve_topic_name(self, topic, *, only_expand=False):
        return "/" + topic

    def get_fully_qualified_name(self):
        return "/" + self.name

    def destroy_node(self):
        self.destroyed = True


class ExternalShutdownException(Exception):
    pass


_loggers: dict[str, Logger] = {}


def get_logger(name):
    return _loggers.setdefault(name, Logger())


def init(*, args=None, context=None, domain_id=None, signal_handler_options=None):
    pass


def spin(node, executor=None):
    raise KeyboardInterrupt  # Ctrl-C right away


def try_shutdown(*, context=None):
    pass


def modules() -> dict[str, types.ModuleType]:
    """sys.modules entries that make `offroad_seg_ros.node` importable."""

    def mod(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        return m

    logging = mod("rclpy.logging", get_logger=get_logger)
    executors = mod("rclpy.executors", ExternalShutdownException=ExternalShutdownException)
    rclpy = mod("rclpy", init=init, spin=spin, try_shutdown=try_shutdown, logging=logging, executors=executors)
    return {
        "rclpy": rclpy,
        "rclpy.logging": logging,
        "rclpy.executors": executors,
        "rclpy.node": mod("rclpy.node", Node=Node),
        "rclpy.qos": mod("rclpy.qos", QoSProfile=QoSProfile, ReliabilityPolicy=ReliabilityPolicy,
                         qos_profile_sensor_data=qos_profile_sensor_data),
        "rcl_interfaces": mod("rcl_interfaces"),
        "rcl_interfaces.msg": mod("rcl_interfaces.msg", ParameterDescriptor=ParameterDescriptor),
        "sensor_msgs": mod("sensor_msgs"),
        "sensor_msgs.msg": mod("sensor_msgs.msg", Image=Image, CompressedImage=CompressedImage),
        "std_msgs": mod("std_msgs"),
        "std_msgs.msg": mod("std_msgs.msg", Header=Header),
        "diagnostic_msgs": mod("diagnostic_msgs"),
        "diagnostic_msgs.msg": mod("diagnostic_msgs.msg", DiagnosticArray=DiagnosticArray,
                                   DiagnosticStatus=DiagnosticStatus, KeyValue=KeyValue),
    }
