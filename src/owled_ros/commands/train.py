"""`owled train`: train the default model's projector (and LoRA) on generated driving scenes."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from owled_ros.train.config import EncoderTrainConfig, TrainConfig

    d, e = TrainConfig(), EncoderTrainConfig()
    p = sub.add_parser("train", help="train the default model's projector + LoRA on generated scenes (CPU; stage 2 also --device cuda)")
    p.add_argument("--out", default="models/default", help="model directory to write (projector, lora, config)")
    p.add_argument("--work-dir", default="runs/train", help="checkpoints for --resume")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --work-dir")
    p.add_argument("--scenes", type=int, default=d.scenes, help="generated training scenes")
    add_data_arguments(p, d)
    p.add_argument("--val-frames", type=int, default=d.val_frames, help="validation frames per source scored after training (0: none)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--lora-rank", type=int, default=d.lora_rank)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--prompt-cues", action="store_true",
                   help="prompt also carries the distances the speed implies (2 s gap, stop zone, braking); stored in the model")
    p.add_argument("--init-from", default="", metavar="DIR",
                   help="start stage 2 from this trained model's encoder, projector and LoRA (or 'default'); skips stage 1")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (0: default)")
    p.add_argument("--device", default=d.device, help="torch device for stage 2, e.g. cuda (default cpu; the files it writes are the same kind)")
    g = p.add_argument_group("stage 1: the encoder's late blocks, trained on the scenes' ground truth")
    g.add_argument("--encoder-epochs", type=int, default=e.epochs, help="0 keeps the frozen ImageNet encoder")
    g.add_argument("--encoder-scenes", type=int, default=e.scenes)
    g.add_argument("--encoder-first-block", type=int, default=e.first_block, help="blocks before it stay frozen (1-17)")


def run(args: argparse.Namespace) -> int:
    import shlex
    import sys
    from pathlib import Path

    from owled_ros.errors import OwledError
    from owled_ros.train.config import EncoderTrainConfig, TrainConfig
    from owled_ros.train.trainer import train

    for name in ("scenes", "steps", "batch", "lora_rank", "checkpoint_every", "encoder_scenes"):
        if getattr(args, name) < 1:
            raise OwledError(f"--{name.replace('_', '-')} must be at least 1")
    if args.encoder_epochs < 0:
        raise OwledError("--encoder-epochs must be 0 or more")
    if not 1 <= args.encoder_first_block <= 17:
        raise OwledError(f"--encoder-first-block must be in 1..17 (EfficientNet-Lite0 blocks), got {args.encoder_first_block}")
    if not args.lr > 0:
        raise OwledError("--lr must be positive")
    if args.val_frames < 0:
        raise OwledError("--val-frames must be 0 or more")
    check_data_arguments(args)
    from owled_ros.model.device import resolve_device

    device = str(resolve_device(args.device))
    cfg = TrainConfig(
        scenes=args.scenes, steps=args.steps, batch=args.batch, lr=args.lr, lora_rank=args.lora_rank,
        seed=args.seed, checkpoint_every=args.checkpoint_every, threads=args.threads,
        speed_resample=args.speed_resample, prompt_cues=args.prompt_cues, init_from=args.init_from, device=device,
        data=tuple(args.data or ("gen",)), val_share=args.val_share, val_frames=args.val_frames, augment=args.augment,
    )
    command = "owled " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    encoder_cfg = EncoderTrainConfig(scenes=args.encoder_scenes, epochs=args.encoder_epochs,
                                     first_block=args.encoder_first_block, seed=args.seed)
    out = train(Path(args.out), Path(args.work_dir), cfg, args.resume, command, encoder_cfg)
    print(f"trained model written to {out}")
    return 0


def add_data_arguments(p: argparse.ArgumentParser, d) -> None:
    """--data, --val-share, --augment and --speed-resample, as `owled train` and `owled recover` both read them (defaults from `d`)."""
    p.add_argument("--data", action="append", default=None, metavar="SPEC",
                   help="training source, repeatable: gen | drivelm:PATH | sim:DIR, optionally @WEIGHT (default: gen; docs/own-data.md)")
    p.add_argument("--val-share", type=float, default=d.val_share, help="share of a file source's scenes held out for validation")
    p.add_argument("--augment", type=int, default=d.augment, metavar="N",
                   help="also train on N camera variations of each file-source frame: exposure, colour, blur, JPEG, framing (docs/own-data.md)")
    p.add_argument("--speed-resample", type=float, default=d.speed_resample,
                   help="share of examples driven at a redrawn ego speed, relabelled by the expert (0-1)")


def check_data_arguments(args: argparse.Namespace) -> None:
    """Bad values, and a bad --data spec (a missing image, a mistyped field), fail before any model loads."""
    from owled_ros.errors import OwledError
    from owled_ros.train.trainer import data_specs

    if not 0 <= args.augment <= 32:
        raise OwledError(f"--augment must be in 0..32, got {args.augment}")
    if not 0 < args.val_share < 1:
        raise OwledError("--val-share must be in (0, 1)")
    if not 0 <= args.speed_resample <= 1:
        raise OwledError(f"--speed-resample must be in 0..1, got {args.speed_resample}")
    data_specs(args.data or ["gen"])
