"""`owled deploy`: the vehicle-CPU form of a model: SmoothQuant-smoothed int8 LM weights, and the
runtime that runs it fastest on this CPU.

Prune first (`owled prune`), then deploy the pruned directory. The output loads like any
model directory (node, describe, eval). With --backend onnxruntime / openvino / auto it also
holds the exported graphs of the backend that passed the accuracy gate (auto: the fastest of
all installed), recorded with its timing table in runtime/backend.json (docs/deploy.md).
"""
from __future__ import annotations

import argparse

from owled_ros.data.calibration import SOURCES
from owled_ros.deploy.config import CHOICES, DeployConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = DeployConfig()
    p = sub.add_parser("deploy", help="make the int8 (SmoothQuant) deploy model of a (pruned) model")
    p.add_argument("--model", default="default", help="fp32 model directory (e.g. from owled prune), or 'default'")
    p.add_argument("--out", required=True, help="output model directory (must not exist)")
    p.add_argument("--alpha", type=float, default=d.alpha, help="SmoothQuant migration strength in [0, 1]")
    p.add_argument("--down-alpha", type=float, default=d.down_alpha, help="down_proj's own alpha (default: --alpha)")
    p.add_argument("--calib", default=d.calib, metavar="SOURCE", help=f"calibration data: {', '.join(SOURCES)}")
    p.add_argument("--calib-samples", type=int, default=d.calib_samples, help="images, or text windows for wiki")
    p.add_argument("--backend", default=d.backend, help=f"runtime: {', '.join(CHOICES)} (auto: time every installed one here, keep the fastest that passes the gate)")
    p.add_argument("--gate-frames", type=int, default=d.gate_frames, help="calibration frames each backend must answer like fp32 (and is timed on)")
    p.add_argument("--keep-all", action="store_true", help="keep every accepted backend's files (runtime/<backend>/), not only the chosen one's")
    p.add_argument("--threads", type=int, default=None, help="threads the backends are timed with (default: torch's, as the node runs)")


def run(args: argparse.Namespace) -> int:
    import sys
    import time
    from pathlib import Path

    import torch

    from owled_ros.data.calibration import check_source
    from owled_ros.deploy.build import deploy
    from owled_ros.errors import OwledError

    out = Path(args.out)
    if out.exists():
        raise OwledError(f"{out}: already exists (choose another --out or remove it)")
    if args.backend not in CHOICES:
        raise OwledError(f"unknown backend {args.backend!r} (choose from {', '.join(CHOICES)})")
    try:
        config = DeployConfig(args.alpha, check_source(args.calib), args.calib_samples, args.down_alpha, args.backend, args.gate_frames, keep_all=args.keep_all)
    except ValueError as err:
        raise OwledError(str(err)) from None
    threads = args.threads or torch.get_num_threads()
    if threads < 1:
        raise OwledError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    start = time.perf_counter()
    record = deploy(args.model, out, config, threads, log=lambda line: print(f"[owled deploy] {line}", file=sys.stderr))
    down = "" if config.down_alpha is None else f", down_proj {config.down_alpha:g}"
    print(f"deployed int8 (alpha {config.alpha:g}{down}) for backend {record['backend']} in {time.perf_counter() - start:.0f} s -> {out}")
    return 0
