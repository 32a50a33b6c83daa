"""`owled deploy`: the vehicle-CPU form of a model: SmoothQuant-smoothed int8 LM weights.

Prune first (`owled prune`), then deploy the pruned directory. The output loads like any
model directory (node, describe, eval) and runs the LM's linear layers in int8.
"""
from __future__ import annotations

import argparse

from owled_ros.data.calibration import SOURCES
from owled_ros.deploy.config import DeployConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = DeployConfig()
    p = sub.add_parser("deploy", help="make the int8 (SmoothQuant) deploy model of a (pruned) model")
    p.add_argument("--model", default="default", help="fp32 model directory (e.g. from owled prune), or 'default'")
    p.add_argument("--out", required=True, help="output model directory (must not exist)")
    p.add_argument("--alpha", type=float, default=d.alpha, help="SmoothQuant migration strength in [0, 1]")
    p.add_argument("--down-alpha", type=float, default=d.down_alpha, help="down_proj's own alpha (default: --alpha)")
    p.add_argument("--calib", default=d.calib, metavar="SOURCE", help=f"calibration data: {', '.join(SOURCES)}")
    p.add_argument("--calib-samples", type=int, default=d.calib_samples, help="images, or text windows for wiki")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from owled_ros.data.calibration import check_source, load_calibration
    from owled_ros.deploy.build import smooth_for_int8
    from owled_ros.errors import OwledError
    from owled_ros.model.checkpoint import load_vlm, resolve_model_dir, save_vlm
    from owled_ros.prune.save import REPORT_NAME

    out = Path(args.out)
    if out.exists():
        raise OwledError(f"{out}: already exists (choose another --out or remove it)")
    try:
        config = DeployConfig(args.alpha, check_source(args.calib), args.calib_samples, args.down_alpha)
    except ValueError as err:
        raise OwledError(str(err)) from None
    start = time.perf_counter()
    vlm = load_vlm(args.model, "fp32")
    if vlm.meta.get("int8"):
        raise OwledError(f"{args.model}: is already an int8 deploy model; deploy the fp32 model it came from")
    calib = load_calibration(config.calib, config.calib_samples, vlm.tokenizer, seqlen=512)
    info = smooth_for_int8(vlm, calib, config)
    report = resolve_model_dir(args.model) / REPORT_NAME
    save_vlm(vlm, out, int8=info, extra={REPORT_NAME: report.read_bytes()} if report.is_file() else None)
    down = "" if config.down_alpha is None else f", down_proj {config.down_alpha:g}"
    print(f"deployed int8 (alpha {config.alpha:g}{down}, {calib.samples} {calib.source} samples) in {time.perf_counter() - start:.0f} s -> {out}")
    return 0
