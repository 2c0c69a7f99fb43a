"""The node's parameters: names, defaults, descriptions and their checks (ROS-free).

A parameter that sets something below the node takes its default from that
owner and is checked there (the owner of each: OWNED_DEFAULTS in
test/test_params.py); this module holds the node's own defaults and checks,
and runs every check at configure, before the model loads. config/segment.yaml
lists every parameter with its default (test/test_node_logic.py keeps the two
equal); the node declares them from `PARAMETERS`.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import astuple, dataclass
from typing import Any

from offroad_seg_ros.core.calibration import DEFAULT_MIN_CONFIDENCE, confidence_level
from offroad_seg_ros.data.camera_checks import (
    DEFAULT_DEGRADED_POLICY,
    DEGRADED_POLICIES,
    CheckThresholds,
    check_degraded_policy,
)
from offroad_seg_ros.data.image_msgs import FULL_BITS, MAX_PIXELS, check_bits, check_max_pixels
from offroad_seg_ros.ground.fusion import MAX_AGE_S, check_max_age
from offroad_seg_ros.ground.local_map import MapSpec
from offroad_seg_ros.ground.mapper import MapperSpec
from offroad_seg_ros.ground.projection import CameraPose, GridSpec
from offroad_seg_ros.inference.outputs import IMAGE_OUTPUTS
from offroad_seg_ros.inference.segmenter import Segmenter


def _runtime(name: str) -> Any:
    """The default of a Segmenter option of the same name (device, precision, backend, ...)."""
    return inspect.signature(Segmenter).parameters[name].default


_CHECKS = {
    "min_sharpness": "blurred below this variance of the Laplacian (0 = off)",
    "min_brightness": "dark below this mean grey level (0 = off)",
    "max_saturated": "over-exposed above this share of near-white pixels",
    "max_glare": "glare above this share of the view in one near-white region (0 = off)",
    "min_contrast": "low contrast below this grey range p98 - p2 (0 = off)",
    "max_black": "hazy above this black point, p2 grey (0 = off)",
    "frozen_frames": "frozen: the same image this many times in a row (0 = off)",
    "occluded_share": "occluded: this share of the view still while the rest changes (0 = off)",
    "occlusion_frames": "... for this many frames of change",
}

PARAMETERS: dict[str, tuple[Any, str]] = {
    "cameras": ([""], "camera names: each gets <name>/image and ~/<name>/... outputs; [''] = one camera on image"),
    "model": ("", "model artifact directory (model.json + weights.safetensors); set at run time, it loads beside "
              "the model in use and replaces it between two frames (a failure: the old stays, /diagnostics says why)"),
    "device": (_runtime("device"), "auto | cpu | cuda | cuda:N"),
    "precision": (_runtime("precision"), "fp32 | fp16 | bf16; with backend openvino also auto | int8"),
    "backend": (_runtime("backend"), "torch | onnxruntime | openvino"),
    "threads": (_runtime("threads"), "intra-op threads of the CPU runtime (torch on the CPU, onnxruntime, openvino); "
                "0 = its default"),
    "compile": (_runtime("compile"), "torch.compile the inference path (CUDA graphs on GPU)"),
    "model_input_width": (_runtime("model_input_width"), "px: frames are resized to this width before the network; "
                          "0 = the model's training scale, whatever the camera's resolution"),
    "compressed": (False, "subscribe to image/compressed instead of image"),
    "max_pixels": (MAX_PIXELS, "frames above this many pixels are refused unread (decompression bombs)"),
    "input_bits": (FULL_BITS, "significant bits of 16-bit input (mono16, rgb16, bayer_*16): 12 for a 12-bit camera"),
    **{f"publish_{o.name}": (o.published, f"publish ~/{o.name} ({o.encoding}: {o.description})"
                             + (" while subscribed" if o.on_demand else "")) for o in IMAGE_OUTPUTS},
    "overlay_alpha": (_runtime("overlay_alpha"), "weight of the class colour in ~/overlay"),
    "cost_overrides": ([""], "per-class cost overrides, 'Class Name=cost'"),
    "max_rate": (0.0, "maximum processing rate in Hz (0 = unlimited)"),
    "qos_depth": (1, "input subscription queue depth"),
    "qos_reliability": ("best_effort", "input reliability: best_effort | reliable"),
    "diagnostics_period": (1.0, "seconds between /diagnostics messages"),
    "publish_grid": (False, "publish ~/grid (nav_msgs/OccupancyGrid) from camera_info and camera_pose"),
    "publish_obstacles": (False, "publish ~/obstacles (sensor_msgs/PointCloud2): obstacle-class cells"),
    "base_frame": ("base_link", "frame of ~/grid and ~/obstacles: the robot's base"),
    "camera_pose": (list(astuple(CameraPose())),
                    "camera body frame (x forward, z up) in base_frame: x, y, z, roll, pitch, yaw (m, rad)"),
    "camera_pose_source": (MapperSpec.camera_pose_source, "tf (base_frame <- the image's frame_id from TF at its "
                           "stamp; camera_pose until TF has that frame) | parameter (camera_pose only)"),
    "rectified": (MapperSpec.rectified, "images are rectified: project with camera_info's P and no distortion"),
    "grid_resolution": (GridSpec.resolution, "m per grid cell"),
    "grid_size": ([GridSpec.size_x, GridSpec.size_y], "grid extent in m along x and y, centred on base_frame"),
    "max_range": (GridSpec.max_range, "m from base_frame; pixels landing farther stay unknown"),
    "obstacle_height": (0.3, "z of the ~/obstacles points, m"),
    "per_camera_grids": (False, "several cameras: also publish each camera's ~/<name>/grid and ~/<name>/obstacles "
                         "beside the fused ~/grid and ~/obstacles"),
    "fused_max_age": (MAX_AGE_S, "s: a camera's newest grid older than this against the newest is left out of ~/grid"),
    "publish_map": (False, "publish ~/map: a rolling local map in the odometry frame (nav_msgs/OccupancyGrid)"),
    "odom_topic": ("odom", "nav_msgs/Odometry that places frames into ~/map (its frame is the map's)"),
    "odom_frame": ("", "'' = odom_topic places frames into ~/map; a frame (odom) = TF's odom_frame <- base_frame "
                   "at each frame's stamp does, and is the map's frame"),
    "map_resolution": (MapSpec.resolution, "m per ~/map cell"),
    "map_size": (MapSpec.size, "m: side of the square ~/map window, centred on the robot"),
    "map_rate": (2.0, "Hz: ~/map publishing rate"),
    "map_memory": (MapSpec.memory_s, "s: a ~/map cell not seen for this long goes back to unknown"),
    "map_mark_after": (MapSpec.mark_after, "frames that must see an obstacle in a ~/map cell before it shows"),
    "map_jump": (MapSpec.jump_m, "m: odometry leaping farther between two messages clears ~/map"),
    "map_odom_slop": (MapSpec.odom_slop_s, "s: how far a frame's stamp may lie beyond the odometry received"),
    "depth": (MapperSpec.depth, "place pixels by an aligned depth image (topic depth) instead of on flat ground"),
    "depth_fallback": (MapperSpec.depth_fallback, "a frame without a paired depth image: flat (flat ground) | "
                       "skip (no grid)"),
    "depth_slop": (MapperSpec.depth_slop, "s: the largest stamp difference between a colour frame and its depth "
                   "image"),
    "min_confidence": (DEFAULT_MIN_CONFIDENCE, "pixels less confident than this (calibrated max softmax, 0..1) are "
                       "unknown: cost 255, neither mark nor clear ~/grid and ~/obstacles; the mask keeps its argmax"),
    "degraded_policy": (DEFAULT_DEGRADED_POLICY, "a frame the camera checks flag: publish (flagged in /diagnostics "
                        "only) | unknown (cost and ground outputs all unknown) | drop (nothing published)"),
    "novel_threshold": (_runtime("novel_threshold"), "quantile level of ordinary validation pixels' novelty score "
                        "(1 - level = the false-alarm rate on such pixels): pixels above it are novel: cost "
                        "novel_cost, an obstacle on the ground outputs; the mask keeps its argmax; 0 = off; needs "
                        "`offroad-seg novelty MODEL DATA`"),
    "novel_cost": (_runtime("novel_cost"), "cost of a novel pixel in ~/cost and on the ground outputs "
                   "(254 = lethal; 255 = unknown)"),
    "shift_threshold": (_runtime("shift_threshold"), "a multiple of the highest shift score (a frame's mean novelty "
                        "score) of the validation frames: a frame above it is unlike the training data, flagged "
                        "in /diagnostics and handled by shift_policy; 0 = off; needs `offroad-seg novelty MODEL "
                        "DATA` (without it: off, /diagnostics `novelty` says so)"),
    "shift_policy": ("publish", "a frame above shift_threshold: publish (flagged in /diagnostics only) | unknown "
                     "(cost and ground outputs all unknown) | drop (nothing published)"),
    **{f"check_{name}": (getattr(CheckThresholds, name), text) for name, text in _CHECKS.items()},
}


def parse_cost_overrides(entries: Iterable[str]) -> dict[str, int]:
    """["Dry Grass=60", ...] (node parameter) -> {"Dry Grass": 60}."""
    out: dict[str, int] = {}
    for entry in entries:
        if not entry.strip():
            continue
        name, sep, value = entry.rpartition("=")
        if not sep or not name.strip():
            raise ValueError(f"cost override {entry!r} is not 'Class Name=cost'")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise ValueError(f"cost override {entry!r}: {value!r} is not an integer") from None
    return out


def segmenter_options(p: dict[str, Any]) -> dict[str, Any]:
    """The Segmenter's keyword arguments from the parameters (the node warms it up itself)."""
    return {"device": p["device"], "precision": p["precision"], "backend": p["backend"], "compile": p["compile"],
            "cost_overrides": parse_cost_overrides(p["cost_overrides"] or []), "overlay_alpha": p["overlay_alpha"],
            "warmup_size": None, "threads": p["threads"], "min_confidence": p["min_confidence"],
            "model_input_width": p["model_input_width"], "novel_threshold": p["novel_threshold"],
            "novel_cost": p["novel_cost"], "shift_threshold": p["shift_threshold"]}


