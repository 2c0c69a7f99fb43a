"""The training package's `offroad-seg` commands: `synth`, `train`, `export` and `demo`.

Each is an entry point of the group `offroad_seg.commands` (setup.py), which the runtime's
registry (`offroad_seg_ros/cli/registry.py`) loads. This module imports only argparse and the
runtime's CLI helpers; torch, Lightning and the generator load when a command runs, so
`offroad-seg --help` stays fast.
"""

from __future__ import annotations

import argparse

from offroad_seg_ros.cli import options
from offroad_seg_ros.cli.progress import stages
from offroad_seg_ros.cli.registry import Command


def _synth_arguments(p: argparse.ArgumentParser) -> None:
    options.add_out(p, "output folder (splits are written into it)", optional=True, deprecated_positional=True)
    # With --biome, --novel-objects or --pasted-patches only the splits given are written (test 10 if none is).
    p.add_argument("--train", type=int, default=None, help="train scenes (default 40; see --biome)")
    p.add_argument("--val", type=int, default=None, help="val scenes (default 10; see --biome)")
    p.add_argument("--test", type=int, default=None, help="test scenes, shifted biome unless --biome (default 10)")
    p.add_argument("--biome", action="append", metavar="NAME",
                   help="draw every split in this biome (repeatable or a comma list; a group: tuning, held_out); "
                        "several biomes go to OUT/NAME/<split>; only the splits given are written, 10 test scenes "
                        "if none is. Default: train and val in the train biome, test in the test biome")
    p.add_argument("--list-biomes", action="store_true", help="list the biomes and their groups, then exit")
    p.add_argument("--novel-objects", action="append", metavar="KINDS",
                   help="draw objects no class covers into each scene, for evaluation only: vehicle, person, "
                        "fence, drum, tarp, puddle, or a group (tuning, held_out, all); writes <split>/Novelty/")
    p.add_argument("--novel-per-scene", type=int, default=2, metavar="N", help="novel objects per scene (default 2)")
    p.add_argument("--pasted-patches", type=int, default=0, metavar="N",
                   help="paste N rocks or bushes cut from another scene into each (a control: not novel, "
                        "value 2 in <split>/Novelty/)")
    options.add_seed(p)
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    p.add_argument("--png-level", type=int, default=0, choices=range(10), metavar="0-9",
                   help="PNG zlib level: 0 (default) stores uncompressed PNGs, fastest to write and "
                        "decode; 1 makes ~3.5x smaller files at ~half the speed")
    options.add_force(p, "overwrite existing splits")
    p.add_argument("--preview", metavar="PNG", help="also write a preview grid of scenes and masks")


_SYNTH_COUNTS = {"train": 40, "val": 10, "test": 10}


def _synth_counts(args: argparse.Namespace, evaluation: bool) -> dict[str, int]:
    """Scenes per split: 40 / 10 / 10 where not given; for an evaluation set (named biomes,
    novel objects, pasted patches) only the splits asked, or 10 test scenes if none is."""
    asked = {"train": args.train, "val": args.val, "test": args.test}
    if not evaluation:
        return {split: _SYNTH_COUNTS[split] if n is None else n for split, n in asked.items()}
    if all(n is None for n in asked.values()):
        return {"train": 0, "val": 0, "test": 10}
    return {split: n or 0 for split, n in asked.items()}


