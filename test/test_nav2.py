"""~/map into Nav2: the shipped local costmap configuration (config/nav2_local_costmap.yaml, the
one the README shows) drives Nav2's StaticLayer value mapping (static_layer.cpp's interpretValue,
with the costmap's track_unknown_space / trinary_costmap / lethal_cost_threshold /
unknown_cost_value); the map's occupancy values come back as their class costs. The node's
params file for it (config/segment_nav2.yaml) is config/segment.yaml with the ground outputs on,
and the obstacle layer keeps every obstacle point the node sends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from offroad_seg_ros.ground.projection import UNKNOWN, occupancy_values

REPO = Path(__file__).resolve().parents[1]
NO_INFORMATION, LETHAL_OBSTACLE, FREE_SPACE = 255, 254, 0


COSTMAP = REPO / "config" / "nav2_local_costmap.yaml"
NODE_PARAMS, NAV2_NODE_PARAMS = REPO / "config" / "segment.yaml", REPO / "config" / "segment_nav2.yaml"
GROUND_OUTPUTS = ("publish_grid", "publish_obstacles", "publish_map")


def nav2_costmap() -> dict:
    """The shipped local costmap's parameters (config/nav2_local_costmap.yaml, StaticLayer on ~/map)."""
    found = yaml.safe_load(COSTMAP.read_text())
    params = found["local_costmap"]["local_costmap"]["ros__parameters"]
    static = [n for n in params["plugins"] if params[n]["plugin"] == "nav2_costmap_2d::StaticLayer"]
    assert len(static) == 1, f"{COSTMAP.name}: one StaticLayer on ~/map"
    return params


readme_costmap = nav2_costmap  # the configuration the README shows; test_node_ground.py reads it by this name


def node_params(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["/**"]["ros__parameters"]


@pytest.fixture(scope="module")
def costmap() -> dict:
    return nav2_costmap()


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


def test_the_shipped_costmap_takes_the_map_from_the_node(costmap):
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
    # Why the costmap sets trinary_costmap: false: Nav2's default reads every graded cell as free.
    costs = table.cost_lut()[:len(table)]
    graded = (costs > 0) & (costs < LETHAL_OBSTACLE)
    flat = static_layer_cost(occupancy_values(costs), {**costmap, "trinary_costmap": True})
    assert (flat[graded] == FREE_SPACE).all()


def test_the_nav2_params_file_is_segment_yaml_with_the_ground_outputs_on():
    from offroad_seg_ros.node.params import PARAMETERS

    plain, nav2 = node_params(NODE_PARAMS), node_params(NAV2_NODE_PARAMS)
    assert set(nav2) <= set(PARAMETERS), set(nav2) - set(PARAMETERS)
    assert all(nav2[name] is True and plain[name] is False for name in GROUND_OUTPUTS)
    assert {k: v for k, v in nav2.items() if k not in GROUND_OUTPUTS} == \
        {k: v for k, v in plain.items() if k not in GROUND_OUTPUTS}


def test_the_obstacle_layer_keeps_every_point_the_node_sends(costmap):
    # Nav2 drops observations beyond obstacle_max_range (default 2.5 m), measured in 3D from the
    # sensor frame's origin; the node sends obstacle cells out to max_range on the ground, at
    # obstacle_height, in base_frame.
    node = node_params(NAV2_NODE_PARAMS)
    layer = next(costmap[n] for n in costmap["plugins"] if costmap[n]["plugin"] == "nav2_costmap_2d::ObstacleLayer")
    source = layer[layer["observation_sources"]]
    reach = float(np.hypot(node["max_range"], node["obstacle_height"]))
    assert source["obstacle_max_range"] >= reach and source["raytrace_max_range"] >= source["obstacle_max_range"]
    assert source.get("obstacle_min_range", 0.0) == 0.0 and source.get("raytrace_min_range", 0.0) == 0.0
    assert source["min_obstacle_height"] <= node["obstacle_height"] <= source["max_obstacle_height"]
    assert source["sensor_frame"] == node["base_frame"] and costmap["robot_base_frame"] == node["base_frame"]
    assert costmap["resolution"] == node["map_resolution"]
