"""`owled demo`: the pruned and the dense model through owled_node on one scene bag, side by side.

Each model runs as `owled bag eval` does online (node + player + recorder over confined DDS);
every answer is printed as it arrives, then one table compares action accuracy, ROUGE-L,
latency and size. Size counts the nonzero weights of the prunable layers (from the pruned
model's prune_report.json, which `owled deploy` carries over; the dense model has them all).
The pruned model is shown as it would run on the vehicle: `scripts/demo.sh` deploys it as
int8 on the fastest backend that passes the deploy gate on this CPU, and the table says which
precision and runtime each model ran in.
"""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="pruned vs dense model through owled_node on a replayed scene bag")
    p.add_argument("--bag", required=True, help="scene bag (owled bag make)")
    p.add_argument("--pruned", required=True, help="pruned model directory (owled prune --out, or its owled deploy --out)")
    p.add_argument("--dense", default="default", help="dense model directory, or 'default'")
    p.add_argument("--out", required=True, help="directory for the two evaluations (eval_pruned/, eval_dense/ are replaced)")
    p.add_argument("--hz", type=float, default=0.2, help="camera replay rate; slow enough (5 s a frame) that the node can answer every frame on a 2-core CPU")
    p.add_argument("--max-new-tokens", type=int, default=64)


def _prunable_weights(pruned_dir: str) -> tuple[int, float]:
    """(prunable weights, achieved sparsity over them) from prune_report.json."""
    import json
    from pathlib import Path

    from owled_ros.errors import OwledError
    from owled_ros.model.checkpoint import PRUNE_REPORT

    path = Path(pruned_dir) / PRUNE_REPORT
    try:
        report = json.loads(path.read_text())
        params = sum(b["params"] for blocks in report["blocks"].values() for b in blocks)
        return params, float(report["achieved_sparsity"]["overall"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise OwledError(f"{path}: unreadable prune report ({err})") from None


def _label(role: str, model: str) -> str:
    """"pruned int8 (openvino)" / "dense fp32": the precision and runtime the node runs the
    directory in (precision auto, backend as deployed)."""
    import json

    from owled_ros.deploy.runner import read_backend
    from owled_ros.model.checkpoint import CONFIG_NAME, resolve_model_dir

    model_dir = resolve_model_dir(model)
    try:
        stored = json.loads((model_dir / CONFIG_NAME).read_text()).get("precision", "fp32")
    except (OSError, ValueError):
        stored = "fp32"  # a LLaVA directory; load_vlm reports real problems
    backend = (read_backend(model_dir) or {}).get("backend", "torch")
    return f"{role} {stored}" + ("" if backend == "torch" else f" ({backend})")


def table(rows: list[tuple[str, dict, float]], prunable: int) -> str:
    """Markdown table, one row per (label, bag-eval report, sparsity)."""
    def num(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    lines = [
        "| model | sparsity | nonzero prunable weights | frames answered | action accuracy | ROUGE-L | latency p50 / p95 (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r, sparsity in rows:
        lines.append(
            f"| {label} | {sparsity:.0%} | {prunable * (1 - sparsity) / 1e6:.1f} M | {r['frames_published']}/{r['frames_in']} "
            f"| {num(r['action_accuracy'], '.3f')} | {num(r['rouge_l'], '.3f')} "
            f"| {num(r['latency_p50_ms'], '.0f')} / {num(r['latency_p95_ms'], '.0f')} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from owled_ros.commands.bag import print_output, summary_line
    from owled_ros.data.bag_read import open_drive_bag
    from owled_ros.errors import OwledError
    from owled_ros.eval.bag_eval import EvalConfig, evaluate_bag
    from owled_ros.fsutil import write_text_atomic

    if not args.hz > 0 or args.max_new_tokens < 1:
        raise OwledError("--hz must be positive and --max-new-tokens at least 1")
    prunable, sparsity = _prunable_weights(args.pruned)
    drive = open_drive_bag(Path(args.bag))
    if not drive.truth:
        raise OwledError(f"{args.bag}: no ground truth on /owled/ground_truth (make it with `owled bag make --source scenes`)")
    out = Path(args.out)
    rows = []
    for label, model, model_sparsity in ((_label("pruned", args.pruned), args.pruned, sparsity), (_label("dense", args.dense), args.dense, 0.0)):
        spec = model if model == "default" else str(Path(model).resolve())
        work = out / f"eval_{label.split()[0]}"
        shutil.rmtree(work, ignore_errors=True)  # the demo's own output from an earlier run
        print(f"\n== {label} model ({model}): owled_node on {drive.path}, {len(drive.frames)} frames at {args.hz:g} Hz", flush=True)
        report = evaluate_bag(drive, EvalConfig(spec, args.max_new_tokens, hz=args.hz), work, on_output=print_output)
        print(summary_line(report), flush=True)
        rows.append((label, report, model_sparsity))
    text = table(rows, prunable)
    write_text_atomic(out / "demo_table.md", text + "\n")
    print(f"\n{text}\n\nreports: {out / 'eval_pruned'}, {out / 'eval_dense'}")
    return 0
