"""What the launch files hand the node (offroad_seg_ros/node/launch_args.py): a launch argument
overrides the params file only when given. `launch` is not on PyPI, so the launch files' own
wiring is read by test_node_logic.py and run only on full ROS installs; here the function they
call is tested, and a node is started with what it returns, on real rclpy, the way launch_ros
passes it (each entry of `parameters=` as a --params-file, in order)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from offroad_seg_ros.node.launch_args import (
    PARAMETER_ARGUMENTS,
    image_remappings,
    node_parameters,
    parameter_overrides,
    ros_arguments,
)
from offroad_seg_ros.node.params import PARAMETERS


def test_only_given_arguments_override():
    not_given = {name: "" for name in PARAMETER_ARGUMENTS}
    assert parameter_overrides(not_given) == {}
    assert node_parameters("/p.yaml", not_given) == ["/p.yaml"]
    given = {**not_given, "backend": "openvino", "compressed": "True", "use_sim_time": "false", "model": "/m"}
    assert parameter_overrides(given) == {"backend": "openvino", "compressed": True, "use_sim_time": False,
                                          "model": "/m"}
    assert node_parameters("/p.yaml", given, {"cameras": ["a", "b"]}) == [
        "/p.yaml", {"backend": "openvino", "compressed": True, "use_sim_time": False, "model": "/m",
                    "cameras": ["a", "b"]}]


def test_every_parameter_argument_is_a_node_parameter():
    assert set(PARAMETER_ARGUMENTS) - {"use_sim_time"} <= set(PARAMETERS)


@pytest.mark.parametrize(("given", "match"), [
    ({"compressed": "maybe"}, r"compressed:='maybe' is not true or false"),
    ({"depth": "2"}, r"depth:='2' is not true or false"),
])
def test_bad_arguments_are_named(given, match):
    with pytest.raises(ValueError, match=match):
        parameter_overrides(given)


def test_log_level_and_remappings():
    assert ros_arguments("") == []
    assert ros_arguments("DEBUG") == ["--log-level", "debug"]
    with pytest.raises(ValueError, match="log_level:='loud'"):
        ros_arguments("loud")
    assert image_remappings("", "/cam/image_raw", "/cam/camera_info") == [
        ("image", "/cam/image_raw"), ("image/compressed", "/cam/image_raw/compressed"),
        ("camera_info", "/cam/camera_info")]
    assert image_remappings("front/", "/f", depth="/f_depth") == [
        ("front/image", "/f"), ("front/image/compressed", "/f/compressed"), ("front/depth", "/f_depth")]


def _as_launch_ros_passes_them(parameters: list, folder: Path) -> list[str]:
    """launch_ros writes each dict of `parameters=` to a params file; files stay as given."""
    args = []
    for i, entry in enumerate(parameters):
        if isinstance(entry, dict):
            path = folder / f"launch_params_{i}.yaml"
            path.write_text(yaml.safe_dump({"/**": {"ros__parameters": entry}}))
            entry = str(path)
        args += ["--params-file", entry]
    return args


@pytest.mark.ros
@pytest.mark.parametrize(("given", "runs"), [({}, "onnxruntime"), ({"backend": "torch"}, "torch")])
def test_the_params_files_backend_runs_unless_given(start_node, tmp_path, given, runs):
    params = tmp_path / "robot.yaml"
    params.write_text("/**:\n  ros__parameters:\n    backend: onnxruntime\n")
    args = _as_launch_ros_passes_them(node_parameters(str(params), given), tmp_path)
    node = start_node(*args)
    node.wait_for_line("loading model")
    node.wait_for_line("segmenting")
    assert f"({runs}, device cpu" in node.output()
