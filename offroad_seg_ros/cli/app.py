"""`offroad-seg`: one command for the dataset, training, export, bags and evaluation.

The parser is built from the command registry (`cli.registry`): the runtime's commands below,
the training package's through its entry points. Commands import their dependencies when they
run, so `--help` stays fast and the runtime commands work without the training extras.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from offroad_seg_ros import __version__
from offroad_seg_ros.cli import data, evaluation, ground, models, options
from offroad_seg_ros.cli.registry import commands, get, register
from offroad_seg_ros.core.artifact import ArtifactError
from offroad_seg_ros.core.classes import UnknownRawIdError
from offroad_seg_ros.data.bag import BagError
from offroad_seg_ros.data.dataset import DatasetError

# Errors that are the user's input, printed as one paragraph without a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    DatasetError, UnknownRawIdError, ArtifactError, BagError, FileExistsError, FileNotFoundError,
    ValueError, KeyError,
)

register(*data.COMMANDS, *models.COMMANDS, *evaluation.COMMANDS, *ground.COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="offroad-seg", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands():
        if command.run_argv is not None:
            # Listed for --help only: main() hands such a command its words before parsing.
            sub.add_parser(command.name, help=command.help, add_help=False)
            continue
        p = sub.add_parser(command.name, help=command.help)
        if command.add_arguments is not None:
            command.add_arguments(p)
        p.set_defaults(func=command.run)
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
    command = get(argv[0]) if argv else None
    if command is not None and command.run_argv is not None:
        # Its own parser (LightningCLI) owns the whole argument list: config files, overrides.
        return command.run_argv(argv[1:])
    try:
        func, args = parse(argv)
    except SystemExit as exc:  # argparse's --help, --version and usage errors: its status, returned as run's is
        return exc.code if isinstance(exc.code, int) else 0
    return run(func, args)


def parse(argv: list[str]) -> tuple[Callable[[argparse.Namespace], int], argparse.Namespace]:
    """The command's function and its arguments, parsed as `parse_args` would, except that a
    deprecated positional output (`options.take_out`) may be a word argparse left over."""
    parser = build_parser()
    args, unparsed = parser.parse_known_args(argv)
    try:
        unparsed = options.take_out(args, unparsed)
    except options.UsageError as exc:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[args.command].error(str(exc))  # exits 2 with the command's usage
    if unparsed:
        parser.error(f"unrecognized arguments: {' '.join(unparsed)}")
    return args.func, args
