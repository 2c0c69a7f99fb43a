"""The commands of `offroad-seg`, by name: the runtime's own (registered by `cli.app`) and those
other packages declare as entry points in the group `offroad_seg.commands` (setup.py: the
training package's), loaded on first use.

The runtime never names the training package: it finds its commands only through the entry
points, so `offroad_seg_ros` works, and says why, where that package cannot be imported.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

ENTRY_POINT_GROUP = "offroad_seg.commands"


@dataclass(frozen=True)
class Command:
    """One subcommand. `rank` places it in `offroad-seg --help` (lowest first: the workflow's
    order, data -> training -> model tools -> bags and evaluation -> demo). A command either
    declares its arguments (`add_arguments`) and runs on the parsed namespace (`run`), or owns
    its whole argument list (`run_argv`: given every word after its name, unparsed)."""

    name: str
    help: str
    rank: int
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    run: Callable[[argparse.Namespace], int] | None = None
    run_argv: Callable[[list[str]], int] | None = None

    def __post_init__(self) -> None:
        if (self.run is None) == (self.run_argv is None):
            raise ValueError(f"command {self.name!r}: give exactly one of run and run_argv")
        if self.run_argv is not None and self.add_arguments is not None:
            raise ValueError(f"command {self.name!r}: run_argv parses its own arguments; drop add_arguments")


_COMMANDS: dict[str, Command] = {}
_plugins_loaded = False


def register(*commands: Command) -> None:
    """Add commands; a name may be taken once."""
    for command in commands:
        if command.name in _COMMANDS:
            raise ValueError(f"command {command.name!r} is registered twice")
        _COMMANDS[command.name] = command


def commands() -> list[Command]:
    """Every command, the entry points' included, in help order."""
    load_plugins()
    return sorted(_COMMANDS.values(), key=lambda c: (c.rank, c.name))


def get(name: str) -> Command | None:
    load_plugins()
    return _COMMANDS.get(name)


def load_plugins() -> None:
    """Register the entry points' commands, once. One that fails to load (its package broken or
    blocked) is left out with a warning naming it: the other commands keep working."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            command = _load(ep)
            register(command)
        except Exception as exc:  # noqa: BLE001 - any failure of a plugin must leave the CLI usable
            print(f"offroad-seg: warning: command {ep.name!r} not available: its entry point {ep.value} "
                  f"({ENTRY_POINT_GROUP}) failed to load: {type(exc).__name__}: {exc}", file=sys.stderr)


def _load(ep: EntryPoint) -> Command:
    command = ep.load()
    if not isinstance(command, Command):
        raise TypeError(f"{ep.value} is a {type(command).__name__}, not an offroad_seg_ros.cli.registry.Command")
    if command.name != ep.name:
        raise ValueError(f"{ep.value} is the command {command.name!r}; the entry point's name must match it")
    return command
