"""`owled eval action-errors`: are wrong actions wrong perception or a wrong decision? (eval/action_errors.py)"""
from __future__ import annotations

import argparse

def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("action-errors", help="split wrong actions into perception and decision errors (generated scenes)")
    p.add_argument("--answers", default=None, help="analyse this `owled eval driving-qa --answers` file instead of running --model")
    p.add_argument("--split", default="test", help="the generated split the frames come from: train, val or test")
    p.add_argument("--model", default="default", help="model directory or 'default' (without --answers)")
    p.add_argument("--frames", type=int, default=200, help="frames 0..N-1 of --split (without --answers)")
    p.add_argument("--out", default=None, help="also write the JSON to this file")


def run(args: argparse.Namespace) -> int:
    from owled_ros.commands.eval import emit
    from owled_ros.data.scenes import SPLIT_SEEDS, generate_scene
    from owled_ros.errors import OwledError
    from owled_ros.eval.action_errors import analyse, model_answers
    from owled_ros.eval.answers import read_answers
    from owled_ros.vocab import Action

    if args.split not in SPLIT_SEEDS:
        raise OwledError(f"--split must be one of {', '.join(SPLIT_SEEDS)}, got {args.split!r}")
    seed = SPLIT_SEEDS[args.split]
    if args.answers is not None:
        rows = read_answers(args.answers, ("frame", "text", "answered"))
        by_phrase = {a.phrase: a for a in Action}
        if any(not isinstance(r["frame"], int) or r["frame"] < 0 or r["answered"] not in by_phrase for r in rows):
            raise OwledError(f"{args.answers}: 'frame' must be a frame index and 'answered' an action phrase")
        scenes = [generate_scene(seed, r["frame"]) for r in rows]
        texts, actions = [str(r["text"]) for r in rows], [by_phrase[r["answered"]] for r in rows]
        source = {"answers": str(args.answers)}
    else:
        from owled_ros.model.checkpoint import load_vlm

        if args.frames < 1:
            raise OwledError(f"--frames must be at least 1, got {args.frames}")
        scenes = [generate_scene(seed, i) for i in range(args.frames)]
        texts, actions = model_answers(load_vlm(args.model), scenes)
        source = {"model": str(args.model)}
    emit({**source, "split": args.split, **analyse(scenes, texts, actions)}, args.out)
    return 0
