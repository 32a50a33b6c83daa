"""`owled sim frames | run | score`: closed-loop driving in MetaDrive through the CARLA-bridge topics."""
from __future__ import annotations

import argparse

from owled_ros.errors import OwledError


def _scenario_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="first scenario seed")
    p.add_argument("--lanes", type=int, default=3, help="lanes per direction (1..6)")
    p.add_argument("--traffic-density", type=float, default=0.15, help="MetaDrive traffic density (0..1)")
    p.add_argument("--blocks", default="SSSS", help="road as MetaDrive block ids, e.g. SSSS (straights), SCSS (with a curve)")
    p.add_argument("--initial-speed", type=float, default=10.0, help="ego start speed in m/s")
    p.add_argument("--size", default="400x224", help="camera frame WxH")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="closed-loop MetaDrive simulation on the CARLA-bridge topics (own venv: .venv-sim)")
    sim = p.add_subparsers(dest="sim_command", required=True)

    frames = sim.add_parser("frames", help="dump N forward-camera frames (PNG) with ground truth, driven by the rule expert")
    frames.add_argument("--out", required=True, help="directory to write (must not exist)")
    frames.add_argument("--frames", "-n", type=int, default=20, help="how many frames")
    frames.add_argument("--every", type=float, default=1.0, help="sim seconds between kept frames")
    _scenario_arguments(frames)


def scenario_from(args: argparse.Namespace):
    from owled_ros.sim.scenario import Scenario, ScenarioError

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise OwledError(f"--size must be WxH, got {args.size!r}") from None
    try:
        return Scenario(args.seed, args.lanes, args.traffic_density, args.blocks, args.initial_speed, width, height)
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


def run(args: argparse.Namespace) -> int:
    return {"frames": _frames}[args.sim_command](args)
