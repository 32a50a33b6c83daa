"""Two models' actions on the same frames, compared frame by frame.

An unpaired difference of two 1000-frame accuracies has a standard error of about 2 points,
the size of the effects being judged (int8 against fp32: target <= 2 points). Paired on the
same frames the error is much smaller (`paired_difference`). Inputs are the JSON-lines files
`owled eval driving-qa --answers` writes, over the same frames.

    python benchmarks/paired_actions.py runs/dense.jsonl runs/int8.jsonl
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from owled_ros.eval.metrics import paired_difference


def load(path: Path) -> list[bool]:
    if not path.is_file():
        raise SystemExit(f"{path}: no such file (write it with owled eval driving-qa --answers)")
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise SystemExit(f"{path}: not JSON lines ({e})") from None
    if not rows or any(not isinstance(r, dict) or r.get("correct") is None for r in rows):
        raise SystemExit(f"{path}: needs one record per frame with a 'correct' field (owled eval driving-qa --answers)")
    return [bool(r["correct"]) for r in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path, help="reference model's answers (e.g. dense fp32)")
    p.add_argument("b", type=Path, help="compared model's answers (e.g. the deploy path)")
    p.add_argument("--first", type=int, default=None, help="only the first N frames of both")
    args = p.parse_args()
    a, b = load(args.a)[: args.first], load(args.b)[: args.first]
    if len(a) != len(b):
        raise SystemExit(f"{args.a} has {len(a)} frames, {args.b} {len(b)}: pair them on the same frames (--first N)")
    d = paired_difference(a, b)
    print(json.dumps({
        "frames": d.items, "accuracy_a": sum(a) / len(a), "accuracy_b": sum(b) / len(b),
        "only_a_right": d.only_a_right, "only_b_right": d.only_b_right, "difference_points": round(d.points, 2),
        "standard_error_points": round(d.standard_error, 2), "ci95_points": [round(x, 2) for x in d.ci95],
    }, indent=1))


if __name__ == "__main__":
    main()
