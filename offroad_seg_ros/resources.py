"""Locate the package's installed config files (source tree, colcon, pip)."""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "offroad_seg_ros"


def share_dir() -> Path:
    """The directory holding `config/` and `launch/`.

    Order: the source checkout (editable installs, tests), the ament index
    (colcon workspaces), then `<prefix>/share/offroad_seg_ros` (pip wheels).
    """
    source = Path(__file__).resolve().parents[1]
    if (source / "config" / "classes.yaml").is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception:  # noqa: BLE001 - ament_index missing or package not indexed
        pass
    candidate = Path(sys.prefix) / "share" / PACKAGE
    if (candidate / "config").is_dir():
        return candidate
    raise FileNotFoundError(
        f"cannot find the {PACKAGE} config directory (looked in {source}, the ament "
        f"index and {candidate}); pass an explicit path instead"
    )


def config_path(name: str) -> Path:
    """Path of `config/<name>` as installed."""
    return share_dir() / "config" / name
