"""Locate the package's installed config files (source tree, colcon, pip)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "offroad_seg_ros"


def share_dir() -> Path:
    """The directory holding `config/` and `launch/`.

    Order: the source checkout (editable installs, tests), the ament index on
    AMENT_PREFIX_PATH (colcon workspaces), then `<prefix>/share/offroad_seg_ros` (pip wheels).
    """
    source = Path(__file__).resolve().parents[2]  # offroad_seg_ros/core/resources.py -> the checkout
    if (source / "config" / "classes.yaml").is_file():
        return source
    # The ament index is a file layout: a prefix on AMENT_PREFIX_PATH (set by
    # sourcing a workspace's setup.bash) holds the package if it has the marker
    # file. Read it directly, as ament_index_python does, so that a colcon
    # install resolves its config even where only the Python side is present.
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        if (Path(prefix) / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file():
            return Path(prefix) / "share" / PACKAGE
    candidate = Path(sys.prefix) / "share" / PACKAGE
    if (candidate / "config").is_dir():
        return candidate
    raise FileNotFoundError(
        f"cannot find the {PACKAGE} config directory (looked in {source}, the ament "
        f"index on AMENT_PREFIX_PATH and {candidate}); pass an explicit path instead"
    )


def config_path(name: str) -> Path:
    """Path of `config/<name>` as installed."""
    return share_dir() / "config" / name