def load_segmenter(model: str, p: dict[str, Any]) -> Segmenter:
    """The Segmenter the parameters ask for, at configure and for a model swap (not warmed up).
    ~/novelty published needs the artifact's novelty statistics: refused here, not at every frame."""
    seg = Segmenter(model, **segmenter_options(p))
    if p["publish_novelty"] and seg.novelty_scale is None:
        seg.release()
        raise ValueError(f"publish_novelty needs novelty statistics in {model}: "
                         f"fit them with `offroad-seg novelty {model} DATA_ROOT`")
    return seg


def check_parameters(p: dict[str, Any]) -> None:
    """Every parameter (the Segmenter's options are checked as it loads): a
    ValueError naming the parameter and its value, so a typo never silently
    falls back. The node's own are checked here, the rest by their owners."""
    NodeConfig.from_params(p)


def _check_own(p: dict[str, Any]) -> None:
    """The parameters only the node uses."""
    if p["qos_reliability"] not in ("best_effort", "reliable"):
        raise ValueError(f"parameter qos_reliability must be best_effort or reliable, got {p['qos_reliability']!r}")
    if int(p["qos_depth"]) < 1:
        raise ValueError(f"parameter qos_depth must be at least 1, got {p['qos_depth']}")
    if p["max_rate"] < 0:
        raise ValueError(f"parameter max_rate must be >= 0 Hz (0 = unlimited), got {p['max_rate']}")
    if p["diagnostics_period"] <= 0:
        raise ValueError(f"parameter diagnostics_period must be > 0 s, got {p['diagnostics_period']}")
    if p["threads"] < 0:
        raise ValueError(f"parameter threads must be >= 0 (0 = the runtime's default), got {p['threads']}")
    if p["publish_map"] and not p["map_rate"] > 0:
        raise ValueError(f"parameter map_rate must be > 0 Hz, got {p['map_rate']}")
    if p["shift_policy"] not in DEGRADED_POLICIES:  # the same choices as degraded_policy
        raise ValueError(f"parameter shift_policy must be one of {', '.join(DEGRADED_POLICIES)}, "
                         f"got {p['shift_policy']!r}")
    if not p["model"]:
        raise ValueError("parameter model is empty: pass model:=/path/to/artifact (model.json + weights.safetensors)")


