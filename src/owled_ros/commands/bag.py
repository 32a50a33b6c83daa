"""`owled bag make | play | record | eval`: driving bags in, scored node outputs out."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from owled_ros.eval.bag_eval import EvalConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bag", help="make, play, record and evaluate rosbag2 drives")
    bag = p.add_subparsers(dest="bag_command", required=True)

    make = bag.add_parser("make", help="write a deterministic mcap bag of generated scenes or dashcam frames")
    make.add_argument("--source", choices=("scenes", "dashcam"), default="scenes")
    make.add_argument("--frames", type=int, default=20)
    make.add_argument("--hz", type=float, default=10.0, help="camera rate (stamps 1/HZ apart)")
    make.add_argument("--out", required=True, help="bag directory to write (must not exist)")
    make.add_argument("--carla", action="store_true", help="carla-ros-bridge topic names and bgra8 frames")
    make.add_argument("--compressed", action="store_true", help="sensor_msgs/CompressedImage JPEG on <camera>/compressed")
    make.add_argument("--seed", type=int, default=None, help="scene stream seed (default: the split's) / dashcam speed profile seed")
    make.add_argument("--split", choices=("train", "val", "test"), default="test", help="scene split (scenes only)")
    make.add_argument("--size", default=None, help="frame size WxH (default 384x224 scenes, 640x360 dashcam)")

    play = bag.add_parser("play", help="publish a bag's topics with /clock")
    play.add_argument("bag")
    play.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    play.add_argument("--loop", action="store_true")
    play.add_argument("--topics", nargs="+", default=None, help="only these topics")
    play.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    play.add_argument("--wait-subscribers", type=int, default=0, metavar="N", help="start once every played topic has N subscribers")
    play.add_argument("--wait-timeout", type=float, default=60.0, help="seconds to wait for them")
    play.add_argument("--delay", type=float, default=0.0, metavar="S", help="seconds to pause before the first message, once subscribers match")

    record = bag.add_parser("record", help="record topics to an mcap bag (raw, stops on Ctrl-C or --duration)")
    record.add_argument("--topics", nargs="+", required=True)
    record.add_argument("--out", required=True, help="bag directory to write (must not exist)")
    record.add_argument("--duration", type=float, default=None, help="seconds to record")
    record.add_argument("--echo", nargs="+", default=(), metavar="TOPIC", help="also print these topics' messages as JSON lines")

    ev = bag.add_parser(
        "eval", help="score a bag with the real node (or --offline the pipeline); several bags or a directory of them: a fleet on Ray workers"
    )
    ev.add_argument("bags", nargs="+", metavar="BAG|DIR", help="a rosbag2 directory; several, or directories searched for them: a fleet (docs/fleet.md)")
    ev.add_argument("--model", default="default", help="model directory, or 'default'")
    ev.add_argument("--out", required=True, help="one bag: report.json, report.md, report.png and the recorded bag; a fleet: bags/<bag>/ and fleet.json, fleet.md, fleet.png")
    mode = ev.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true", help="no ROS: the pipeline frame by frame in-process (the default for a fleet)")
    mode.add_argument("--online", action="store_true", help="replay into a real node process (the default for one bag; for a fleet, one node per worker)")
    ev.add_argument("--workers", type=int, default=None, help="a fleet on this many Ray actors (default 1); each loads the model once, they share the CPUs")
    ev.add_argument("--address", default=None, help="a fleet on this Ray cluster (auto, HOST:PORT, ray://HOST:PORT); default: a local Ray on 127.0.0.1")
    ev.add_argument("--resume", action="store_true", help="a fleet keeping the bags already scored in --out by the same model, mode and settings")
    ev.add_argument("--hz", type=float, default=None, help="replay the camera at this rate (online; default: as recorded)")
    ev.add_argument("--max-rate-hz", type=float, default=10.0, help="the node's max_rate_hz (online)")
    ev.add_argument("--max-new-tokens", type=int, default=64)
    ev.add_argument("--camera-topic", default=None, help="default: each bag's only Image/CompressedImage topic")
    ev.add_argument("--state-topic", default=None, help="default: each bag's only Odometry/TwistStamped/Float32 topic")
    ev.add_argument("--quiet", action="store_true", help="one bag: do not print each output as it arrives; a fleet: no progress bars")


def _size(text: str | None) -> tuple[int, int] | None:
    from owled_ros.commands.data import _size as parse_size

    return None if text is None else parse_size(text)


def print_output(out) -> None:
    """One line per published frame: bag time, action, model latency, description."""
    print(f"[{out.stamp_ns / 1e9:.2f}] {out.action:<17} {out.model_latency_ms:7.0f} ms  {out.text}", flush=True)


def summary_line(report: dict) -> str:
    def f(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    return (
        f"{report['mode']} {report['model_id'] or report['model']}: {report['frames_published']}/{report['frames_in']} frames published "
        f"({report['frames_dropped']} dropped, {report['out_of_order']} out of order, {report['gaps']} gaps), "
        f"action accuracy {f(report['action_accuracy'], '.3f')} on {report['frames_scored']}, ROUGE-L {f(report['rouge_l'], '.3f')}, "
        f"latency p50 {f(report['latency_p50_ms'], '.0f')} ms p95 {f(report['latency_p95_ms'], '.0f')} ms"
    )


def _make(args: argparse.Namespace) -> int:
    from pathlib import Path

    from owled_ros.data.bag_make import BagSpec, make_bag

    spec = BagSpec(args.source, args.frames, args.hz, args.carla, args.compressed, args.seed, args.split, _size(args.size))
    s = make_bag(spec, Path(args.out))
    print(f"wrote {s.frames} frames ({s.messages} messages, {s.size_bytes / 1e6:.1f} MB) to {s.path}; topics: {', '.join(s.info['topics'].values())}")
    return 0


def _play(args: argparse.Namespace) -> int:
    from owled_ros.ros.bag_play import PlayOptions, play

    options = PlayOptions(args.rate, args.loop, tuple(args.topics) if args.topics else None, not args.no_clock, args.wait_subscribers, args.wait_timeout, args.delay)
    play(args.bag, options)
    return 0


def _record(args: argparse.Namespace) -> int:
    import sys

    from owled_ros.ros.bag_record import record

    counts = record(args.out, args.topics, args.duration, tuple(args.echo))
    print(f"recorded {sum(counts.values())} messages to {args.out}: " + ", ".join(f"{t} {n}" for t, n in counts.items()), file=sys.stderr)
    return 0


def _is_fleet(args: argparse.Namespace) -> bool:
    """Several paths, a directory of bags, or a fleet option: the fleet; else today's one-bag evaluation."""
    from pathlib import Path

    from owled_ros.eval.fleet import BAG_METADATA

    one = Path(args.bags[0])
    of_bags = one.is_dir() and not (one / BAG_METADATA).is_file()
    return len(args.bags) > 1 or of_bags or args.workers is not None or args.address is not None or args.resume


