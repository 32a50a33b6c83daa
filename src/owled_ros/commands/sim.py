"""`owled sim frames | run | score`: closed-loop driving in MetaDrive through the CARLA-bridge topics."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from owled_ros.errors import OwledError

if TYPE_CHECKING:
    from owled_ros.sim.scenario import Scenario


def road_arguments(p: argparse.ArgumentParser, blocks: str = "SSSS") -> None:
    """The scenario's road and traffic (`owled sim`, `owled data make --source sim`)."""
    p.add_argument("--lanes", type=int, default=3, help="lanes per direction (1..6)")
    p.add_argument("--traffic-density", type=float, default=0.15, help="MetaDrive traffic density (0..1)")
    p.add_argument("--blocks", default=blocks, help="road as MetaDrive block ids, e.g. SSSS (straights), SCSS (with a curve)")
    p.add_argument("--initial-speed", type=float, default=10.0, help="ego start speed in m/s")


def _scenario_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="first scenario seed")
    road_arguments(p)
    p.add_argument("--size", default="400x224", help="camera frame WxH")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="closed-loop MetaDrive simulation on the CARLA-bridge topics (own venv: .venv-sim)")
    sim = p.add_subparsers(dest="sim_command", required=True)

    frames = sim.add_parser("frames", help="dump N forward-camera frames (PNG) with ground truth, driven by the rule expert")
    frames.add_argument("--out", required=True, help="directory to write (must not exist)")
    frames.add_argument("--frames", "-n", type=int, default=20, help="how many frames")
    frames.add_argument("--every", type=float, default=1.0, help="sim seconds between kept frames")
    _scenario_arguments(frames)

    r = sim.add_parser("run", help="drive the node's model in closed loop on seeds; bag, score and report per model")
    r.add_argument("--model", action="append", default=None, help="model directory or 'default'; repeat to compare (same seeds)")
    r.add_argument("--seeds", type=int, nargs="+", default=[0], help="scenario seeds, one episode each")
    r.add_argument("--duration", type=float, default=30.0, help="sim seconds per episode")
    r.add_argument("--camera-hz", type=float, default=2.0, help="camera frames per sim second")
    r.add_argument("--mode", choices=("lockstep", "realtime"), default="lockstep",
                   help="lockstep: wait for the node's answer to every frame; realtime: never wait")
    r.add_argument("--answer-timeout", type=float, default=60.0, help="lock-step: seconds to wait for one answer")
    r.add_argument("--start-timeout", type=float, default=300.0, help="seconds to wait for the node to come up")
    r.add_argument("--no-node", action="store_true", help="do not start owled_node (one is already running, e.g. from owled_sim.launch.py)")
    r.add_argument("--out", required=True, help="directory for bags and report.json / .md / .png (must not exist)")
    _scenario_arguments(r)

    score = sim.add_parser("score", help="score one recorded episode bag (JSON on stdout)")
    score.add_argument("bag")


def scenario_from(args: argparse.Namespace, seed: int | None = None, size: str | None = None) -> Scenario:
    """The Scenario of the road arguments, with args.seed and args.size unless given."""
    from owled_ros.sim.scenario import Scenario, ScenarioError

    seed = args.seed if seed is None else seed
    size = args.size if size is None else size
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise OwledError(f"--size must be WxH, got {size!r}") from None
    try:
        return Scenario(seed, args.lanes, args.traffic_density, args.blocks, args.initial_speed, width, height)
    except ScenarioError as err:
        raise OwledError(str(err)) from None


def _frames(args: argparse.Namespace) -> int:
    from pathlib import Path

    from owled_ros.sim.frames import dump_frames

    scenario = scenario_from(args)
    if not args.every > 0:
        raise OwledError(f"--every must be positive, got {args.every}")
    out = dump_frames(Path(args.out), args.frames, scenario, args.every)
    print(f"wrote {args.frames} frames to {out} (frame_NNNNNN.png, frames.jsonl)")
    return 0


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from owled_ros.ros.sim_bridge import RunOptions, run_models

    scenario = scenario_from(args)
    models = args.model or ["default"]
    for model in models:
        if model != "default" and not Path(model).is_dir():
            raise OwledError(f"--model {model!r}: not 'default' nor a model directory")
    if args.no_node and len(models) > 1:
        raise OwledError("--no-node drives the one running node: give at most one --model")
    if any(seed < 0 for seed in args.seeds):
        raise OwledError("--seeds must be >= 0")
    options = RunOptions(args.duration, args.camera_hz, args.mode == "lockstep", answer_timeout_s=args.answer_timeout, start_timeout_s=args.start_timeout)
    report = run_models(models, args.seeds, scenario, options, Path(args.out), start_node=not args.no_node)
    from owled_ros.sim.scoring import markdown

    print(markdown(report["models"]), end="")
    print(f"report: {args.out}/report.json, report.md, report.png")
    return 130 if report["interrupted"] else 0


def _score(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from owled_ros.sim.scoring import score_bag

    print(json.dumps(score_bag(Path(args.bag)), indent=1))
    return 0


def run(args: argparse.Namespace) -> int:
    return {"frames": _frames, "run": _run, "score": _score}[args.sim_command](args)
