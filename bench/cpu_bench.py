"""CPU benchmarks: prints a table (and writes JSON with --json PATH).

python bench/cpu_bench.py [--quick] [--only SECTION ...] [--trained demo-out] [--json bench/cpu_results.json]

Every ratio is measured within one run (this machine is noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cpu_sections.data import bench_eval, bench_loader, bench_remap, bench_synth  # noqa: E402
from cpu_sections.ground import bench_projection  # noqa: E402
from cpu_sections.inference import bench_backends, bench_node_path, bench_startup  # noqa: E402
from cpu_sections.ros_input import bench_camera_checks, bench_hostile  # noqa: E402
from cpu_sections.training import bench_ddp, bench_training  # noqa: E402
from results import Table  # noqa: E402

from offroad_seg_ros.core.classes import ClassTable  # noqa: E402


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# name -> section(table of results, scratch folder, class table, repetitions, arguments)
SECTION_FNS: dict[str, Callable[[Table, Path, ClassTable, int, argparse.Namespace], None]] = {
    "backends": lambda out, tmp, table, n, args: bench_backends(out, tmp, n, args.trained),
    "hostile": lambda out, tmp, table, n, args: bench_hostile(out, n),
    "checks": lambda out, tmp, table, n, args: bench_camera_checks(out, n),
    "ddp": lambda out, tmp, table, n, args: bench_ddp(out, tmp, table),
    "projection": lambda out, tmp, table, n, args: bench_projection(out, table, n),
    "remap": lambda out, tmp, table, n, args: bench_remap(out, table),
    "synth": lambda out, tmp, table, n, args: bench_synth(out, tmp),
    "node": lambda out, tmp, table, n, args: bench_node_path(out, tmp, n),
    "startup": lambda out, tmp, table, n, args: bench_startup(out, tmp),
    "loader": lambda out, tmp, table, n, args: bench_loader(out, tmp),
    "training": lambda out, tmp, table, n, args: bench_training(out, tmp),
    "eval": lambda out, tmp, table, n, args: bench_eval(out, tmp, table),
}
SECTIONS = tuple(SECTION_FNS)


def run_section(name: str, tmp: Path, args: argparse.Namespace, results: Table) -> bool:
    """One section in a process of its own, as on a robot that runs one thing per process: the
    runtimes, thread pools and signal state of one section cannot disturb the next. (All in one
    process crashed: OpenVINO's CPU plugin swaps the calling thread's signal stack per compiled
    model and restores them out of order as models are freed, so a later signal, e.g. the
    SIGCHLD of a DataLoader worker, was delivered onto freed memory.) Rows come back as JSON."""
    out = tmp / f"{name}.rows.json"
    cmd = [sys.executable, __file__, "--section", name, "--tmp", str(tmp), "--rows-out", str(out)]
    cmd += ["--quick"] if args.quick else []
    cmd += ["--trained", str(args.trained)] if args.trained else []
    code = subprocess.run(cmd).returncode
    if code != 0 or not out.is_file():
        print(f"[bench] section {name} failed (exit {code})", flush=True)
        return False
    got = json.loads(out.read_text())
    results.rows.extend(tuple(r) for r in got["rows"])
    results.values.update(got["results"])
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--json", help="write results as JSON to this path")
    parser.add_argument("--skip-training", action="store_true", help="skip the (slow) training-step section")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--trained", type=Path, help="a finished `offroad-seg demo` folder: the backends section "
                        "times and scores its trained models (and a light profile trained on its data)")
    parser.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)  # a child: run one section
    parser.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rows-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    n = 10 if args.quick else 30
    results = Table()
    if args.section:
        SECTION_FNS[args.section](results, args.tmp, ClassTable.default(), n, args)
        args.rows_out.write_text(json.dumps({"rows": results.rows, "results": results.values}))
        return
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}, {torch.get_num_threads()} threads")
    failed = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        wanted = set(args.only or SECTIONS) - ({"training"} if args.skip_training else set())
        # synth writes the frames that the loader and training sections read.
        if wanted & {"loader", "training"}:
            wanted.add("synth")
        failed = [name for name in SECTIONS if name in wanted and not run_section(name, tmp, args, results)]
    if args.json:
        path = Path(args.json)
        # A partial run updates its sections' rows and keeps the others.
        kept = json.loads(path.read_text())["results"] if (args.only or failed) and path.is_file() else {}
        merged = {**kept, **results.values}
        path.write_text(json.dumps({"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
                                    "results": merged}, indent=1))
    print("\n" + results.markdown("benchmark"))
    if failed:
        raise SystemExit(f"failed sections: {', '.join(failed)}")


if __name__ == "__main__":
    main()
