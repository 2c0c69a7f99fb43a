"""`offroad-seg`, the command line (console script `offroad_seg_ros.cli:main`): `app` builds the
parser from `registry`; `options` holds the options commands share; one module per group of
commands (`data`, `models`, `evaluation`, `ground`). The training commands come from the training
package's entry points (group `offroad_seg.commands` in setup.py)."""

from offroad_seg_ros.cli.app import build_parser, main, run

__all__ = ["build_parser", "main", "run"]
