"""`owled eval fleet BAG|DIR ... --out DIR`: many recorded drives scored on Ray workers, one report.

Prints the fleet totals as one JSON object (as every `owled eval` does) and a summary on
stderr; exits 1 when some bag could not be scored (they are listed), 2 on bad input.
"""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fleet", help="score many bags offline on Ray workers (local by default); a row per bag and fleet totals")
    p.add_argument("bags", nargs="+", metavar="BAG|DIR", help="rosbag2 directories, or directories searched for them")
    p.add_argument("--out", required=True, help="directory for bags/<bag>/report.json and fleet.json, fleet.md, fleet.png")
    p.add_argument("--model", default="default", help="model directory, or 'default'")
    p.add_argument("--workers", type=int, default=1, help="Ray actors, each loading the model once (they share the CPUs)")
    p.add_argument("--address", default=None, help="join this Ray cluster (auto, HOST:PORT, ray://HOST:PORT); default: a local Ray on 127.0.0.1")
    p.add_argument("--resume", action="store_true", help="keep bags already scored in --out by the same model and settings")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--camera-topic", default=None, help="default: each bag's only Image/CompressedImage topic")
    p.add_argument("--state-topic", default=None, help="default: each bag's only Odometry/TwistStamped/Float32 topic")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from owled_ros.commands.eval import emit
    from owled_ros.errors import OwledError
    from owled_ros.eval.bag_eval import EvalConfig
    from owled_ros.eval.fleet import FLEET_JSON, FleetConfig, evaluate_fleet, summary_line

    if args.workers < 1:
        raise OwledError(f"--workers must be at least 1, got {args.workers}")
    if args.max_new_tokens < 1:
        raise OwledError("--max-new-tokens must be at least 1")
    model = args.model if args.model == "default" else str(Path(args.model).resolve())
    if model != "default" and not Path(model).is_dir():
        raise OwledError(f"{args.model}: model directory does not exist")
    config = FleetConfig(EvalConfig(model, args.max_new_tokens), args.workers, args.address, args.camera_topic, args.state_topic)
    report = evaluate_fleet([Path(b) for b in args.bags], config, Path(args.out), args.resume, progress=not args.quiet)
    emit(report["totals"] | {"bags": report["bags"], "bags_failed": report["bags_failed"], "frames_per_s": report["frames_per_s"]}, None)
    print(summary_line(report), file=sys.stderr)
    print(f"report: {Path(args.out) / FLEET_JSON}", file=sys.stderr)
    return 1 if report["bags_failed"] else 0
