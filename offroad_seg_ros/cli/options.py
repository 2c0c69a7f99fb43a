"""Options several commands share, each defined once: name, type and default here; a command
passes its own help where the option means something particular to it."""

from __future__ import annotations

import argparse
from pathlib import Path

from offroad_seg_ros.core.calibration import DEFAULT_MIN_CONFIDENCE
from offroad_seg_ros.data.bag import GT_TOPIC, IMAGE_TOPIC, NAME_TOPIC
from offroad_seg_ros.inference.backend import BACKENDS

Parser = argparse.ArgumentParser


def add_force(parser: Parser, help: str) -> None:
    parser.add_argument("--force", action="store_true", help=help)


def add_out(parser: Parser, help: str) -> None:
    """The required `--out` of commands that create one directory."""
    parser.add_argument("--out", required=True, help=help)


def out_dir(args: argparse.Namespace) -> Path:
    """`--out`, refused before any work when it exists and `--force` was not given."""
    out = Path(args.out)
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    return out


def add_model(parser: Parser, help: str, required: bool = False) -> None:
    parser.add_argument("--model", required=required, help=help)


def add_device(parser: Parser, help: str | None = None) -> None:
    parser.add_argument("--device", default="auto", help=help)


def add_inference(parser: Parser) -> None:
    """Where and how the model runs: --device, --precision, --backend, --threads."""
    add_device(parser)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "auto", "int8"],
                        help="fp32 (default), fp16 (CUDA), bf16; with --backend openvino also auto and int8")
    parser.add_argument("--backend", default="torch", choices=list(BACKENDS))
    parser.add_argument("--threads", type=int, default=0, help="CPU runtime intra-op threads (0 = its default)")


def add_limit(parser: Parser, help: str, default: int | None = None) -> None:
    parser.add_argument("--limit", type=int, default=default, help=help)


def add_quiet(parser: Parser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_seed(parser: Parser) -> None:
    parser.add_argument("--seed", type=int, default=0)


def add_classes(parser: Parser, help: str) -> None:
    parser.add_argument("--classes", help=help)


def add_ignore_unknown(parser: Parser, help: str) -> None:
    parser.add_argument("--ignore-unknown", action="store_true", help=help)


def add_min_confidence(parser: Parser, help: str) -> None:
    parser.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE, help=help)


def add_image_topic(parser: Parser, help: str | None = None) -> None:
    parser.add_argument("--image-topic", default=IMAGE_TOPIC, help=help)


def add_label_topics(parser: Parser, help: str | None = None) -> None:
    """--gt-topic and --name-topic: the ground truth and image names beside a bag's images."""
    parser.add_argument("--gt-topic", default=GT_TOPIC, help=help)
    parser.add_argument("--name-topic", default=NAME_TOPIC, help=help)


def add_fit_split(parser: Parser, split_help: str, frames_help: str) -> None:
    """--split and --frames: the frames of DATA a model tool fits on, spread over the split."""
    parser.add_argument("--split", default="val", help=split_help)
    parser.add_argument("--frames", type=int, default=32, help=frames_help)
