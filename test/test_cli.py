"""`offroad-seg`: every command's --help, the runtime without the training package, the training
commands through their entry points (setup.py), and the commands and options the docs show."""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAINING_PACKAGE = "offroad_seg_train"
RUNTIME_COMMANDS = {"check", "calibrate", "quantize", "bag", "eval", "robustness", "replay", "project"}
TRAINING_COMMANDS = {"synth", "train", "export", "demo"}
REINSTALL = ("the training commands are entry points (setup.py, group offroad_seg.commands): re-run "
             "`pip install --no-deps --no-build-isolation -e .`, and remove or regenerate (`python setup.py egg_info`) "
             "a stale offroad_seg_ros.egg-info in the repository root, which shadows the installed metadata")


def cli_commands() -> dict[str, set[str] | None]:
    """Every `offroad-seg` command by name, with its option strings from the parser `offroad-seg`
    builds; None for a command that parses its own arguments (`train`: LightningCLI's)."""
    from offroad_seg_ros.cli import build_parser
    from offroad_seg_ros.cli.registry import get

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found: dict[str, set[str] | None] = {}
    for name, p in sub.choices.items():
        command = get(name)
        assert command is not None, name
        found[name] = None if command.run_argv else {o for a in p._actions for o in a.option_strings}
    return found


# Every registered command's --help, in one process; the exit codes as the last line of stdout.
_HELP_ALL = """
import json, sys
{block}
import offroad_seg_ros.node.entry
from offroad_seg_ros.cli import main
from offroad_seg_ros.cli.registry import commands

codes = {{}}
for command in commands():
    try:
        codes[command.name] = main([command.name, "--help"])
    except SystemExit as exc:
        codes[command.name] = exc.code
print(json.dumps(codes))
"""


def _help_codes(block_training: bool) -> tuple[dict[str, int], str]:
    # sys.modules[name] = None makes every import of it fail, as where it is not installed.
    block = f"sys.modules[{TRAINING_PACKAGE!r}] = None" if block_training else ""
    out = subprocess.run([sys.executable, "-c", _HELP_ALL.format(block=block)], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_runtime_commands_work_without_the_training_package():
    codes, stderr = _help_codes(block_training=True)
    assert codes == dict.fromkeys(RUNTIME_COMMANDS, 0), stderr[-4000:]
    # Each command it could not load is named, with the reason.
    for ep in entry_points(group="offroad_seg.commands"):
        assert f"command {ep.name!r} not available" in stderr and ep.value in stderr, stderr[-4000:]


def test_training_commands_come_from_their_entry_points():
    out = subprocess.run([sys.executable, "-m", "offroad_seg_ros.cli", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-4000:]
    listed = set(re.findall(r"^ {4}([a-z][\w-]*)", out.stdout, re.M))
    assert TRAINING_COMMANDS <= listed, f"{sorted(TRAINING_COMMANDS - listed)} missing: {REINSTALL}"
    assert listed == RUNTIME_COMMANDS | TRAINING_COMMANDS, out.stdout
    assert "warning: command" not in out.stderr, out.stderr[-4000:]
    codes, stderr = _help_codes(block_training=False)
    assert codes == dict.fromkeys(RUNTIME_COMMANDS | TRAINING_COMMANDS, 0), stderr[-4000:]


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def test_runtime_never_names_the_training_package():
    """The training package imports the runtime, never the reverse: not by an import statement,
    nor by a string handed to importlib (docstrings may mention it)."""
    wrong = []
    for path in sorted((REPO / "offroad_seg_ros").rglob("*.py")):
        where = path.relative_to(REPO)
        tree = ast.parse(path.read_text(), str(path))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom, ast.Constant)):
                continue
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            wrong += [f"{where}:{node.lineno} imports {n}" for n in names if n.split(".")[0] == TRAINING_PACKAGE]
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and TRAINING_PACKAGE in node.value
                    and id(node) not in docstrings):
                wrong.append(f"{where}:{node.lineno} names {TRAINING_PACKAGE} in a string")
    assert not wrong, wrong


DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_FENCES = {"bash", "sh", "shell", "console"}
COMMAND = re.compile(r"(?<![\w-])offroad-seg\s+([a-z][\w-]*)")
OPTION = re.compile(r"(?<![\w-])--[A-Za-z][\w.-]*")
NEXT_SHELL_COMMAND = re.compile(r"&&|\|\||\s\|\s")


def _doc_code(text: str) -> Iterator[tuple[int, str]]:
    """(line number, code) for each line of a shell block (a line ending in a backslash joined
    with the next) and each inline code span outside blocks."""
    fence: str | None = None
    held: tuple[int, str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("```"):
            fence = line.strip()[3:].strip() if fence is None else None
            continue
        if fence is None:
            yield from ((number, span) for span in re.findall(r"`([^`]+)`", line))
        elif fence in SHELL_FENCES:
            if held:
                number, line = held[0], f"{held[1]} {line}"
            held = (number, line.rstrip()[:-1]) if line.rstrip().endswith("\\") else None
            if held is None:
                yield number, line


def _doc_uses(text: str) -> Iterator[tuple[int, str, list[str]]]:
    """(line number, command, its --options on that line) for each `offroad-seg COMMAND` in code."""
    for number, code in _doc_code(text):
        found = list(COMMAND.finditer(code))
        for m, after in zip(found, [*found[1:], None]):
            rest = code[m.end():after.start() if after else len(code)]
            rest = NEXT_SHELL_COMMAND.split(rest)[0]
            yield number, m.group(1), OPTION.findall(rest)


def test_docs_show_only_commands_and_options_that_exist():
    known = cli_commands()
    wrong = []
    for path in DOCS:
        for number, command, opts in _doc_uses(path.read_text()):
            where = f"{path.relative_to(REPO)}:{number}"
            if command not in known:
                wrong.append(f"{where}: no command 'offroad-seg {command}'")
                continue
            valid = known[command]
            if valid is not None:
                wrong += [f"{where}: 'offroad-seg {command}' has no option {o}" for o in opts if o not in valid]
    assert not wrong, "\n".join(wrong)
