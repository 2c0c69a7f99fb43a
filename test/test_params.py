"""The node's parameter table (node/params.py) against its owners and the docs:
every default set below the node is its owner's default, and every node
parameter the README and docs/ name exists. (config/segment.yaml against the
table: test_node_logic.py.)"""

from __future__ import annotations

import inspect
import re
from dataclasses import astuple, fields
from pathlib import Path

import pytest

from offroad_seg_ros.core.calibration import DEFAULT_MIN_CONFIDENCE
from offroad_seg_ros.data.camera_checks import DEFAULT_DEGRADED_POLICY, CheckThresholds
from offroad_seg_ros.data.image_msgs import FULL_BITS, MAX_PIXELS
from offroad_seg_ros.ground.fusion import MAX_AGE_S
from offroad_seg_ros.ground.local_map import MapSpec
from offroad_seg_ros.ground.mapper import MapperSpec
from offroad_seg_ros.ground.projection import CameraPose, GridSpec
from offroad_seg_ros.inference.outputs import IMAGE_OUTPUTS
from offroad_seg_ros.inference.segmenter import Segmenter
from offroad_seg_ros.node.params import PARAMETERS, segmenter_options
from offroad_seg_ros.node.pipeline import FramePipeline

REPO = Path(__file__).resolve().parents[1]
TABLE = {name: default for name, (default, _) in PARAMETERS.items()}
SEGMENTER = inspect.signature(Segmenter).parameters
GRID, MAP, MAPPER, CHECKS = GridSpec(), MapSpec(), MapperSpec(), CheckThresholds()

# parameter -> its owner's default, owner by owner (the table must read each from there)
OWNED_DEFAULTS = {
    # inference/segmenter.py: the Segmenter's options
    **{name: SEGMENTER[name].default for name in ("device", "precision", "backend", "threads", "compile",
                                                   "overlay_alpha", "model_input_width", "novel_threshold",
                                                   "novel_cost", "shift_threshold")},
    # inference/outputs.py: publish_<output>
    **{f"publish_{o.name}": o.published for o in IMAGE_OUTPUTS},
    # data/image_msgs.py
    "max_pixels": MAX_PIXELS,
    "input_bits": FULL_BITS,
    # data/camera_checks.py
    "degraded_policy": DEFAULT_DEGRADED_POLICY,
    **{f"check_{f.name}": getattr(CHECKS, f.name) for f in fields(CheckThresholds)},
    # core/calibration.py
    "min_confidence": DEFAULT_MIN_CONFIDENCE,
    # ground/projection.py: CameraPose, GridSpec
    "camera_pose": list(astuple(CameraPose())),
    "grid_resolution": GRID.resolution,
    "grid_size": [GRID.size_x, GRID.size_y],
    "max_range": GRID.max_range,
    # ground/mapper.py: MapperSpec
    "rectified": MAPPER.rectified,
    "depth": MAPPER.depth,
    "depth_fallback": MAPPER.depth_fallback,
    "depth_slop": MAPPER.depth_slop,
    "camera_pose_source": MAPPER.camera_pose_source,
    # ground/fusion.py
    "fused_max_age": MAX_AGE_S,
    # ground/local_map.py: MapSpec
    "map_resolution": MAP.resolution,
    "map_size": MAP.size,
    "map_memory": MAP.memory_s,
    "map_mark_after": MAP.mark_after,
    "map_jump": MAP.jump_m,
    "map_odom_slop": MAP.odom_slop_s,
}
# Parameters nothing below the node uses: their defaults live in the table itself.
NODE_OWNED = {"cameras", "model", "compressed", "cost_overrides", "max_rate", "qos_depth", "qos_reliability",
              "diagnostics_period", "publish_grid", "publish_obstacles", "base_frame", "obstacle_height",
              "per_camera_grids", "publish_map", "odom_topic", "odom_frame", "map_rate", "shift_policy"}


def test_every_table_default_is_its_owners_default():
    assert set(OWNED_DEFAULTS).isdisjoint(NODE_OWNED)
    assert set(TABLE) == set(OWNED_DEFAULTS) | NODE_OWNED, "a new parameter: name its owner above"
    wrong = {name: (TABLE[name], owner) for name, owner in OWNED_DEFAULTS.items() if TABLE[name] != owner}
    assert not wrong, f"table default != owner's default: {wrong}"
    for name, value in TABLE.items():  # the same type too: a ROS parameter keeps the type of its default
        assert type(value) is type(OWNED_DEFAULTS.get(name, value)), name


def test_the_owners_built_from_the_table_are_their_defaults():
    assert GridSpec.from_params(TABLE) == GRID
    assert MapSpec.from_params(TABLE) == MAP
    assert MapperSpec.from_params(TABLE) == MAPPER
    assert CheckThresholds.from_params(TABLE) == CHECKS
    assert CameraPose.from_list(TABLE["camera_pose"]) == CameraPose()
    assert set(segmenter_options(TABLE)) <= set(SEGMENTER)


def test_the_frame_pipeline_defaults_are_the_nodes():
    pipeline = {f.name: f.default for f in fields(FramePipeline)}
    names = ("compressed", "max_pixels", "input_bits", "degraded_policy", "shift_policy")
    assert {k: pipeline[k] for k in names} == {k: TABLE[k] for k in names}


