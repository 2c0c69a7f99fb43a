"""The node's parameters: names, defaults, descriptions and their checks (ROS-free).

config/segment.yaml lists every one of them with its default (a test keeps
the two equal); the node declares them from `PARAMETERS`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from offroad_seg_ros.core.calibration import DEFAULT_MIN_CONFIDENCE
from offroad_seg_ros.data.camera_checks import DEFAULT_DEGRADED_POLICY, DEGRADED_POLICIES, CheckThresholds
from offroad_seg_ros.data.image_msgs import MAX_PIXELS
from offroad_seg_ros.ground.local_map import MapSpec
from offroad_seg_ros.ground.projection import GridSpec

PARAMETERS: dict[str, tuple[Any, str]] = {
    "cameras": ([""], "camera names: each gets <name>/image and ~/<name>/... outputs; [''] = one camera on image"),
    "model": ("", "model artifact directory (model.json + weights.safetensors)"),
    "device": ("auto", "auto | cpu | cuda | cuda:N"),
    "precision": ("fp32", "fp32 | fp16 | bf16; with backend openvino also auto | int8"),
    "backend": ("torch", "torch | onnxruntime | openvino"),
    "threads": (0, "intra-op threads of the CPU runtime (torch on the CPU, onnxruntime, openvino); 0 = its default"),
    "compile": (False, "torch.compile the inference path (CUDA graphs on GPU)"),
    "compressed": (False, "subscribe to image/compressed instead of image"),
    "max_pixels": (MAX_PIXELS, "frames above this many pixels are refused unread (decompression bombs)"),
    "input_bits": (16, "significant bits of 16-bit input (mono16, rgb16, bayer_*16): 12 for a 12-bit camera"),
    "publish_mask": (True, "publish ~/mask (mono8 class indices)"),
    "publish_cost": (True, "publish ~/cost (mono8 Nav2 cost)"),
    "publish_confidence": (False, "publish ~/confidence (mono8)"),
    "publish_color": (True, "publish ~/color (rgb8) while subscribed"),
    "publish_overlay": (True, "publish ~/overlay (rgb8) while subscribed"),
    "overlay_alpha": (0.5, "weight of the class colour in ~/overlay"),
    "cost_overrides": ([""], "per-class cost overrides, 'Class Name=cost'"),
    "max_rate": (0.0, "maximum processing rate in Hz (0 = unlimited)"),
    "qos_depth": (1, "input subscription queue depth"),
    "qos_reliability": ("best_effort", "input reliability: best_effort | reliable"),
    "diagnostics_period": (1.0, "seconds between /diagnostics messages"),
    "publish_grid": (False, "publish ~/grid (nav_msgs/OccupancyGrid) from camera_info and camera_pose"),
    "publish_obstacles": (False, "publish ~/obstacles (sensor_msgs/PointCloud2): obstacle-class cells"),
    "base_frame": ("base_link", "frame of ~/grid and ~/obstacles: the robot's base"),
    "camera_pose": ([0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
                    "camera body frame (x forward, z up) in base_frame: x, y, z, roll, pitch, yaw (m, rad)"),
    "rectified": (False, "images are rectified: project with camera_info's P and no distortion"),
    "grid_resolution": (0.05, "m per grid cell"),
    "grid_size": ([10.0, 10.0], "grid extent in m along x and y, centred on base_frame"),
    "max_range": (8.0, "m from base_frame; pixels landing farther stay unknown"),
    "obstacle_height": (0.3, "z of the ~/obstacles points, m"),
    "per_camera_grids": (False, "several cameras: also publish each camera's ~/<name>/grid and ~/<name>/obstacles "
                         "beside the fused ~/grid and ~/obstacles"),
    "fused_max_age": (0.5, "s: a camera's newest grid older than this against the newest is left out of ~/grid"),
    "publish_map": (False, "publish ~/map: a rolling local map in the odometry frame (nav_msgs/OccupancyGrid)"),
    "odom_topic": ("odom", "nav_msgs/Odometry that places frames into ~/map (its frame is the map's)"),
    "map_resolution": (0.1, "m per ~/map cell"),
    "map_size": (30.0, "m: side of the square ~/map window, centred on the robot"),
    "map_rate": (2.0, "Hz: ~/map publishing rate"),
    "map_memory": (10.0, "s: a ~/map cell not seen for this long goes back to unknown"),
    "map_mark_after": (2, "frames that must see an obstacle in a ~/map cell before it shows"),
    "map_jump": (1.0, "m: odometry leaping farther between two messages clears ~/map"),
    "map_odom_slop": (0.1, "s: how far a frame's stamp may lie beyond the odometry received"),
    "depth": (False, "place pixels by an aligned depth image (topic depth) instead of on flat ground"),
    "depth_fallback": ("flat", "a frame without a paired depth image: flat (flat ground) | skip (no grid)"),
    "depth_slop": (0.02, "s: the largest stamp difference between a colour frame and its depth image"),
    "min_confidence": (DEFAULT_MIN_CONFIDENCE, "pixels less confident than this (calibrated max softmax, 0..1) are "
                       "unknown: cost 255, neither mark nor clear ~/grid and ~/obstacles; the mask keeps its argmax"),
    "degraded_policy": (DEFAULT_DEGRADED_POLICY, "a frame the camera checks flag: publish (flagged in /diagnostics "
                        "only) | unknown (cost and ground outputs all unknown) | drop (nothing published)"),
    **{f"check_{name}": (default, text) for name, (default, text) in {
        "min_sharpness": (CheckThresholds.min_sharpness, "blurred below this variance of the Laplacian (0 = off)"),
        "min_brightness": (CheckThresholds.min_brightness, "dark below this mean grey level (0 = off)"),
        "max_saturated": (CheckThresholds.max_saturated, "over-exposed above this share of near-white pixels"),
        "max_glare": (CheckThresholds.max_glare, "glare above this share of the view in one near-white region "
                      "(0 = off)"),
        "min_contrast": (CheckThresholds.min_contrast, "low contrast below this grey range p98 - p2 (0 = off)"),
        "max_black": (CheckThresholds.max_black, "hazy above this black point, p2 grey (0 = off)"),
        "frozen_frames": (CheckThresholds.frozen_frames, "frozen: the same image this many times in a row (0 = off)"),
        "occluded_share": (CheckThresholds.occluded_share, "occluded: this share of the view still while the rest "
                           "changes (0 = off)"),
        "occlusion_frames": (CheckThresholds.occlusion_frames, "... for this many frames of change"),
    }.items()},
}
# The per-camera image outputs, in the order they are published.
OUTPUTS = ("mask", "cost", "confidence", "color", "overlay")


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


def check_parameters(p: dict[str, Any]) -> None:
    """The node's own parameters (the Segmenter checks its own): a ValueError
    naming the parameter and its value, so a typo never silently falls back."""
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
    if p["max_pixels"] < 1:
        raise ValueError(f"parameter max_pixels must be at least 1, got {p['max_pixels']}")
    if not 8 <= p["input_bits"] <= 16:
        raise ValueError(f"parameter input_bits must be within 8..16 (significant bits of 16-bit input), "
                         f"got {p['input_bits']}")
    if p["publish_grid"] or p["publish_obstacles"] or p["publish_map"]:
        if p["grid_resolution"] <= 0 or p["max_range"] <= 0 or len(p["grid_size"]) != 2 or min(p["grid_size"]) <= 0:
            raise ValueError(f"parameters grid_resolution ({p['grid_resolution']}), grid_size ({list(p['grid_size'])}) "
                             f"and max_range ({p['max_range']}) must be positive, grid_size two values")
        if p["publish_map"]:
            bad = [f"{k}={p[k]}" for k in ("map_resolution", "map_size", "map_rate", "map_memory", "map_jump")
                   if not p[k] > 0]
            bad += [f"map_mark_after={p['map_mark_after']}"] if p["map_mark_after"] < 1 else []
            bad += [f"map_odom_slop={p['map_odom_slop']}"] if p["map_odom_slop"] < 0 else []
            if bad:
                raise ValueError(f"parameters out of range (> 0; map_mark_after >= 1, map_odom_slop >= 0): "
                                 f"{', '.join(bad)}")
        if p["fused_max_age"] <= 0:
            raise ValueError(f"parameter fused_max_age must be > 0 s, got {p['fused_max_age']}")
        if p["depth_fallback"] not in ("flat", "skip"):
            raise ValueError(f"parameter depth_fallback must be flat or skip, got {p['depth_fallback']!r}")
    if p["degraded_policy"] not in DEGRADED_POLICIES:
        raise ValueError(f"parameter degraded_policy must be one of {', '.join(DEGRADED_POLICIES)}, "
                         f"got {p['degraded_policy']!r}")
    if not 0.0 <= p["min_confidence"] <= 1.0:
        raise ValueError(f"parameter min_confidence must be within 0..1, got {p['min_confidence']}")
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
    enabled: dict[str, bool]  # output name -> publish_<name>
    min_period: float  # s between accepted frames of a camera (0 = every frame)
    grid: GridSpec | None  # the ground outputs' grid, None when neither is published
    checks: CheckThresholds  # the camera checks' thresholds

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> NodeConfig:
        check_parameters(p)
        grid = None
        if p["publish_grid"] or p["publish_obstacles"] or p["publish_map"]:
            size_x, size_y = (float(v) for v in p["grid_size"])
            grid = GridSpec(p["grid_resolution"], size_x, size_y, max_range=p["max_range"])
        return cls(dict(p), camera_names(p), {name: bool(p[f"publish_{name}"]) for name in OUTPUTS},
                   1.0 / p["max_rate"] if p["max_rate"] > 0 else 0.0, grid, CheckThresholds.from_params(p))

    @property
    def fused(self) -> bool:
        """Several cameras with ground outputs: ~/grid and ~/obstacles are their fusion."""
        return (self.params["publish_grid"] or self.params["publish_obstacles"]) and self.cameras != [""]

    def map_spec(self) -> MapSpec:
        p = self.params
        return MapSpec(p["map_resolution"], p["map_size"], p["map_memory"], p["map_mark_after"], p["map_jump"],
                       p["map_odom_slop"])

    @property
    def image_topic(self) -> str:
        return "image/compressed" if self.params["compressed"] else "image"
