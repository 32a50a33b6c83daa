"""One module per `owled` subcommand (`trim_vocab` is `owled trim-vocab`); each defines `add_parser(subparsers)` and `run(args) -> int`.

Modules import their heavy dependencies inside `run`, so `owled --help` stays fast.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from owled_ros.deploy.config import BACKENDS
from owled_ros.model import PRECISIONS

if TYPE_CHECKING:
    from owled_ros.deploy.runner import RuntimeVLM
    from owled_ros.model.vlm import DrivingVLM

COMMANDS: tuple[str, ...] = ("prepare", "describe", "data", "train", "calibrate", "prune", "recover", "trim_vocab", "deploy", "eval", "bag", "demo", "sim")


def calib_source(value: str) -> str:
    """argparse type of --calib: the source, or its one-line reason (data/calibration.check_source)."""
    from owled_ros.data.calibration import check_source

    try:
        return check_source(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_runtime_arguments(p: argparse.ArgumentParser) -> None:
    """--precision, --backend and --device, as the node's parameters of the same names."""
    p.add_argument(
        "--precision", choices=PRECISIONS, default="auto",
        help="auto: as the model directory holds it (int8 after owled deploy); fp32: run an int8 directory de-quantized",
    )
    p.add_argument(
        "--backend", choices=("deployed", *BACKENDS), default="deployed",
        help="deployed: the runtime owled deploy chose for the directory (torch for one never deployed); or name one",
    )
    p.add_argument(
        "--device", default="auto",
        help="auto (a CUDA GPU where torch sees one, else the CPU), cpu, cuda or cuda:N; on CUDA torch runs the model in fp16",
    )


def load_model_of(args: argparse.Namespace) -> DrivingVLM | RuntimeVLM:
    """The model of --model on --precision, --backend and --device (deploy/runner.load_driving_model)."""
    from owled_ros.deploy.runner import load_driving_model

    return load_driving_model(args.model, args.precision, None if args.backend == "deployed" else args.backend, args.device)