def _synth(args: argparse.Namespace) -> int:
    from pathlib import Path

    from offroad_seg_train import biomes, synth

    if args.list_biomes:
        print(biomes.describe())
        return 0
    chosen = biomes.resolve(args.biome or [])
    scene: synth.Scene = synth.plain_scene
    if args.novel_objects or args.pasted_patches:
        from offroad_seg_train.novel_objects import NovelScenes, resolve_kinds

        scene = NovelScenes(resolve_kinds(args.novel_objects or []), args.novel_per_scene, args.pasted_patches)
    if args.preview:
        path = synth.preview(args.preview, seed=args.seed, biomes=chosen, scene=scene)
        print(f"preview written to {path}")
        if args.out is None:
            return 0
    if args.out is None:
        raise ValueError("synth needs an output folder, --out PATH (or only --preview PATH)")
    counts = _synth_counts(args, evaluation=bool(chosen) or scene is not synth.plain_scene)
    if scene is not synth.plain_scene and counts["train"]:
        raise ValueError("novel objects and pasted patches are for evaluation only; they are not drawn into a "
                         "train split (--train 0)")
    common = dict(seed=args.seed, workers=args.workers, force=args.force, png_level=args.png_level, scene=scene)
    if len(chosen) > 1:
        for biome in chosen:
            synth.generate(Path(args.out) / biome.name, counts, biome=biome, **common)
    else:
        synth.generate(args.out, counts, biome=chosen[0] if chosen else None, **common)
    return 0


def _train(argv: list[str]) -> int:
    from offroad_seg_train.cli import main

    return main(argv)


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", type=options.existing_path("checkpoint"),
                   help="checkpoint (.ckpt) written by offroad-seg train")
    options.add_out(p, "artifact directory to create (model.json + weights.safetensors)", deprecated_positional=True)
    p.add_argument("--onnx", action="store_true", help="also write model.onnx (checked against PyTorch)")
    p.add_argument("--name", help="model name recorded in model.json (default: the folder name)")
    options.add_force(p, "replace an existing artifact directory")
    p.add_argument("--calibrate", metavar="DATA", type=options.existing_path("dataset folder"),
                   help="fit the confidence's temperature on DATA's val split "
                   "(dataset root or split folder) and record it in model.json (see `calibrate`)")
    options.add_quiet(p)


def _export(args: argparse.Namespace) -> int:
    from offroad_seg_ros.cli.models import print_calibration
    from offroad_seg_train.export import export_checkpoint

    with stages(args.quiet) as report:
        out = export_checkpoint(args.ckpt, args.out, onnx=args.onnx, force=args.force, name=args.name,
                                temperature_data=args.calibrate, stage=report.stage, progress=report.frames)
    print(f"artifact written to {out}")
    if args.calibrate:
        print_calibration(out)
    return 0


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    options.add_out(p, "working folder (default demo-out)", default="demo-out")
    options.add_device(p, "auto | cpu | cuda (training and evaluation)")
    p.add_argument("--full", action="store_true", help="reference recipe on a larger dataset (needs a GPU)")
    options.add_force(p, "redo every stage")
    options.add_seed(p)


def _demo(args: argparse.Namespace) -> int:
    from offroad_seg_train.demo import run_demo

    run_demo(args.out, device=args.device, full=args.full, force=args.force, seed=args.seed)
    return 0


# Ranks place them among the runtime's commands in `offroad-seg --help` (see Command).
SYNTH = Command("synth", "generate a synthetic desert dataset (Duality layout)", rank=10,
                add_arguments=_synth_arguments, run=_synth)
TRAIN = Command("train", "train with LightningCLI: offroad-seg train fit --config ...", rank=30, run_argv=_train)
EXPORT = Command("export", "Lightning checkpoint -> model artifact directory", rank=40,
                 add_arguments=_export_arguments, run=_export)
DEMO = Command("demo", "synth -> train -> export -> bag -> eval on generated data", rank=120,
               add_arguments=_demo_arguments, run=_demo)


