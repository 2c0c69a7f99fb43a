"""What the launch files hand segmentation_node, as plain data (no `launch` import: it is not on
PyPI, so this is the part the tests run; launch/*.launch.py only call it).

A launch argument overrides the params file only when it is given. Every such argument defaults
to "" (not given), and only the given ones become parameter overrides, typed as the parameter
table types them: `backend: openvino` in a user's YAML runs OpenVINO unless `backend:=...` is on
the command line, and `model` may come from the YAML alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from offroad_seg_ros.node.params import PARAMETERS

# Launch arguments that set the node parameter of the same name when given.
PARAMETER_ARGUMENTS: dict[str, str] = {
    "model": "model artifact directory (default: the params file's)",
    "device": "auto | cpu | cuda | cuda:N (default: the params file's)",
    "backend": "torch | onnxruntime | openvino (default: the params file's)",
    "precision": "fp32 | fp16 | bf16; openvino also auto | int8 (default: the params file's)",
    "compressed": "true: subscribe to <image>/compressed (default: the params file's)",
    "depth": "true: place pixels by the aligned depth image (default: the params file's)",
    "use_sim_time": "true: use /clock, e.g. for bag playback (default: the params file's)",
}
# Parameters every ROS node has, outside the node's own table.
_NODE_PARAMETER_TYPES: dict[str, type] = {"use_sim_time": bool}
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
# Where a user gives Fast DDS a profile: Fast DDS 2 (Humble, Jazzy) reads the first, Fast DDS 3 the second.
PROFILE_VARIABLES = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
LARGE_FRAMES_PROFILE = os.path.join("config", "fastdds_large_frames.xml")  # under the package's share directory


def flag(name: str, text: str) -> bool:
    """A true / false launch argument; ValueError naming it otherwise."""
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(f"launch argument {name}:={text!r} is not true or false")


def typed_value(name: str, text: str) -> Any:
    """`text` as the type of parameter `name`'s default; ValueError naming the argument otherwise."""
    kind = _NODE_PARAMETER_TYPES.get(name) or type(PARAMETERS[name][0])
    if kind is bool:
        return flag(name, text)
    try:
        return kind(text)
    except ValueError as exc:
        raise ValueError(f"launch argument {name}:={text!r} is not a {kind.__name__}") from exc


def parameter_overrides(given: Mapping[str, str]) -> dict[str, Any]:
    """The node parameters that the given launch arguments set; an empty argument is not given."""
    return {name: typed_value(name, given[name]) for name in PARAMETER_ARGUMENTS if given.get(name, "") != ""}


def node_parameters(params_file: str, given: Mapping[str, str], extra: Mapping[str, Any] | None = None) -> list:
    """launch_ros `parameters=`: the params file first, then only what the command line gave
    (later entries win), then `extra` (what the launch file itself decides, e.g. the camera list)."""
    overrides = {**parameter_overrides(given), **(extra or {})}
    return [params_file, *([overrides] if overrides else [])]


def ros_arguments(log_level: str) -> list[str]:
    """`--log-level` for the node when one is given."""
    if not log_level:
        return []
    if log_level.lower() not in LOG_LEVELS:
        raise ValueError(f"launch argument log_level:={log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    return ["--log-level", log_level.lower()]


def image_remappings(prefix: str, image: str, camera_info: str = "", depth: str = "") -> list[tuple[str, str]]:
    """The node's input topics (`<prefix>image`, its compressed twin, camera_info, depth) onto the
    robot's; `prefix` is "" for one camera, "<name>/" for a camera of several."""
    pairs = [(f"{prefix}image", image), (f"{prefix}image/compressed", f"{image}/compressed")]
    pairs += [(f"{prefix}{key}", topic) for key, topic in (("camera_info", camera_info), ("depth", depth)) if topic]
    return pairs


def transport_env(environ: Mapping[str, str], share_dir: str, large_frames: bool = True) -> dict[str, str]:
    """launch_ros `additional_env` for the node: the installed Fast DDS large-frame profile
    (config/fastdds_large_frames.xml), so that best-effort 960x540 frames from another process
    arrive (Fast DDS's default 512 KiB shared-memory segment sends them over fragmented UDP, where
    most are lost: docs/input-and-diagnostics.md). Nothing when the user set a profile of their
    own (kept as it is), runs another RMW (e.g. rmw_cyclonedds_cpp), or passed large_frames:=false."""
    rmw = environ.get("RMW_IMPLEMENTATION", "")  # unset or empty: the default, Fast DDS
    fast_dds = not rmw or rmw.startswith(("rmw_fastrtps", "rmw_fastdds"))
    if not large_frames or not fast_dds or any(v in environ for v in PROFILE_VARIABLES):
        return {}
    return {PROFILE_VARIABLES[0]: os.path.join(share_dir, LARGE_FRAMES_PROFILE)}


def node_topic(namespace: str, name: str, topic: str) -> str:
    """The absolute name of the node's private topic `~/<topic>` under `namespace` (how rcl
    expands it), for the tools that must name it from outside: `ros2 bag record`, Nav2."""
    parts = [p for p in (*namespace.split("/"), name, *topic.split("/")) if p]
    return "/" + "/".join(parts)
