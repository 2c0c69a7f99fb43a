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

import pytest
from astutil import docstrings

REPO = Path(__file__).resolve().parents[1]
TRAINING_PACKAGE = "offroad_seg_train"
RUNTIME_COMMANDS = {"check", "calibrate", "novelty", "quantize", "bag", "eval", "robustness", "replay", "project"}
TRAINING_COMMANDS = {"synth", "train", "export", "adapt", "demo", "outlier-head"}
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




def test_runtime_never_names_the_training_package():
    """The training package imports the runtime, never the reverse: not by an import statement,
    nor by a string handed to importlib (docstrings may mention it)."""
    wrong = []
    for path in sorted((REPO / "offroad_seg_ros").rglob("*.py")):
        where = path.relative_to(REPO)
        tree = ast.parse(path.read_text(), str(path))
        prose = docstrings(tree)
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
                    and id(node) not in prose):
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


# -- conventions every command keeps: --version, --out, missing inputs named, stage lines ----------

DEPRECATION = "offroad-seg {}: the output as a positional argument is deprecated; use --out PATH"
# Commands that write somewhere, and the inputs they need before it (paths in `_inputs`).
OUTPUT_COMMANDS = {
    "synth": [], "bag": ["{split}"], "export": ["{ckpt}"], "eval": ["{split}", "--predictions", "/mask"],
    "robustness": ["{split}", "--model", "{dir}"], "replay": ["{dir}"], "project": ["{split}"], "demo": [],
    "adapt": ["{dir}", "{split}", "--source", "{dir}"],
}
DEPRECATED_POSITIONAL = {"synth", "bag", "export"}  # took their output as a positional argument once


@pytest.fixture
def tiny_split(tmp_path, table):
    """One 64x48 frame and its mask, all of one class: the cheapest split the commands read."""
    import cv2
    import numpy as np

    split = tmp_path / "split"
    (split / "Color_Images").mkdir(parents=True)
    (split / "Segmentation").mkdir()
    cv2.imwrite(str(split / "Color_Images" / "f0.png"), np.full((48, 64, 3), 120, np.uint8))
    cv2.imwrite(str(split / "Segmentation" / "f0.png"), np.full((48, 64), table.raw_ids[0], np.uint16))
    return split


def _inputs(words: list[str], tmp_path: Path, split: Path) -> list[str]:
    """`words` with {split}, {ckpt} (a file) and {dir} (a folder) made real paths."""
    (tmp_path / "some.ckpt").touch()
    (tmp_path / "dir").mkdir(exist_ok=True)
    paths = {"split": split, "ckpt": tmp_path / "some.ckpt", "dir": tmp_path / "dir"}
    return [w.format(**paths) for w in words]


def _parse(argv: list[str]) -> argparse.Namespace:
    from offroad_seg_ros.cli.app import parse

    return parse(argv)[1]


def test_version(capsys):
    import offroad_seg_ros
    from offroad_seg_ros.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"offroad-seg {offroad_seg_ros.__version__}\n"
    package_xml = (REPO / "package.xml").read_text()
    assert f"<version>{offroad_seg_ros.__version__}</version>" in package_xml, "package.xml's version differs"


def test_every_output_is_named_with_out():
    """Each command that writes takes `--out` (cli/options.py: add_out), none a positional output of its own."""
    from offroad_seg_ros.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        shown = [a.dest for a in p._actions if not a.option_strings and a.help is not argparse.SUPPRESS]
        assert not [d for d in shown if "out" in d], f"offroad-seg {name}: output as a positional ({shown})"
    with_out = {name for name, opts in cli_commands().items() if opts and "--out" in opts}
    assert with_out == OUTPUT_COMMANDS.keys()


@pytest.mark.parametrize("command", sorted(OUTPUT_COMMANDS))
def test_out_names_the_output(command, tmp_path, tiny_split, capsys):
    args = _parse([command, *_inputs(OUTPUT_COMMANDS[command], tmp_path, tiny_split), "--out", "OUT"])
    assert args.out == "OUT"
    assert "deprecated" not in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(DEPRECATED_POSITIONAL))
def test_the_positional_output_still_works_with_a_warning(command, tmp_path, tiny_split, capsys):
    inputs = _inputs(OUTPUT_COMMANDS[command], tmp_path, tiny_split)
    assert _parse([command, *inputs, "OLD"]).out == "OLD"
    assert DEPRECATION.format(command) in capsys.readouterr().err
    # An option between the positionals: argparse leaves the output over, take_out picks it up.
    assert _parse([command, *inputs, "--force", "OLD"]).out == "OLD"
    assert DEPRECATION.format(command) in capsys.readouterr().err


