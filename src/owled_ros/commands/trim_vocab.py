"""`owled trim-vocab`: keep only the LM head's rows of the tokens the driving model says
(prune/output_vocab.py); the last step before `owled deploy`, after prune and recover."""
from __future__ import annotations

import argparse

from owled_ros.commands import calib_source
from owled_ros.data.calibration import SOURCES

GRAMMAR_SCENES = 2000
"""Train scenes whose answers give the generated data's vocabulary (tokenized, not rendered: seconds)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trim-vocab", help="trim the LM head to the tokens the driving model says (faster decode steps)")
    p.add_argument("--model", default="default", help="fp32 model directory (after owled prune / recover), or 'default'")
    p.add_argument("--out", required=True, help="output model directory (must not exist)")
    p.add_argument("--calib", type=calib_source, default="scenes", metavar="SOURCE",
                   help=f"frames the model answers to find the words it says: {', '.join(s for s in SOURCES if s != 'wiki')}")
    p.add_argument("--calib-samples", type=int, default=16, help="calibration frames (each answered twice: the node's question and its own)")
    p.add_argument("--grammar-scenes", type=int, default=GRAMMAR_SCENES, help="generated train scenes whose answers' tokens are kept")
    p.add_argument("--check-frames", type=int, default=16, help="held-out val scenes answered with the full and the trimmed head")
    p.add_argument("--max-new-tokens", type=int, default=64, help="answer length limit (the node's default)")


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    import time
    from dataclasses import asdict
    from pathlib import Path

    from owled_ros.data.calibration import load_calibration
    from owled_ros.errors import OwledError
    from owled_ros.model.checkpoint import CONFIG_NAME, carried_files, load_vlm, read_model_config, resolve_model_dir, save_vlm
    from owled_ros.prune.output_vocab import check_samples, trim_vlm_vocab

    out = Path(args.out)
    if out.exists():
        raise OwledError(f"{out}: already exists (choose another --out or remove it)")
    for flag in ("calib_samples", "grammar_scenes", "max_new_tokens"):
        if getattr(args, flag) < 1:
            raise OwledError(f"--{flag.replace('_', '-')} must be at least 1")
    if args.check_frames < 0:
        raise OwledError("--check-frames must be 0 or more")
    if args.calib == "wiki":
        raise OwledError("--calib wiki has no frames for the model to answer; use scenes, dashcam or bag:PATH")
    path = resolve_model_dir(args.model)
    if (path / CONFIG_NAME).is_file() and read_model_config(path).get("precision") == "int8":
        raise OwledError(f"{path}: an int8 deploy directory; trim the fp32 model, then deploy it")
    start = time.perf_counter()
    vlm = load_vlm(args.model, precision="fp32")
    calib = load_calibration(args.calib, args.calib_samples, vlm.tokenizer, 2)
    try:
        report = trim_vlm_vocab(vlm, calib, args.grammar_scenes, check_samples(args.check_frames), args.max_new_tokens)
    except ValueError as err:
        raise OwledError(f"{path}: {err}") from None
    record = {**asdict(report), "head_params_removed": report.head_params_removed, "calib": args.calib,
              "calib_samples": calib.samples, "seconds": time.perf_counter() - start}
    vlm.meta["output_vocab"] = {k: record[k] for k in ("kept_tokens", "vocab_size", "check_frames", "check_identical")}
    save_vlm(vlm, out, extra={**carried_files(path), "trim_report.json": json.dumps(record, indent=2).encode()})
    print(f"kept {report.kept_tokens} of {report.vocab_size} output tokens ({report.grammar_tokens} from the answer grammar, "
          f"{report.said_outside_grammar} more the model said); check: {report.check_identical}/{report.check_frames} "
          f"held-out answers identical; {record['seconds']:.0f} s -> {out}")
    if report.check_identical < report.check_frames:
        print(f"owled trim-vocab: warning: {report.check_frames - report.check_identical} held-out answers changed; "
              "raise --calib-samples or calibrate on the data the model was trained on", file=sys.stderr)
    return 0
