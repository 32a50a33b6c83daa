"""Per-call or per-token activation scales in the int8 deploy path: accuracy and frame latency.

One deployed directory (`owled deploy`), three ways to run the same stored ints, side by side
in one process, one torch thread:
- per call, 7-bit: fbgemm's dynamic int8 kernel everywhere as torch.ao ships it (one activation
  scale per call, 7-bit on x86; the deploy path until 2026-11-24);
- per token: torch._int_mm everywhere, one scale per token;
- shipped (`Int8Linear`): per token, with fbgemm's kernel for calls of one token in all (decode
  steps at batch 1), 8-bit where the CPU has VNNI. Until 2026-11-24 (session 8) every decode
  step took fbgemm, so at batch 8 a step's 8 tokens shared one scale; BENCHMARKS 5.0.1's table
  was measured then, its "shipped" row is that kernel.
Accuracy: the node's per-frame answer on the first --frames test scenes (batch 8, as
`owled eval driving-qa --frame-only`; there the shipped kernel is per token everywhere).
Latency: batch-1 frames, median of --latency-frames.

    source scripts/env.sh
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/int8_scales.py --model runs/deploy_bench/pruned20-int8 \\
        --frames 1000 --results benchmarks/int8_scales.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from owled_ros.model.int8 import Int8Linear
from owled_ros.eval.driving_qa import evaluate, generated_frames
from owled_ros.model.checkpoint import load_vlm
from owled_ros.model.prompt import FRAME_QUESTION


VARIANTS = {"per call, 7-bit (fbgemm as torch.ao ships it)": "decode", "per token (torch._int_mm)": "per_token",
            "shipped: per token, fbgemm for one-token calls (8-bit on VNNI)": None}
"""label -> the Int8Linear path every call takes (None: as shipped)."""


def frame_latency_ms(vlm, frames) -> float:
    times = []
    for f in frames:
        start = time.perf_counter()
        vlm.generate([f.image], [f.state], [FRAME_QUESTION], 64)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def run(model: str, frames: int, latency_frames: int) -> dict:
    torch.set_num_threads(1)
    test = generated_frames("test", max(frames, latency_frames))
    rows = {}
    for label, path in VARIANTS.items():
        vlm = load_vlm(model, "int8")
        if path is not None:  # every call through one path (a bound method: assigning the module would register it)
            for m in vlm.lm.modules():
                if isinstance(m, Int8Linear):
                    m.forward = m.decode.forward if path == "decode" else m.per_token
        scores = evaluate(vlm, test[:frames], qa=False)
        rows[label] = {"action_accuracy": scores["action_accuracy"], "rouge_l": scores["rouge_l"],
                       "frame_p50_ms": frame_latency_ms(vlm, test[:latency_frames])}
        print(label, json.dumps(rows[label]), flush=True)
    return {"model": model, "frames": frames, "latency_frames": latency_frames, "rows": rows}


def markdown(results: dict) -> str:
    lines = [f"| activation scales ({results['frames']} test frames) | action | ROUGE-L | frame p50 (batch 1) |", "|---|---|---|---|"]
    for label, r in results["rows"].items():
        lines.append(f"| {label} | {r['action_accuracy']:.3f} | {r['rouge_l']:.3f} | {r['frame_p50_ms']:.0f} ms |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="an int8 directory made by owled deploy (needed to measure)")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--latency-frames", type=int, default=5)
    p.add_argument("--results", default="benchmarks/int8_scales.json")
    p.add_argument("--markdown", action="store_true", help="print the table of --results and exit")
    args = p.parse_args()
    path = Path(args.results)
    if not args.markdown:
        if not args.model:
            p.error("--model is needed to measure (or give --markdown)")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(run(args.model, args.frames, args.latency_frames), indent=1) + "\n")
        tmp.replace(path)
    print(markdown(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
