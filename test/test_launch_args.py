"""What the launch files hand the node (offroad_seg_ros/node/launch_args.py): a launch argument
overrides the params file only when given. `launch` is not on PyPI, so the launch files' own
wiring is read by test_node_logic.py and run only on full ROS installs; here the function they
call is tested, and a node is started with what it returns, on real rclpy, the way launch_ros
passes it (each entry of `parameters=` as a --params-file, in order)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from offroad_seg_ros.node.launch_args import (
    PARAMETER_ARGUMENTS,
    flag,
    image_remappings,
    node_parameters,
    node_topic,
    parameter_overrides,
    ros_arguments,
    transport_env,
)
from offroad_seg_ros.node.params import PARAMETERS

REPO = Path(__file__).resolve().parents[1]


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


PROFILE = "FASTRTPS_DEFAULT_PROFILES_FILE"


@pytest.mark.parametrize("environ", [{}, {"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"},
                                     {"RMW_IMPLEMENTATION": "rmw_fastrtps_dynamic_cpp"}, {"RMW_IMPLEMENTATION": ""}])
def test_the_large_frame_profile_is_given_when_none_is_set(environ):
    env = transport_env(environ, str(REPO))  # the repository stands in for the installed share directory
    assert env == {PROFILE: str(REPO / "config" / "fastdds_large_frames.xml")}
    assert Path(env[PROFILE]).is_file()  # the path the launch files hand the node is the shipped profile


@pytest.mark.parametrize("environ", [
    {PROFILE: "/robot/my_profile.xml"},  # the user's own: kept (nothing added over it)
    {"FASTDDS_DEFAULT_PROFILES_FILE": "/robot/my_profile.xml"},  # Fast DDS 3's name for it
    {PROFILE: ""},  # set, even empty: the user's choice
    {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"},  # another RMW: the file means nothing to it
    {"RMW_IMPLEMENTATION": "rmw_zenoh_cpp"},
])
def test_the_users_profile_and_other_rmws_get_nothing(environ):
    assert transport_env(environ, str(REPO)) == {}


def test_large_frames_false_turns_the_profile_off():
    assert transport_env({}, str(REPO), flag("large_frames", "False")) == {}
    assert transport_env({}, str(REPO), flag("large_frames", "true")) != {}
    with pytest.raises(ValueError, match=r"large_frames:='maybe' is not true or false"):
        flag("large_frames", "maybe")


@pytest.mark.parametrize("name", ["segment.launch.py", "cameras.launch.py"])
def test_the_launch_files_hand_the_node_the_transport_env(name):
    # `launch` is not on PyPI: read the file. The Node (or LifecycleNode) gets
    # additional_env=transport_env(os.environ, <share dir>, flag("large_frames", ...)).
    tree = ast.parse((REPO / "launch" / name).read_text())
    env = [kw.value for n in ast.walk(tree) if isinstance(n, ast.Call) for kw in n.keywords
           if kw.arg == "additional_env"]
    assert len(env) == 1 and isinstance(env[0], ast.Call) and getattr(env[0].func, "id", "") == "transport_env"
    first, _, third = env[0].args
    assert ast.unparse(first) == "os.environ" and "large_frames" in ast.unparse(third)


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
    assert f"({runs}, device cpu" in node.output


@pytest.mark.parametrize(("namespace", "name", "topic", "want"), [
    ("", "segmentation_node", "mask", "/segmentation_node/mask"),
    ("robot1", "segmentation_node", "mask", "/robot1/segmentation_node/mask"),
    ("/robot1/", "seg", "front/cost", "/robot1/seg/front/cost"),
    ("/a/b", "segmentation_node", "map", "/a/b/segmentation_node/map"),
])
def test_node_topic_follows_the_namespace(namespace, name, topic, want):
    assert node_topic(namespace, name, topic) == want


def test_evaluate_launch_records_the_mask_under_the_nodes_namespace():
    """evaluate.launch.py names the recorded mask through node_topic (namespace and name), never a
    fixed /segmentation_node/..., and plays the bag on the node's activation, not after a delay."""
    source = (REPO / "launch" / "evaluate.launch.py").read_text()
    calls = {getattr(n.func, "id", "") for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)}
    assert {"node_topic", "OnStateTransition", "LifecycleNode"} <= calls
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
    body = code.split('"""', 2)[2]  # past the module docstring
    assert "/segmentation_node/" not in body and "period=8" not in body


def test_docs_name_the_nodes_topics_with_their_namespace():
    """Every absolute topic of the node in README and docs either is the default namespace's and
    says so on that line or the next, or is written with a namespace."""
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if "/segmentation_node/" not in line or "<namespace>/segmentation_node/" in line:
                continue
            near = " ".join(lines[max(0, i - 2):i + 3]).lower()
            assert "namespace" in near, f"{path.name}:{i + 1} names a node topic without its namespace: {line.strip()}"
