"""The node's process: rclpy up, spin until a signal or the lifecycle's end,
everything down, and the exit code (0 on a clean exit at any moment, 1 with
one fatal line when the node cannot start)."""

from __future__ import annotations

import sys

import rclpy
import rclpy.logging
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args

from offroad_seg_ros.node.node import STARTUP_ERRORS, SegmentationNode
from offroad_seg_ros.node.shutdown import Shutdown, ShutdownRequested, leave, must_leave_now


def main(args: list[str] | None = None, shutdown: Shutdown | None = None) -> int:
    """Run the node until SIGINT / SIGTERM. `--lifecycle` (before any
    --ros-args): a managed node, waiting unconfigured."""
    shutdown = shutdown or Shutdown().install()
    argv = sys.argv if args is None else args
    lifecycle = "--lifecycle" in remove_ros_args(argv)
    node = None
    rc = 0
    try:
        # A signal from here on only sets a flag (see shutdown.py): start-up
        # checks it before and while waiting for the model thread.
        shutdown.check()
        # rclpy's own handlers would raise KeyboardInterrupt again on the
        # second Ctrl-C; Shutdown takes the signals instead.
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
        node = SegmentationNode(lifecycle=lifecycle, shutdown=shutdown)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        # A short timeout: the signal handler only sets a flag, checked here.
        while not shutdown.requested.is_set() and rclpy.ok() and not node.finalized:
            executor.spin_once(timeout_sec=0.1)
        if lifecycle and not node.finalized:
            node.trigger_shutdown()  # from whichever primary state: releases everything
    except (ShutdownRequested, ExternalShutdownException):
        pass
    except STARTUP_ERRORS as exc:
        rclpy.logging.get_logger("segmentation_node").fatal(f"cannot start: {exc}")
        rc = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        shutdown.exiting()
    if must_leave_now(shutdown):
        leave(rc)
    return rc


if __name__ == "__main__":
    sys.exit(main())
