"""The shutdown matrix (tests marked `signals`: SIGINT twice at several gaps
and SIGTERM while loading, warming up, idle, mid-frame and inside lifecycle
transitions) run N times with every core kept busy (`pytest --hog`), each
run a fresh pytest session; prints a table of hangs, tracebacks and other
failures per case.

python bench/shutdown_matrix.py [--runs 20] [--json bench/shutdown_results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_run(junit: Path) -> dict[str, str]:
    """{test id: passed | hang | traceback | failed}"""
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hog", "-m", "signals",
                    f"--junitxml={junit}", "test"], cwd=REPO, capture_output=True, text=True)
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        if problem is None:
            out[name] = "skipped" if case.find("skipped") is not None else "passed"
            continue
        text = (problem.get("message") or "") + (problem.text or "")
        out[name] = ("hang" if "did not exit within" in text else
                     "traceback" if "Traceback" in text or "KeyboardInterrupt" in text else "failed")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path, help="write the tallies here")
    args = parser.parse_args()
    tally: dict[str, Counter] = {}
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.runs):
            t = time.monotonic()
            got = one_run(Path(d) / f"run{i}.xml")
            for name, verdict in got.items():
                tally.setdefault(name, Counter())[verdict] += 1
            bad = {n: v for n, v in got.items() if v not in ("passed", "skipped")}
            print(f"run {i + 1}/{args.runs}: {len(got)} cases, {len(bad)} not clean {bad or ''} "
                  f"({time.monotonic() - t:.0f} s)", flush=True)
    total = Counter()
    for c in tally.values():
        total.update(c)
    print("\n| case | runs | passed | hangs | tracebacks | other failures |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, c in sorted(tally.items()):
        print(f"| {name} | {sum(c.values())} | {c['passed']} | {c['hang']} | {c['traceback']} | {c['failed']} |")
    print(f"| all {len(tally)} cases | {sum(total.values())} | {total['passed']} | {total['hang']} | "
          f"{total['traceback']} | {total['failed']} |")
    print(f"{args.runs} runs in {(time.monotonic() - start) / 60:.1f} min, {os.cpu_count()} cores busy with --hog")
    if args.json:
        args.json.write_text(json.dumps({"runs": args.runs, "cases": {n: dict(c) for n, c in tally.items()}},
                                        indent=1))


if __name__ == "__main__":
    main()