def _adapt_arguments(p: argparse.ArgumentParser) -> None:
    from offroad_seg_train.adapt import AdaptSettings
    from offroad_seg_train.gate import GateSettings

    d, g = AdaptSettings(), GateSettings()
    p.add_argument("model", type=options.existing_path("model artifact"), help="model artifact to adapt")
    p.add_argument("target", type=options.existing_path("bag or image folder"),
                   help="the new place's unlabelled frames: a rosbag2 (name its camera with --image-topic) "
                        "or a folder of images")
    options.add_out(p, "adapted artifact directory to create (written only if it passes the gate)")
    p.add_argument("--source", required=True, type=options.existing_path("dataset folder"),
                   help="the labelled dataset the model was trained on: its train split is replayed, its val "
                        f"split gates the result (at least {g.min_source_frames} frames, else a bootstrap bound)")
    p.add_argument("--image-topic", help="the bag's camera topic (sensor_msgs/Image or CompressedImage)")
    p.add_argument("--steps", type=int, help=f"self-training steps (default {d.steps})")
    p.add_argument("--max-frames", dest="max_frames", type=int,
                   help=f"frames of the new place used, spread over the recording (default {d.max_frames})")
    p.add_argument("--lr", type=float, help=f"learning rate (default {d.lr})")
    p.add_argument("--tolerance", type=float,
                   help=f"largest source val mIoU drop the gate allows (default {g.tolerance})")
    footprints = p.add_argument_group("footprints (a bag with odometry: driven-over ground is not an obstacle)")
    footprints.add_argument("--odom-topic", help="nav_msgs/Odometry topic of the bag")
    footprints.add_argument("--camera-info-topic", help="sensor_msgs/CameraInfo topic of the bag")
    footprints.add_argument("--camera-pose", type=float, nargs=6, metavar=("X", "Y", "Z", "ROLL", "PITCH", "YAW"),
                            help="the camera in the robot's base frame, as the node's camera_pose parameter")
    options.add_seed(p)
    options.add_force(p, "replace an existing artifact directory")
    options.add_quiet(p)


def _adapt(args: argparse.Namespace) -> int:
    from offroad_seg_train.adapt import GateRefused, adapt, settings_from
    from offroad_seg_train.footprint_labels import bag_footprints

    fp = None
    if args.odom_topic or args.camera_info_topic or args.camera_pose:
        fp = bag_footprints(args.target, args.odom_topic, args.camera_info_topic, args.camera_pose)
    with stages(args.quiet) as report:
        try:
            result = adapt(args.model, args.target, args.out, args.source, settings_from(args), args.image_topic,
                           footprints=fp, force=args.force, quiet=args.quiet, stage=report.stage)
        except GateRefused as refused:
            print(str(refused))
            return 3
    print(result.gate.table())
    print(f"adapted artifact written to {result.out} (parent {result.provenance['parent']})")
    print(f"compare them: offroad-seg eval LABELLED_FRAMES --model {args.model} --compare {result.out} --out REPORT")
    return 0


ADAPT = Command("adapt", "adapt a model to a new place from its unlabelled frames (bag or folder), gated", rank=45,
                add_arguments=_adapt_arguments, run=_adapt)


def _outlier_head_arguments(p: argparse.ArgumentParser) -> None:
    from offroad_seg_ros.cli.models import novelty_arguments
    from offroad_seg_train.outlier_head import HeadSettings

    novelty_arguments(p)
    d = HeadSettings()
    p.add_argument("--head-frames", type=int, default=d.frames,
                   help=f"fit-split frames the outliers are pasted into (default {d.frames})")
    p.add_argument("--head-steps", type=int, default=d.steps, help=f"training steps of the head (default {d.steps})")
    options.add_seed(p)


def _outlier_head(args: argparse.Namespace) -> int:
    from offroad_seg_ros.cli.models import report_novelty
    from offroad_seg_train.outlier_head import HeadSettings, fit_with_outlier_head

    settings = HeadSettings(frames=args.head_frames, steps=args.head_steps, seed=args.seed)
    with stages(args.quiet) as report:
        record = fit_with_outlier_head(args.artifact, args.data, settings, stage=report.stage,
                                       fit_split=args.fit_split, split=args.split, fit_frames=args.fit_frames,
                                       frames=args.frames, rank=args.rank)
    report_novelty(args, record)
    return 0


OUTLIER_HEAD = Command("outlier-head", "train an artifact's outlier head (outlier exposure), then refit its "
                       "novelty statistics with it", rank=56, add_arguments=_outlier_head_arguments, run=_outlier_head)
