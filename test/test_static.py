"""Lint, and type-check both packages against the installed rclpy (py.typed)
and whichever numpy / OpenCV stubs the run has (both passes of make test)."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ["-p", "offroad_seg_ros", "-p", "offroad_seg_train"]


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    out = subprocess.run([ruff, "check", str(REPO)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_packages_type_check_against_installed_rclpy(tmp_path):
    import rclpy  # the real one: sourced ROS 2, or the Jazzy wheels `make test` installs

    assert (Path(rclpy.__file__).parent / "py.typed").is_file()
    out = subprocess.run([sys.executable, "-m", "mypy", *PACKAGES], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    # The check is real: the same rclpy rejects a misspelt keyword.
    bad = tmp_path / "mypy_probe.py"
    bad.write_text("from rclpy.node import Node\n\n\ndef f(n: Node) -> None:\n"
                   "    n.create_subscription(int, 't', print, 1, raww=True)\n")
    out = subprocess.run([sys.executable, "-m", "mypy", str(bad)], cwd=REPO, capture_output=True, text=True)
    assert "raww" in out.stdout


# The runtime's layers, lowest first: a module imports only from lower layers and its own package.
LAYERS = {"core": 0, "data": 1, "inference": 1, "evaluation": 2, "ground": 2, "node": 3, "tools": 3, "cli": 4}
# The only ones that talk to ROS (tf_listener.py: TF subscriptions, tf2_ros where it imports).
ROS_MODULES = {"node/node.py", "node/process.py", "node/tf_listener.py", "tools/replay.py"}


def _imports(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_imports_run_down_the_layers_and_only_ros_modules_import_rclpy():
    root = REPO / "offroad_seg_ros"
    wrong = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        own = rel.split("/")[0].removesuffix(".py")
        if own not in LAYERS:
            continue  # the package's __init__
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "rclpy" and rel not in ROS_MODULES:
                wrong.append(f"{rel} imports {name}")
            if parts[0] == "offroad_seg_ros" and len(parts) > 1 and parts[1] != own:
                if LAYERS.get(parts[1], 99) >= LAYERS[own]:
                    wrong.append(f"{rel} ({own}) imports {name}")
    assert not wrong, wrong
