"""`owled recover`: distil the dense teacher into a pruned model (hidden states of the kept layers, KL on the
answer-token logits, task loss) on generated driving scenes, or on a mix with a team's own frames (--data);
structure and zero mask stay as pruned."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from owled_ros.commands.train import add_data_arguments
    from owled_ros.train.config import RecoverConfig

    d = RecoverConfig()
    p = sub.add_parser("recover", help="recover a pruned model by distillation from the dense teacher (CPU, or --device cuda)")
    p.add_argument("--model", required=True, help="pruned model directory (owled prune --out)")
    p.add_argument("--teacher", default=d.teacher, help="dense model to distil from ('default' or a model directory)")
    p.add_argument("--out", required=True, help="recovered model directory to write (must not exist)")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps")
    p.add_argument("--scenes", type=int, default=d.scenes, help="generated training scenes")
    add_data_arguments(p, d)
    p.add_argument("--batch", type=int, default=d.batch, help="examples per step")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--feature-weight", type=float, default=d.feature_weight, help="weight of the hidden-state loss")
    p.add_argument("--kl-weight", type=float, default=d.kl_weight, help="weight of the answer-logit KL")
    p.add_argument("--task-weight", type=float, default=d.task_weight, help="weight of the answer cross-entropy")
    p.add_argument("--temperature", type=float, default=d.temperature, help="of the KL")
    p.add_argument("--action-weight", type=float, default=d.action_weight,
                   help='weight of the answer tokens from "Action:" on in the KL and task losses (description tokens: 1)')
    p.add_argument("--on-policy", type=float, default=d.on_policy, metavar="SHARE",
                   help="share of steps on which the student writes its own answers and learns the teacher's "
                        "next-token distribution on them (no task loss there; default 0)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (0: default)")
    p.add_argument("--device", default=d.device, help="torch device, e.g. cuda (default cpu; the model written is the same kind)")
    p.add_argument("--work-dir", default=None, help="checkpoints for --resume (default OUT.recover-work; removed when OUT is written)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --work-dir")


def _config(args: argparse.Namespace):
    from owled_ros.commands.train import check_data_arguments
    from owled_ros.errors import OwledError
    from owled_ros.model.device import resolve_device
    from owled_ros.train.config import RecoverConfig

    for flag in ("steps", "scenes", "batch", "checkpoint_every"):
        if getattr(args, flag) < 1:
            raise OwledError(f"--{flag.replace('_', '-')} must be at least 1")
    for flag in ("feature_weight", "kl_weight", "task_weight"):
        if getattr(args, flag) < 0:
            raise OwledError(f"--{flag.replace('_', '-')} must be 0 or more")
    if not args.action_weight > 0:
        raise OwledError("--action-weight must be positive")
    if not 0 <= args.on_policy <= 1:
        raise OwledError(f"--on-policy must be a share from 0 to 1, got {args.on_policy}")
    if not args.lr > 0 or not args.temperature > 0:
        raise OwledError("--lr and --temperature must be positive")
    check_data_arguments(args)
    device = str(resolve_device(args.device))
    return RecoverConfig(
        scenes=args.scenes, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
        checkpoint_every=args.checkpoint_every, threads=args.threads, device=device, teacher=args.teacher,
        feature_weight=args.feature_weight, kl_weight=args.kl_weight, task_weight=args.task_weight, temperature=args.temperature,
        action_weight=args.action_weight, on_policy=args.on_policy,
        data=tuple(args.data or ("gen",)), val_share=args.val_share, augment=args.augment, speed_resample=args.speed_resample,
    )


def command_line() -> str:
    import shlex
    import sys

    return "owled " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from owled_ros.train.recover import default_work_dir, recover

    cfg = _config(args)
    out = Path(args.out)
    work_dir = Path(args.work_dir) if args.work_dir else default_work_dir(out)
    record = recover(args.model, out, cfg, work_dir, args.resume, command_line())
    print(f"recovered {args.model} from {args.teacher} in {cfg.steps} steps ({record['seconds']:.0f} s) -> {out}")
    return 0
