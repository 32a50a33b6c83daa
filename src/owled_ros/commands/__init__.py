"""One module per `owled` subcommand; each defines `add_parser(subparsers)` and `run(args) -> int`.

Modules import their heavy dependencies inside `run`, so `owled --help` stays fast.
"""

import argparse

from owled_ros.model import PRECISIONS

COMMANDS: tuple[str, ...] = ("prepare", "describe", "data", "train", "calibrate", "prune", "recover", "deploy", "eval", "bag", "demo", "sim")


def add_precision_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision", choices=PRECISIONS, default="auto",
        help="auto: as the model directory holds it (int8 after owled deploy); fp32: run an int8 directory de-quantized",
    )