def _eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from owled_ros.data.bag_read import open_drive_bag
    from owled_ros.errors import OwledError
    from owled_ros.eval.bag_eval import EvalConfig, evaluate_bag

    if args.hz is not None and not args.hz > 0:
        raise OwledError(f"--hz must be positive, got {args.hz}")
    if not args.max_rate_hz > 0 or args.max_new_tokens < 1:
        raise OwledError("--max-rate-hz must be positive and --max-new-tokens at least 1")
    model = args.model if args.model == "default" else str(Path(args.model).resolve())
    if model != "default" and not Path(model).is_dir():
        raise OwledError(f"{args.model}: model directory does not exist")
    config = EvalConfig(model, args.max_new_tokens, max_rate_hz=args.max_rate_hz, hz=args.hz)
    if _is_fleet(args):
        return _eval_fleet(args, config)
    drive = open_drive_bag(Path(args.bags[0]), args.camera_topic, args.state_topic)
    report = evaluate_bag(drive, config, Path(args.out), args.offline, None if args.quiet else print_output)
    print(summary_line(report))
    print(f"report: {Path(args.out) / 'report.json'}")
    return 0


def _eval_fleet(args: argparse.Namespace, config: EvalConfig) -> int:
    """The fleet: the totals as one JSON object on stdout (as `owled eval` prints), a summary on
    stderr; exit 1 when some bag could not be scored (they are listed)."""
    import sys
    from pathlib import Path

    from owled_ros.commands.eval import emit
    from owled_ros.errors import OwledError
    from owled_ros.processes import confined_env
    from owled_ros.eval.fleet import FLEET_JSON, FleetConfig, evaluate_fleet
    from owled_ros.eval.fleet import summary_line as fleet_summary
    from owled_ros.eval.fleet_ray import fleet_domains

    workers = 1 if args.workers is None else args.workers
    if workers < 1:
        raise OwledError(f"--workers must be at least 1, got {workers}")
    if args.online:  # refused before Ray starts rather than failing every bag
        confined_env()
        fleet_domains(workers)
    fleet = FleetConfig(config, workers, args.address, args.camera_topic, args.state_topic, online=args.online)
    report = evaluate_fleet([Path(b) for b in args.bags], fleet, Path(args.out), args.resume, progress=not args.quiet)
    emit(report["totals"] | {"bags": report["bags"], "bags_failed": report["bags_failed"], "frames_per_s": report["frames_per_s"]}, None)
    print(fleet_summary(report), file=sys.stderr)
    print(f"report: {Path(args.out) / FLEET_JSON}", file=sys.stderr)
    return 1 if report["bags_failed"] else 0


def run(args: argparse.Namespace) -> int:
    return {"make": _make, "play": _play, "record": _record, "eval": _eval}[args.bag_command](args)