def camera_names(p: dict[str, Any]) -> list[str]:
    """The `cameras` parameter checked: distinct non-empty names, or [''] for one camera."""
    names = [str(n) for n in p["cameras"]] or [""]
    if len(names) > 1 and "" in names or len(set(names)) != len(names):
        raise ValueError(f"parameter cameras must be distinct non-empty names (or ['']), got {names}")
    return names


@dataclass(frozen=True)
class NodeConfig:
    """What the node runs with, derived once from its parameters at configure."""

    params: dict[str, Any]
    cameras: list[str]
    enabled: dict[str, bool]  # image output name -> publish_<name>, in publishing order
    min_period: float  # s between accepted frames of a camera (0 = every frame)
    grid: GridSpec | None  # the ground outputs' grid, None when none of them is published
    checks: CheckThresholds  # the camera checks' thresholds
    mapper: MapperSpec | None = None  # how pixels reach the grid, with the grid
    local_map: MapSpec | None = None  # ~/map's, when published

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> NodeConfig:
        """Checked (see check_parameters); a ground parameter only while a ground output is on."""
        _check_own(p)
        check_max_pixels(p["max_pixels"])
        check_bits(p["input_bits"])
        check_degraded_policy(p["degraded_policy"])
        confidence_level(p["min_confidence"])  # checks it
        ground = p["publish_grid"] or p["publish_obstacles"] or p["publish_map"]
        if ground:
            check_max_age(p["fused_max_age"])
        return cls(dict(p), camera_names(p), {o.name: bool(p[f"publish_{o.name}"]) for o in IMAGE_OUTPUTS},
                   1.0 / p["max_rate"] if p["max_rate"] > 0 else 0.0, GridSpec.from_params(p) if ground else None,
                   CheckThresholds.from_params(p), MapperSpec.from_params(p) if ground else None,
                   MapSpec.from_params(p) if p["publish_map"] else None)

    @property
    def grid_outputs(self) -> list[str]:
        """What is published of each grid: grid (nav_msgs/OccupancyGrid), obstacles (sensor_msgs/PointCloud2)."""
        return [name for name in ("grid", "obstacles") if self.params[f"publish_{name}"]]

    @property
    def fused(self) -> bool:
        """Several cameras with ground outputs: ~/grid and ~/obstacles are their fusion."""
        return (self.params["publish_grid"] or self.params["publish_obstacles"]) and self.cameras != [""]

    @property
    def image_topic(self) -> str:
        return "image/compressed" if self.params["compressed"] else "image"
