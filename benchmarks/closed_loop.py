"""Closed loop in the simulator: the same seeds driven by dense fp32 and by pruned recipes (`owled sim run`,
lock-step, MetaDrive through the carla-ros-bridge topics), scored per model, with the issue's target
checked per recipe: route completion within 5 % of dense, and no more collisions (nor off-road
episodes: leaving the road is a crash the simulator counts apart).

    python benchmarks/closed_loop.py --results benchmarks/closed_loop.json      # builds the recipes below first
    python benchmarks/closed_loop.py --model default --model runs/mine --results mine.json
    python benchmarks/closed_loop.py --reuse runs/sim10 --results benchmarks/closed_loop.json   # score a finished run again

Without --model the recipes are made by the real commands into --recipes-dir (kept, so a rerun
reuses them): the vehicle recipe of `make demo` (10 % OWL-Wanda, LM head trimmed, int8 on the
backend `owled deploy --backend auto` keeps on this CPU) and the structured recipe (channels 20 %,
OWL budgets, 200 recovery steps, head trimmed, fp32). The first model is the reference (dense
fp32). Route completion is compared per seed (the same scenario for every model), as the mean of
the per-seed ratios to the reference, beside the plain means.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from owled_ros.fsutil import write_text_atomic
from owled_ros.machine import benchmark_main, machine_info, machine_line
from owled_ros.sim.scoring import markdown as sim_markdown

ROUTE_TOLERANCE = 0.05  # a recipe's route completion may fall this far below dense (relative)


def _owled(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "owled_ros.cli", *args], check=True)


def _recipes(root: Path) -> list[str]:
    """Dense, the vehicle recipe and the structured recipe, each made once into `root`."""
    vehicle, structured = root / "vehicle-owl10", root / "structured-ch20-r200"
    steps = [
        (vehicle, ["prune", "--model", "default", "--structure", "unstructured", "--ratios", "owl", "--sparsity", "0.1",
                   "--owl-lambda", "0.1", "--calib", "scenes", "--calib-samples", "16"]),
        (Path(f"{vehicle}-tv"), ["trim-vocab", "--model", str(vehicle), "--calib-samples", "8", "--check-frames", "8"]),
        (Path(f"{vehicle}-tv-int8"), ["deploy", "--model", f"{vehicle}-tv", "--down-alpha", "0.3", "--calib-samples", "16",
                                      "--backend", "auto"]),
        (structured, ["prune", "--model", "default", "--structure", "channels", "--sparsity", "0.2", "--recover-steps", "200"]),
        (Path(f"{structured}-tv"), ["trim-vocab", "--model", str(structured)]),
    ]
    for out, args in steps:
        if not out.is_dir():
            _owled(*args, "--out", str(out))
    return ["default", f"{vehicle}-tv-int8", f"{structured}-tv"]


def _sim_run(models: list[str], args: argparse.Namespace, out: Path) -> None:
    _owled("sim", "run", *(a for m in models for a in ("--model", m)), "--seeds", *map(str, args.seeds),
           "--duration", str(args.duration), "--camera-hz", str(args.camera_hz), "--out", str(out))


def _paired(report: dict) -> dict[str, dict]:
    """Per recipe against the first model: per-seed route-completion ratios and the target check."""
    labels = list(report["models"])
    ref = {e["seed"]: e for e in report["episodes"][labels[0]]}
    out = {}
    for label in labels[1:]:
        ratios = [e["route_completion"] / ref[e["seed"]]["route_completion"]
                  for e in report["episodes"][label] if ref.get(e["seed"], {}).get("route_completion")]
        mine, dense = report["models"][label], report["models"][labels[0]]
        ratio = statistics.fmean(ratios) if ratios else None
        out[label] = {"route_ratio_mean": ratio, "route_ratio_min": min(ratios) if ratios else None, "seeds_paired": len(ratios),
                      "target_met": ratio is not None and ratio >= 1 - ROUTE_TOLERANCE and mine["collisions"] <= dense["collisions"]
                      and mine["off_road"] <= dense["off_road"]}
    return out


def run(args: argparse.Namespace) -> None:
    if args.reuse:
        sim_dir, command = Path(args.reuse), None
    else:
        models = args.model or _recipes(Path(args.recipes_dir))
        sim_dir = Path(args.sim_out) if args.sim_out else Path(tempfile.mkdtemp(prefix="closed-loop-")) / "sim"
        _sim_run(models, args, sim_dir)
        command = " ".join(["python", *sys.argv])
    report = json.loads((sim_dir / "report.json").read_text())
    if report.get("interrupted"):
        sys.exit(f"closed_loop: {sim_dir} is an interrupted run; its scores are partial")
    episodes = {label: [{k: e.get(k) for k in ("seed", "route_completion", "collisions", "off_road", "action_agreement",
                                                "model_latency_p50_ms")} for e in eps]
                for label, eps in report["episodes"].items()}
    results = {"scenario": report["scenario"], "seeds": report["seeds"], "options": report["options"],
               "models": report["models"], "episodes": episodes, "paired": _paired(report), "sim_dir": str(sim_dir),
               "machine": machine_info(None, command or f"python benchmarks/closed_loop.py --reuse {sim_dir}")}
    write_text_atomic(args.results, json.dumps(results, indent=1))
    print(markdown(results))


def markdown(results: dict) -> str:
    opts = results["options"]
    lines = [machine_line(results["machine"]),
             f"Seeds {', '.join(map(str, results['seeds']))}; {opts['duration_s']:g} sim s each, camera {opts['camera_hz']:g} Hz, "
             f"{'lock-step' if opts['lockstep'] else 'real time'}; road {results['scenario']['blocks']}, "
             f"{results['scenario']['lanes']} lanes, traffic density {results['scenario']['traffic_density']:g}.", "",
             sim_markdown(results["models"]).rstrip("\n"), "",
             f"| recipe against {next(iter(results['models']))} | seeds paired | route completion ratio, mean (min) | collisions | off-road | target met |",
             "|---|---|---|---|---|---|"]
    dense = next(iter(results["models"].values()))
    for label, p in results["paired"].items():
        ratio = "n/a" if p["route_ratio_mean"] is None else f"{p['route_ratio_mean']:.3f} ({p['route_ratio_min']:.3f})"
        mine = results["models"][label]
        lines.append(f"| {label} | {p['seeds_paired']} | {ratio} | {mine['collisions']} vs {dense['collisions']} "
                     f"| {mine['off_road']} vs {dense['off_road']} | {'yes' if p['target_met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", default=None,
                   help="model directory or 'default'; the first is the reference (default: dense and the two recipes, built)")
    p.add_argument("--recipes-dir", default="runs/closed_loop_models", help="where the recipes are built without --model")
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--camera-hz", type=float, default=1.0)
    p.add_argument("--sim-out", default=None, help="keep the episode bags here (default: a temp dir)")
    p.add_argument("--reuse", default=None, metavar="DIR", help="score a finished `owled sim run --out DIR` instead of running one")
    benchmark_main(p, run, markdown)


if __name__ == "__main__":
    main()
