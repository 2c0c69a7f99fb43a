"""`offroad-seg`: one command for the dataset, training, export, bags and evaluation.

Subcommands import their dependencies lazily, so the runtime parts work
without the training extras installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .classes import UnknownRawIdError
from .dataset import DatasetError

# Errors that are the user's input, printed as one paragraph without a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    DatasetError, UnknownRawIdError, FileExistsError, FileNotFoundError, ValueError, KeyError,
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
    from .check import check_dataset, format_reports
    from .classes import ClassTable

    table = ClassTable.from_yaml(args.classes) if args.classes else ClassTable.default()
    reports = check_dataset(args.dir, table)
    print(format_reports(reports, table))
    return 1 if any(r.problems for r in reports) else 0


def _export(args: argparse.Namespace) -> int:
    from offroad_seg_train.export import export_checkpoint

    out = export_checkpoint(args.ckpt, args.out, onnx=args.onnx, force=args.force, name=args.name)
    print(f"artifact written to {out}")
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
    p.add_argument("--png-level", type=int, default=1, choices=range(10), metavar="0-9",
                   help="PNG zlib level; 0 writes ~10x faster, ~2x larger files (default 1)")
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
    p.set_defaults(func=_export)
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
