"""~/map into Nav2: the README's local costmap configuration, read from the README, drives
Nav2's StaticLayer value mapping (static_layer.cpp's interpretValue, with the costmap's
track_unknown_space / trinary_costmap / lethal_cost_threshold / unknown_cost_value); the map's
occupancy values come back as their class costs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from offroad_seg_ros.ground.projection import UNKNOWN, occupancy_values

REPO = Path(__file__).resolve().parents[1]
NO_INFORMATION, LETHAL_OBSTACLE, FREE_SPACE = 255, 254, 0


def readme_costmap() -> dict:
    """The README's local costmap parameters (the block with the StaticLayer on ~/map)."""
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    found = [yaml.safe_load(b) for b in blocks if "nav2_costmap_2d::StaticLayer" in b]
    assert len(found) == 1, "the README shows one local costmap with a StaticLayer"
    return found[0]["local_costmap"]["local_costmap"]["ros__parameters"]


@pytest.fixture(scope="module")
def costmap() -> dict:
    return readme_costmap()


def static_layer_cost(occupancy: np.ndarray, params: dict) -> np.ndarray:
    """Nav2's StaticLayer::interpretValue over an OccupancyGrid's data (int8 seen as unsigned char);
    the defaults are Costmap2DROS's."""
    value = occupancy.astype(np.int8).view(np.uint8).astype(np.float64)
    lethal = params.get("lethal_cost_threshold", 100)
    unknown = params.get("unknown_cost_value", 255)
    track_unknown = params.get("track_unknown_space", False)
    trinary = params.get("trinary_costmap", True)
    scaled = np.floor(value / lethal * LETHAL_OBSTACLE) if not trinary else np.zeros_like(value)
    out = np.where(value >= lethal, LETHAL_OBSTACLE, scaled)
    return np.where(value == unknown, NO_INFORMATION if track_unknown else FREE_SPACE, out).astype(np.uint8)


def test_the_readme_costmap_takes_the_map_from_the_node(costmap):
    layers = {name: costmap[name] for name in costmap["plugins"]}
    static = [layer for layer in layers.values() if layer["plugin"] == "nav2_costmap_2d::StaticLayer"]
    assert static[0]["map_topic"] == "/segmentation_node/map" and static[0]["map_subscribe_transient_local"]
    assert costmap["global_frame"] == "odom" and costmap["rolling_window"]
    obstacle = next(layer for layer in layers.values() if layer["plugin"] == "nav2_costmap_2d::ObstacleLayer")
    assert obstacle[obstacle["observation_sources"]]["topic"] == "/segmentation_node/obstacles"


def test_class_costs_survive_the_map_and_the_static_layer(costmap, table):
    costs = table.cost_lut()[:len(table)]
    got = static_layer_cost(occupancy_values(costs), costmap)
    for cls, want, cost in zip(table.classes, costs, got):
        if want == UNKNOWN:  # sky: never on the map, and unknown if it were
            assert cost == NO_INFORMATION, cls.name
        elif want == LETHAL_OBSTACLE:
            assert cost == LETHAL_OBSTACLE, cls.name
        else:  # graded: 0..100 occupancy steps are 2.54 costs wide
            assert abs(int(cost) - int(want)) <= 2, (cls.name, want, cost)
    # rough ground stays above free ground: the planner still prefers the free path
    group = {c.group: int(g) for c, g in zip(table.classes, got)}
    assert group["rough"] > group["free"]
    # every Nav2 cost, not only the table's: lethal stays lethal, nothing else becomes it
    every = np.arange(255, dtype=np.uint8)
    back = static_layer_cost(occupancy_values(every), costmap)
    assert back[254] == LETHAL_OBSTACLE and (np.abs(back[:250].astype(int) - every[:250]) <= 2).all()


def test_the_trinary_default_would_flatten_rough_ground(costmap, table):
    # Why the README sets trinary_costmap: false: Nav2's default reads every graded cell as free.
    costs = table.cost_lut()[:len(table)]
    graded = (costs > 0) & (costs < LETHAL_OBSTACLE)
    flat = static_layer_cost(occupancy_values(costs), {**costmap, "trinary_costmap": True})
    assert (flat[graded] == FREE_SPACE).all()
