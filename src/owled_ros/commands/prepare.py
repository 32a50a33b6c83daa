"""`owled prepare`: build the default model's fp32 LM cache once, so later loads take about a second."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("prepare", help="cache the default model's LM as fp32 safetensors (once)")


def run(args: argparse.Namespace) -> int:
    from owled_ros.model.lm import default_lm_dir

    print(f"default LM ready: {default_lm_dir()}")
    return 0
