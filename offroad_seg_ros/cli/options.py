"""Options several commands share, each defined once: name, type and default here; a command
passes its own help where the option means something particular to it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from offroad_seg_ros.core.calibration import DEFAULT_MIN_CONFIDENCE
from offroad_seg_ros.data.bag import GT_TOPIC, IMAGE_TOPIC, NAME_TOPIC
from offroad_seg_ros.inference.backend import BACKENDS

Parser = argparse.ArgumentParser


def add_force(parser: Parser, help: str) -> None:
    parser.add_argument("--force", action="store_true", help=help)


# The output as a trailing positional argument, the older form of some commands, and whether that
# command requires an output (argparse cannot require `--out` where the positional may stand for it).
OLD_OUT = "old_out"
_OUT_REQUIRED = "out_required"


class UsageError(ValueError):
    """The command line is wrong in a way argparse cannot see; `cli.app` reports it as argparse would."""


def add_out(parser: Parser, help: str, *, default: str | None = None, optional: bool = False,
            deprecated_positional: bool = False) -> None:
    """`--out PATH`, the one way every command names what it writes; required unless it has a
    `default` or is `optional`. `deprecated_positional`: the command once took its output as a
    trailing positional argument; that form still works, with a warning (`take_out`)."""
    required = default is None and not optional
    if required and deprecated_positional:  # checked by take_out, so argparse's usage shows it optional
        help += " (required)"
    parser.add_argument("--out", metavar="PATH", default=default, required=required and not deprecated_positional,
                        help=help)
    if deprecated_positional:
        parser.add_argument(OLD_OUT, nargs="?", help=argparse.SUPPRESS)
        parser.set_defaults(**{_OUT_REQUIRED: required})


def take_out(args: argparse.Namespace, unparsed: list[str]) -> list[str]:
    """Move a deprecated positional output into `args.out`, warning on stderr; returns the words
    still unparsed. The positional is the one argparse filled or a lone word it left over: after
    an option between the positionals (`bag SPLIT --force OUT`) argparse has already given the
    optional positional its empty value. Raises UsageError for an output given twice, or for none
    where no word is left over (an unrecognized word is the error to report then)."""
    if not hasattr(args, OLD_OUT):
        return unparsed
    old, required = vars(args).pop(OLD_OUT), vars(args).pop(_OUT_REQUIRED)
    if old is None and len(unparsed) == 1 and not unparsed[0].startswith("-"):
        old, unparsed = unparsed[0], []
    if old is not None:
        if args.out is not None:
            raise UsageError(f"the output is given twice: {old} and --out {args.out}; give --out only")
        print(f"offroad-seg {args.command}: the output as a positional argument is deprecated; use --out PATH",
              file=sys.stderr)
        args.out = old
    if required and args.out is None and not unparsed:
        raise UsageError("the following arguments are required: --out")
    return unparsed


def existing_path(what: str) -> Callable[[str], str]:
    """An argparse `type` for an input path: one that does not exist is refused while parsing,
    before any model loads, naming the path and what it should have been."""
    def check(value: str) -> str:
        if not Path(value).exists():
            raise argparse.ArgumentTypeError(f"{what} {value} does not exist")
        return value

    return check


def out_dir(args: argparse.Namespace) -> Path:
    """`--out`, refused before any work when it exists and `--force` was not given."""
    out = Path(args.out)
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    return out


def add_model(parser: Parser, help: str, required: bool = False) -> None:
    parser.add_argument("--model", required=required, type=existing_path("model artifact"), help=help)


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
    parser.add_argument("--quiet", action="store_true", help="no progress bar or stage lines")


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
