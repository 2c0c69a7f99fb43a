"""`segmentation_node` console entry: signals first, then the heavy imports.

Ctrl-C must exit cleanly at any moment, including while torch is still being
imported, so the signal handlers go in before `offroad_seg_ros.node.process` (rclpy,
torch, the model) is imported. Kept tiny for that reason.

`kill -USR1 <pid>` prints every thread's Python stack to stderr (faulthandler),
so a node that seems stuck can explain itself without stopping.
"""

from __future__ import annotations

import faulthandler
import importlib.util
import signal
import sys

from offroad_seg_ros.node.shutdown import Shutdown, ShutdownRequested, leave


def main() -> int:
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    shutdown = Shutdown().install()
    try:
        with shutdown.interruptible():
            # rclpy stands for the whole ROS 2 environment (its message packages come with it).
            if importlib.util.find_spec("rclpy") is None:
                print("segmentation_node: cannot start: ROS 2 Python module 'rclpy' not found. Source ROS 2 "
                      "(e.g. /opt/ros/jazzy/setup.bash) and then this workspace's install/setup.bash.",
                      file=sys.stderr)
                return 1
            from offroad_seg_ros.node.process import main as run_node
    except ShutdownRequested:
        # Stopped inside an import: half-imported extension modules (torch) are
        # not worth finalizing, and nothing has started that needs tearing down.
        leave(0)
    return run_node(shutdown=shutdown)


if __name__ == "__main__":
    sys.exit(main())
