"""Dataset commands: `check` (a dataset folder's layout and class statistics) and `bag`
(a split written to a rosbag2)."""

from __future__ import annotations

import argparse

from offroad_seg_ros.cli import options
from offroad_seg_ros.cli.progress import progress_bar
from offroad_seg_ros.cli.registry import Command


def _check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=options.existing_path("dataset folder"),
                   help="dataset root (holding train/ val/ test/) or one split folder")
    options.add_classes(p, "class table YAML (default: the installed config/classes.yaml)")


def _check(args: argparse.Namespace) -> int:
    from offroad_seg_ros.core.classes import ClassTable
    from offroad_seg_ros.tools.check import check_dataset, format_reports

    table = ClassTable.from_yaml(args.classes)
    reports = check_dataset(args.dir, table)
    print(format_reports(reports, table))
    return 1 if any(r.problems for r in reports) else 0


def _bag_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("split", type=options.existing_path("split folder"),
                   help="split folder, e.g. demo-data/test (holding Color_Images/)")
    options.add_out(p, "bag directory to create", deprecated_positional=True)
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    p.add_argument("--compressed", choices=["png", "jpeg"], help="write sensor_msgs/CompressedImage")
    p.add_argument("--rate", type=float, default=10.0, help="frames per second of bag time (default 10)")
    p.add_argument("--frame-id", default="camera", help="header frame_id (default camera)")
    p.add_argument("--bag-version", type=int, choices=[8, 9], default=8,
                   help="rosbag2 metadata version: 8 reads on Humble and Jazzy (default), 9 on Jazzy+")
    options.add_classes(p, "class table YAML used to validate masks")
    options.add_ignore_unknown(p, "allow raw mask IDs not in the class table")
    options.add_force(p, "overwrite an existing bag")


def _bag(args: argparse.Namespace) -> int:
    from offroad_seg_ros.core.classes import ClassTable
    from offroad_seg_ros.data.bag import write_bag

    table = ClassTable.from_yaml(args.classes)
    with progress_bar("bag") as progress:
        out = write_bag(args.split, args.out, storage=args.storage, compressed=args.compressed, rate=args.rate,
                        frame_id=args.frame_id, table=table, ignore_unknown=args.ignore_unknown,
                        force=args.force, version=args.bag_version, progress=progress)
    print(f"bag written to {out}")
    return 0


CHECK = Command("check", "validate a dataset folder and print class statistics", rank=20,
                add_arguments=_check_arguments, run=_check)
BAG = Command("bag", "write a dataset split to a rosbag2 (mcap or sqlite3)", rank=70,
              add_arguments=_bag_arguments, run=_bag)
COMMANDS = (CHECK, BAG)
