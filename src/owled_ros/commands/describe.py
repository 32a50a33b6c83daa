"""`owled describe IMAGE`: one camera image (and optional ego speed) in, the model's answer out."""
from __future__ import annotations

import argparse

from owled_ros.commands import add_runtime_arguments, load_model_of


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("describe", help="describe a driving image and predict the action")
    p.add_argument("image", help="camera image (jpg/png)")
    p.add_argument("--speed", type=float, default=None, help="ego speed in m/s (omit if unknown)")
    p.add_argument("--question", default=None, help="question to ask (default: describe scene and action)")
    p.add_argument("--model", default="default", help="model directory, or 'default' (the bundled model)")
    add_runtime_arguments(p)
    p.add_argument("--max-new-tokens", type=int, default=64)


def run(args: argparse.Namespace) -> int:
    import math

    from owled_ros.errors import OwledError
    from owled_ros.imageio import read_image_rgb
    from owled_ros.model.prompt import FRAME_QUESTION
    from owled_ros.schema import VehicleState

    if args.speed is not None and not (math.isfinite(args.speed) and 0 <= args.speed < 100):
        raise OwledError(f"--speed must be a finite speed in m/s in [0, 100), got {args.speed}")
    image = read_image_rgb(args.image)
    vlm = load_model_of(args)
    state = VehicleState(speed_mps=args.speed) if args.speed is not None else None
    out = vlm.generate([image], [state], [args.question or FRAME_QUESTION], max_new_tokens=args.max_new_tokens)
    print(out[0].text)
    return 0
