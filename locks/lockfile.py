"""The locked environments: check an install against a lock, and derive the ROS wheels' lock.

    python locks/lockfile.py check LOCK [LOCK ...]   # exit 1 naming every package that differs
    python locks/lockfile.py subtract LOCK BASE      # LOCK's lines whose package BASE does not pin
    python locks/lockfile.py without LOCK REGEX ...  # LOCK's lines whose package matches no REGEX

A lock is what `uv pip compile --universal` writes: one `name==version [; marker]` a line,
with comments. The check reads what is installed through importlib.metadata, so it sees the
distribution Python would import first. Written here rather than with `pip check`, which only
checks that requirements are satisfied, not that the set is the one CI tested.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path

# Installed by the venv and the build itself, never by a lock.
TOOLING = {"pip", "wheel"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path, environment: Mapping[str, str] | None = None) -> dict[str, str]:
    """{canonical name: version} of the lines whose marker holds in `environment` (default: this Python)."""
    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            raise ValueError(f"{path}:{number}: not an exact pin: {raw.strip()!r}")
        if req.marker is None or req.marker.evaluate(dict(environment) if environment else None):
            pins[canonical(req.name)] = specs[0].version
    return pins


def installed() -> dict[str, str]:
    """{canonical name: version} of the distributions importable here, first on sys.path winning."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist.version)
    return found


def differences(pins: Mapping[str, str], have: Mapping[str, str], ignore: Iterable[str] = ()) -> list[str]:
    """One line per locked package that is missing or at another version."""
    skip = set(ignore) | TOOLING
    out = []
    for name, version in sorted(pins.items()):
        if name in skip:
            continue
        if name not in have:
            out.append(f"{name}: locked at {version}, not installed")
        elif have[name] != version:
            out.append(f"{name}: locked at {version}, installed {have[name]}")
    return out


def _drop(lock: Path, drop: Callable[[str], bool]) -> str:
    """The lines of `lock` less each requirement (and its comment lines) whose name `drop` picks."""
    keep: list[str] = []
    dropping = False
    for line in lock.read_text().splitlines():
        head = re.match(r"^([A-Za-z0-9][\w.-]*)", line)
        if head:
            dropping = drop(canonical(head.group(1)))
        elif not line.startswith(" "):
            dropping = False
        if not dropping:
            keep.append(line)
    return "\n".join(keep) + "\n"


def subtract(lock: Path, base: Path) -> str:
    """`lock` less the packages `base` pins at all."""
    base_names = {canonical(m.group(1)) for m in re.finditer(r"^([A-Za-z0-9][\w.-]*)", base.read_text(), re.M)}
    return _drop(lock, base_names.__contains__)


def without(lock: Path, patterns: Iterable[str]) -> str:
    """`lock` less the packages whose name matches one of the regular expressions."""
    compiled = [re.compile(p) for p in patterns]
    return _drop(lock, lambda name: any(c.fullmatch(name) for c in compiled))


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "check":
        have = installed()
        problems = []
        for lock in argv[1:]:
            problems += [f"{lock}: {p}" for p in differences(read_lock(Path(lock)), have)]
        if problems:
            print("the installed packages differ from the lock:", *problems, sep="\n  ", file=sys.stderr)
            print("rebuild the venv (rm -rf the venv, then make test), or refresh the lock on purpose: make lock",
                  file=sys.stderr)
            return 1
        print(f"installed packages match {' + '.join(argv[1:])}")
        return 0
    if len(argv) == 3 and argv[0] == "subtract":
        sys.stdout.write(subtract(Path(argv[1]), Path(argv[2])))
        return 0
    if len(argv) >= 3 and argv[0] == "without":
        sys.stdout.write(without(Path(argv[1]), argv[2:]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