# -- the docs ---------------------------------------------------------------------
# Where docs name a node parameter: `-p name:=value` / `--param name:=value` (ros args; a bare
# `name:=value` is a launch argument or a remap, test_node_logic.py checks those), `ros2 param
# set|get|describe NODE name`, keys under `ros__parameters` of a YAML block for this node (`/**`
# or `...segmentation_node`; other nodes' blocks, e.g. Nav2's costmaps, are not ours), and the
# backticked names in the `parameter` column of a table.
PER_CAMERA = {"camera_pose"}  # node.py declares <camera>.camera_pose for each camera
ROS_ARG = re.compile(r"(?:^|[\s`])(?:-p|--param)\s+['\"]?([\w.]+):=")
PARAM_CLI = re.compile(r"ros2 param (?:set|get|describe) \S+ ([\w.]+)")
YAML_KEY = re.compile(r"^(\s*)['\"]?([^\s:'\"#][^:'\"#]*?)['\"]?:(?:\s|$)")


def _yaml_node_keys(block: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """(line, dotted key) of the parameters under `ros__parameters` of this node in a YAML block."""
    found, stack, inside = [], [], None  # stack: (indent, key) of the enclosing keys
    for number, text in block:
        m = YAML_KEY.match(text)
        if not m or text.lstrip().startswith("#"):
            continue
        indent, key = len(m.group(1)), m.group(2).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if inside is not None and indent <= inside:
            inside = None
        if key == "ros__parameters":
            parent = stack[-1][1] if stack else ""
            inside = indent if parent in ("/**", "**") or parent.endswith("segmentation_node") else None
        elif inside is not None:
            path = [k for i, k in stack if i > inside] + [key]
            rest = text[m.end():].strip()
            if rest and not rest.startswith("#"):  # a value: a parameter (nested keys: <camera>.<name>)
                found.append((number, ".".join(path)))
        stack.append((indent, key))
    return found


def _table_names(rows: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """(line, name) of the backticked names in a table's `parameter` column."""
    cells = [c.strip().lower() for c in rows[0][1].strip().strip("|").split("|")]
    column = next((i for i, c in enumerate(cells) if c.startswith("parameter")), None)
    if column is None:
        return []
    found = []
    for number, text in rows[2:]:  # after the header and its --- row
        row = text.strip().strip("|").split("|")
        if column < len(row):
            found += [(number, name) for name in re.findall(r"`([\w.]+)`", row[column])]
    return found


def documented_parameters(text: str) -> list[tuple[int, str]]:
    """(line, name) of every node parameter the markdown `text` names (the forms above)."""
    found: list[tuple[int, str]] = []
    lines = list(enumerate(text.splitlines(), start=1))
    fence: list[tuple[int, str]] | None = None
    table: list[tuple[int, str]] = []
    for number, line in lines:
        found += [(number, n) for n in ROS_ARG.findall(line) + PARAM_CLI.findall(line)]
        if line.lstrip().startswith("```"):
            if fence is not None:
                found += _yaml_node_keys(fence)
            fence = None if fence is not None else []
            continue
        if fence is not None:
            fence.append((number, line))
            continue
        if line.lstrip().startswith("|"):
            table.append((number, line))
            continue
        if table:
            found += _table_names(table)
            table = []
    if table:
        found += _table_names(table)
    return found


def _known(name: str) -> bool:
    camera, _, own = name.partition(".")
    return name in PARAMETERS or (bool(camera) and own in PER_CAMERA)


def test_every_parameter_the_docs_name_exists():
    named, unknown = set(), []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for number, name in documented_parameters(path.read_text()):
            named.add(name)
            if not _known(name):
                unknown.append(f"{path.relative_to(REPO)}:{number}: {name}")
    assert not unknown, "not node parameters (node/params.py PARAMETERS):\n" + "\n".join(unknown)
    assert named >= {"cameras", "model", "min_confidence", "check_min_sharpness"}  # the parameter tables were read


@pytest.mark.parametrize("markdown, names", [
    ("ros2 run offroad_seg_ros segmentation_node --ros-args -p model:=m -p 'qos_depth:=2' -r image:=/cam\n",
     ["model", "qos_depth"]),
    ("ros2 launch offroad_seg_ros segment.launch.py model:=m lifecycle:=true\n", []),  # launch arguments
    ("`compressed:=true`, `-r camera_info:=/camera/camera_info`, `val_batch_size: 1`\n", []),
    ("ros2 param set /segmentation_node max_rate 5.0\n", ["max_rate"]),
    ("```yaml\nsegmentation_node:\n  ros__parameters:\n    model: m  # the artifact\n    front:\n"
     "      camera_pose: [0, 0, 1, 0, 0, 0]\n    publish_grid: true\nother: 1\n```\n",
     ["model", "front.camera_pose", "publish_grid"]),
    ("```yaml\nlocal_costmap:\n  local_costmap:\n    ros__parameters:\n      width: 20\n```\n", []),  # Nav2's
    ("| parameter | default | meaning |\n| --- | --- | --- |\n| `grid_size`, `max_range` | [10, 10] | `~/grid` |\n",
     ["grid_size", "max_range"]),
    ("| check | parameter (default) |\n| --- | --- |\n| blurred | `check_min_sharpness` (350) |\n",
     ["check_min_sharpness"]),
    ("| topic | type |\n| --- | --- |\n| `~/mask` | `publish_mask` |\n", []),  # no parameter column
])
def test_doc_parameter_extraction_is_precise(markdown, names):
    assert [name for _, name in documented_parameters(markdown)] == names
