"""Fleet throughput: frames per second of `owled bag eval` on a fleet with 1 and N Ray workers, side by side.

    source scripts/env.sh
    python benchmarks/fleet_throughput.py --workers 1 2 --bags 4 --frames 5 --rounds 2 \
        --results benchmarks/fleet_throughput.json

Makes the scene bags once (runs/fleet_bench/bags), then, round after round, scores all of them
sequentially in this process (one loaded pipeline, no Ray: the baseline) and through
`evaluate_fleet` with each worker count, so every setup sees the same machine load. Each
fleet run starts its own local Ray. frames/s is counted from the moment every worker had its
model loaded (score_s); Ray start and model loading are reported on their own (load_s,
wall_s), since they are paid once per run, not per bag. With W workers on C CPUs each worker
runs torch on max(1, C // W) threads.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from owled_ros.data.bag_make import BagSpec, make_bag
from owled_ros.eval.bag_eval import EvalConfig, run_offline, score
from owled_ros.eval.fleet import FleetConfig, discover_bags, evaluate_fleet
from owled_ros.fsutil import write_text_atomic
from owled_ros.machine import machine_info, machine_line

WORK = Path("runs/fleet_bench")
SEQUENTIAL = "sequential, no Ray"


def make_bags(n: int, frames: int) -> Path:
    root = WORK / f"bags{n}x{frames}"
    for i in range(n):
        if not (root / f"drive{i}").exists():
            make_bag(BagSpec(frames=frames, hz=10.0, seed=100 + i), root / f"drive{i}")
    return root


def sequential(bags: list[Path], config: EvalConfig) -> dict:
    """All bags one after another in this process (`owled bag eval --offline` each, scored the same
    way), the model loaded once, torch on every CPU."""
    import torch

    from owled_ros.data.bag_read import open_drive_bag
    from owled_ros.runtime.pipeline import PipelineConfig, load_pipeline

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    started = time.monotonic()
    pipeline = load_pipeline(config.model, PipelineConfig(config.max_new_tokens))
    loaded = time.monotonic()
    frames = 0
    for bag in bags:
        drive = open_drive_bag(bag)
        frames += score(drive, run_offline(drive, config, None, pipeline), "offline", config)["frames_published"]
    done = time.monotonic()
    return {"setup": SEQUENTIAL, "workers": 0, "threads_each": torch.get_num_threads(), "frames": frames,
            "load_s": loaded - started, "score_s": done - loaded, "wall_s": done - started, "frames_per_s": frames / (done - loaded)}


def fleet(root: Path, config: EvalConfig, workers: int) -> dict:
    cpus = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(dir=WORK) as out:
        report = evaluate_fleet([root], FleetConfig(config, workers), Path(out), progress=False)
    if report["bags_failed"]:
        sys.exit(f"fleet_throughput: {report['bags_failed']} bag(s) failed: {[r['error'] for r in report['rows'] if r['status'] == 'failed']}")
    return {"setup": f"Ray, {workers} worker(s)", "workers": workers, "threads_each": max(1, cpus // workers),
            "frames": report["frames_scored_now"], "load_s": report["load_s"], "score_s": report["score_s"],
            "wall_s": report["wall_s"], "frames_per_s": report["frames_per_s"]}


def summarize(runs: list[dict]) -> list[dict]:
    """Per setup: the median frames/s over rounds, and its ratio to 1 Ray worker's."""
    setups = list(dict.fromkeys(r["setup"] for r in runs))
    rows = []
    for setup in setups:
        mine = [r for r in runs if r["setup"] == setup]
        rows.append({
            "setup": setup, "workers": mine[0]["workers"], "threads_each": mine[0]["threads_each"], "rounds": len(mine),
            "frames": mine[0]["frames"], "frames_per_s": statistics.median(r["frames_per_s"] for r in mine),
            "frames_per_s_each": [round(r["frames_per_s"], 3) for r in mine],
            "load_s": statistics.median(r["load_s"] for r in mine), "wall_s": statistics.median(r["wall_s"] for r in mine),
        })
    one = next((r["frames_per_s"] for r in rows if r["workers"] == 1), None)
    for r in rows:
        r["vs_1_worker"] = r["frames_per_s"] / one if one else None
    return rows


def markdown(results: dict) -> str:
    lines = [
        machine_line(results["machine"]),
        "",
        f"{results['bags']} scene bags x {results['frames']} frames, model `{results['model']}`, max_new_tokens "
        f"{results['max_new_tokens']}, {results['rounds']} alternating round(s); load average at start {results['load_avg_start']:.1f}.",
        "",
        "| setup | torch threads each | frames/s (median) | per round | vs 1 worker | model load s | wall s (Ray start + load + scoring) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["summary"]:
        ratio = "n/a" if r["vs_1_worker"] is None else f"{r['vs_1_worker']:.2f}x"
        each = ", ".join(f"{v:.2f}" for v in r["frames_per_s_each"])
        lines.append(f"| {r['setup']} | {r['threads_each']} | {r['frames_per_s']:.3f} | {each} | {ratio} | {r['load_s']:.1f} | {r['wall_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--bags", type=int, default=4)
    p.add_argument("--frames", type=int, default=5, help="frames per bag")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--results", default="benchmarks/fleet_throughput.json")
    args = p.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    root = make_bags(args.bags, args.frames)
    bags = discover_bags([root])
    model = args.model if args.model == "default" else str(Path(args.model).resolve())
    config = EvalConfig(model, args.max_new_tokens)
    load_avg = os.getloadavg()[0]
    runs = []
    for round_ in range(args.rounds):
        for setup in ["sequential", *args.workers]:
            run = sequential(bags, config) if setup == "sequential" else fleet(root, config, setup)
            runs.append(run | {"round": round_, "load_avg_1min": os.getloadavg()[0]})
            print(json.dumps(runs[-1]), flush=True)
    results = {
        "machine": machine_info(len(os.sched_getaffinity(0)), " ".join(["python", *sys.argv])),
        "model": args.model, "bags": args.bags, "frames": args.frames, "rounds": args.rounds, "max_new_tokens": args.max_new_tokens,
        "load_avg_start": load_avg, "runs": runs, "summary": summarize(runs),
    }
    write_text_atomic(Path(args.results), json.dumps(results, indent=1) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
