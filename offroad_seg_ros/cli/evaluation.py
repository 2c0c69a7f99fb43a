"""Scoring commands: `eval` (a model, or the node's recorded masks, against ground truth; with
`--compare`, two models on the same frames),
`robustness` (a model under the corruption set) and `replay` (a bag played into a running node,
its masks recorded for `eval`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offroad_seg_ros.cli import options
from offroad_seg_ros.cli.progress import progress_bar
from offroad_seg_ros.cli.registry import Command
from offroad_seg_ros.core.calibration import DEFAULT_MIN_CONFIDENCE
from offroad_seg_ros.data.camera_checks import DEFAULT_DEGRADED_POLICY, DEGRADED_POLICIES
from offroad_seg_ros.evaluation.corruptions import CORRUPTIONS, SEVERITIES
from offroad_seg_ros.evaluation.corruptions_held_out import DEFAULT_RENDERINGS, RENDERINGS

if TYPE_CHECKING:
    from offroad_seg_ros.evaluation.evaluate import Gallery

    Scored = tuple[dict[str, Any], Gallery]

REPORT_DIR = "report directory to create"
REPLACE_REPORT = "replace an existing report directory"


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=options.existing_path("bag or split folder"),
                   help="bag directory (offroad-seg bag / ros2 bag record) or dataset split folder")
    options.add_model(p, "model artifact directory to run")
    p.add_argument("--predictions", metavar="TOPIC",
                   help="score the node's recorded masks on TOPIC instead of running a model")
    p.add_argument("--compare", metavar="MODEL", type=options.existing_path("model artifact"),
                   help="score a second model artifact on the same frames and write a comparison report "
                        "(--model is A, this is B; e.g. a model adapted to a new site against its parent)")
    options.add_out(p, REPORT_DIR)
    options.add_inference(p)
    options.add_limit(p, "score at most N frames")
    options.add_image_topic(p)
    options.add_label_topics(p)
    options.add_classes(p, "class table YAML (replay mode; a model brings its own)")
    options.add_ignore_unknown(p, "score unknown raw IDs as ignore")
    options.add_min_confidence(p, "as the node's parameter: report the share of pixels known and how often those "
                               f"are right (default {DEFAULT_MIN_CONFIDENCE})")
    p.add_argument("--novelty", action="store_true",
                   help="score the model's novelty image and what the node publishes on novel and ordinary pixels "
                        "of a split folder with Novelty/ masks (offroad-seg synth --novel-objects), or of each such "
                        "split folder below it; needs the model's novelty statistics (offroad-seg novelty MODEL DATA)")
    p.add_argument("--novel-threshold", type=float, metavar="LEVEL",
                   help="with --novelty: as the node's parameter (default: the node's, config/segment.yaml; 0 = off)")
    options.add_quiet(p)
    options.add_force(p, REPLACE_REPORT)


def _eval(args: argparse.Namespace) -> int:
    from offroad_seg_ros.core.classes import ClassTable
    from offroad_seg_ros.evaluation.evaluate import evaluate
    from offroad_seg_ros.evaluation.report import summary_table, write_report

    if args.novelty:
        return _eval_novelty(args)
    if args.novel_threshold is not None:
        raise ValueError("--novel-threshold is for --novelty")
    if args.compare is not None:
        if args.predictions is not None:
            raise ValueError("--compare runs a second model; it cannot be used with --predictions "
                             "(give --model A --compare B)")
        if args.model is None:
            raise ValueError("--compare needs --model: give --model A --compare B")
    out = options.out_dir(args)
    classes = ClassTable.from_yaml(args.classes) if args.classes else None

    def run(model: str | None) -> Scored:
        return evaluate(
            args.source, model=model, predictions_topic=args.predictions, device=args.device,
            precision=args.precision, backend=args.backend, threads=args.threads, limit=args.limit,
            image_topic=args.image_topic,
            gt_topic=args.gt_topic, name_topic=args.name_topic, classes=classes,
            ignore_unknown=args.ignore_unknown, progress=not args.quiet, min_confidence=args.min_confidence,
        )

    if args.compare is not None:
        return _eval_compare(args, out, run)
    metrics, gallery = run(args.model)
    write_report(out, metrics, gallery, force=args.force)
    table = ClassTable.from_dict(metrics["classes"])
    print(summary_table(metrics, table))
    run_info = metrics["run"]
    print(f"\n{run_info['frames_scored']} frames scored, unmatched {run_info['unmatched'] or 0}, "
          f"skipped {run_info['skipped']}; {run_info['fps']:.1f} frames/s; report: {out}/report.md")
    return 0


def _eval_novelty(args: argparse.Namespace) -> int:
    """`eval SPLIT --model MODEL --novelty`: the novelty report (evaluation/novelty_report.py)."""
    from offroad_seg_ros.evaluation.novelty_report import OVERALL, REPORT_MD, evaluate_novelty, write_novelty_report

    if args.predictions is not None or args.compare is not None:
        raise ValueError("--novelty runs one model: it cannot be used with --predictions or --compare")
    if args.model is None:
        raise ValueError("--novelty needs --model: the model artifact whose novelty image to score")
    out = options.out_dir(args)
    result = evaluate_novelty(args.source, args.model, novel_threshold=args.novel_threshold,
                              min_confidence=args.min_confidence, device=args.device, precision=args.precision,
                              backend=args.backend, threads=args.threads, limit=args.limit,
                              ignore_unknown=args.ignore_unknown, progress=not args.quiet)
    write_novelty_report(out, result, force=args.force)
    s = result.overall.summary()
    print(f"{s['frames']} frames: AUROC {s['auroc']:.3f}, FPR@95%TPR {s['fpr_at_95_tpr']:.3f}; novel pixels "
          f"{100 * s['novel']['lethal']:.1f}% lethal, {100 * s['novel']['passable']:.1f}% passable; ordinary "
          f"false alarms {100 * s['ordinary']['false_alarm_rate']:.1f}% ({OVERALL}); report: {out}/{REPORT_MD}")
    return 0


def _eval_compare(args: argparse.Namespace, out: Path,
                  run: Callable[[str | None], Scored]) -> int:
    """`eval --model A --compare B`: both scored on the same frames (the same source, limit and
    topics), one report comparing them."""
    from offroad_seg_ros.evaluation.compare import compare, compare_markdown, write_comparison

    metrics_a, gallery_a = run(args.model)
    metrics_b, gallery_b = run(args.compare)
    name_a, name_b = Path(args.model).name, Path(args.compare).name
    if name_a == name_b:  # e.g. runs/a/model and runs/b/model
        name_a, name_b = str(args.model), str(args.compare)
    cmp = compare(metrics_a, metrics_b, name_a, name_b)
    write_comparison(out, cmp, metrics_a, metrics_b, gallery_a, gallery_b, force=args.force)
    print(compare_markdown(cmp).split("\n## Per class")[0])
    print(f"comparison report: {out}/compare.md (each model's own: {out}/a/report.md, {out}/b/report.md)")
    return 0


def _robustness_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=options.existing_path("bag or split folder"),
                   help="bag directory or dataset split folder (with ground truth)")
    options.add_model(p, "model artifact directory", required=True)
    options.add_out(p, REPORT_DIR)
    p.add_argument("--corruptions", nargs="+", choices=list(CORRUPTIONS), help="default: all")
    p.add_argument("--severities", nargs="+", type=int, default=list(SEVERITIES), help="default: 1 2 3 4 5")
    p.add_argument("--renderings", choices=RENDERINGS, default=DEFAULT_RENDERINGS,
                   help="which rendering of the corruptions: tuning (the camera checks were tuned on it) or "
                        f"held_out (other physical models of the same failures; default {DEFAULT_RENDERINGS})")
    p.add_argument("--biomes", metavar="ROOT", type=options.existing_path("folder of other deserts"),
                   help="also score the clean frames of each ROOT/<biome>/<split> (offroad-seg synth --biome "
                        "held_out --out ROOT): accuracy, shift score, what ~/cost publishes, per desert")
    options.add_seed(p)
    options.add_min_confidence(p, f"as the node's parameter (default {DEFAULT_MIN_CONFIDENCE})")
    p.add_argument("--degraded-policy", choices=DEGRADED_POLICIES, default=DEFAULT_DEGRADED_POLICY,
                   help=f"as the node's parameter (default {DEFAULT_DEGRADED_POLICY})")
    options.add_limit(p, "at most N frames")
    options.add_inference(p)
    options.add_quiet(p)
    options.add_force(p, REPLACE_REPORT)


def _robustness(args: argparse.Namespace) -> int:
    from offroad_seg_ros.evaluation.robustness import evaluate_robustness, robustness_markdown, write_robustness_report

    out = options.out_dir(args)
    result = evaluate_robustness(args.source, args.model, args.corruptions, args.severities, args.seed,
                                 args.min_confidence, args.degraded_policy, limit=args.limit, device=args.device,
                                 precision=args.precision, backend=args.backend, threads=args.threads,
                                 progress=not args.quiet, renderings=args.renderings, biomes=args.biomes)
    write_robustness_report(out, result, force=args.force)
    print(robustness_markdown(result).split("\n## The corruptions")[0])
    print(f"report written to {out}/robustness.md")
    return 0


def _replay_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", type=options.existing_path("bag"), help="bag with camera images (e.g. from offroad-seg bag)")
    options.add_out(p, "bag directory to create: the node's masks + the bag's ground truth")
    p.add_argument("--node", default="/segmentation_node", help="[NAMESPACE/]NAME of the running node")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--lockstep", action="store_true",
                      help="wait for each frame's mask before the next (default; every frame is scored)")
    mode.add_argument("--rate", type=float, metavar="HZ", help="send at a fixed rate and count dropped frames")
    p.add_argument("--cost", action="store_true", help="also record ~/cost")
    options.add_image_topic(p, "the bag's camera topic")
    options.add_label_topics(p, "copied to the output if present")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the node to appear (default 30)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for one frame's mask in lockstep (default 30)")
    options.add_quiet(p)
    options.add_force(p, "replace an existing output bag")


def _replay(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("rclpy") is None:
        raise ValueError("replay talks to the node over ROS 2: source ROS 2 (e.g. /opt/ros/jazzy/setup.bash) "
                         "first; 'rclpy' was not found")
    from offroad_seg_ros.tools.replay import replay

    with progress_bar("replay", disable=args.quiet) as progress:
        res = replay(args.bag, args.out, node=args.node, image_topic=args.image_topic, gt_topic=args.gt_topic,
                     name_topic=args.name_topic, rate=args.rate, record_cost=args.cost, wait_node=args.wait,
                     timeout=args.timeout, force=args.force, progress=progress)
    print(f"{res.mode}: {res.sent} frames sent, {res.received} answered, {res.dropped} dropped by the node; "
          f"{res.fps:.1f} frames/s; bag written to {res.out}")
    print(f"score it: offroad-seg eval {res.out} --predictions {split_topic(args.node)}/mask --out REPORT_DIR")
    return 0


def split_topic(node: str) -> str:
    """The node's name as a topic prefix: absolute, as `--node` may omit the leading slash."""
    return node if node.startswith("/") else "/" + node


EVAL = Command("eval", "score a model (or a replay bag, or two models side by side) and write a report", rank=80,
               add_arguments=_eval_arguments, run=_eval)
ROBUSTNESS = Command("robustness", "score a model under the corruption set (dust, glare, blur, dark, ...), "
                     "with the camera checks and what the node would publish as known", rank=90,
                     add_arguments=_robustness_arguments, run=_robustness)
REPLAY = Command("replay", "play a bag into a running node over ROS 2 and record its masks", rank=100,
                 add_arguments=_replay_arguments, run=_replay)
COMMANDS = (EVAL, ROBUSTNESS, REPLAY)
