"""`owled data make`: write a split of generated driving scenes as DriveLM JSON + JPEG frames."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="make driving QA data")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    make = data_sub.add_parser("make", help="generate a DriveLM-format split of procedural driving scenes")
    make.add_argument("--split", required=True, choices=("train", "val", "test"))
    make.add_argument("--n", type=int, required=True, help="number of scenes")
    make.add_argument("--seed", type=int, default=None, help="scene stream seed (default: the split's fixed seed, SPLIT_SEEDS)")
    make.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    make.add_argument("--size", default="384x224", help="frame size WxH (default 384x224)")


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

    from owled_ros.data.drivelm import load_drivelm, write_split
    from owled_ros.data.scenes import SPLIT_SEEDS
    from owled_ros.errors import OwledError

    if args.n < 1:
        raise OwledError(f"--n must be at least 1, got {args.n}")
    if args.seed is not None and args.seed < 0:
        raise OwledError(f"--seed must be non-negative, got {args.seed}")
    size = _size(args.size)
    seed = SPLIT_SEEDS[args.split] if args.seed is None else args.seed
    start = time.perf_counter()
    path = write_split(args.out, seed, args.n, size=size)
    frames = load_drivelm(path, path.parent)
    actions = Counter(f.expert_action.phrase for f in frames if f.expert_action is not None)
    balance = ", ".join(f"{a} {100 * c / len(frames):.0f}%" for a, c in sorted(actions.items()))
    print(f"wrote {len(frames)} {args.split} scenes (seed {seed}, {size[0]}x{size[1]}) to {path} in {time.perf_counter() - start:.1f} s; actions: {balance}")
    return 0
