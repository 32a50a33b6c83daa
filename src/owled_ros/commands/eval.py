"""`owled eval KIND ...`: one evaluation per module, each printing one JSON object of metrics.

An evaluation is a module commands/eval_<kind>.py defining `add_parser(subparsers)` and
`run(args) -> int`; adding one is a new module plus one entry in EVALS.
"""
from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from owled_ros.fsutil import write_text_atomic

EVALS: dict[str, str] = {  # kind -> module in owled_ros.commands
    "ppl": "eval_ppl", "driving-qa": "eval_driving_qa", "paired": "eval_paired", "action-errors": "eval_action_errors",
}


def _module(kind: str):
    return importlib.import_module(f"owled_ros.commands.{EVALS[kind]}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model; prints one JSON object of metrics")
    kinds = p.add_subparsers(dest="eval_kind", required=True)
    for kind in EVALS:
        _module(kind).add_parser(kinds)


def run(args: argparse.Namespace) -> int:
    return _module(args.eval_kind).run(args)


def emit(metrics: dict, out: str | None) -> None:
    """Print the metrics as one JSON line; with --out also write them to that file."""
    text = json.dumps(metrics)
    print(text)
    if out:
        write_text_atomic(Path(out), text + "\n")
