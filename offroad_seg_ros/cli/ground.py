"""`project`: frames drawn beside the ground grid the node would build from them."""

from __future__ import annotations

import argparse

from offroad_seg_ros.cli import options
from offroad_seg_ros.cli.progress import stages
from offroad_seg_ros.cli.registry import Command


def _project_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=options.existing_path("bag or split folder"), help="bag or dataset split folder")
    options.add_out(p, "folder to create, one PNG per frame")
    options.add_model(p, "model artifact to segment with (default: the ground-truth masks)")
    p.add_argument("--camera", type=options.existing_path("camera file"),
                   help="camera calibration YAML (camera_calibration format); default: --hfov pinhole")
    p.add_argument("--hfov", type=float, default=90.0, help="horizontal field of view without --camera (deg)")
    p.add_argument("--pose", type=float, nargs=6, default=[0.0, 0.0, 1.5, 0.0, 0.25, 0.0],
                   metavar=("X", "Y", "Z", "ROLL", "PITCH", "YAW"), help="camera in base_frame (m, rad)")
    p.add_argument("--resolution", type=float, default=0.05, help="m per cell (default 0.05)")
    p.add_argument("--size", type=float, nargs=2, default=[10.0, 10.0], metavar=("X", "Y"), help="grid size (m)")
    p.add_argument("--origin", type=float, nargs=2, metavar=("X", "Y"),
                   help="the grid's lower-left corner in base_frame (m; default: centred on base_frame)")
    p.add_argument("--max-range", type=float, default=8.0, help="m (default 8)")
    options.add_limit(p, "frames to draw (default 8)", default=8)
    options.add_device(p)
    options.add_image_topic(p)
    options.add_quiet(p)
    options.add_force(p, "replace an existing output folder")


def _project(args: argparse.Namespace) -> int:
    from offroad_seg_ros.ground.projection import CameraPose, GridSpec
    from offroad_seg_ros.tools.project import camera_from_yaml, project_source

    camera = camera_from_yaml(args.camera) if args.camera else None
    pose = CameraPose.from_list(args.pose)
    origin = args.origin or (None, None)
    grid = GridSpec(args.resolution, args.size[0], args.size[1], origin[0], origin[1], max_range=args.max_range)
    with stages(args.quiet) as report:
        written = project_source(args.source, args.out, camera, pose, grid, model=args.model, hfov=args.hfov,
                                 limit=args.limit, device=args.device, image_topic=args.image_topic,
                                 force=args.force, stage=report.stage, progress=report.frames)
    print(f"{len(written)} picture(s) written to {args.out}")
    return 0


PROJECT = Command("project", "draw frames beside their ground grid (image | classes | grid)", rank=110,
                  add_arguments=_project_arguments, run=_project)
COMMANDS = (PROJECT,)
