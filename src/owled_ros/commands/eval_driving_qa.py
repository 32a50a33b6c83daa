"""`owled eval driving-qa`: DriveLM-style scores of a model on generated scenes or a DriveLM file."""
from __future__ import annotations

import argparse

from owled_ros.commands import add_runtime_arguments, load_model_of


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("driving-qa", help="action / perception / prediction / planning accuracy, BLEU-4, ROUGE-L, CIDEr")
    p.add_argument("--model", default="default", help="model directory, or 'default'")
    add_runtime_arguments(p)
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="generated split (seeded)")
    p.add_argument("--drivelm", default=None, help="score a DriveLM JSON file instead of generated scenes")
    p.add_argument("--image-root", default=None, help="image root for --drivelm")
    p.add_argument("--limit", type=int, default=200, help="number of frames")
    p.add_argument("--offset", type=int, default=0, help="skip this many frames first (split a long evaluation into parallel runs)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--blank-image", action="store_true", help="ablation: replace every image by mid-grey")
    p.add_argument("--frame-only", action="store_true", help="score the per-frame answer only (action, description), skip DriveLM QA")
    p.add_argument("--out", default=None, help="also write the JSON to this file")
    p.add_argument("--answers", default=None, help="write each frame's answer and action as JSON lines (for paired comparisons)")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from owled_ros.commands.eval import emit
    from owled_ros.errors import OwledError
    from owled_ros.eval.driving_qa import drivelm_frames, evaluate, generated_frames
    from owled_ros.fsutil import write_text_atomic

    if args.limit < 1 or args.batch < 1:
        raise OwledError("--limit and --batch must be at least 1")
    if args.offset < 0:
        raise OwledError("--offset must be at least 0")
    if args.drivelm:
        if not args.image_root:
            raise OwledError("--drivelm needs --image-root")
        frames = drivelm_frames(Path(args.drivelm), Path(args.image_root), args.limit, args.offset)
    else:
        frames = generated_frames(args.split, args.limit, args.offset)
    vlm = load_model_of(args)
    answers: list[dict] | None = [] if args.answers else None
    metrics = evaluate(vlm, frames, batch=args.batch, blank_image=args.blank_image, qa=not args.frame_only, answers=answers)
    metrics.update(model=str(args.model), split=args.split if not args.drivelm else args.drivelm)
    if answers is not None:
        for a in answers:
            a["frame"] += args.offset
        write_text_atomic(Path(args.answers), "".join(json.dumps(a) + "\n" for a in answers))
    emit(metrics, args.out)
    return 0
