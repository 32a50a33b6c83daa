"""SmoothQuant's alpha for the int8 deploy path, chosen on the val split, never on test.

alpha moves each linear input's outlier channels into the weights: 0 leaves the
activations alone, 1 moves them all. SmolLM2's inputs carry channels ~2800x their median,
so the paper's default 0.5 still leaves ~150x in one down_proj, and int8 rounding bends the
model's actions towards the cautious ones (accelerate -> keep speed -> slow down).
For each alpha: calibrate and smooth the fp32 (pruned) model as `owled deploy` does, save
and reload it as the int8 runtime, and score the node's per-frame answer on --frames val
scenes; the fp32 model itself is the first row. One process, one torch thread.

    source scripts/env.sh
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/int8_alpha.py --model runs/s9/pruned20 \\
        --frames 500 --results benchmarks/int8_alpha.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from owled_ros.data.calibration import load_calibration
from owled_ros.deploy.build import smooth_for_int8
from owled_ros.deploy.config import DeployConfig
from owled_ros.eval.driving_qa import evaluate, generated_frames
from owled_ros.model.checkpoint import load_vlm, save_vlm


def run(model: str, alphas: list[float], frames: int, split: str) -> dict:
    torch.set_num_threads(1)
    scenes = generated_frames(split, frames)
    rows = {}

    def score(label: str, vlm) -> None:
        s = evaluate(vlm, scenes, qa=False)
        rows[label] = {"action_accuracy": s["action_accuracy"], "rouge_l": s["rouge_l"]}
        print(label, json.dumps(rows[label]), flush=True)

    score("fp32", load_vlm(model, "fp32"))
    for alpha in alphas:
        config = DeployConfig(alpha=alpha)
        vlm = load_vlm(model, "fp32")
        info = smooth_for_int8(vlm, load_calibration(config.calib, config.calib_samples, vlm.tokenizer, seqlen=512), config)
        with tempfile.TemporaryDirectory() as tmp:
            save_vlm(vlm, Path(tmp) / "int8", int8=info)
            score(f"int8, alpha {alpha:g}", load_vlm(Path(tmp) / "int8", "int8"))
    return {"model": model, "split": split, "frames": frames, "rows": rows}


def markdown(results: dict) -> str:
    lines = [f"| `{results['model']}`, {results['frames']} {results['split']} frames | action | ROUGE-L |", "|---|---|---|"]
    for label, r in results["rows"].items():
        lines.append(f"| {label} | {r['action_accuracy']:.3f} | {r['rouge_l']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="an fp32 model directory (e.g. from owled prune), needed to measure")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.5, 0.65, 0.8, 0.9])
    p.add_argument("--frames", type=int, default=500)
    p.add_argument("--split", default="val", choices=("train", "val"), help="never test: alpha is chosen here")
    p.add_argument("--results", default="benchmarks/int8_alpha.json")
    p.add_argument("--markdown", action="store_true", help="print the table of --results and exit")
    args = p.parse_args()
    path = Path(args.results)
    if not args.markdown:
        if not args.model:
            p.error("--model is needed to measure (or give --markdown)")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(run(args.model, args.alphas, args.frames, args.split), indent=1) + "\n")
        tmp.replace(path)
    print(markdown(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
