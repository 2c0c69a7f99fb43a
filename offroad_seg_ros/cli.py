"""`offroad-seg`: one command for the dataset, training, export, bags and evaluation.

Subcommands import their dependencies lazily, so the runtime parts work
without the training extras installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from offroad_seg_ros.core.artifact import ArtifactError
from offroad_seg_ros.core.calibration import DEFAULT_MIN_CONFIDENCE
from offroad_seg_ros.core.classes import UnknownRawIdError
from offroad_seg_ros.data.bag import BagError
from offroad_seg_ros.data.camera_checks import DEFAULT_DEGRADED_POLICY, DEGRADED_POLICIES
from offroad_seg_ros.data.dataset import DatasetError
from offroad_seg_ros.evaluation.corruptions import CORRUPTIONS, SEVERITIES
from offroad_seg_ros.inference.backend import BACKENDS

# Errors that are the user's input, printed as one paragraph without a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    DatasetError, UnknownRawIdError, ArtifactError, BagError, FileExistsError, FileNotFoundError,
    ValueError, KeyError,
)


def _synth(args: argparse.Namespace) -> int:
    from offroad_seg_train import synth

    if args.preview:
        print(f"preview written to {synth.preview(args.preview, seed=args.seed)}")
        if args.out is None:
            return 0
    if args.out is None:
        raise ValueError("synth needs an output folder (or only --preview PATH)")
    synth.generate(
        args.out, {"train": args.train, "val": args.val, "test": args.test}, seed=args.seed,
        workers=args.workers, force=args.force, png_level=args.png_level,
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from offroad_seg_ros.core.classes import ClassTable
    from offroad_seg_ros.tools.check import check_dataset, format_reports

    table = ClassTable.from_yaml(args.classes)
    reports = check_dataset(args.dir, table)
    print(format_reports(reports, table))
    return 1 if any(r.problems for r in reports) else 0


def _export(args: argparse.Namespace) -> int:
    from offroad_seg_train.export import export_checkpoint

    out = export_checkpoint(args.ckpt, args.out, onnx=args.onnx, force=args.force, name=args.name,
                            calibrate=args.calibrate)
    print(f"artifact written to {out}")
    if args.calibrate:
        _print_calibration(out)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from offroad_seg_ros.tools.calibrate import calibrate_artifact

    calibrate_artifact(args.artifact, args.data, split=args.split, frames=args.frames)
    _print_calibration(args.artifact)
    return 0


def _print_calibration(artifact: str | Path) -> None:
    from offroad_seg_ros.core.artifact import read_artifact

    c = read_artifact(artifact).calibration
    print(f"confidence calibrated on {c['frames']} {c['split']} frames ({c['pixels']:,} pixels): temperature "
          f"{c['temperature']:.3f}; NLL {c['nll_before']:.4f} -> {c['nll_after']:.4f}, "
          f"ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}")


def _robustness(args: argparse.Namespace) -> int:
    from offroad_seg_ros.evaluation.robustness import evaluate_robustness, robustness_markdown, write_robustness_report

    out = Path(args.out)
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    result = evaluate_robustness(args.source, args.model, args.corruptions, args.severities, args.seed,
                                 args.min_confidence, args.degraded_policy, limit=args.limit, device=args.device,
                                 precision=args.precision, backend=args.backend, threads=args.threads,
                                 progress=not args.quiet)
    write_robustness_report(out, result, force=args.force)
    print(robustness_markdown(result).split("\n## The corruptions")[0])
    print(f"report written to {out}/robustness.md")
    return 0


def _bag(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from offroad_seg_ros.core.classes import ClassTable
    from offroad_seg_ros.data.bag import write_bag

    table = ClassTable.from_yaml(args.classes)
    with tqdm(unit="frame", desc="bag", dynamic_ncols=True) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        out = write_bag(args.split, args.out, storage=args.storage, compressed=args.compressed, rate=args.rate,
                        frame_id=args.frame_id, table=table, ignore_unknown=args.ignore_unknown,
                        force=args.force, version=args.bag_version, progress=progress)
    print(f"bag written to {out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from offroad_seg_ros.core.classes import ClassTable
    from offroad_seg_ros.evaluation.evaluate import evaluate
    from offroad_seg_ros.evaluation.report import summary_table, write_report

    out = Path(args.out)
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    classes = ClassTable.from_yaml(args.classes) if args.classes else None
    metrics, gallery = evaluate(
        args.source, model=args.model, predictions_topic=args.predictions, device=args.device,
        precision=args.precision, backend=args.backend, threads=args.threads, limit=args.limit,
        image_topic=args.image_topic,
        gt_topic=args.gt_topic, name_topic=args.name_topic, classes=classes,
        ignore_unknown=args.ignore_unknown, progress=not args.quiet, min_confidence=args.min_confidence,
    )
    write_report(out, metrics, gallery, force=args.force)
    table = ClassTable.from_dict(metrics["classes"])
    print(summary_table(metrics, table))
    run = metrics["run"]
    print(f"\n{run['frames_scored']} frames scored, unmatched {run['unmatched'] or 0}, skipped {run['skipped']}; "
          f"{run['fps']:.1f} frames/s; report: {out}/report.md")
    return 0


def _replay(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("rclpy") is None:
        raise ValueError("replay talks to the node over ROS 2: source ROS 2 (e.g. /opt/ros/jazzy/setup.bash) "
                         "first; 'rclpy' was not found")
    from tqdm import tqdm

    from offroad_seg_ros.tools.replay import replay

    with tqdm(unit="frame", desc="replay", dynamic_ncols=True, disable=args.quiet) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        res = replay(args.bag, args.out, node=args.node, image_topic=args.image_topic, gt_topic=args.gt_topic,
                     name_topic=args.name_topic, rate=args.rate, record_cost=args.cost, wait_node=args.wait,
                     timeout=args.timeout, force=args.force, progress=progress)
    print(f"{res.mode}: {res.sent} frames sent, {res.received} answered, {res.dropped} dropped by the node; "
          f"{res.fps:.1f} frames/s; bag written to {res.out}")
    print(f"score it: offroad-seg eval {res.out} --predictions {split_topic(args.node)}/mask --out REPORT_DIR")
    return 0


def split_topic(node: str) -> str:
    return node if node.startswith("/") else "/" + node


def _project(args: argparse.Namespace) -> int:
    from offroad_seg_ros.ground.projection import CameraPose, GridSpec
    from offroad_seg_ros.tools.project import camera_from_yaml, project_source

    camera = camera_from_yaml(args.camera) if args.camera else None
    pose = CameraPose.from_list(args.pose)
    origin = args.origin or (None, None)
    grid = GridSpec(args.resolution, args.size[0], args.size[1], origin[0], origin[1], max_range=args.max_range)
    written = project_source(args.source, args.out, camera, pose, grid, model=args.model, hfov=args.hfov,
                             limit=args.limit, device=args.device, image_topic=args.image_topic, force=args.force)
    print(f"{len(written)} picture(s) written to {args.out}")
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from offroad_seg_ros.tools.quantize import quantize_artifact

    summary = quantize_artifact(args.artifact, args.data, split=args.split, frames=args.frames,
                                check_split=args.check_split, check_frames=args.check_frames)
    agree = summary["pixel_agreement_with_fp32"]
    print(f"int8 model written to {args.artifact}/{summary['file']} (calibrated on {summary['calibration']['frames']} "
          f"{summary['calibration']['split']} frames); pixel agreement with fp32: "
          f"{'n/a' if agree is None else f'{100 * agree:.2f}%'}; run it with --backend openvino --precision int8")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from offroad_seg_train.demo import run_demo

    run_demo(args.out, device=args.device, full=args.full, force=args.force, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="offroad-seg", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="generate a synthetic desert dataset (Duality layout)")
    p.add_argument("out", nargs="?", help="output folder (splits are written into it)")
    p.add_argument("--train", type=int, default=40, help="train scenes (default 40)")
    p.add_argument("--val", type=int, default=10, help="val scenes (default 10)")
    p.add_argument("--test", type=int, default=10, help="test scenes, shifted biome (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    p.add_argument("--png-level", type=int, default=0, choices=range(10), metavar="0-9",
                   help="PNG zlib level: 0 (default) stores uncompressed PNGs, fastest to write and "
                        "decode; 1 makes ~3.5x smaller files at ~half the speed")
    p.add_argument("--force", action="store_true", help="overwrite existing splits")
    p.add_argument("--preview", metavar="PNG", help="also write a preview grid of scenes and masks")
    p.set_defaults(func=_synth)

    p = sub.add_parser("check", help="validate a dataset folder and print class statistics")
    p.add_argument("dir", help="dataset root (holding train/ val/ test/) or one split folder")
    p.add_argument("--classes", help="class table YAML (default: the installed config/classes.yaml)")
    p.set_defaults(func=_check)

    sub.add_parser("train", help="train with LightningCLI: offroad-seg train fit --config ...",
                   add_help=False)

    p = sub.add_parser("export", help="Lightning checkpoint -> model artifact directory")
    p.add_argument("ckpt", help="checkpoint (.ckpt) written by offroad-seg train")
    p.add_argument("out", help="artifact directory to create (model.json + weights.safetensors)")
    p.add_argument("--onnx", action="store_true", help="also write model.onnx (checked against PyTorch)")
    p.add_argument("--name", help="model name recorded in model.json (default: the folder name)")
    p.add_argument("--force", action="store_true", help="replace an existing artifact directory")
    p.add_argument("--calibrate", metavar="DATA", help="fit the confidence's temperature on DATA's val split "
                   "(dataset root or split folder) and record it in model.json (see `calibrate`)")
    p.set_defaults(func=_export)

    p = sub.add_parser("calibrate", help="fit an artifact's confidence temperature on a validation split")
    p.add_argument("artifact", help="model artifact directory")
    p.add_argument("data", help="dataset root (holding the split) or a split folder")
    p.add_argument("--split", default="val", help="split to fit on (default val)")
    p.add_argument("--frames", type=int, default=32, help="frames, spread over the split (default 32)")
    p.set_defaults(func=_calibrate)

    p = sub.add_parser("quantize", help="calibrate an int8 model (OpenVINO + NNCF) beside an artifact's model.onnx")
    p.add_argument("artifact", help="model artifact directory exported with --onnx")
    p.add_argument("data", help="dataset root (holding the calibration split) or a split folder")
    p.add_argument("--split", default="val", help="calibration split (default val)")
    p.add_argument("--frames", type=int, default=32, help="calibration frames (default 32)")
    p.add_argument("--check-split", default="test", help="frames the agreement with fp32 is measured on")
    p.add_argument("--check-frames", type=int, default=8, help="how many (default 8)")
    p.set_defaults(func=_quantize)

    p = sub.add_parser("bag", help="write a dataset split to a rosbag2 (mcap or sqlite3)")
    p.add_argument("split", help="split folder, e.g. demo-data/test (holding Color_Images/)")
    p.add_argument("out", help="bag directory to create")
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    p.add_argument("--compressed", choices=["png", "jpeg"], help="write sensor_msgs/CompressedImage")
    p.add_argument("--rate", type=float, default=10.0, help="frames per second of bag time (default 10)")
    p.add_argument("--frame-id", default="camera", help="header frame_id (default camera)")
    p.add_argument("--bag-version", type=int, choices=[8, 9], default=8,
                   help="rosbag2 metadata version: 8 reads on Humble and Jazzy (default), 9 on Jazzy+")
    p.add_argument("--classes", help="class table YAML used to validate masks")
    p.add_argument("--ignore-unknown", action="store_true", help="allow raw mask IDs not in the class table")
    p.add_argument("--force", action="store_true", help="overwrite an existing bag")
    p.set_defaults(func=_bag)

    p = sub.add_parser("eval", help="score a model (or a replay bag) and write a report")
    p.add_argument("source", help="bag directory (offroad-seg bag / ros2 bag record) or dataset split folder")
    p.add_argument("--model", help="model artifact directory to run")
    p.add_argument("--predictions", metavar="TOPIC",
                   help="score the node's recorded masks on TOPIC instead of running a model")
    p.add_argument("--out", required=True, help="report directory to create")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "auto", "int8"],
                   help="fp32 (default), fp16 (CUDA), bf16; with --backend openvino also auto and int8")
    p.add_argument("--backend", default="torch", choices=list(BACKENDS))
    p.add_argument("--threads", type=int, default=0, help="CPU runtime intra-op threads (0 = its default)")
    p.add_argument("--limit", type=int, help="score at most N frames")
    p.add_argument("--image-topic", default="/camera/image_raw")
    p.add_argument("--gt-topic", default="/camera/segmentation")
    p.add_argument("--name-topic", default="/camera/image_name")
    p.add_argument("--classes", help="class table YAML (replay mode; a model brings its own)")
    p.add_argument("--ignore-unknown", action="store_true", help="score unknown raw IDs as ignore")
    p.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE,
                   help="as the node's parameter: report the share of pixels known and how often those are "
                   f"right (default {DEFAULT_MIN_CONFIDENCE})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="replace an existing report directory")
    p.set_defaults(func=_eval)

    p = sub.add_parser("robustness", help="score a model under the corruption set (dust, glare, blur, dark, ...), "
                       "with the camera checks and what the node would publish as known")
    p.add_argument("source", help="bag directory or dataset split folder (with ground truth)")
    p.add_argument("--model", required=True, help="model artifact directory")
    p.add_argument("--out", required=True, help="report directory to create")
    p.add_argument("--corruptions", nargs="+", choices=list(CORRUPTIONS), help="default: all")
    p.add_argument("--severities", nargs="+", type=int, default=list(SEVERITIES), help="default: 1 2 3 4 5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE,
                   help=f"as the node's parameter (default {DEFAULT_MIN_CONFIDENCE})")
    p.add_argument("--degraded-policy", choices=DEGRADED_POLICIES, default=DEFAULT_DEGRADED_POLICY,
                   help=f"as the node's parameter (default {DEFAULT_DEGRADED_POLICY})")
    p.add_argument("--limit", type=int, help="at most N frames")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "auto", "int8"])
    p.add_argument("--backend", default="torch", choices=list(BACKENDS))
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="replace an existing report directory")
    p.set_defaults(func=_robustness)

    p = sub.add_parser("replay", help="play a bag into a running node over ROS 2 and record its masks")
    p.add_argument("bag", help="bag with camera images (e.g. from offroad-seg bag)")
    p.add_argument("--out", required=True, help="bag directory to create: the node's masks + the bag's ground truth")
    p.add_argument("--node", default="/segmentation_node", help="[NAMESPACE/]NAME of the running node")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--lockstep", action="store_true",
                      help="wait for each frame's mask before the next (default; every frame is scored)")
    mode.add_argument("--rate", type=float, metavar="HZ", help="send at a fixed rate and count dropped frames")
    p.add_argument("--cost", action="store_true", help="also record ~/cost")
    p.add_argument("--image-topic", default="/camera/image_raw", help="the bag's camera topic")
    p.add_argument("--gt-topic", default="/camera/segmentation", help="copied to the output if present")
    p.add_argument("--name-topic", default="/camera/image_name", help="copied to the output if present")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the node to appear (default 30)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for one frame's mask in lockstep (default 30)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="replace an existing output bag")
    p.set_defaults(func=_replay)

    p = sub.add_parser("project", help="draw frames beside their ground grid (image | classes | grid)")
    p.add_argument("source", help="bag or dataset split folder")
    p.add_argument("--out", required=True, help="folder to create, one PNG per frame")
    p.add_argument("--model", help="model artifact to segment with (default: the ground-truth masks)")
    p.add_argument("--camera", help="camera calibration YAML (camera_calibration format); default: --hfov pinhole")
    p.add_argument("--hfov", type=float, default=90.0, help="horizontal field of view without --camera (deg)")
    p.add_argument("--pose", type=float, nargs=6, default=[0.0, 0.0, 1.5, 0.0, 0.25, 0.0],
                   metavar=("X", "Y", "Z", "ROLL", "PITCH", "YAW"), help="camera in base_frame (m, rad)")
    p.add_argument("--resolution", type=float, default=0.05, help="m per cell (default 0.05)")
    p.add_argument("--size", type=float, nargs=2, default=[10.0, 10.0], metavar=("X", "Y"), help="grid size (m)")
    p.add_argument("--origin", type=float, nargs=2, metavar=("X", "Y"),
                   help="the grid's lower-left corner in base_frame (m; default: centred on base_frame)")
    p.add_argument("--max-range", type=float, default=8.0, help="m (default 8)")
    p.add_argument("--limit", type=int, default=8, help="frames to draw (default 8)")
    p.add_argument("--device", default="auto")
    p.add_argument("--image-topic", default="/camera/image_raw")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=_project)

    p = sub.add_parser("demo", help="synth -> train -> export -> bag -> eval on generated data")
    p.add_argument("--out", default="demo-out", help="working folder (default demo-out)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (training and evaluation)")
    p.add_argument("--full", action="store_true", help="reference recipe on a larger dataset (needs a GPU)")
    p.add_argument("--force", action="store_true", help="redo every stage")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)
    return parser


def run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return func(args)
    except KeyboardInterrupt:
        print(f"offroad-seg {args.command}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"offroad-seg {args.command}: error: {msg}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        # LightningCLI owns the whole argument list (config files, overrides).
        from offroad_seg_train.cli import main as train_main

        return train_main(argv[1:])
    args = build_parser().parse_args(argv)
    return run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
