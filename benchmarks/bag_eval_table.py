"""Models on one replayed scene bag through owled_node: benchmarks/BENCHMARKS.md section 7.

    source scripts/env.sh
    nice -n 10 python benchmarks/bag_eval_table.py --models default --frames 10 --hz 10
    nice -n 10 python benchmarks/bag_eval_table.py --models default runs/demo/pruned --frames 10 --hz 10 --offline

Makes the bag once (runs/bag_bench/scenes<N>, `owled bag make --source scenes`), runs
`owled bag eval` online for every model (and offline too with --offline: the accuracy of
every frame, as if the node had time for all of them), prints one markdown row per run and
writes every report's summary to --results.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from owled_ros.data.bag_make import BagSpec, make_bag
from owled_ros.data.bag_read import open_drive_bag
from owled_ros.eval.bag_eval import EvalConfig, evaluate_bag

WORK = Path("runs/bag_bench")
COLUMNS = (
    "frames_published", "frames_dropped", "action_accuracy", "rouge_l", "latency_p50_ms", "latency_p95_ms",
    "model_latency_p50_ms", "model_latency_p95_ms",
)


def _row(label: str, mode: str, report: dict) -> str:
    def cell(key: str) -> str:
        value = report[key]
        return "n/a" if value is None else (f"{value:.3f}" if key in ("action_accuracy", "rouge_l") else f"{value:.0f}")

    return f"| {label} | {mode} | {report['frames_in']} | " + " | ".join(cell(k) for k in COLUMNS) + " |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["default"])
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--hz", type=float, default=10.0, help="camera rate of the bag, replayed as recorded")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--offline", action="store_true", help="also evaluate every frame offline")
    p.add_argument("--results", default="benchmarks/bag_eval_results.json")
    args = p.parse_args()

    bag = WORK / f"scenes{args.frames}_{args.hz:g}hz"
    if not bag.exists():
        make_bag(BagSpec(frames=args.frames, hz=args.hz), bag)
    drive = open_drive_bag(bag)
    header = "| model | mode | frames | " + " | ".join(COLUMNS) + " |"
    rows, results = [header, "|" + "---|" * (len(COLUMNS) + 3)], []
    for model in args.models:
        label = "default" if model == "default" else Path(model).name
        spec = model if model == "default" else str(Path(model).resolve())
        for mode in ("online", "offline") if args.offline else ("online",):
            out = WORK / f"{label}_{mode}"
            shutil.rmtree(out, ignore_errors=True)
            report = evaluate_bag(drive, EvalConfig(spec, args.max_new_tokens), out, offline=mode == "offline")
            rows.append(_row(label, mode, report))
            results.append({k: v for k, v in report.items() if k != "frames"} | {"load_avg_1min": os.getloadavg()[0]})
            print(rows[-1], flush=True)
    Path(args.results).write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
