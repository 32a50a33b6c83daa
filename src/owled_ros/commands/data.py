"""`owled data make`: labelled driving frames as DriveLM JSON + JPEG frames, from the scene generator, MetaDrive or the hand-labelled real frames."""
from __future__ import annotations

import argparse

from owled_ros.commands.sim import road_arguments


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="make driving QA data")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    make = data_sub.add_parser("make", help="write labelled driving frames in the DriveLM format: generated scenes, MetaDrive 3D frames or real frames")
    make.add_argument("--source", choices=("scenes", "sim", "real"), default="scenes",
                      help="scenes: the 2D scene generator; sim: MetaDrive drives (own venv, .venv-sim), labels from its ground truth; "
                           "real: the hand-labelled dashcam frames (--labels), train/, val/ and test/ split by drive (docs/real-roads.md)")
    make.add_argument("--split", choices=("train", "val", "test"), default=None, help="generated split (scenes; required there)")
    make.add_argument("--n", type=int, default=None, help="number of frames (scenes, sim; real: every labelled frame)")
    make.add_argument("--seed", type=int, default=None, help="scenes: stream seed (default: the split's, SPLIT_SEEDS); sim: first scenario seed (default 0)")
    make.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    make.add_argument("--size", default=None, help="frame size WxH (default 384x224 scenes, 400x224 sim)")
    make.add_argument("--labels", default=None, help="real: the labels CSV (default data/real_roads/labels.csv)")
    sim = make.add_argument_group("sim", "MetaDrive drives (--source sim); the rule expert drives, a frame every --every sim seconds")
    road_arguments(sim, blocks="SCSC")
    sim.add_argument("--every", type=float, default=1.0, help="sim seconds between kept frames")


def _size(text: str) -> tuple[int, int]:
    from owled_ros.errors import OwledError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise OwledError(f"--size must look like 384x224, got {text!r}") from None
    if not (64 <= w <= 4096 and 64 <= h <= 4096):
        raise OwledError(f"--size must be between 64x64 and 4096x4096, got {text!r}")
    return w, h


def run(args: argparse.Namespace) -> int:
    import time
    from collections import Counter
    from pathlib import Path

    from owled_ros.data.drivelm import load_drivelm, write_split
    from owled_ros.data.scenes import SPLIT_SEEDS
    from owled_ros.errors import OwledError

    if args.source == "real":
        return _make_real(args)
    if args.n is None or args.n < 1:
        raise OwledError(f"--n must be given and at least 1 for --source {args.source}, got {args.n}")
    if args.seed is not None and args.seed < 0:
        raise OwledError(f"--seed must be non-negative, got {args.seed}")
    start = time.perf_counter()
    if args.source == "sim":
        from owled_ros.commands.sim import scenario_from
        from owled_ros.sim.frames import write_sim_split

        if args.split is not None:
            raise OwledError("--split is for --source scenes; sim frames are split by drive when used (owled train --data sim:DIR)")
        if not args.every > 0:
            raise OwledError(f"--every must be positive, got {args.every}")
        scenario = scenario_from(args, seed=args.seed or 0, size=args.size or "400x224")
        path = write_sim_split(Path(args.out), args.n, scenario, args.every)
        what = f"MetaDrive frames (seeds from {scenario.seed}, {scenario.width}x{scenario.height})"
    else:
        if args.split is None:
            raise OwledError("--split is required for --source scenes")
        size = _size(args.size or "384x224")
        seed = SPLIT_SEEDS[args.split] if args.seed is None else args.seed
        path = write_split(args.out, seed, args.n, size=size)
        what = f"{args.split} scenes (seed {seed}, {size[0]}x{size[1]})"
    frames = load_drivelm(path, path.parent)
    actions = Counter(f.expert_action.phrase for f in frames if f.expert_action is not None)
    balance = ", ".join(f"{a} {100 * c / len(frames):.0f}%" for a, c in sorted(actions.items()))
    print(f"wrote {len(frames)} {what} to {path} in {time.perf_counter() - start:.1f} s; actions: {balance}")
    return 0


def _make_real(args: argparse.Namespace) -> int:
    from pathlib import Path

    from owled_ros.data.drivelm import load_drivelm
    from owled_ros.data.real_roads import LABELS_PATH, read_labels, write_real_set
    from owled_ros.errors import OwledError

    if args.n is not None or args.split is not None or args.seed is not None or args.size is not None:
        raise OwledError("--source real takes every labelled frame: --n, --split, --seed and --size do not apply")
    labels = Path(args.labels) if args.labels else LABELS_PATH
    _, excluded = read_labels(labels)
    for split, path in write_real_set(Path(args.out), labels).items():
        frames = load_drivelm(path, path.parent)
        print(f"{split}: {len({f.image_path for f in frames})} frames, {len(frames)} key frames (one per ego speed) in {path}")
    print(f"{len(excluded)} looked-at frames excluded, reasons in {labels}")
    return 0
