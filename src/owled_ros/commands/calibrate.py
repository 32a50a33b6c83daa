"""`owled calibrate`: give a trained model its out-of-distribution statistics (ood.safetensors) and
its action-confidence calibration (meta "confidence_calibration" in owled_vlm.json).

`owled train` writes the OOD statistics itself; this adds them to a model trained before, or
refits them on other data. Pruned and deployed models keep both from the model they came from.
"""
from __future__ import annotations

import argparse

from owled_ros.data.sources import SPEC_HELP


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit a model's out-of-distribution statistics on its training data (docs/ood.md)")
    p.add_argument("--model", default="default", help="model directory to add ood.safetensors to, or 'default'")
    p.add_argument("--data", action="append", default=None, metavar="SPEC",
                   help=f"the data the model was trained on, repeatable ({SPEC_HELP}); default: gen")
    p.add_argument("--fit-frames", type=int, default=4000, help="training frames the OOD statistics are fitted on (0: keep them as they are)")
    p.add_argument("--holdout-frames", type=int, default=1000, help="validation frames the threshold is set on")
    p.add_argument("--quantile", type=float, default=0.99, help="share of validation frames inside the threshold")
    p.add_argument("--confidence-frames", type=int, default=400,
                   help="validation frames for the confidence calibration, half to fit, half to measure (0: skip)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")


def run(args: argparse.Namespace) -> int:
    import torch

    from owled_ros.data.sources import parse_data_spec
    from owled_ros.errors import OwledError
    import json

    from owled_ros.fsutil import write_text_atomic
    from owled_ros.model.checkpoint import CONFIG_NAME, load_vlm, read_model_config, resolve_model_dir
    from owled_ros.model.ood import OOD_FILE
    from owled_ros.runtime.confidence import META_KEY
    from owled_ros.train.calibrate import fit_confidence, fit_model_ood

    if args.fit_frames == 1 or args.fit_frames < 0 or args.holdout_frames < 1 or args.confidence_frames < 0:
        raise OwledError("--fit-frames must be 0 or at least 2, --holdout-frames at least 1, --confidence-frames 0 or more")
    if not 0 < args.quantile < 1:
        raise OwledError(f"--quantile must be in (0, 1), got {args.quantile}")
    specs = [parse_data_spec(s) for s in (args.data or ["gen"])]
    model_dir = resolve_model_dir(args.model)
    if not (model_dir / CONFIG_NAME).is_file():
        raise OwledError(f"{model_dir}: not an owled model directory (no {CONFIG_NAME})")
    if args.threads:
        torch.set_num_threads(args.threads)
    vlm = load_vlm(args.model, "auto")
    if args.fit_frames:
        stats = fit_model_ood(vlm, specs, args.fit_frames, args.holdout_frames, args.quantile)
        stats.save(model_dir / OOD_FILE)
        print(f"OOD statistics written to {model_dir / OOD_FILE}: {stats.info['fit_frames']} fit frames, threshold "
              f"{stats.threshold:.1f} at the {args.quantile:.0%} quantile of {stats.info['holdout_frames']} validation frames")
    if args.confidence_frames:
        record = fit_confidence(vlm, specs, args.confidence_frames)
        config = read_model_config(model_dir)
        config["meta"] = {**config.get("meta", {}), META_KEY: record}
        write_text_atomic(model_dir / CONFIG_NAME, json.dumps(config, indent=2))
        print(f"confidence calibration written to {model_dir / CONFIG_NAME}: expected calibration error on "
              f"{record['eval_frames']} held-out validation frames {record['ece_raw']:.3f} raw -> {record['ece']:.3f}")
    return 0
