"""`owled eval paired A B`: two models' actions on the same frames, compared frame by frame.

Why: an unpaired difference of two 1000-frame accuracies has a standard error of about 2
points, the size of the effects being judged (int8 against fp32: target <= 2 points). Paired
on the same frames, only the frames where exactly one side is right count, and the error is
much smaller. Inputs are the files `owled eval driving-qa --answers` writes, over the same frames.
"""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("paired", help="paired action difference of two --answers files (same frames)")
    p.add_argument("a", help="reference model's answers (e.g. dense fp32)")
    p.add_argument("b", help="compared model's answers (e.g. the deploy path)")
    p.add_argument("--first", type=int, default=None, help="only the first N frames of both")
    p.add_argument("--out", default=None, help="also write the JSON to this file")


def run(args: argparse.Namespace) -> int:
    from owled_ros.commands.eval import emit
    from owled_ros.errors import OwledError
    from owled_ros.eval.answers import read_answers
    from owled_ros.eval.metrics import paired_difference

    if args.first is not None and args.first < 1:
        raise OwledError(f"--first must be at least 1, got {args.first}")
    a, b = ([bool(r["correct"]) for r in read_answers(path, ("correct",))][: args.first] for path in (args.a, args.b))
    if len(a) != len(b):
        raise OwledError(f"{args.a} has {len(a)} frames, {args.b} {len(b)}: pair them on the same frames (--first N)")
    d = paired_difference(a, b)
    emit({
        "frames": d.items, "accuracy_a": sum(a) / len(a), "accuracy_b": sum(b) / len(b),
        "only_a_right": d.only_a_right, "only_b_right": d.only_b_right, "difference_points": round(d.points, 2),
        "standard_error_points": round(d.standard_error, 2), "ci95_points": [round(x, 2) for x in d.ci95],
    }, args.out)
    return 0