def test_the_output_given_twice_or_not_at_all_is_refused(tiny_split, capsys):
    from offroad_seg_ros.cli import main

    assert main(["bag", str(tiny_split), "OLD", "--out", "NEW"]) == 2
    assert "the output is given twice: OLD and --out NEW" in capsys.readouterr().err
    assert main(["bag", str(tiny_split)]) == 2
    assert "required: --out" in capsys.readouterr().err
    assert main(["bag", str(tiny_split), "--out", "NEW", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_bag_writes_the_same_bag_with_out_or_the_old_positional(tiny_split, tmp_path, capsys):
    from offroad_seg_ros.cli import main
    from offroad_seg_ros.data.bag import bag_topics

    assert main(["bag", str(tiny_split), "--out", str(tmp_path / "new")]) == 0
    assert "deprecated" not in capsys.readouterr().err
    assert main(["bag", str(tiny_split), str(tmp_path / "old")]) == 0
    assert DEPRECATION.format("bag") in capsys.readouterr().err
    assert bag_topics(tmp_path / "old") == bag_topics(tmp_path / "new")
    assert {n for _, n in bag_topics(tmp_path / "new").values()} == {1}


# Every input path of every command, each missing in turn (the others exist); {missing} is the one.
MISSING_INPUT = [
    ["check", "{missing}"],
    ["bag", "{missing}", "--out", "{out}"],
    ["eval", "{missing}", "--predictions", "/mask", "--out", "{out}"],
    ["eval", "{split}", "--model", "{missing}", "--out", "{out}"],
    ["robustness", "{missing}", "--model", "{dir}", "--out", "{out}"],
    ["robustness", "{split}", "--model", "{missing}", "--out", "{out}"],
    ["replay", "{missing}", "--out", "{out}"],
    ["project", "{missing}", "--out", "{out}"],
    ["project", "{split}", "--model", "{missing}", "--out", "{out}"],
    ["project", "{split}", "--camera", "{missing}", "--out", "{out}"],
    ["calibrate", "{missing}", "{split}"],
    ["calibrate", "{dir}", "{missing}"],
    ["novelty", "{missing}", "{split}"],
    ["novelty", "{dir}", "{missing}"],
    ["quantize", "{missing}", "{split}"],
    ["quantize", "{dir}", "{missing}"],
    ["export", "{missing}", "--out", "{out}"],
    ["export", "{ckpt}", "--out", "{out}", "--calibrate", "{missing}"],
]


def _missing_id(words: list[str]) -> str:
    i = words.index("{missing}")
    return f"{words[0]}-{words[i - 1][2:] if words[i - 1].startswith('--') else f'arg{i}'}"


@pytest.mark.parametrize("words", MISSING_INPUT, ids=_missing_id)
def test_a_missing_input_is_named(words, tmp_path, tiny_split, capsys):
    from offroad_seg_ros.cli import main

    missing = tmp_path / "not_here"
    argv = [w.replace("{missing}", str(missing)).replace("{out}", str(tmp_path / "out")) for w in words]
    assert main(_inputs(argv, tmp_path, tiny_split)) == 2
    err = capsys.readouterr().err
    assert f"{missing} does not exist" in err, err
    assert not (tmp_path / "out").exists()


def test_a_missing_split_folder_is_named_below_the_cli_too(tmp_path):
    from offroad_seg_ros.data.bag import write_bag
    from offroad_seg_ros.data.dataset import DatasetError

    with pytest.raises(DatasetError, match=f"split folder {tmp_path / 'not_here'} does not exist"):
        write_bag(tmp_path / "not_here", tmp_path / "bag")


def test_stages_are_timed_lines_on_stderr_and_quiet_silences_them(capsys):
    from offroad_seg_ros.cli.progress import stages

    with stages() as report:
        report.stage("fitting")
        report.frames(1, 2)
        report.frames(2, 2)
        report.stage("writing")
    assert re.fullmatch(r"\[\d+\.\d s\] fitting\n(.|\n)*\[\d+\.\d s\] writing\n", capsys.readouterr().err)
    with stages(quiet=True) as report:
        report.stage("fitting")
        report.frames(1, 2)
    assert capsys.readouterr().err == ""


def test_project_reports_its_stages_unless_quiet(tiny_split, tmp_path, capsys):
    from offroad_seg_ros.cli import main

    assert main(["project", str(tiny_split), "--out", str(tmp_path / "loud"), "--limit", "1"]) == 0
    assert re.search(rf"^\[\d+\.\d s\] drawing up to 1 frame\(s\) of {re.escape(str(tiny_split))}$",
                     capsys.readouterr().err, re.M)
    assert main(["project", str(tiny_split), "--out", str(tmp_path / "quiet"), "--limit", "1", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
