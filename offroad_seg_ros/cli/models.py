"""Commands that change a model artifact after export: `calibrate` (the confidence's
temperature), `novelty` (the novelty score's statistics and thresholds) and `quantize`
(an int8 model for CPU robots)."""

from __future__ import annotations

import argparse
from pathlib import Path

from offroad_seg_ros.cli import options
from offroad_seg_ros.cli.progress import stages
from offroad_seg_ros.cli.registry import Command


def print_calibration(artifact: str | Path) -> None:
    """One line on the temperature recorded in `artifact`'s model.json (also after `export --calibrate`)."""
    from offroad_seg_ros.core.artifact import read_artifact

    c = read_artifact(artifact).calibration
    print(f"confidence calibrated on {c['frames']} {c['split']} frames ({c['pixels']:,} pixels): temperature "
          f"{c['temperature']:.3f}; NLL {c['nll_before']:.4f} -> {c['nll_after']:.4f}, "
          f"ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}")


def _calibrate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", type=options.existing_path("model artifact"), help="model artifact directory")
    p.add_argument("data", type=options.existing_path("dataset folder"),
                   help="dataset root (holding the split) or a split folder")
    options.add_fit_split(p, "split to fit on (default val)", "frames, spread over the split (default 32)")
    options.add_quiet(p)


def _calibrate(args: argparse.Namespace) -> int:
    from offroad_seg_ros.tools.temperature import fit_artifact_temperature

    with stages(args.quiet) as report:
        fit_artifact_temperature(args.artifact, args.data, split=args.split, frames=args.frames, stage=report.stage,
                                 progress=report.frames)
    print_calibration(args.artifact)
    return 0


def _quantize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", type=options.existing_path("model artifact"),
                   help="model artifact directory exported with --onnx")
    p.add_argument("data", type=options.existing_path("dataset folder"),
                   help="dataset root (holding the calibration split) or a split folder")
    options.add_fit_split(p, "calibration split (default val)", "calibration frames (default 32)")
    p.add_argument("--check-split", default="test", help="frames the agreement with fp32 is measured on")
    p.add_argument("--check-frames", type=int, default=8, help="how many (default 8)")
    options.add_quiet(p)


def _quantize(args: argparse.Namespace) -> int:
    from offroad_seg_ros.tools.quantize import quantize_artifact

    with stages(args.quiet) as report:
        summary = quantize_artifact(args.artifact, args.data, split=args.split, frames=args.frames,
                                    check_split=args.check_split, check_frames=args.check_frames,
                                    stage=report.stage, progress=report.frames)
    agree = summary["pixel_agreement_with_fp32"]
    print(f"int8 model written to {args.artifact}/{summary['file']} (calibrated on {summary['calibration']['frames']} "
          f"{summary['calibration']['split']} frames); pixel agreement with fp32: "
          f"{'n/a' if agree is None else f'{100 * agree:.2f}%'}; run it with --backend openvino --precision int8")
    return 0


def novelty_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", type=options.existing_path("model artifact"), help="model artifact directory")
    p.add_argument("data", type=options.existing_path("dataset folder"),
                   help="the dataset the model was trained on (its fit split and its threshold split)")
    p.add_argument("--fit-split", default="train", help="labelled split the feature density is fitted on")
    p.add_argument("--fit-frames", type=int, default=64, help="its frames, spread over it (default 64)")
    options.add_fit_split(p, "ordinary frames the thresholds are quantiles of (default val)",
                          "their count (default 32)")
    p.add_argument("--rank", type=int, default=0,
                   help="principal directions of the shared covariance beyond its diagonal (default 0)")
    options.add_quiet(p)


def _novelty(args: argparse.Namespace) -> int:
    from offroad_seg_ros.tools.novelty import fit_novelty

    with stages(args.quiet) as report:
        record = fit_novelty(args.artifact, args.data, fit_split=args.fit_split, split=args.split,
                             fit_frames=args.fit_frames, frames=args.frames, rank=args.rank, stage=report.stage)
    report_novelty(args, record)
    return 0


def report_novelty(args: argparse.Namespace, record: dict) -> None:
    """One line on the stored statistics (shared with the training package's `outlier-head`)."""
    q = dict(zip(record["pixel_quantiles"]["levels"], record["pixel_quantiles"]["values"]))
    f = dict(zip(record["frame_quantiles"]["levels"], record["frame_quantiles"]["values"]))
    print(f"novelty statistics stored in {args.artifact} ({record['fitted_on']['frames']} {args.fit_split} frames; "
          f"pixel score: {record['pixel_score'].replace('_', ' ')}); {args.split} pixels' score: median {q[0.5]:.2f}, "
          f"0.99 quantile {q[0.99]:.2f}; frames' shift score up to {f[1.0]:.2f}; use them with the node's "
          f"novel_threshold / shift_threshold")


CALIBRATE = Command("calibrate", "fit an artifact's confidence temperature on a validation split", rank=50,
                    add_arguments=_calibrate_arguments, run=_calibrate)
QUANTIZE = Command("quantize", "calibrate an int8 model (OpenVINO + NNCF) beside an artifact's model.onnx", rank=60,
                   add_arguments=_quantize_arguments, run=_quantize)
NOVELTY = Command("novelty", "fit an artifact's novelty score (unknown objects, new places) on its training data "
                  "(a stored outlier head is kept)",
                  rank=55, add_arguments=novelty_arguments, run=_novelty)
COMMANDS = (CALIBRATE, NOVELTY, QUANTIZE)
