"""package.xml declares what rosdep must install: every ROS package the runtime and the launch files
import, the `ros2` commands and bag storage plugins the launch files run, and no OpenCV (pip's
opencv-python-headless, setup.py, is the package's one OpenCV).

Which imports are ROS packages: a fixed naming rule (`ROS_MODULE`), as ROS names its Python
packages (rclpy, rcl_interfaces, *_msgs / *_srvs / *_interfaces, launch*, ament_*, tf2*, ...);
pip modules such as numpy, cv2, torch, yaml or rosbags do not match it. Optional imports
count too (inside `try: ... except ImportError`, or by name through importlib, as
node/tf_listener.py imports tf2_ros): they are optional where ROS is absent (pip-only installs,
CI), but on a robot rosdep is what installs them, so they must be declared.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROS_MODULE = re.compile(r"^(rcl\w*|\w+_msgs|\w+_srvs|\w+_interfaces|launch\w*|ament_\w+|tf2\w*|ros2\w*|rosidl\w*"
                        r"|message_filters|cv_bridge|image_geometry)$")
# Python modules whose ROS package has another name.
PACKAGE_OF_MODULE = {"tf2_ros": "tf2_ros_py"}
# Submodules that need a package of their own beyond their top-level module's.
PACKAGES_OF_SUBMODULE = {"rclpy.lifecycle": "lifecycle_msgs"}
# `ros2 bag record -s PLUGIN` / `--storage PLUGIN`: the package providing the storage plugin (sqlite3's
# differs between distributions: Humble's rosbag2_storage_default_plugins, Jazzy's rosbag2_storage_sqlite3).
STORAGE_PLUGIN_PACKAGE = {"mcap": "rosbag2_storage_mcap"}
RUNTIME_TAGS = ("depend", "exec_depend")


def declared(*tags: str) -> set[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    return {(e.text or "").strip() for tag in tags for e in root.findall(tag)}


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def imported_modules(source: str) -> Iterator[tuple[int, str]]:
    """(line, dotted module name) of every absolute import in a module's source, wherever it
    stands: import statements, and names given as string constants to importlib.import_module,
    find_spec, __import__ or a function of the module that hands its parameter to one of them."""
    tree = ast.parse(source)
    importers = {"import_module", "find_spec", "__import__"}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            params = {a.arg for a in fn.args.args}
            if any(isinstance(c, ast.Call) and _callee(c) in importers and c.args and isinstance(c.args[0], ast.Name)
                   and c.args[0].id in params for c in ast.walk(fn)):
                importers.add(fn.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif (isinstance(node, ast.Call) and _callee(node) in importers and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            yield node.lineno, node.args[0].value


def ros_packages(module: str) -> set[str]:
    """The ROS packages an import of `module` needs (none for a pip or standard-library module)."""
    top = module.split(".")[0]
    if not ROS_MODULE.match(top):
        return set()
    needed = {PACKAGE_OF_MODULE.get(top, top)}
    needed |= {p for sub, p in PACKAGES_OF_SUBMODULE.items() if module == sub or module.startswith(sub + ".")}
    return needed


def needed_by_imports(*folders: str) -> dict[str, list[str]]:
    """ROS package -> where it is imported, over every .py under `folders`."""
    needed: dict[str, list[str]] = {}
    for folder in folders:
        local = {p.stem for p in (REPO / folder).glob("*.py")}  # the folder's own modules (test helpers)
        for path in sorted((REPO / folder).rglob("*.py")):
            for line, module in imported_modules(path.read_text()):
                if module.split(".")[0] in local:
                    continue
                for package in ros_packages(module):
                    needed.setdefault(package, []).append(f"{path.relative_to(REPO)}:{line} ({module})")
    return needed


def launch_commands() -> Iterator[tuple[str, list[str]]]:
    """(launch file, the constant words of a command list starting with "ros2") per launch file."""
    for path in sorted((REPO / "launch").glob("*.launch.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.List) and node.elts:
                first = node.elts[0]
                if isinstance(first, ast.Constant) and first.value == "ros2":
                    words = [e.value if isinstance(e, ast.Constant) and isinstance(e.value, str) else "<arg>"
                             for e in node.elts]
                    yield path.name, words


def needed_by_commands() -> dict[str, list[str]]:
    """ROS package -> the launch commands that need it: `ros2 VERB` is the package ros2VERB, a bag
    storage plugin its own package, and launch files need `ros2 launch` to be started."""
    needed: dict[str, list[str]] = {}
    if any((REPO / "launch").glob("*.launch.py")):
        needed["ros2launch"] = ["launch/*.launch.py"]
    for name, words in launch_commands():
        shown = f"{name}: {' '.join(words)}"
        needed.setdefault(f"ros2{words[1]}", []).append(shown)
        for flag, value in zip(words, words[1:]):
            if flag in ("-s", "--storage"):
                assert value in STORAGE_PLUGIN_PACKAGE, f"{shown}: add the package of storage plugin {value!r}"
                needed.setdefault(STORAGE_PLUGIN_PACKAGE[value], []).append(shown)
    return needed


def _missing(needed: dict[str, list[str]], have: set[str]) -> list[str]:
    return [f"{package}, needed by {', '.join(where)}" for package, where in sorted(needed.items())
            if package not in have]


def test_the_rule_finds_the_ros_imports():
    """Guards the rule itself: a rule that matched nothing would pass every package.xml."""
    needed = needed_by_imports("offroad_seg_ros", "launch")
    assert {"rclpy", "sensor_msgs", "launch", "launch_ros"} <= needed.keys(), sorted(needed)
    assert not {"numpy", "cv2", "torch", "yaml", "rosbags", "tqdm"} & needed.keys(), sorted(needed)
    assert ros_packages("tf2_ros.buffer") == {"tf2_ros_py"}
    assert ros_packages("rclpy.lifecycle") == {"rclpy", "lifecycle_msgs"}
    assert ros_packages("rosbags.rosbag2") == set()
    wrapped = ("import importlib\n"
               "def _module(name):\n    return importlib.import_module(name)\n"
               "tf = _module('tf2_msgs.msg')\nspec = importlib.util.find_spec('rclpy')\nimport numpy\n")
    assert sorted(m for _, m in imported_modules(wrapped)) == ["importlib", "numpy", "rclpy", "tf2_msgs.msg"]


def test_every_ros_import_of_the_runtime_and_launch_files_is_an_exec_depend():
    missing = _missing(needed_by_imports("offroad_seg_ros", "launch"), declared(*RUNTIME_TAGS))
    assert not missing, "add to package.xml as <exec_depend>: " + "; ".join(missing)


def test_every_ros_import_of_the_tests_is_declared():
    missing = _missing(needed_by_imports("test"), declared(*RUNTIME_TAGS, "test_depend"))
    assert not missing, "add to package.xml as <test_depend>: " + "; ".join(missing)


def test_the_commands_the_launch_files_run_are_declared():
    needed = needed_by_commands()
    assert {"ros2bag", "rosbag2_storage_mcap"} <= needed.keys(), needed  # evaluate.launch.py records mcap
    missing = _missing(needed, declared(*RUNTIME_TAGS))
    assert not missing, "add to package.xml as <exec_depend>: " + "; ".join(missing)


def test_opencv_comes_from_pip_only():
    root = ET.parse(REPO / "package.xml").getroot()
    opencv = [f"<{e.tag}>{e.text}" for e in root.iter() if "opencv" in (e.text or "").lower()
              and e.tag.endswith("depend")]
    assert not opencv, f"package.xml asks rosdep for OpenCV ({opencv}); the package uses pip's opencv-python-headless"
